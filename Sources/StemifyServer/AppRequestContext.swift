public import Hummingbird
import NIOCore

/// The request context: only what routes need, the peer address for rate limiting and the caller.
public struct AppRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Set by ``AccessMiddleware`` before any route runs.
    var caller = Caller(owner: nil, key: nil, quotaClient: "unknown", quota: 0)

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// The client a request counts for (rate limits, upload ownership): the peer address, or the
/// last untrusted hop of X-Forwarded-For when the peer is a trusted proxy.
func clientAddress(_ request: Request, _ context: AppRequestContext, trustedProxies: [String]) -> String {
    let peer = context.remoteAddress?.ipAddress ?? "unknown"
    guard trustedProxies.contains(peer) else { return peer }
    return forwardedClient(peer: peer, header: request.headers[values: .xForwardedFor].joined(separator: ","), trusted: Set(trustedProxies))
}
