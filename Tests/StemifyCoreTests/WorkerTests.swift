import Foundation
import Logging
import StemifyCore
import StemifyTestSupport
import Synchronization
import Testing

/// A real SQLite queue whose chosen calls fail the way a restarting Redis or PostgreSQL does
/// (the connection closes), a set number of times each, before they reach it.
final class InterruptedQueue: JobQueue {
    let base: SQLiteJobQueue
    private let failuresLeft: Mutex<[String: Int]>
    struct ConnectionClosed: Error {}

    init(base: SQLiteJobQueue, failures: [String: Int], silentClaims: Bool = false) {
        self.base = base
        self.failuresLeft = Mutex(failures)
        self.silentClaims = silentClaims
    }

    var untried: [String: Int] { failuresLeft.withLock { $0.filter { $0.value > 0 } } }

    private func interrupt(_ call: String) throws {
        let fails = failuresLeft.withLock { left in
            guard let n = left[call], n > 0 else { return false }
            left[call] = n - 1
            return true
        }
        if fails { throw ConnectionClosed() }
    }

    func enqueue(_ job: Job) async throws { try await base.enqueue(job) }
    func job(id: String) async throws -> Job? { try interrupt("job"); return try await base.job(id: id) }
    func claim(worker: String) async throws -> Job? {
        if silentClaims {
            // Never answered, and deaf to cancellation, as a query on a half-open connection.
            await withCheckedContinuation { c in unanswered.withLock { $0.append(c) } }
            return nil
        }
        return try await base.claim(worker: worker)
    }
    /// Claims wait until ``answerClaims()``.
    let silentClaims: Bool
    private let unanswered = Mutex<[CheckedContinuation<Void, Never>]>([])
    var waitingClaims: Int { unanswered.withLock { $0.count } }
    func answerClaims() { for c in unanswered.withLock({ w in defer { w = [] }; return w }) { c.resume() } }
    func heartbeat(id: String, worker: String) async throws -> Bool {
        try interrupt("heartbeat"); return try await base.heartbeat(id: id, worker: worker)
    }
    func update(id: String, worker: String, status: JobStatus, progress: Double, eta: Double?) async throws {
        try await base.update(id: id, worker: worker, status: status, progress: progress, eta: eta)
    }
    func complete(id: String, worker: String, stems: [StemFile], metrics: JobMetrics) async throws {
        try interrupt("complete"); try await base.complete(id: id, worker: worker, stems: stems, metrics: metrics)
    }
    func fail(id: String, worker: String?, code: ErrorCode, message: String) async throws {
        try interrupt("fail"); try await base.fail(id: id, worker: worker, code: code, message: message)
    }
    func release(id: String, worker: String) async throws { try await base.release(id: id, worker: worker) }
    func cancel(id: String) async throws -> Job? { try await base.cancel(id: id) }
    func position(id: String) async throws -> Int? { try await base.position(id: id) }
    func counts() async throws -> [JobStatus: Int] { try await base.counts() }
    func finishedJob(dedupeKey: String) async throws -> Job? {
        try interrupt("finishedJob"); return try await base.finishedJob(dedupeKey: dedupeKey)
    }
    func setDedupeKey(id: String, key: String) async throws {
        try interrupt("setDedupeKey"); try await base.setDedupeKey(id: id, key: key)
    }
    func recordSubmission(client: String, count: Int, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double) {
        try await base.recordSubmission(client: client, count: count, period: period, limit: limit)
    }
    func expire(olderThan age: Double) async throws -> [Job] { try await base.expire(olderThan: age) }
    func claimIdempotencyKey(id: String, fingerprint: String, ttl: Double) async throws -> IdempotencyClaim {
        try await base.claimIdempotencyKey(id: id, fingerprint: fingerprint, ttl: ttl)
    }
    func completeIdempotencyKey(id: String, response: StoredResponse) async throws { try await base.completeIdempotencyKey(id: id, response: response) }
    func releaseIdempotencyKey(id: String) async throws { try await base.releaseIdempotencyKey(id: id) }
    func addDelivery(_ delivery: WebhookDelivery) async throws { try await base.addDelivery(delivery) }
    func claimDueDeliveries(limit: Int, lease: Double) async throws -> [WebhookDelivery] { try await base.claimDueDeliveries(limit: limit, lease: lease) }
    func updateDelivery(_ delivery: WebhookDelivery) async throws { try await base.updateDelivery(delivery) }
    func deliveries(jobID: String) async throws -> [WebhookDelivery] { try await base.deliveries(jobID: jobID) }
    func batches(owner: String?, after cursor: ListCursor?, limit: Int) async throws -> [Batch] {
        try await base.batches(owner: owner, after: cursor, limit: limit)
    }
    func markCancelled(id: String) async throws -> Job? { try await base.markCancelled(id: id) }
    func submissionWindow(client: String, period: Double) async throws -> SubmissionWindow {
        try await base.submissionWindow(client: client, period: period)
    }
    func refundSubmissions(client: String, count: Int) async throws { try await base.refundSubmissions(client: client, count: count) }
    func jobs(owner: String?, statuses: [JobStatus]?, after cursor: ListCursor?, limit: Int) async throws -> [Job] {
        try await base.jobs(owner: owner, statuses: statuses, after: cursor, limit: limit)
    }
    func addBatch(_ batch: Batch) async throws { try await base.addBatch(batch) }
    func batch(id: String) async throws -> Batch? { try await base.batch(id: id) }
    func batches(createdBefore time: Double) async throws -> [Batch] { try await base.batches(createdBefore: time) }
    func removeBatch(id: String) async throws { try await base.removeBatch(id: id) }
}

