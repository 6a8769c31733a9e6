import Synchronization
import Foundation
import GRDB
import StemifyCore
import StemifyEngine
import Testing

@Suite("YouTube URL acceptance")
struct YouTubeURLTests {
    let youtube = YouTube(configuration: StemifyConfiguration())

    @Test("single-video URLs on YouTube's hosts are accepted", arguments: [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://youtube.com/watch?v=dQw4w9WgXcQ&t=42", "dQw4w9WgXcQ"),
        ("https://m.youtube.com/watch?v=dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://music.youtube.com/watch?v=dQw4w9WgXcQ&list=RDAMVM", "dQw4w9WgXcQ"),
        ("https://youtu.be/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://youtu.be/dQw4w9WgXcQ?si=abc", "dQw4w9WgXcQ"),
        ("https://www.youtube.com/shorts/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("http://www.youtube.com/embed/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ])
    func accepted(_ c: (String, String)) throws {
        #expect(try youtube.videoID(c.0) == c.1)
    }

    @Test("hostile and non-video URLs are refused", arguments: [
        "https://www.youtube.com.evil.io/watch?v=dQw4w9WgXcQ",
        "https://evil.io/www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://user:pass@www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com:8443/watch?v=dQw4w9WgXcQ",
        "https://wwwyoutube.com/watch?v=dQw4w9WgXcQ",
        "https://youtube.co/watch?v=dQw4w9WgXcQ",
        "https://xn--yutube-wqf.com/watch?v=dQw4w9WgXcQ",
        "file:///etc/passwd",
        "ftp://youtube.com/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=../../etc",
        "https://www.youtube.com/channel/UC38IQsAvIsxxjztdMZQtwHA",
        "https://www.youtube.com/",
        "not a url",
        "",
    ])
    func refused(_ url: String) {
        #expect(throws: StemifyError.self) { try youtube.videoID(url) }
    }

    @Test("playlists and blocked videos have their own codes")
    func codes() throws {
        let error = #expect(throws: StemifyError.self) { try youtube.videoID("https://www.youtube.com/playlist?list=PLx") }
        #expect(error?.code == .youtubePlaylist)
        var c = StemifyConfiguration()
        c.youtubeBlocklist = ["dQw4w9WgXcQ"]
        let blocked = #expect(throws: StemifyError.self) { try YouTube(configuration: c).videoID("https://youtu.be/dQw4w9WgXcQ") }
        #expect(blocked?.code == .videoBlocked)
    }
}

@Suite("Configuration")
struct ConfigurationTests {
    @Test("YAML, then environment, override the defaults")
    func layering() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID().uuidString).yaml")
        try "port: 9000\nrate_limit: 7\ntrusted_proxies: [10.0.0.1, 10.0.0.2]\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let c = try StemifyConfiguration.load(file: file.path, environment: ["RATE_LIMIT": "3", "DEMUCS_MODEL_PATH": "/models", "MAX_FILE_SIZE": "1000",
                                                                             "STEMIFY_LANES": "1", "STEMIFY_ISA": "Portable"])
        #expect(c.port == 9000)
        #expect(c.lanes == 1 && StemifyConfiguration().lanes == 0)
        #expect(c.instructionSet == .portable && StemifyConfiguration().instructionSet == InstructionSet.best)
        #expect(c.rateLimit == 3)
        #expect(c.trustedProxies == ["10.0.0.1", "10.0.0.2"])
        #expect(c.modelDirectory.path == "/models")
        #expect(c.maxFileSize == 1000)
    }

    @Test("invalid settings fail at start naming the key", arguments: [
        (["RATE_LIMIT": "five"], "RATE_LIMIT"), (["STEMIFY_PORT": "70000"], "port"), (["LOG_LEVEL": "loud"], "log_level"),
        (["STEMIFY_QUEUE_URL": "mysql://x"], "queue_url"), (["REDIS_URL": "http://cache:6379"], "queue_url"), (["MAX_FILE_SIZE": "-1"], "max_file_size"),
        (["STEMIFY_LANES": "-2"], "lanes"), (["STEMIFY_ISA": "avx9"], "STEMIFY_ISA"),
        (["STEMIFY_STORAGE_URL": "gs://bucket"], "storage_url"), (["STEMIFY_STORAGE_URL": "s3://No_Such"], "storage_url"),
        (["STEMIFY_STORAGE_URL": "s3://bucket", "AWS_ENDPOINT_URL": "minio:9000"], "storage_endpoint"),
        (["STEMIFY_STORAGE_URL": "s3://bucket", "AWS_ACCESS_KEY_ID": "key"], "storage_access_key"),
        (["STEMIFY_STORAGE_URL_EXPIRY": "0"], "storage_url_expiry"), (["STEMIFY_STORAGE_PART_SIZE": "1000"], "storage_part_size"),
        (["STEMIFY_STORAGE_PUBLIC_URL": "cdn.example.com"], "storage_public_url"),
    ])
    func invalid(_ c: ([String: String], String)) {
        let error = #expect(throws: ConfigurationError.self) { try StemifyConfiguration.load(file: nil, environment: c.0) }
        #expect(error?.key == c.1)
    }

    @Test("REDIS_URL, the seed's name for its Redis, selects the Redis queue unless STEMIFY_QUEUE_URL is set")
    func redisURL() throws {
        #expect(try StemifyConfiguration.load(file: nil, environment: ["REDIS_URL": "redis://cache:6379/2"]).queueURL == "redis://cache:6379/2")
        let both = try StemifyConfiguration.load(file: nil, environment: ["REDIS_URL": "redis://cache:6379/2", "STEMIFY_QUEUE_URL": "sqlite:/tmp/j.sqlite"])
        #expect(both.queueURL == "sqlite:/tmp/j.sqlite")
    }

    @Test("object storage from the AWS SDKs' variables; without storage_url the data folder")
    func storageSettings() async throws {
        let c = try StemifyConfiguration.load(file: nil, environment: [
            "STEMIFY_STORAGE_URL": "s3://stems-bucket/prod", "AWS_ENDPOINT_URL": "https://r2.example.com", "AWS_REGION": "auto",
            "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "STEMIFY_STORAGE_PUBLIC_URL": "https://cdn.example.com",
        ])
        #expect(c.storageURL == "s3://stems-bucket/prod" && c.storageEndpoint == "https://r2.example.com" && c.storageRegion == "auto")
        #expect(c.storageAccessKey == "AKID" && c.storageSecretKey == "secret" && c.storagePublicURL == "https://cdn.example.com")
        var local = StemifyConfiguration()
        local.dataDirectory = "/tmp/stemify-folder"
        #expect((try await local.openStorage() as? FolderStorage)?.root.path == "/tmp/stemify-folder")
    }

    @Test("an unknown YAML key is refused by name")
    func unknownKey() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID().uuidString).yaml")
        try "prot: 9000\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let error = #expect(throws: ConfigurationError.self) { try StemifyConfiguration.load(file: file.path, environment: [:]) }
        #expect(error?.key == "prot")
    }
}

