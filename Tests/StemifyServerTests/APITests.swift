import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import StemifyCore
import StemifyServer
import StemifyTestSupport
import Testing

/// A server configuration over a fresh data folder and the fixture models.
func testConfiguration(_ edit: (inout StemifyConfiguration) -> Void = { _ in }) -> StemifyConfiguration {
    var c = StemifyConfiguration()
    c.port = 0
    c.dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-api-\(UUID().uuidString)").path
    c.modelPath = fixturesDirectory().appendingPathComponent("repo").path
    c.workers = 1
    c.threads = 2
    c.rateLimit = 100
    // No internet here: published models are not fetched.
    c.modelDownload = false
    edit(&c)
    return c
}

/// `configuration` with its stems in a fresh bucket of the test S3 server.
func inFreshBucket(_ configuration: StemifyConfiguration) throws -> StemifyConfiguration {
    let (endpoint, url) = try freshBucket()
    var c = configuration
    c.storageURL = url
    c.storageEndpoint = endpoint
    c.storageAccessKey = "test"
    c.storageSecretKey = "test"
    return c
}

/// Runs `body` against a live server (real sockets, in-process workers).
func withServer(_ configuration: StemifyConfiguration, _ body: @Sendable @escaping (any TestClientProtocol) async throws -> Void) async throws {
    var logger = Logger(label: "test")
    logger.logLevel = ProcessInfo.processInfo.environment["STEMIFY_TEST_LOG"] != nil ? .debug : .warning
    let app = try await buildApplication(configuration: configuration, logger: logger)
    defer { try? FileManager.default.removeItem(atPath: configuration.dataDirectory) }
    try await app.test(.live) { client in try await body(OwnedClient(base: client, token: OwnedClient.newToken())) }
}

/// A test client that sends one owner token with every request (what the page's cookie or an
/// application's `token` does), unless the request names its own `Authorization`.
struct OwnedClient: TestClientProtocol {
    let base: any TestClientProtocol
    let token: String
    var port: Int? { base.port }

    static func newToken() -> String { "sto_" + UUID().uuidString.replacingOccurrences(of: "-", with: "") + "test" }

    /// The same server as someone else: another token, or none (`nil`).
    func other(_ token: String? = OwnedClient.newToken()) -> any TestClientProtocol {
        token.map { OwnedClient(base: base, token: $0) } ?? base
    }

    func executeRequest(uri: String, method: HTTPRequest.Method, headers: HTTPFields, body: ByteBuffer?) async throws -> TestResponse {
        var headers = headers
        if headers[.authorization] == nil { headers[.authorization] = "Bearer \(token)" }
        return try await base.executeRequest(uri: uri, method: method, headers: headers, body: body)
    }
}

/// RFC 9110's conditionals on a kept file whose ETag is `etag`: a weak or listed If-None-Match
/// is a match (304); If-Range with another tag, a weak tag or a date serves the whole file.
func expectConditionals(_ client: any TestClientProtocol, _ path: String, etag: String, bytes: [UInt8]) async throws {
    for match in ["W/\(etag)", "\"other\", \(etag)", "*"] {
        #expect(try await client.execute(uri: path, method: .get, headers: [.ifNoneMatch: match]).status == .notModified, "If-None-Match: \(match)")
    }
    #expect(try await client.execute(uri: path, method: .get, headers: [.ifNoneMatch: "\"other\""]).status == .ok)
    for stale in ["\"stale\"", "W/\(etag)", "Tue, 01 Dec 2026 00:00:00 GMT"] {
        let whole = try await client.execute(uri: path, method: .get, headers: [.range: "bytes=0-9", .ifRange: stale])
        #expect(whole.status == .ok && whole.body.readableBytes == bytes.count, "If-Range: \(stale)")
    }
    let fresh = try await client.execute(uri: path, method: .get, headers: [.range: "bytes=0-9", .ifRange: etag])
    #expect(fresh.status == .partialContent && [UInt8](fresh.body.readableBytesView) == Array(bytes[0...9]))
}

