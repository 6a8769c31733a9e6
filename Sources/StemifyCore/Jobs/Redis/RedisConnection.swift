import Foundation
import NIOCore
import NIOPosix

/// A failure talking to Redis. The message never holds a password.
public enum RedisError: Error, Equatable, CustomStringConvertible {
    /// `redis://` URL that does not parse.
    case invalidURL(String)
    /// The server answered the command with `-ERR ...` (or `-WRONGTYPE`, `-NOSCRIPT` ...).
    case server(String)
    /// The connection closed or broke (the command may or may not have run).
    case connectionClosed
    /// The server sent bytes that are not RESP2 within the parser's limits.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case let .invalidURL(reason): "invalid Redis URL: \(reason)"
        case let .server(message): "Redis: \(message)"
        case .connectionClosed: "the Redis connection closed"
        case let .protocolViolation(reason): "Redis sent \(reason)"
        }
    }
}

/// Where a Redis server is: `redis://[user:password@]host[:port][/db]`.
public struct RedisAddress: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String?
    public var password: String?
    public var database: Int

    public init(url: String) throws(RedisError) {
        guard let components = URLComponents(string: url), components.scheme == "redis" else {
            throw .invalidURL("expected redis://host:port/db")
        }
        guard let host = components.host, !host.isEmpty else { throw .invalidURL("no host") }
        self.host = host
        port = components.port ?? 6379
        guard (1...65535).contains(port) else { throw .invalidURL("port out of range") }
        user = components.user.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding }
        password = components.password?.removingPercentEncoding
        let path = components.path.drop { $0 == "/" }
        if path.isEmpty {
            database = 0
        } else {
            guard let db = Int(path), (0...15).contains(db) else { throw .invalidURL("the database must be 0-15") }
            database = db
        }
    }
}

/// One connection to Redis: commands are pipelined and their replies matched in order.
///
/// A small RESP2 client on SwiftNIO (no Swift Redis client is available here); it does what
/// the job queue needs: commands, scripts, blocking pops on a connection of their own.
public final class RedisConnection: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// Connects, authenticates and selects the database of `address`.
    public static func connect(_ address: RedisAddress, timeout: Duration = .seconds(5)) async throws -> RedisConnection {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64(timeout.components.seconds * 1000)))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RESPHandler())
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: address.host, port: address.port).get()
        } catch {
            throw RedisError.connectionClosed
        }
        let connection = RedisConnection(channel: channel)
        do {
            if let password = address.password {
                _ = try await connection.run(address.user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
            }
            if address.database != 0 { _ = try await connection.run(["SELECT", String(address.database)]) }
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Sends one command and returns its reply; a `-ERR` reply is thrown as ``RedisError/server(_:)``.
    @discardableResult
    public func run(_ arguments: [String]) async throws -> RESPValue {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        // A closed channel never reaches the handler: the write's failure fails the reply too
        // (completing a promise twice keeps the first result).
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in promise.fail(RedisError.connectionClosed) }
        channel.writeAndFlush(RESPHandler.Request(bytes: respCommand(arguments), promise: promise), promise: written)
        let reply = try await promise.futureResult.get()
        if case let .error(message) = reply { throw RedisError.server(message) }
        return reply
    }

    public var isOpen: Bool { channel.isActive }

    public func close() {
        channel.close(promise: nil)
    }
}

/// Encodes requests, decodes replies and completes each request's promise in order.
private final class RESPHandler: ChannelDuplexHandler {
    struct Request {
        var bytes: [UInt8]
        var promise: EventLoopPromise<RESPValue>
    }

    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Request
    typealias OutboundOut = ByteBuffer

    private var parser = RESPParser()
    private var pending = CircularBuffer<EventLoopPromise<RESPValue>>()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        pending.append(request.promise)
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: request.bytes)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        parser.feed(buffer.readableBytesView)
        do {
            while let reply = try parser.next() {
                // A reply nobody asked for means the stream is out of step: drop the connection.
                guard let promise = pending.popFirst() else {
                    throw RESPParser.Failure.malformed("a reply to no command")
                }
                promise.succeed(reply)
            }
        } catch let RESPParser.Failure.malformed(reason) {
            failAll(RedisError.protocolViolation(reason))
            context.close(promise: nil)
        } catch {
            failAll(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError.connectionClosed)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        while let promise = pending.popFirst() { promise.fail(error) }
    }
}
