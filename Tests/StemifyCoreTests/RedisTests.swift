import Foundation
import Logging
import StemifyCore
import Testing

@Suite("RESP2 parser")
struct RESPParserTests {
    /// Replies as the protocol specification (redis.io/docs/reference/protocol-spec) writes them.
    static let replies: [(String, RESPValue)] = [
        ("+OK\r\n", .simple("OK")),
        ("-ERR unknown command 'FOO'\r\n", .error("ERR unknown command 'FOO'")),
        (":1000\r\n", .integer(1000)),
        (":-42\r\n", .integer(-42)),
        ("$5\r\nhello\r\n", .bulk(Array("hello".utf8))),
        ("$0\r\n\r\n", .bulk([])),
        ("$-1\r\n", .bulk(nil)),
        ("$4\r\na\r\nb\r\n", .bulk(Array("a\r\nb".utf8))),
        ("*0\r\n", .array([])),
        ("*-1\r\n", .array(nil)),
        ("*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n", .array([.bulk(Array("foo".utf8)), .bulk(Array("bar".utf8))])),
        ("*3\r\n:1\r\n*2\r\n+a\r\n$-1\r\n-E x\r\n", .array([.integer(1), .array([.simple("a"), .bulk(nil)]), .error("E x")])),
    ]

    @Test("every reply type, whole and split at every byte")
    func replies() throws {
        for (text, expected) in Self.replies {
            let bytes = Array(text.utf8)
            var whole = RESPParser()
            whole.feed(bytes)
            #expect(try whole.next() == expected, "\(text.debugDescription)")
            #expect(try whole.next() == nil)
            for cut in 1..<bytes.count {
                var parser = RESPParser()
                parser.feed(bytes[..<cut])
                #expect(try parser.next() == nil, "\(text.debugDescription) cut at \(cut)")
                parser.feed(bytes[cut...])
                #expect(try parser.next() == expected, "\(text.debugDescription) cut at \(cut)")
            }
        }
    }

    @Test("pipelined replies come out in order, one byte at a time")
    func pipelined() throws {
        var parser = RESPParser()
        var out: [RESPValue] = []
        for byte in Self.replies.flatMap({ Array($0.0.utf8) }) {
            parser.feed([byte])
            while let value = try parser.next() { out.append(value) }
        }
        #expect(out == Self.replies.map(\.1))
    }

    @Test("hostile or broken replies are refused, not trusted", arguments: [
        "?what\r\n", ":12a\r\n", ":99999999999999999999999\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n",
        "+OK\n", "$1048577\r\n", "*1048577\r\n", String(repeating: "*1\r\n", count: 10) + ":1\r\n",
        "+" + String(repeating: "x", count: 70_000) + "\r\n",
    ])
    func malformed(_ text: String) {
        var parser = RESPParser(maxBulk: 1 << 20)
        parser.feed(Array(text.utf8))
        #expect(throws: RESPParser.Failure.self) { _ = try parser.next() }
    }

    @Test("a command is an array of bulk strings, byte counts in UTF-8")
    func command() {
        #expect(respCommand(["SET", "k", "é"]) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n".utf8))
        #expect(respCommand([]) == Array("*0\r\n".utf8))
    }

    @Test("redis:// URLs", arguments: [
        ("redis://localhost", "localhost", 6379, nil, nil, 0),
        ("redis://:s%40cret@10.0.0.2:6380/3", "10.0.0.2", 6380, nil, "s@cret", 3),
        ("redis://app:pw@cache.internal/0", "cache.internal", 6379, "app", "pw", 0),
    ] as [(String, String, Int, String?, String?, Int)])
    func address(_ url: String, host: String, port: Int, user: String?, password: String?, db: Int) throws {
        let a = try RedisAddress(url: url)
        #expect(a.host == host && a.port == port && a.user == user && a.password == password && a.database == db)
    }

    @Test("bad redis:// URLs are refused by reason", arguments: [
        "http://localhost:6379", "redis://", "redis://host:0", "redis://host/16", "redis://host/x", "rediss://host",
    ])
    func badAddress(_ url: String) {
        #expect(throws: RedisError.self) { try RedisAddress(url: url) }
    }
}