@Suite("Worker")
struct WorkerTests {
    struct Setup {
        let queue: InterruptedQueue
        let storage: FolderStorage
        let runner: JobRunner
    }

    func setup(failures: [String: Int], input: String, silentClaims: Bool = false) throws -> (Setup, Job) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-worker-\(UUID().uuidString)")
        let storage = FolderStorage(root: root)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("uploads"), withIntermediateDirectories: true)
        let upload = storage.uploadPath("in")
        try FileManager.default.copyItem(at: fixturesDirectory().appendingPathComponent("audio/\(input)"), to: upload)
        let queue = InterruptedQueue(base: try SQLiteJobQueue(path: root.appendingPathComponent("jobs.sqlite").path), failures: failures, silentClaims: silentClaims)
        var c = StemifyConfiguration()
        c.dataDirectory = root.path
        c.leaseSeconds = 30
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let runner = JobRunner(id: "w", queue: queue, models: ModelStore(directory: fixturesDirectory().appendingPathComponent("repo")),
                               storage: storage, configuration: c, logger: logger)
        let job = Job(id: "j", status: .queued, progress: 0, etaSeconds: nil,
                      options: JobOptions(model: "ht_small", outputFormat: .wav),
                      input: .upload(path: upload.path, filename: input), owner: "1.2.3.4", createdAt: Date(), startedAt: nil,
                      finishedAt: nil, errorCode: nil, errorMessage: nil, stems: [], metrics: nil, attempts: 0)
        return (Setup(queue: queue, storage: storage, runner: runner), job)
    }

    @Test("a queue that drops its connections for a moment (a restart) costs a job nothing: it finishes with every stem")
    func queueRestart() async throws {
        let (s, job) = try setup(failures: ["finishedJob": 2, "setDedupeKey": 2, "complete": 2], input: "short.wav")
        try await s.queue.enqueue(job)
        let claimed = try #require(try await s.queue.claim(worker: "w"))
        await s.runner.process(claimed)
        let done = try #require(try await s.queue.base.job(id: job.id))
        #expect(done.status == .done, "\(done.errorCode.map { "\($0)" } ?? "")")
        #expect(done.stems.count == 4)
        for stem in done.stems { #expect(await s.storage.exists(stem.file)) }
        // Every interruption happened, so each call above was really tried again.
        #expect(s.queue.untried.isEmpty)
    }

    @Test("a job that fails while the queue drops its connections is still recorded as failed, with its own code")
    func failureAcrossRestart() async throws {
        let (s, job) = try setup(failures: ["fail": 2], input: "short.wav")
        var broken = job
        broken.input = .upload(path: s.storage.uploadPath("missing").path, filename: "missing.wav")
        try await s.queue.enqueue(broken)
        let claimed = try #require(try await s.queue.claim(worker: "w"))
        await s.runner.process(claimed)
        let failed = try #require(try await s.queue.base.job(id: job.id))
        #expect(failed.status == .failed)
        #expect(failed.errorCode == .internalError)
        #expect(s.queue.untried.isEmpty)
    }

    @Test("a worker stops when cancelled (SIGTERM) even while its queue never answers a claim")
    func stopsWhileClaimHangs() async throws {
        let (s, _) = try setup(failures: [:], input: "short.wav", silentClaims: true)
        let running = Task { await s.runner.run() }
        while s.queue.waitingClaims == 0 { try await Task.sleep(for: .milliseconds(10)) }
        running.cancel()
        // Polled: awaiting the worker itself would hang the test instead of failing it.
        let stopped = Atomic<Bool>(false)
        Task { await running.value; stopped.store(true, ordering: .relaxed) }
        let deadline = Date().addingTimeInterval(10)
        while !stopped.load(ordering: .relaxed) && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let didStop = stopped.load(ordering: .relaxed)
        #expect(didStop, "the worker did not stop within 10 s of its cancellation")
        s.queue.answerClaims()
    }
}