/// An audio file made by the real ffmpeg from a lavfi source (test input only).
func makeAudio(seconds: Double, format: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-in-\(UUID().uuidString).\(format)")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:duration=\(seconds)",
                   "-f", "lavfi", "-i", "anoisesrc=amplitude=0.05:duration=\(seconds)", "-filter_complex", "amix=inputs=2",
                   "-ac", "2", "-ar", "44100", url.path]
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    return url
}

/// `ffprobe` duration of a file, seconds.
func probeDuration(_ url: URL) throws -> Double {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", url.path]
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    p.waitUntilExit()
    return Double(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
}

/// A multipart/form-data body.
func multipart(fields: [String: String], file: (name: String, data: Data)? = nil) -> (HTTPFields, ByteBuffer) {
    let boundary = "stemify-\(UUID().uuidString)"
    var body = Data()
    for (k, v) in fields.sorted(by: { $0.key < $1.key }) {
        body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8)
    }
    if let file {
        body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(file.name)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        body += file.data
        body += Data("\r\n".utf8)
    }
    body += Data("--\(boundary)--\r\n".utf8)
    return ([.contentType: "multipart/form-data; boundary=\(boundary)"], ByteBuffer(bytes: [UInt8](body)))
}

func json(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data([UInt8](buffer.readableBytesView)))) as? [String: Any] ?? [:]
}

func errorCode(_ buffer: ByteBuffer) -> String? {
    (json(buffer)["error"] as? [String: Any])?["code"] as? String
}

@Suite("HTTP API", .serialized)
struct APITests {
    @Test("upload a 20 s mp3, follow the event stream to done, download every stem at the input's duration",
          arguments: ["SQLite", "PostgreSQL", "Redis"])
    func endToEnd(_ queue: String) async throws {
        let input = try makeAudio(seconds: 20, format: "mp3")
        defer { try? FileManager.default.removeItem(at: input) }
        let inputDuration = try probeDuration(input)
        let url: String? = switch queue {
        case "PostgreSQL": try freshPostgresDatabase()
        case "Redis": try await freshRedisDatabase()
        default: nil
        }
        try await withServer(testConfiguration { $0.queueURL = url }) { client in
            let (headers, body) = multipart(fields: ["model": "ht_small", "output_format": "flac", "remove_vocals": "true", "quality": "fast"],
                                            file: ("song.mp3", try Data(contentsOf: input)))
            let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
            #expect(accepted.status == .accepted)
            let id = try #require(json(accepted.body)["job_id"] as? String)

            let events = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
            #expect(events.headers[.contentType] == "text/event-stream")
            let text = String(buffer: events.body)
            let statuses = text.components(separatedBy: "\n").filter { $0.hasPrefix("data: ") }
                .map { json(ByteBuffer(string: String($0.dropFirst(6)))) }
            let progress = statuses.compactMap { $0["progress"] as? Double }
            #expect(progress == progress.sorted(), "progress went backwards: \(progress)")
            #expect(statuses.last?["status"] as? String == "done")

            let job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
            let stems = try #require(job["stems"] as? [[String: Any]])
            #expect(stems.map { $0["name"] as? String } == ["drums", "bass", "other", "vocals", "instrumental"])
            for stem in stems {
                let url = try #require(stem["url"] as? String)
                let response = try await client.execute(uri: url, method: .get)
                #expect(response.status == .ok)
                #expect(response.headers[.contentDisposition]?.contains("attachment") == true)
                let file = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-out-\(UUID().uuidString).flac")
                defer { try? FileManager.default.removeItem(at: file) }
                try Data([UInt8](response.body.readableBytesView)).write(to: file)
                let duration = try probeDuration(file)
                #expect(abs(duration - inputDuration) < 0.1, "\(url): \(duration) s vs input \(inputDuration) s")
            }
        }
    }