@Suite("SQLite job queue")
struct SQLiteJobQueueTests {
    func makeJob(_ id: String, at: Date = Date()) -> Job {
        Job(id: id, status: .queued, progress: 0, etaSeconds: nil, options: JobOptions(model: "ht_small"),
            input: .upload(path: "/tmp/\(id)", filename: "a.mp3"), owner: "1.2.3.4", createdAt: at, startedAt: nil,
            finishedAt: nil, errorCode: nil, errorMessage: nil, stems: [], metrics: nil, attempts: 0)
    }

    func tempPath() -> String { FileManager.default.temporaryDirectory.appendingPathComponent("stemify-q-\(UUID().uuidString)/jobs.sqlite").path }

    @Test("jobs are claimed oldest first, once, and survive reopening the database")
    func claimOrder() async throws {
        let path = tempPath()
        let q = try SQLiteJobQueue(path: path)
        let now = Date()
        try await q.enqueue(makeJob("b", at: now))
        try await q.enqueue(makeJob("a", at: now - 10))
        #expect(try await q.position(id: "b") == 1)
        #expect(try await q.claim(worker: "w1")?.id == "a")
        let reopened = try SQLiteJobQueue(path: path)
        #expect(try await reopened.claim(worker: "w2")?.id == "b")
        #expect(try await reopened.claim(worker: "w3") == nil)
    }

    @Test("a stored job whose options do not decode is an error, not a job run with default options")
    func undecodableOptions() async throws {
        let path = tempPath()
        let q = try SQLiteJobQueue(path: path)
        try await q.enqueue(makeJob("x", at: Date()))
        try await DatabaseQueue(path: path).write { db in
            try db.execute(sql: "UPDATE jobs SET options = '{\"model\": 5}' WHERE id = 'x'")
        }
        await #expect(throws: StemifyError.self) { try await q.job(id: "x") }
        await #expect(throws: StemifyError.self) { try await q.claim(worker: "w") }
    }

    @Test("jobs stored before num_overlap existed decode with the model's overlap, and keep their dedupe encoding")
    func optionsWithoutOverlap() throws {
        let old = #"{"model":"htdemucs","output_format":"mp3","normalize":false,"remove_vocals":true,"shifts":1,"overlap":0.25}"#
        let options = try JSONDecoder().decode(JobOptions.self, from: Data(old.utf8))
        #expect(options.numOverlap == nil && options.removeVocals)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        #expect(!String(decoding: try encoder.encode(options), as: UTF8.self).contains("num_overlap"))
        var two = options
        two.numOverlap = 2
        #expect(try JSONDecoder().decode(JobOptions.self, from: encoder.encode(two)) == two)
    }

