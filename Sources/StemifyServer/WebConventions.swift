import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore
import Synchronization

/// The methods each route pattern answers, known once every route is added; what a `405` lists
/// in `Allow` and a CORS preflight in `Access-Control-Allow-Methods`.
final class RouteTable: Sendable {
    private let patterns = Mutex<[(components: [Substring], methods: Set<HTTPRequest.Method>)]>([])

    /// Records the router's routes (call after the last route is added).
    func record(_ routes: [(path: String, method: HTTPRequest.Method)]) {
        var grouped: [String: Set<HTTPRequest.Method>] = [:]
        for route in routes {
            grouped[route.path, default: []].insert(route.method)
            // The router makes these when it is built, after this list is taken.
            if route.method == .get { grouped[route.path, default: []].insert(.head) }
        }
        patterns.withLock { $0 = grouped.map { (Self.components($0.key), $0.value) } }
    }

    /// The methods some route answers at `path`, nil when no route has this path (a 404).
    func methods(at path: String) -> Set<HTTPRequest.Method>? {
        let parts = Self.components(path)
        let found = patterns.withLock { patterns in
            patterns.filter { pattern in
                pattern.components.count == parts.count && zip(pattern.components, parts).allSatisfy { p, s in
                    Self.isCapture(p) ? !s.isEmpty : p == s
                }
            }.reduce(into: Set<HTTPRequest.Method>()) { $0.formUnion($1.methods) }
        }
        return found.isEmpty ? nil : found
    }

    private static func components(_ path: String) -> [Substring] { path.split(separator: "/", omittingEmptySubsequences: true) }
    /// Hummingbird writes a capture as `{name}` (or `:name` as it was added).
    private static func isCapture(_ part: Substring) -> Bool { part.first == "{" || part.first == ":" }
}

/// The web's conventions for every route, in one place: CORS for the configured origins,
/// `405 Method Not Allowed` with `Allow` for a known path and a method it does not take, and
/// the security headers. Outermost, so error responses carry them too.
struct WebConventionsMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteTable
    /// Origins allowed to call the API from a browser (`*`: any).
    let allowedOrigins: [String]

    /// What a preflight may ask to send: the API's own request headers.
    static var allowedHeaders: String {
        "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, Range, If-Range, If-None-Match, Tus-Resumable, "
            + "Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum"
    }
    /// What a page on another origin may read from a response.
    static var exposedHeaders: String {
        "Location, ETag, Content-Disposition, Content-Range, Content-Length, Retry-After, RateLimit-Limit, RateLimit-Remaining, "
            + "RateLimit-Reset, Idempotent-Replayed, Upload-Offset, Upload-Length, Upload-Expires, Tus-Resumable, Tus-Version, "
            + "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let origin = request.headers[.origin]
        let allowed = origin.flatMap(allowedOrigin)
        var response: Response
        let methods = routes.methods(at: request.uri.path)
        if request.method == .options, origin != nil, let asked = request.headers[.accessControlRequestMethod] {
            // A CORS preflight, whatever the route does with OPTIONS itself (tus answers its
            // capabilities there).
            response = Response(status: .noContent)
            if let allowed, let methods, let method = HTTPRequest.Method(asked), methods.contains(method) {
                response.headers[.accessControlAllowOrigin] = allowed
                response.headers[.accessControlAllowMethods] = Self.list(methods)
                response.headers[.accessControlAllowHeaders] = Self.allowedHeaders
                response.headers[.accessControlMaxAge] = "600"
            }
        } else if let methods, !methods.contains(request.method) {
            let error = StemifyError(.methodNotAllowed, "\(request.method.rawValue) is not answered here; this resource takes \(Self.list(methods))")
            response = errorResponse(error, headers: [.allow: Self.list(methods)])
        } else {
            response = try await next(request, context)
        }
        if let allowed, request.method != .options || request.headers[.accessControlRequestMethod] == nil {
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        }
        if !allowedOrigins.isEmpty, !allowedOrigins.contains("*") { response.headers[.vary] = Self.varyOrigin(response.headers[.vary]) }
        response.headers[.xContentTypeOptions] = "nosniff"
        return response
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, or nil when it is not allowed.
    func allowedOrigin(_ origin: String) -> String? {
        if allowedOrigins.contains("*") { return "*" }
        let lowered = origin.lowercased()
        return allowedOrigins.contains(where: { $0.lowercased() == lowered }) ? origin : nil
    }

    static func list(_ methods: Set<HTTPRequest.Method>) -> String {
        methods.map(\.rawValue).sorted().joined(separator: ", ")
    }

    static func varyOrigin(_ existing: String?) -> String {
        guard let existing, !existing.isEmpty else { return "Origin" }
        return existing.lowercased().contains("origin") ? existing : "\(existing), Origin"
    }
}

/// RFC 9110's entity-tag comparisons, for the stem and peaks routes.
package enum EntityTags {
    /// The opaque part of `W/"x"` or `"x"`.
    package static func opaque(_ tag: Substring) -> Substring {
        let trimmed = tag.drop(while: { $0 == " " || $0 == "\t" })
        return trimmed.hasPrefix("W/") ? trimmed.dropFirst(2) : trimmed
    }

    /// `If-None-Match`: `*`, or any listed tag weakly equal to `etag` (§13.1.2).
    package static func noneMatchFails(_ header: String, etag: String) -> Bool {
        let tags = header.split(separator: ",").map { opaque($0).trimmingCharacters(in: .whitespaces) }
        return tags.contains("*") || tags.contains(String(opaque(Substring(etag))))
    }

    /// `If-Range`: the range applies only when the header is a strong tag equal to `etag`
    /// (§13.1.5); a weak tag or a date (no `Last-Modified` is sent) means the whole file.
    package static func rangeApplies(ifRange header: String?, etag: String?) -> Bool {
        guard let header else { return true }
        let value = header.trimmingCharacters(in: .whitespaces)
        guard let etag, value.hasPrefix("\""), !etag.hasPrefix("W/") else { return false }
        return value == etag
    }
}

extension HTTPField.Name {
    static let origin = Self("Origin")!
    static let accessControlRequestMethod = Self("Access-Control-Request-Method")!
    static let accessControlAllowOrigin = Self("Access-Control-Allow-Origin")!
    static let accessControlAllowMethods = Self("Access-Control-Allow-Methods")!
    static let accessControlAllowHeaders = Self("Access-Control-Allow-Headers")!
    static let accessControlExposeHeaders = Self("Access-Control-Expose-Headers")!
    static let accessControlMaxAge = Self("Access-Control-Max-Age")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