    @Test("object storage: nothing in the data folder, presigned stem URLs, the API proxies Range and ETag, DELETE empties the bucket")
    func objectStorage() async throws {
        let input = try makeAudio(seconds: 2, format: "wav")
        defer { try? FileManager.default.removeItem(at: input) }
        let configuration = try inFreshBucket(testConfiguration())
        let (endpoint, url) = (try #require(configuration.storageEndpoint), try #require(configuration.storageURL))
        let bucket = S3Client(location: try S3Location(url: url, endpoint: endpoint, region: "us-east-1"),
                              signer: SigV4(accessKey: "test", secretKey: "test", region: "us-east-1"))
        try await withServer(configuration) { client in
            var ids: [String] = []
            // The second job is the same audio and options: its stems are copies inside the bucket.
            for _ in 0..<2 {
                let (headers, body) = multipart(fields: ["model": "ht_small", "output_format": "wav", "quality": "fast"],
                                                file: ("a.wav", try Data(contentsOf: input)))
                let id = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).body)["job_id"] as? String)
                _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
                ids.append(id)
            }
            let jobs = try await ids.asyncMap { json(try await client.execute(uri: "/api/jobs/\($0)", method: .get).body) }
            #expect(jobs.map { $0["status"] as? String } == ["done", "done"])
            #expect(jobs.map { ($0["metrics"] as? [String: Any])?["cache_hit"] as? Bool } == [false, true])