    @Test("a job whose worker stopped heartbeating is claimed again after the backoff; the old worker is told it lost it")
    func leaseExpiry() async throws {
        let clock = ManualClock()
        let q = try SQLiteJobQueue(path: tempPath(), leaseSeconds: 60, retryBackoff: 5, clock: clock.now)
        try await q.enqueue(makeJob("j"))
        #expect(try await q.claim(worker: "dead")?.id == "j")
        clock.advance(64)
        #expect(try await q.claim(worker: "other") == nil, "lease ran out, backoff (5 s after the first attempt) not yet")
        clock.advance(2)
        let again = try await q.claim(worker: "other")
        #expect(again?.id == "j" && again?.attempts == 2)
        #expect(try await q.heartbeat(id: "j", worker: "dead") == false)
        #expect(try await q.heartbeat(id: "j", worker: "other") == true)
        clock.advance(59)
        #expect(try await q.claim(worker: "third") == nil, "a heartbeat extends the lease")
    }

    @Test("a job interrupted too often fails instead of looping")
    func maxAttempts() async throws {
        let clock = ManualClock()
        let q = try SQLiteJobQueue(path: tempPath(), leaseSeconds: 10, maxAttempts: 2, retryBackoff: 5, clock: clock.now)
        try await q.enqueue(makeJob("j"))
        #expect(try await q.claim(worker: "a")?.attempts == 1)
        clock.advance(16)
        #expect(try await q.claim(worker: "b")?.attempts == 2)
        clock.advance(19)
        #expect(try await q.claim(worker: "c") == nil, "the backoff doubles: 10 s after the second attempt")
        clock.advance(2)
        #expect(try await q.claim(worker: "c") == nil)
        let job = try await q.job(id: "j")
        #expect(job?.status == .failed && job?.errorCode == .internalError)
    }

    @Test("progress never goes backwards; completion, cancellation and dedupe lookups")
    func lifecycle() async throws {
        let q = try SQLiteJobQueue(path: tempPath())
        try await q.enqueue(makeJob("j"))
        _ = try await q.claim(worker: "w")
        try await q.update(id: "j", worker: "w", status: .separating, progress: 0.5, eta: 10)
        try await q.update(id: "j", worker: "w", status: .separating, progress: 0.3, eta: 10)
        #expect(try await q.job(id: "j")?.progress == 0.5)
        try await q.setDedupeKey(id: "j", key: "k")
        let stem = StemFile(name: "vocals", file: "/tmp/v.mp3", format: "mp3", bytes: 1, duration: 1)
        try await q.complete(id: "j", worker: "w", stems: [stem],
                             metrics: JobMetrics(processingSeconds: 1, audioSeconds: 1, inputFormat: "mp3", outputBytes: 1, cacheHit: false))
        #expect(try await q.finishedJob(dedupeKey: "k")?.stems == [stem])
        #expect(try await q.cancel(id: "j")?.id == "j")
        #expect(try await q.job(id: "j") == nil)
    }

    @Test("the rate limit counts per client within the period")
    func rateLimit() async throws {
        let clock = ManualClock()
        let q = try SQLiteJobQueue(path: tempPath(), clock: clock.now)
        for _ in 0..<2 {
            #expect(try await q.recordSubmission(client: "a", period: 60, limit: 2).allowed)
            clock.advance(10)
        }
        let third = try await q.recordSubmission(client: "a", period: 60, limit: 2)
        #expect(!third.allowed && third.retryAfter == 40, "the oldest submission leaves the window in 40 s")
        #expect(try await q.recordSubmission(client: "b", period: 60, limit: 2).allowed)
        clock.advance(41)
        #expect(try await q.recordSubmission(client: "a", period: 60, limit: 2).allowed)
    }
}

/// A settable wall clock for the queue, in seconds since 1970.
final class ManualClock: Sendable {
    private let value = Mutex(1_800_000_000.0)
    var now: @Sendable () -> Double { { self.value.withLock { $0 } } }
    func advance(_ seconds: Double) { value.withLock { $0 += seconds } }
}

@Suite("The engine's libraries")
struct EngineLibraryTests {
    /// OpenBLAS is loaded when a command starts (`MatrixKernels`); without it the command says so
    /// and exits, rather than trapping at the first product.
    @Test("an OpenBLAS that cannot be loaded stops `stemify separate` with a message")
    func missingOpenBLAS() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("stemify")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the stemify product first")
        let p = Process()
        p.executableURL = binary
        p.arguments = ["separate", "-n", "htdemucs", "--repo", "/nonexistent", "song.wav"]
        p.environment = ProcessInfo.processInfo.environment.merging(["STEMIFY_OPENBLAS": "/nonexistent/libopenblas.so.0"]) { $1 }
        let errors = Pipe()
        p.standardError = errors
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 1, "status \(p.terminationStatus)")
        #expect(text.contains("OpenBLAS could not be loaded") && text.contains("STEMIFY_OPENBLAS"), "\(text)")
    }
}