/// Against a real `redis-server` (`scripts/redis.sh`, which `scripts/test.sh` runs and exports as
/// `STEMIFY_TEST_REDIS_URL`); left out with a message without one.
@Suite("Redis connection", .serialized, .enabled(if: redisURL() != nil))
struct RedisConnectionTests {
    static func connect() async throws -> RedisConnection {
        try await RedisConnection.connect(RedisAddress(url: try #require(redisURL())))
    }

    @Test("commands and their replies: strings, integers, nulls, arrays, server errors")
    func commands() async throws {
        let redis = try await Self.connect()
        defer { redis.close() }
        let key = "stemify-test:\(UUID().uuidString)"
        #expect(try await redis.run(["SET", key, "héllo"]) == .simple("OK"))
        #expect(try await redis.run(["GET", key]).string == "héllo")
        #expect(try await redis.run(["GET", key + ":missing"]).isNull)
        #expect(try await redis.run(["RPUSH", key + ":l", "a", "b"]).int == 2)
        #expect(try await redis.run(["LRANGE", key + ":l", "0", "-1"]).elements.compactMap(\.string) == ["a", "b"])
        await #expect(throws: RedisError.server("WRONGTYPE Operation against a key holding the wrong kind of value")) {
            try await redis.run(["LPUSH", key, "x"])
        }
        // The connection is fine after a server error.
        #expect(try await redis.run(["DEL", key, key + ":l"]).int == 2)
        #expect(try await redis.run(["EVAL", "return {1, ARGV[1]}", "0", "z"]).elements == [.integer(1), .bulk(Array("z".utf8))])
    }

    @Test("concurrent commands on one connection are matched to their own replies")
    func pipelining() async throws {
        let redis = try await Self.connect()
        defer { redis.close() }
        let key = "stemify-test:\(UUID().uuidString)"
        let replies = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<200 {
                group.addTask { (i, try await redis.run(["ECHO", "value-\(i)"]).string) }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(replies.count == 200 && replies.allSatisfy { $0.value == "value-\($0.key)" })
        _ = try await redis.run(["DEL", key])
    }

    @Test("a blocking pop that times out is a null array")
    func blockingTimeout() async throws {
        let redis = try await Self.connect()
        defer { redis.close() }
        #expect(try await redis.run(["BLPOP", "stemify-test:\(UUID().uuidString)", "0.1"]) == .array(nil))
    }

    @Test("a wrong password, a closed port and a closed connection are errors, not hangs")
    func failures() async throws {
        var wrong = try RedisAddress(url: try #require(redisURL()))
        wrong.password = "not-the-password"
        await #expect(throws: RedisError.self) { try await RedisConnection.connect(wrong) }
        var closed = wrong
        closed.port = 1
        await #expect(throws: RedisError.connectionClosed) { try await RedisConnection.connect(closed) }
        let redis = try await Self.connect()
        redis.close()
        await #expect(throws: RedisError.connectionClosed) { try await redis.run(["PING"]) }
    }
}

func redisURL() -> String? {
    let url = ProcessInfo.processInfo.environment["STEMIFY_TEST_REDIS_URL"]
    if url == nil { print("Redis tests left out (STEMIFY_TEST_REDIS_URL is not set; scripts/test.sh sets it)") }
    return url
}

/// What only the Redis queue does; the shared behaviour is `QueueContractTests`.
@Suite("Redis job queue", .serialized, .enabled(if: redisURL() != nil))
struct RedisJobQueueTests {
    static let logger: Logger = {
        var l = Logger(label: "test")
        l.logLevel = .critical
        return l
    }()

    func queue(_ prefix: String, lease: Double = 60) async throws -> RedisJobQueue {
        try await RedisJobQueue(url: try #require(redisURL()), prefix: prefix, leaseSeconds: lease, logger: Self.logger)
    }

    func job(_ id: String, at: Date = Date()) -> Job {
        Job(id: id, status: .queued, progress: 0, etaSeconds: nil, options: JobOptions(model: "ht_small"),
            input: .upload(path: "/tmp/\(id)", filename: "\(id).mp3"), owner: "1.2.3.4", createdAt: at,
            startedAt: nil, finishedAt: nil, errorCode: nil, errorMessage: nil, stems: [], metrics: nil, attempts: 0)
    }

    @Test("eight workers, each with its own connections as on eight machines, claim 100 jobs exactly once, oldest first")
    func exactlyOnce() async throws {
        let prefix = "stemify-test-\(UUID().uuidString)"
        let api = try await queue(prefix)
        let start = Date()
        for i in 0..<100 { try await api.enqueue(job(String(format: "j%03d", i), at: start + Double(i) / 1000)) }
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for w in 0..<8 {
                group.addTask {
                    let mine = try await queue(prefix)
                    defer { mine.shutdown() }
                    var ids: [String] = []
                    while let j = try await mine.claim(worker: "w\(w)") { ids.append(j.id) }
                    return ids
                }
            }
            return try await group.reduce(into: []) { $0 += [$1] }
        }
        let all = claimed.flatMap { $0 }
        #expect(all.count == 100 && Set(all).count == 100)
        // Each worker took its jobs in creation order.
        #expect(claimed.allSatisfy { $0 == $0.sorted() })
        #expect(try await api.counts() == [.decoding: 100])
        api.shutdown()
    }

    @Test("an idle worker wakes when another machine adds a job (XREAD on the wake-up stream)")
    func wakeUp() async throws {
        let prefix = "stemify-test-\(UUID().uuidString)"
        let worker = try await queue(prefix)
        let api = try await queue(prefix)
        let started = Date()
        async let woke: Void = worker.waitForWork(timeout: 120)
        // A job every second: the listener may start blocking after the first one.
        let notifier = Task {
            for i in 0..<60 {
                try await api.enqueue(job("new\(i)"))
                try await Task.sleep(for: .seconds(1))
            }
        }
        await woke
        notifier.cancel()
        // Without the wake-up the wait would last its full two minutes.
        #expect(Date().timeIntervalSince(started) < 60)
        worker.shutdown()
        api.shutdown()
    }

    @Test("a malformed URL or no server answering names the setting")
    func badURL() async throws {
        for url in ["redis://", "redis://127.0.0.1:1/0"] {
            await #expect(throws: ConfigurationError.self) {
                try await RedisJobQueue(url: url, logger: Self.logger)
            }
        }
    }
}
