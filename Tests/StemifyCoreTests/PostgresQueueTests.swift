import Foundation
import Logging
import StemifyCore
import StemifyTestSupport
import Testing

@Suite("PostgreSQL job queue")
struct PostgresQueueTests {
    /// Quiet: the unreachable-server case would log every reconnection attempt.
    let logger: Logger = {
        var l = Logger(label: "test")
        l.logLevel = .critical
        return l
    }()

    func job(_ id: String, at: Date = Date()) -> Job {
        Job(id: id, status: .queued, progress: 0, etaSeconds: nil, options: JobOptions(model: "ht_small"),
            input: .upload(path: "/tmp/\(id)", filename: "\(id).mp3"), owner: "1.2.3.4", createdAt: at,
            startedAt: nil, finishedAt: nil, errorCode: nil, errorMessage: nil, stems: [], metrics: nil, attempts: 0)
    }

    @Test("jobs are claimed oldest first and each by one worker, however many claim at once")
    func concurrentClaims() async throws {
        let url = try freshPostgresDatabase()
        let q = try await PostgresJobQueue(url: url, logger: logger)
        let now = Date()
        for i in 0..<20 { try await q.enqueue(job("j\(i)", at: now + Double(i))) }
        #expect(try await q.position(id: "j5") == 5)
        let first = try await q.claim(worker: "w")
        #expect(first?.id == "j0" && first?.status == .decoding && first?.attempts == 1)
        // Eight workers (each with its own connection pool, as on eight machines) drain the rest.
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for w in 0..<8 {
                group.addTask {
                    let mine = try await PostgresJobQueue(url: url, logger: logger)
                    var ids: [String] = []
                    while let j = try await mine.claim(worker: "w\(w)") { ids.append(j.id) }
                    return ids
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claimed.count == 19 && Set(claimed).count == 19 && !claimed.contains("j0"))
        #expect(try await q.counts()[.decoding] == 20)
    }

    @Test("a lease that runs out makes the job claimable again after the backoff; the old worker is told")
    func leases() async throws {
        let url = try freshPostgresDatabase()
        let long = try await PostgresJobQueue(url: url, leaseSeconds: 60, logger: logger)
        try await long.enqueue(job("held"))
        #expect(try await long.claim(worker: "a")?.id == "held")
        #expect(try await long.claim(worker: "b") == nil)
        #expect(try await long.heartbeat(id: "held", worker: "a"))

        let short = try await PostgresJobQueue(url: url, leaseSeconds: 1, retryBackoff: 0, logger: logger)
        try await short.enqueue(job("dies"))
        #expect(try await short.claim(worker: "dead")?.id == "dies")
        try await Task.sleep(for: .milliseconds(1500))
        let again = try await short.claim(worker: "other")
        #expect(again?.id == "dies" && again?.attempts == 2)
        #expect(try await short.heartbeat(id: "dies", worker: "dead") == false)
        #expect(try await short.heartbeat(id: "dies", worker: "other"))

        let backoff = try await PostgresJobQueue(url: url, leaseSeconds: 1, retryBackoff: 30, logger: logger)
        try await backoff.enqueue(job("waits"))
        #expect(try await backoff.claim(worker: "x")?.id == "waits")
        try await Task.sleep(for: .milliseconds(1500))
        #expect(try await backoff.claim(worker: "y") == nil, "the lease ran out but the backoff has not")
    }

    @Test("a job interrupted too often fails; a released job is queued again without counting the attempt")
    func attemptsAndRelease() async throws {
        let url = try freshPostgresDatabase()
        let q = try await PostgresJobQueue(url: url, leaseSeconds: 1, maxAttempts: 2, retryBackoff: 0, logger: logger)
        try await q.enqueue(job("j"))
        _ = try await q.claim(worker: "a")
        try await Task.sleep(for: .milliseconds(1200))
        #expect(try await q.claim(worker: "b")?.attempts == 2)
        try await Task.sleep(for: .milliseconds(1200))
        #expect(try await q.claim(worker: "c") == nil)
        let failed = try await q.job(id: "j")
        #expect(failed?.status == .failed && failed?.errorCode == .internalError)

        try await q.enqueue(job("r"))
        #expect(try await q.claim(worker: "stopping")?.attempts == 1)
        try await q.release(id: "r", worker: "stopping")
        #expect(try await q.job(id: "r")?.status == .queued)
        #expect(try await q.claim(worker: "next")?.attempts == 1)
    }

    @Test("progress never goes backwards; completion, dedupe, cancellation and expiry")
    func lifecycle() async throws {
        let q = try await PostgresJobQueue(url: try freshPostgresDatabase(), logger: logger)
        try await q.enqueue(job("j"))
        _ = try await q.claim(worker: "w")
        try await q.update(id: "j", worker: "w", status: .separating, progress: 0.5, eta: 10)
        try await q.update(id: "j", worker: "w", status: .separating, progress: 0.3, eta: 10)
        #expect(try await q.job(id: "j")?.progress == 0.5)
        try await q.update(id: "j", worker: "intruder", status: .encoding, progress: 0.9, eta: 1)
        #expect(try await q.job(id: "j")?.status == .separating)
        try await q.setDedupeKey(id: "j", key: "k")
        let stem = StemFile(name: "vocals", file: "/tmp/v.mp3", format: "mp3", bytes: 1, duration: 1)
        try await q.complete(id: "j", worker: "w", stems: [stem],
                             metrics: JobMetrics(processingSeconds: 1, audioSeconds: 1, inputFormat: "mp3", outputBytes: 1, cacheHit: false))
        let done = try await q.finishedJob(dedupeKey: "k")
        #expect(done?.stems == [stem] && done?.status == .done && done?.finishedAt != nil)
        #expect(try await q.expire(olderThan: 3600).isEmpty)
        #expect(try await q.expire(olderThan: -1).map(\.id) == ["j"])
        try await q.enqueue(job("c"))
        #expect(try await q.cancel(id: "c")?.id == "c")
        #expect(try await q.job(id: "c") == nil)
    }

    @Test("the rate limit is shared by every API process through the database")
    func rateLimit() async throws {
        let url = try freshPostgresDatabase()
        let a = try await PostgresJobQueue(url: url, logger: logger)
        let b = try await PostgresJobQueue(url: url, logger: logger)
        #expect(try await a.recordSubmission(client: "1.2.3.4", period: 3600, limit: 2).allowed)
        #expect(try await b.recordSubmission(client: "1.2.3.4", period: 3600, limit: 2).allowed)
        let third = try await a.recordSubmission(client: "1.2.3.4", period: 3600, limit: 2)
        #expect(!third.allowed && third.retryAfter > 3000)
        #expect(try await b.recordSubmission(client: "5.6.7.8", period: 3600, limit: 2).allowed)
    }

    @Test("an idle worker wakes when another machine adds a job (LISTEN/NOTIFY)")
    func notify() async throws {
        let url = try freshPostgresDatabase()
        let worker = try await PostgresJobQueue(url: url, logger: logger)
        let api = try await PostgresJobQueue(url: url, logger: logger)
        let started = Date()
        async let woke: Void = worker.waitForWork(timeout: 120)
        // A job every two seconds: the listener may connect after the first one on a busy machine.
        let notifier = Task {
            for i in 0..<30 {
                try await api.enqueue(job("new\(i)"))
                try await Task.sleep(for: .seconds(2))
            }
        }
        await woke
        notifier.cancel()
        // Without the notification the wait would last its full two minutes.
        #expect(Date().timeIntervalSince(started) < 60)
    }

    @Test("migrations are applied once, however many processes start; a bad URL names the setting")
    func migrations() async throws {
        let url = try freshPostgresDatabase()
        async let a = PostgresJobQueue(url: url, logger: logger)
        async let b = PostgresJobQueue(url: url, logger: logger)
        _ = try await (a, b)
        let again = try await PostgresJobQueue(url: url, logger: logger)
        try await again.enqueue(job("after"))
        #expect(try await again.job(id: "after") != nil)
        await #expect(throws: ConfigurationError.self) { try await PostgresJobQueue(url: "mysql://x/y", logger: logger) }
        // Nothing listens on port 1: the start fails instead of waiting for a server forever.
        let unreachable = await #expect(throws: ConfigurationError.self) {
            try await PostgresJobQueue(url: "postgres://postgres@127.0.0.1:1/none", logger: logger)
        }
        #expect(unreachable?.key == "queue_url")
    }
}