            // Nothing of the jobs stays in the data folder; the bucket has uploads, stems and their
            // peaks (copied with the stems for the cached job), no work.
            let data = URL(fileURLWithPath: configuration.dataDirectory)
            let left = (FileManager.default.enumerator(atPath: data.path)?.allObjects as? [String] ?? [])
                .filter { $0.hasPrefix("uploads/") || $0.hasPrefix("stems/") || $0.hasPrefix("work/") }
                .filter { !FileManager.default.isDirectory(data.appendingPathComponent($0)) }
            #expect(left.isEmpty, "\(left)")
            let keys = try await bucket.list(bucket.key(""))
            #expect(Set(keys) == Set(ids.flatMap { id in
                ["uploads/\(id)"] + ["drums", "bass", "other", "vocals"].flatMap { ["stems/\(id)/\($0).wav", "stems/\(id)/\($0).peaks.json"] }
            }.map(bucket.key)))

            // Stem URLs are presigned: fetched straight from the store, with the stem's headers.
            let stems = try #require(jobs[0]["stems"] as? [[String: Any]])
            let direct = try #require(stems.first { $0["name"] as? String == "vocals" }?["url"] as? String)
            #expect(direct.hasPrefix(endpoint) && direct.contains("X-Amz-Signature="))
            let fetched = try await HTTPClient.shared.execute(HTTPClientRequest(url: direct), timeout: .seconds(10))
            #expect(fetched.status.code == 200 && fetched.headers.first(name: "content-type") == "audio/wav")
            let bytes = [UInt8](Data(buffer: try await fetched.body.collect(upTo: 10 << 20)))

            // Through the API: the same bytes, with Range, ETag and HEAD.
            let path = "/api/jobs/\(ids[0])/stems/vocals.wav"
            let full = try await client.execute(uri: path, method: .get)
            #expect(full.status == .ok && [UInt8](full.body.readableBytesView) == bytes)
            #expect(full.headers[.contentDisposition]?.hasPrefix("attachment; filename=") == true)
            #expect(full.headers[.contentDisposition]?.contains("(vocals).wav") == true, "titled: \(full.headers[.contentDisposition] ?? "")")
            let etag = try #require(full.headers[.eTag])
            #expect(try await client.execute(uri: path, method: .get, headers: [.ifNoneMatch: etag]).status == .notModified)
            let part = try await client.execute(uri: path, method: .get, headers: [.range: "bytes=100-199"])
            #expect(part.status == .partialContent && [UInt8](part.body.readableBytesView) == Array(bytes[100...199]))
            #expect(part.headers[.contentRange] == "bytes 100-199/\(bytes.count)")
            let head = try await client.execute(uri: path, method: .head)
            #expect(head.status == .ok && head.headers[.contentLength] == "\(bytes.count)")
            try await expectConditionals(client, path, etag: etag, bytes: bytes)

            // DELETE removes the job's objects, and the expired ones' as the janitor runs.
            for id in ids { #expect(try await client.execute(uri: "/api/jobs/\(id)", method: .delete).status == .ok) }
            #expect(try await bucket.list(bucket.key("")).isEmpty)
        }
    }

    @Test("bad storage settings stop the start within seconds, naming the setting and no secret")
    func badStorageSettings() async throws {
        let secret = "wJalrXUtnFEMI-secret-value"
        @Sendable func start(endpoint: String) async -> ConfigurationError? {
            let c = testConfiguration {
                $0.storageURL = "s3://stemify-bad/x"
                $0.storageEndpoint = endpoint
                ($0.storageAccessKey, $0.storageSecretKey) = ("AKIDEXAMPLE", secret)
            }
            do {
                _ = try await buildApplication(configuration: c, logger: Logger(label: "test"))
                return nil
            } catch {
                return error as? ConfigurationError
            }
        }
        let started = Date()
        let unreachable = await start(endpoint: "http://127.0.0.1:9")
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(unreachable?.key == "storage_endpoint")

        // A store that refuses the credentials, as S3 does with a wrong key.
        let router = Router()
        router.on("/{bucket}", method: .head) { _, _ in Response(status: .forbidden) }
        try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
            let refused = await start(endpoint: "http://127.0.0.1:\(client.port ?? 0)")
            #expect(refused?.key == "storage_access_key")
            #expect(refused?.description.contains(secret) == false)
            #expect(refused?.description.contains("403") == true)
        }
        #expect(unreachable?.description.contains(secret) == false)
    }

    @Test("stems support ETag, Range and HEAD; unknown jobs and stems are 404 with a code")
    func downloads() async throws {
        let input = try makeAudio(seconds: 2, format: "wav")
        defer { try? FileManager.default.removeItem(at: input) }
        try await withServer(testConfiguration()) { client in
            let (headers, body) = multipart(fields: ["model": "ht_small", "output_format": "wav", "quality": "fast"],
                                            file: ("a.wav", try Data(contentsOf: input)))
            let id = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).body)["job_id"] as? String)
            _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
            let full = try await client.execute(uri: "/api/jobs/\(id)/stems/vocals.wav", method: .get)
            let etag = try #require(full.headers[.eTag])
            #expect(full.headers[.cacheControl]?.contains("immutable") == true)
            let notModified = try await client.execute(uri: "/api/jobs/\(id)/stems/vocals.wav", method: .get, headers: [.ifNoneMatch: etag])
            #expect(notModified.status == .notModified)
            let part = try await client.execute(uri: "/api/jobs/\(id)/stems/vocals.wav", method: .get, headers: [.range: "bytes=10-19"])
            #expect(part.status == .partialContent)
            #expect([UInt8](part.body.readableBytesView) == [UInt8]([UInt8](full.body.readableBytesView)[10...19]))
            try await expectConditionals(client, "/api/jobs/\(id)/stems/vocals.wav", etag: etag, bytes: [UInt8](full.body.readableBytesView))
            let head = try await client.execute(uri: "/api/jobs/\(id)/stems/vocals.wav", method: .head)
            #expect(head.status == .ok)
            let missingStem = try await client.execute(uri: "/api/jobs/\(id)/stems/guitar.wav", method: .get)
            #expect(missingStem.status == .notFound && errorCode(missingStem.body) == "stem_not_found")
            let missingJob = try await client.execute(uri: "/api/jobs/nope", method: .get)
            #expect(missingJob.status == .notFound && errorCode(missingJob.body) == "job_not_found")
            let deleted = try await client.execute(uri: "/api/jobs/\(id)", method: .delete)
            #expect(deleted.status == .ok)
            let r1 = try await client.execute(uri: "/api/jobs/\(id)", method: .get)
            #expect(r1.status == .notFound)
        }
    }

    struct BadInput: CustomTestStringConvertible, Sendable {
        let name: String
        let fields: [String: String]
        let file: (String, Data)?
        let status: HTTPResponse.Status
        let code: String
        var testDescription: String { name }
    }

    static let hls = Data("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n".utf8)
    static let ffconcat = Data("ffconcat version 1.0\nfile '/etc/passwd'\n".utf8)

    static func badInputs() throws -> [BadInput] {
        let mp3 = try Data(contentsOf: try makeAudio(seconds: 3, format: "mp3"))
        return [
            BadInput(name: "empty file", fields: ["model": "ht_small"], file: ("a.mp3", Data()), status: .badRequest, code: "empty_file"),
            BadInput(name: "text renamed .mp3", fields: ["model": "ht_small"], file: ("a.mp3", Data(String(repeating: "hello, not audio\n", count: 200).utf8)),
                     status: .unsupportedMediaType, code: "unsupported_format"),
            BadInput(name: "HLS playlist renamed .mp3", fields: ["model": "ht_small"], file: ("a.mp3", hls), status: .unsupportedMediaType, code: "unsupported_format"),
            BadInput(name: "ffconcat renamed .mp3", fields: ["model": "ht_small"], file: ("a.mp3", ffconcat), status: .unsupportedMediaType, code: "unsupported_format"),
            BadInput(name: "truncated mp3", fields: ["model": "ht_small"], file: ("a.mp3", mp3.prefix(mp3.count / 2)),
                     status: .badRequest, code: "invalid_audio"),
            BadInput(name: "no input", fields: ["model": "ht_small"], file: nil, status: .badRequest, code: "missing_input"),
            BadInput(name: "file and URL", fields: ["youtube_url": "https://youtu.be/dQw4w9WgXcQ"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "missing_input"),
            BadInput(name: "non-YouTube URL", fields: ["youtube_url": "https://example.com/watch?v=dQw4w9WgXcQ"], file: nil,
                     status: .badRequest, code: "invalid_youtube_url"),
            BadInput(name: "look-alike host", fields: ["youtube_url": "https://www.youtube.com.evil.io/watch?v=dQw4w9WgXcQ"], file: nil,
                     status: .badRequest, code: "invalid_youtube_url"),
            BadInput(name: "playlist URL", fields: ["youtube_url": "https://www.youtube.com/playlist?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs"],
                     file: nil, status: .badRequest, code: "youtube_playlist"),
            BadInput(name: "unknown model", fields: ["model": "nope"], file: ("a.mp3", mp3), status: .badRequest, code: "unknown_model"),
            BadInput(name: "published model not in the folder, downloads off", fields: ["model": "mdx_extra_q"], file: ("a.mp3", mp3),
                     status: .serviceUnavailable, code: "model_unavailable"),
            BadInput(name: "bad output format", fields: ["model": "ht_small", "output_format": "ogg"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
            BadInput(name: "bad quality", fields: ["model": "ht_small", "quality": "ultra"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
            BadInput(name: "bad boolean", fields: ["model": "ht_small", "normalize": "maybe"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
            BadInput(name: "num_overlap zero", fields: ["model": "ht_small", "num_overlap": "0"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
            BadInput(name: "num_overlap above 16", fields: ["model": "ht_small", "num_overlap": "17"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
            BadInput(name: "num_overlap not a number", fields: ["model": "ht_small", "num_overlap": "2.5"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
            BadInput(name: "num_overlap for a Demucs model", fields: ["model": "ht_small", "num_overlap": "2"], file: ("a.mp3", mp3),
                     status: .badRequest, code: "invalid_option"),
        ]
    }

    @Test("every bad input gets its documented code and the server stays healthy")
    func badInputs() async throws {
        let cases = try Self.badInputs()
        try await withServer(testConfiguration()) { client in
            for c in cases {
                let (headers, body) = multipart(fields: c.fields, file: c.file.map { (name: $0.0, data: $0.1) })
                let response = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
                #expect(response.status == c.status, "\(c.name): \(response.status)")
                #expect(errorCode(response.body) == c.code, "\(c.name): \(String(buffer: response.body))")
                let health = try await client.execute(uri: "/healthz", method: .get)
                #expect(health.status == .ok)
            }
        }
    }

    @Test("a configured model in the model folder: listed with its overlap, separated at the overlap asked for")
    func configuredModel() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-models-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for ext in ["ckpt", "yaml"] {
            try FileManager.default.copyItem(at: fixturesDirectory().appendingPathComponent("msst/scnet_vocals_small.\(ext)"),
                                             to: folder.appendingPathComponent("voc.\(ext)"))
        }
        let input = try Data(contentsOf: try makeAudio(seconds: 2, format: "wav"))
        try await withServer(testConfiguration { $0.modelPath = folder.path }) { client in
            let models = json(try await client.execute(uri: "/api/models", method: .get).body)["models"] as? [[String: Any]] ?? []
            let voc = try #require(models.first { $0["name"] as? String == "voc" })
            #expect(voc["family"] as? String == "scnet" && voc["num_overlap"] as? Int == 2)
            #expect(voc["sources"] as? [String] == ["vocals", "instrumental"])
            #expect(models.first { $0["name"] as? String == "htdemucs" }?["num_overlap"] == nil)

            let (headers, body) = multipart(fields: ["model": "voc", "num_overlap": "1", "output_format": "wav"], file: ("a.wav", input))
            let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
            #expect(accepted.status == .accepted, "\(String(buffer: accepted.body))")
            let id = try #require(json(accepted.body)["job_id"] as? String)
            _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
            let job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
            #expect(job["status"] as? String == "done", "\(job)")
            #expect((job["stems"] as? [[String: Any]])?.map { $0["name"] as? String } == ["vocals", "instrumental"])
        }
    }

    @Test("an upload over the limit is refused while it streams (413)")
    func tooLarge() async throws {
        try await withServer(testConfiguration { $0.maxFileSize = 1 << 20 }) { client in
            let (headers, body) = multipart(fields: [:], file: ("big.mp3", Data(count: 3 << 20)))
            let response = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
            #expect(response.status == .contentTooLarge)
            #expect(errorCode(response.body) == "file_too_large")
            let r2 = try await client.execute(uri: "/healthz", method: .get)
            #expect(r2.status == .ok)
        }
    }

    @Test("the sixth job within the hour is refused with 429 and Retry-After, and the count survives a restart")
    func rateLimit() async throws {
        let input = try Data(contentsOf: try makeAudio(seconds: 1, format: "mp3"))
        let configuration = testConfiguration { $0.rateLimit = 5; $0.workers = 0 }
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let first = try await buildApplication(configuration: configuration, logger: logger)
        try await first.test(.live) { client in
            for _ in 0..<5 {
                let (headers, body) = multipart(fields: ["model": "ht_small"], file: ("a.mp3", input))
                let r3 = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
                #expect(r3.status == .accepted)
            }
        }
        // A restarted server still counts them.
        try await withServer(configuration) { client in
            let (headers, body) = multipart(fields: ["model": "ht_small"], file: ("a.mp3", input))
            let response = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
            #expect(response.status == .tooManyRequests)
            #expect(errorCode(response.body) == "rate_limited")
            #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 > 0)
        }
    }

    @Test("X-Forwarded-For counts only from a trusted proxy")
    func trustedProxy() async throws {
        let input = try Data(contentsOf: try makeAudio(seconds: 1, format: "mp3"))
        @Sendable func submit(_ client: any TestClientProtocol, from address: String) async throws -> HTTPResponse.Status {
            var (headers, body) = multipart(fields: ["model": "ht_small"], file: ("a.mp3", input))
            headers[HTTPField.Name("X-Forwarded-For")!] = address
            return try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).status
        }
        try await withServer(testConfiguration { $0.rateLimit = 1; $0.workers = 0; $0.trustedProxies = ["127.0.0.1"] }) { client in
            let first = try await submit(client, from: "203.0.113.1")
            let other = try await submit(client, from: "203.0.113.2")
            let again = try await submit(client, from: "203.0.113.1")
            #expect(first == .accepted && other == .accepted && again == .tooManyRequests)
        }
        // Without a trusted proxy the header is ignored: every request is the peer's.
        try await withServer(testConfiguration { $0.rateLimit = 1; $0.workers = 0 }) { client in
            let first = try await submit(client, from: "203.0.113.1")
            let other = try await submit(client, from: "203.0.113.2")
            #expect(first == .accepted && other == .tooManyRequests)
        }
    }

    @Test("the OpenAPI document lists every route and every error code")
    func openAPI() async throws {
        try await withServer(testConfiguration()) { client in
            let doc = String(buffer: try await client.execute(uri: "/openapi.yaml", method: .get).body)
            // The batch schema's limit is the default max_batch_size (it said 4 while the server took 20).
            #expect(doc.contains("maxItems: \(StemifyConfiguration().maxBatchSize), items") && !doc.contains("maxItems: 4,"))
            for path in ["/api/stemify:", "/api/jobs:", "/api/jobs/{id}:", "/api/jobs/{id}/events:", "/api/jobs/{id}/stems.zip:", "/api/jobs/{id}/stems/{file}:",
                         "/api/models:", "/api/limits:", "/healthz:", "/readyz:", "/metrics:", "/api/uploads:", "/api/uploads/{id}:",
                         "/api/batches:", "/api/batches/{id}:", "/api/batches/{id}/events:", "/api/batches/{id}/stems.zip:"] {
                #expect(doc.contains("  \(path)\n"), "missing \(path)")
            }
            let codes = ErrorCode.allCases.map(\.rawValue)
            for code in codes { #expect(doc.contains(code), "missing \(code)") }
            let errorsDoc = try String(contentsOf: fixturesDirectory().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("docs/errors.md"), encoding: .utf8)
            for code in codes { #expect(errorsDoc.contains("`\(code)`"), "docs/errors.md misses \(code)") }
        }
    }

    @Test("DELETE stops a running separation: the job is cancelled (a state, counted), a second DELETE removes it, the worker takes the next one")
    func cancelRunning() async throws {
        let long = try Data(contentsOf: try makeAudio(seconds: 240, format: "mp3"))
        let short = try Data(contentsOf: try makeAudio(seconds: 1, format: "mp3"))
        try await withServer(testConfiguration()) { client in
            let (h1, b1) = multipart(fields: ["model": "ht_small", "quality": "best"], file: ("long.mp3", long))
            let id = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: h1, body: b1).body)["job_id"] as? String)
            var status = ""
            for _ in 0..<200 where status != "separating" {
                try await Task.sleep(for: .milliseconds(100))
                status = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)["status"] as? String ?? ""
            }
            #expect(status == "separating")
            let deleted = try await client.execute(uri: "/api/jobs/\(id)", method: .delete)
            #expect(deleted.status == .ok && json(deleted.body)["status"] as? String == "cancelled")
            // Cancelled stays a state, with its time, until it expires or is deleted.
            let cancelled = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
            #expect(cancelled["status"] as? String == "cancelled" && cancelled["finished_at"] as? String != nil)
            #expect((cancelled["stems"] as? [Any])?.isEmpty == true)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("stemify_jobs_cancelled_total 1") && metrics.contains("stemify_jobs{state=\"cancelled\"} 1"), "\(metrics)")
            let removed = try await client.execute(uri: "/api/jobs/\(id)", method: .delete)
            #expect(json(removed.body)["status"] as? String == "deleted")
            let gone = try await client.execute(uri: "/api/jobs/\(id)", method: .get)
            #expect(gone.status == .notFound)
            // The long job would take minutes; the next one finishes at once only if the worker let go.
            let started = Date()
            let (h2, b2) = multipart(fields: ["model": "ht_small", "quality": "fast", "output_format": "wav"], file: ("short.mp3", short))
            let next = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: h2, body: b2).body)["job_id"] as? String)
            _ = try await client.execute(uri: "/api/jobs/\(next)/events", method: .get)
            let job = json(try await client.execute(uri: "/api/jobs/\(next)", method: .get).body)
            #expect(job["status"] as? String == "done")
            #expect(Date().timeIntervalSince(started) < 20)
        }
    }

    @Test("the same audio with the same options is served from the finished stems")
    func dedupe() async throws {
        let input = try Data(contentsOf: try makeAudio(seconds: 2, format: "mp3"))
        try await withServer(testConfiguration()) { client in
            var results: [[String: Any]] = []
            for _ in 0..<2 {
                let (headers, body) = multipart(fields: ["model": "ht_small", "output_format": "wav", "quality": "fast"], file: ("a.mp3", input))
                let id = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).body)["job_id"] as? String)
                _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
                results.append(json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body))
            }
            let hits = results.map { ($0["metrics"] as? [String: Any])?["cache_hit"] as? Bool }
            #expect(hits == [false, true])
            let sizes = results.map { ($0["stems"] as? [[String: Any]])?.map { $0["bytes"] as? Int } }
            #expect(sizes[0] == sizes[1])
        }
    }

    @Test("models, limits, readiness and metrics")
    func service() async throws {
        try await withServer(testConfiguration()) { client in
            let models = json(try await client.execute(uri: "/api/models", method: .get).body)["models"] as? [[String: Any]] ?? []
            let byName = Dictionary(uniqueKeysWithValues: models.map { ($0["name"] as! String, $0) })
            #expect(byName["htdemucs"]?["available"] as? Bool == false)
            #expect(byName["mdx_q"]?["available"] as? Bool == false)
            #expect(byName["mdx_small"]?["available"] as? Bool == true)
            #expect(byName["ht_small"]?["available"] as? Bool == true)
            let limits = json(try await client.execute(uri: "/api/limits", method: .get).body)
            #expect(limits["max_file_size"] as? Int == 50 * 1024 * 1024)
            let r4 = try await client.execute(uri: "/readyz", method: .get)
            #expect(r4.status == .ok)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("stemify_queue_depth 0"))
        }
    }
}

/// A local stand-in for YouTube: `python3 -m http.server` serving pages whose JSON-LD names the
/// audio and its duration, which yt-dlp's generic extractor reads like a video page.
final class FakeVideoSite: @unchecked Sendable {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-site-\(UUID().uuidString)")
    private let server: LocalPythonServer

    init(audio: URL, videos: [String: Int]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: audio, to: directory.appendingPathComponent("audio.mp3"))
        // The pages name the server's own address, known once it listens.
        server = try LocalPythonServer.files(in: directory)
        for (name, seconds) in videos {
            let page = """
                <html><head><title>\(name)</title><script type="application/ld+json">
                {"@context":"https://schema.org","@type":"VideoObject","name":"\(name)","contentUrl":"http://127.0.0.1:\(server.port)/audio.mp3",
                 "duration":"PT\(seconds)S","uploadDate":"2024-01-01","thumbnailUrl":"http://127.0.0.1:\(server.port)/t.jpg","description":"test"}
                </script></head><body>\(name)</body></html>
                """
            try page.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
    }

    func url(_ name: String) -> String { "http://127.0.0.1:\(server.port)/\(name)" }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("YouTube input through the real yt-dlp", .serialized)
struct YouTubeAPITests {
    @Test("a video is fetched, separated and served; an over-long one is refused before download")
    func youtube() async throws {
        let audio = try makeAudio(seconds: 3, format: "mp3")
        defer { try? FileManager.default.removeItem(at: audio) }
        let site = try FakeVideoSite(audio: audio, videos: ["song": 3, "concert": 3600])
        defer { site.stop() }
        let configuration = testConfiguration { $0.youtubeTestHosts = ["127.0.0.1"] }
        try await withServer(configuration) { client in
            let long = try await client.execute(uri: "/api/stemify", method: .post, headers: [.contentType: "application/json"],
                                                body: ByteBuffer(string: #"{"youtube_url": "\#(site.url("concert"))", "model": "ht_small"}"#))
            #expect(long.status == .badRequest && errorCode(long.body) == "video_too_long")
            let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: [.contentType: "application/json"],
                                                    body: ByteBuffer(string: #"{"youtube_url": "\#(site.url("song"))", "model": "ht_small", "output_format": "wav"}"#))
            #expect(accepted.status == .accepted, "\(String(buffer: accepted.body))")
            let id = try #require(json(accepted.body)["job_id"] as? String)
            _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
            let job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
            #expect(job["status"] as? String == "done", "\(job)")
            #expect((job["stems"] as? [Any])?.count == 4)
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

extension FileManager {
    func isDirectory(_ url: URL) -> Bool {
        var directory: ObjCBool = false
        return fileExists(atPath: url.path, isDirectory: &directory) && directory.boolValue
    }
}
