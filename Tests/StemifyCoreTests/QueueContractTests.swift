import Foundation
import Logging
import StemifyCore
import StemifyTestSupport
import Testing

/// The `JobQueue` contract, one suite for every backend. PostgreSQL and Redis run where
/// `STEMIFY_TEST_POSTGRES_URL` / `STEMIFY_TEST_REDIS_URL` name a server (scripts/test.sh starts
/// both); elsewhere they are left out with a message. Backend-specific behaviour (SKIP LOCKED
/// under eight pools, LISTEN/NOTIFY, migrations under concurrent starts, the injected clock) has
/// its own tests.
@Suite("Job queue contract")
struct QueueContractTests {
    static let backends: [String] = {
        var out = ["SQLite"]
        let environment = ProcessInfo.processInfo.environment
        if environment["STEMIFY_TEST_POSTGRES_URL"] == nil {
            print("QueueContractTests: PostgreSQL left out (STEMIFY_TEST_POSTGRES_URL is not set; scripts/test.sh sets it)")
        } else {
            out.append("PostgreSQL")
        }
        if environment["STEMIFY_TEST_REDIS_URL"] == nil {
            print("QueueContractTests: Redis left out (STEMIFY_TEST_REDIS_URL is not set; scripts/test.sh sets it)")
        } else {
            out.append("Redis")
        }
        return out
    }()

    static let logger: Logger = {
        var l = Logger(label: "test")
        l.logLevel = .critical
        return l
    }()

    func queue(_ backend: String, lease: Double = 60, maxAttempts: Int = 3) async throws -> any JobQueue {
        switch backend {
        case "SQLite":
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-contract-\(UUID().uuidString)/jobs.sqlite").path
            return try SQLiteJobQueue(path: path, leaseSeconds: lease, maxAttempts: maxAttempts, retryBackoff: 0)
        case "Redis":
            // A fresh key prefix is a fresh queue on the shared test server.
            return try await RedisJobQueue(url: try #require(ProcessInfo.processInfo.environment["STEMIFY_TEST_REDIS_URL"]),
                                           prefix: "stemify-test-\(UUID().uuidString)", leaseSeconds: lease, maxAttempts: maxAttempts,
                                           retryBackoff: 0, logger: Self.logger)
        default:
            return try await PostgresJobQueue(url: try freshPostgresDatabase(), leaseSeconds: lease, maxAttempts: maxAttempts,
                                              retryBackoff: 0, logger: Self.logger)
        }
    }

    func job(_ id: String, at: Date = Date(), youtube: Bool = false) -> Job {
        Job(id: id, status: .queued, progress: 0, etaSeconds: nil, options: JobOptions(model: "ht_small"),
            input: youtube ? .youtube(url: "https://youtu.be/dQw4w9WgXcQ") : .upload(path: "/tmp/\(id)", filename: "\(id).mp3"),
            owner: "1.2.3.4", createdAt: at, startedAt: nil, finishedAt: nil, errorCode: nil, errorMessage: nil,
            stems: [], metrics: nil, attempts: 0)
    }

    @Test("listing: an owner's jobs newest first, pages by cursor without gaps or repeats, status filter, gone ones dropped", arguments: backends)
    func listing(_ backend: String) async throws {
        let q = try await queue(backend)
        let base = Date(timeIntervalSince1970: 1_800_000_000)
        // Seven of A's (two pairs at the same instant, to test the tie order) and three of B's.
        let times = [0.0, 1, 1, 2, 3, 3, 4]
        var mine: [Job] = []
        for (k, t) in times.enumerated() {
            var j = job("a\(k)", at: base.addingTimeInterval(t))
            j.owner = "t:a"
            try await q.enqueue(j)
            mine.append(j)
        }
        for k in 0..<3 {
            var j = job("b\(k)", at: base.addingTimeInterval(Double(k) + 0.5))
            j.owner = "t:b"
            try await q.enqueue(j)
        }
        let expected = mine.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.map(\.id)
        var seen: [String] = []
        var cursor: ListCursor?
        while true {
            let page = try await q.jobs(owner: "t:a", statuses: nil, after: cursor, limit: 3)
            seen += page.map(\.id)
            guard page.count == 3, let last = page.last else { break }
            cursor = ListCursor(after: last)
        }
        #expect(seen == expected, "\(backend)")
        #expect(try await q.jobs(owner: "t:b", statuses: nil, after: nil, limit: 10).map(\.id) == ["b2", "b1", "b0"])
        #expect(try await q.jobs(owner: nil, statuses: nil, after: nil, limit: 100).count == 10)
        #expect(try await q.jobs(owner: "t:nobody", statuses: nil, after: nil, limit: 10).isEmpty)
        // Batches list the same way.
        for k in 0..<4 {
            try await q.addBatch(Batch(id: "batch\(k)", owner: k == 3 ? "t:b" : "t:a", createdAt: base.addingTimeInterval(Double(k / 2)),
                                       songs: [Batch.Song(jobID: "a0", name: "x")]))
        }
        let firstBatches = try await q.batches(owner: "t:a", after: nil, limit: 2)
        #expect(firstBatches.map(\.id) == ["batch2", "batch1"], "\(backend)")
        let after = try #require(firstBatches.last)
        #expect(try await q.batches(owner: "t:a", after: ListCursor(createdAt: after.createdAt.timeIntervalSince1970, id: after.id), limit: 2).map(\.id) == ["batch0"])
        #expect(try await q.batches(owner: nil, after: nil, limit: 10).count == 4)
        // A claimed job is no longer queued; a cancelled one is gone from the listing.
        let claimed = try #require(try await q.claim(worker: "w"))
        let queued = try await q.jobs(owner: nil, statuses: [.queued], after: nil, limit: 100).map(\.id)
        #expect(!queued.contains(claimed.id) && queued.count == 9)
        _ = try await q.cancel(id: "a6")
        #expect(try await q.jobs(owner: "t:a", statuses: nil, after: nil, limit: 100).map(\.id) == Array(expected.dropFirst()))
    }

    @Test("oldest first, each job once, its first status from its input", arguments: backends)
    func claimOrder(_ backend: String) async throws {
        let q = try await queue(backend)
        let now = Date()
        try await q.enqueue(job("b", at: now, youtube: true))
        try await q.enqueue(job("a", at: now - 10))
        #expect(try await q.position(id: "b") == 1)
        let a = try await q.claim(worker: "w1")
        #expect(a?.id == "a" && a?.status == .decoding && a?.attempts == 1 && a?.progress == 0)
        let b = try await q.claim(worker: "w2")
        #expect(b?.id == "b" && b?.status == .downloading)
        #expect(try await q.claim(worker: "w3") == nil)
        #expect(try await q.counts() == [.decoding: 1, .downloading: 1])
    }

    @Test("progress never goes backwards within a claim and starts again at 0 on the next; a release costs no attempt",
          arguments: backends)
    func progress(_ backend: String) async throws {
        let q = try await queue(backend)
        try await q.enqueue(job("j"))
        _ = try await q.claim(worker: "w")
        try await q.update(id: "j", worker: "w", status: .separating, progress: 0.5, eta: 10)
        try await q.update(id: "j", worker: "w", status: .separating, progress: 0.3, eta: 9)
        #expect(try await q.job(id: "j")?.progress == 0.5)
        // Another worker's update does nothing.
        try await q.update(id: "j", worker: "other", status: .encoding, progress: 0.9, eta: 1)
        #expect(try await q.job(id: "j")?.status == .separating)
        #expect(try await q.heartbeat(id: "j", worker: "w"))
        try await q.release(id: "j", worker: "w")
        let released = try await q.job(id: "j")
        #expect(released?.status == .queued && released?.attempts == 0)
        #expect(try await q.heartbeat(id: "j", worker: "w") == false)
        let again = try await q.claim(worker: "w2")
        #expect(again?.attempts == 1 && again?.progress == 0)
        #expect(try await q.job(id: "j")?.progress == 0)
    }

    @Test("an expired lease makes the job claimable again; the old worker is told; too many attempts fail it (and announce it)",
          arguments: backends)
    func leases(_ backend: String) async throws {
        let q = try await queue(backend, lease: 0.3, maxAttempts: 2)
        var announced = job("j")
        announced.options.callbackURL = "https://example.com/hook"
        try await q.enqueue(announced)
        _ = try await q.claim(worker: "w1")
        try await Task.sleep(for: .seconds(1))
        let taken = try await q.claim(worker: "w2")
        #expect(taken?.id == "j" && taken?.attempts == 2)
        #expect(try await q.heartbeat(id: "j", worker: "w1") == false)
        #expect(try await q.heartbeat(id: "j", worker: "w2"))
        try await Task.sleep(for: .seconds(1))
        #expect(try await q.claim(worker: "w3") == nil)
        let failed = try await q.job(id: "j")
        #expect(failed?.status == .failed && failed?.errorCode == .internalError)
        // Failed by the queue, not a worker: its webhook is queued all the same.
        #expect(try await q.deliveries(jobID: "j").map(\.event) == ["job.failed"], "\(backend)")
    }

    @Test("cancel removes the job and its worker's heartbeat fails", arguments: backends)
    func cancel(_ backend: String) async throws {
        let q = try await queue(backend)
        try await q.enqueue(job("j"))
        _ = try await q.claim(worker: "w")
        #expect(try await q.cancel(id: "j")?.id == "j")
        #expect(try await q.heartbeat(id: "j", worker: "w") == false)
        #expect(try await q.job(id: "j") == nil)
        #expect(try await q.cancel(id: "j") == nil)
    }

    @Test("completion, dedupe, failure and expiry", arguments: backends)
    func lifecycle(_ backend: String) async throws {
        let q = try await queue(backend)
        try await q.enqueue(job("done"))
        try await q.enqueue(job("bad", at: Date() + 1))
        _ = try await q.claim(worker: "w")
        try await q.setDedupeKey(id: "done", key: "k")
        let stem = StemFile(name: "vocals", file: "/tmp/v.mp3", format: "mp3", bytes: 3, duration: 1)
        let metrics = JobMetrics(processingSeconds: 1, audioSeconds: 1, inputFormat: "mp3", outputBytes: 3, cacheHit: false)
        try await q.complete(id: "done", worker: "w", stems: [stem], metrics: metrics)
        let done = try await q.job(id: "done")
        #expect(done?.status == .done && done?.progress == 1 && done?.stems == [stem] && done?.finishedAt != nil)
        #expect(try await q.finishedJob(dedupeKey: "k")?.id == "done")
        #expect(try await q.finishedJob(dedupeKey: "other") == nil)
        try await q.fail(id: "bad", worker: nil, code: .invalidAudio, message: "m")
        let bad = try await q.job(id: "bad")
        #expect(bad?.status == .failed && bad?.errorCode == .invalidAudio && bad?.errorMessage == "m")
        #expect(try await q.expire(olderThan: 3600).isEmpty)
        #expect(Set(try await q.expire(olderThan: -10).map(\.id)) == ["done", "bad"])
        #expect(try await q.job(id: "done") == nil)
    }

    @Test("the rate limit counts submissions per client", arguments: backends)
    func rateLimit(_ backend: String) async throws {
        let q = try await queue(backend)
        for _ in 0..<2 { #expect(try await q.recordSubmission(client: "c", period: 3600, limit: 2).allowed) }
        let third = try await q.recordSubmission(client: "c", period: 3600, limit: 2)
        #expect(!third.allowed && third.retryAfter > 0)
        #expect(try await q.recordSubmission(client: "d", period: 3600, limit: 2).allowed)
    }

    @Test("cancelled is kept as a state: queued or running jobs only, the worker's heartbeat fails, it expires like a finished job", arguments: backends)
    func markCancelled(_ backend: String) async throws {
        let q = try await queue(backend)
        try await q.enqueue(job("running"))
        try await q.enqueue(job("waiting"))
        let claimed = try #require(try await q.claim(worker: "w"))
        #expect(claimed.id == "running")
        for id in ["running", "waiting"] {
            let cancelled = try #require(try await q.markCancelled(id: id), "\(backend) \(id)")
            #expect(cancelled.status == .cancelled && cancelled.finishedAt != nil)
            #expect(try await q.job(id: id)?.status == .cancelled)
        }
        #expect(!(try await q.heartbeat(id: "running", worker: "w")), "the worker is told")
        try await q.complete(id: "running", worker: "w", stems: [], metrics: JobMetrics(processingSeconds: 1, audioSeconds: 1, inputFormat: "wav", outputBytes: 0, cacheHit: false))
        #expect(try await q.job(id: "running")?.status == .cancelled, "a late completion does not undo it")
        #expect(try await q.markCancelled(id: "running") == nil, "already finished")
        #expect(try await q.markCancelled(id: "missing") == nil)
        #expect(try await q.claim(worker: "w2") == nil, "a cancelled job is not run")
        #expect(try await q.counts()[.cancelled] == 2)
        let expired = try await q.expire(olderThan: -1).map(\.id).sorted()
        #expect(expired == ["running", "waiting"])
        #expect(try await q.job(id: "waiting") == nil)
    }

    @Test("idempotency keys: claimed once, replayed for the same request, refused for another, released on failure, forgotten after the ttl", arguments: backends)
    func idempotency(_ backend: String) async throws {
        let q = try await queue(backend)
        #expect(try await q.claimIdempotencyKey(id: "k1", fingerprint: "f", ttl: 3600) == .claimed)
        #expect(try await q.claimIdempotencyKey(id: "k1", fingerprint: "f", ttl: 3600) == .inProgress)
        #expect(try await q.claimIdempotencyKey(id: "k1", fingerprint: "g", ttl: 3600) == .mismatch)
        let answer = StoredResponse(status: 202, body: "{\"job_id\":\"x\"}", location: "/api/jobs/x")
        try await q.completeIdempotencyKey(id: "k1", response: answer)
        #expect(try await q.claimIdempotencyKey(id: "k1", fingerprint: "f", ttl: 3600) == .replay(answer))
        #expect(try await q.claimIdempotencyKey(id: "k1", fingerprint: "g", ttl: 3600) == .mismatch)
        try await q.releaseIdempotencyKey(id: "k1")
        #expect(try await q.claimIdempotencyKey(id: "k1", fingerprint: "f", ttl: 3600) == .replay(answer), "a kept answer is not released")
        // A failed first request lets go: the retry runs.
        #expect(try await q.claimIdempotencyKey(id: "k2", fingerprint: "f", ttl: 3600) == .claimed)
        try await q.releaseIdempotencyKey(id: "k2")
        #expect(try await q.claimIdempotencyKey(id: "k2", fingerprint: "f", ttl: 3600) == .claimed)
        // No location kept: none replayed.
        try await q.completeIdempotencyKey(id: "k2", response: StoredResponse(status: 201, body: "", location: nil))
        #expect(try await q.claimIdempotencyKey(id: "k2", fingerprint: "f", ttl: 3600) == .replay(StoredResponse(status: 201, body: "", location: nil)))
        // After the ttl a key is new again.
        #expect(try await q.claimIdempotencyKey(id: "k3", fingerprint: "f", ttl: 1) == .claimed)
        try await Task.sleep(for: .milliseconds(2100))
        #expect(try await q.claimIdempotencyKey(id: "k3", fingerprint: "g", ttl: 1) == .claimed)
    }

    @Test("webhook deliveries: one per job and state, claimed when due and put off meanwhile, updated, listed per job", arguments: backends)
    func deliveries(_ backend: String) async throws {
        let q = try await queue(backend)
        var finished = job("j")
        finished.status = .done
        finished.options.callbackURL = "https://example.com/hook"
        var delivery = try #require(WebhookDelivery(for: finished, now: Date().timeIntervalSince1970 - 1))
        try await q.addDelivery(delivery)
        try await q.addDelivery(delivery)
        let claimed = try await q.claimDueDeliveries(limit: 10, lease: 60)
        #expect(claimed == [delivery], "\(backend)")
        #expect(try await q.claimDueDeliveries(limit: 10, lease: 60).isEmpty, "put off while one sends it")
        delivery.record(.init(at: Date().timeIntervalSince1970, status: 500, error: "answered 500"), base: 0.01)
        try await q.updateDelivery(delivery)
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await q.claimDueDeliveries(limit: 10, lease: 60).map(\.attempts.count) == [1], "due again after its wait")
        delivery.record(.init(at: Date().timeIntervalSince1970, status: 200, error: nil), base: 0.01)
        try await q.updateDelivery(delivery)
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await q.claimDueDeliveries(limit: 10, lease: 60).isEmpty, "delivered: not sent again")
        #expect(try await q.deliveries(jobID: "j") == [delivery])
        #expect(try await q.deliveries(jobID: "other").isEmpty)
    }

    @Test("the window tells what is counted and when it frees; refunds take back the latest", arguments: backends)
    func rateWindow(_ backend: String) async throws {
        let q = try await queue(backend)
        #expect(try await q.submissionWindow(client: "c", period: 3600).times.isEmpty)
        #expect(try await q.recordSubmission(client: "c", count: 3, period: 3600, limit: 5).allowed)
        let window = try await q.submissionWindow(client: "c", period: 3600)
        #expect(window.times.count == 3 && window.remaining(limit: 5) == 2)
        #expect(window.reset(period: 3600) > 3590 && window.reset(period: 3600) <= 3600)
        try await q.refundSubmissions(client: "c", count: 2)
        #expect(try await q.submissionWindow(client: "c", period: 3600).times.count == 1)
        try await q.refundSubmissions(client: "c", count: 5)
        #expect(try await q.submissionWindow(client: "c", period: 3600).times.isEmpty)
        #expect(try await q.recordSubmission(client: "c", count: 5, period: 3600, limit: 5).allowed, "refunded songs do not count")
        #expect(try await q.submissionWindow(client: "other", period: 3600).times.isEmpty)
    }

    @Test("songs of a batch are counted together: all or none", arguments: backends)
    func rateLimitCountsSongs(_ backend: String) async throws {
        let q = try await queue(backend)
        #expect(try await q.recordSubmission(client: "c", count: 3, period: 3600, limit: 5).allowed)
        // Three more would make six: refused, and nothing of them counted.
        let refused = try await q.recordSubmission(client: "c", count: 3, period: 3600, limit: 5)
        #expect(!refused.allowed && refused.retryAfter > 3000)
        #expect(try await q.recordSubmission(client: "c", count: 2, period: 3600, limit: 5).allowed)
        #expect(!(try await q.recordSubmission(client: "c", period: 3600, limit: 5).allowed))
        // No limit.
        #expect(try await q.recordSubmission(client: "e", count: 50, period: 3600, limit: 0).allowed)
    }

    @Test("a batch keeps its songs in order and expires after its last job", arguments: backends)
    func batches(_ backend: String) async throws {
        let q = try await queue(backend)
        let created = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 100).rounded())
        let batch = Batch(id: "b1", owner: "1.2.3.4", createdAt: created,
                          songs: [Batch.Song(jobID: "s2", name: "Zwei ü.mp3"), Batch.Song(jobID: "s1", name: "https://youtu.be/x?a=1&b='2'")])
        try await q.enqueue(job("s1"))
        try await q.enqueue(job("s2"))
        try await q.addBatch(batch)
        #expect(try await q.batch(id: "b1") == batch)
        #expect(try await q.batch(id: "b2") == nil)
        #expect(try await q.batches(createdBefore: Date().timeIntervalSince1970).map(\.id) == ["b1"])
        #expect(try await q.batches(createdBefore: created.timeIntervalSince1970 - 1).isEmpty)
        // Older than the age but a job remains: kept.
        #expect(try await q.expireBatches(olderThan: 10).isEmpty)
        _ = try await q.cancel(id: "s1")
        #expect(try await q.expireBatches(olderThan: 10).isEmpty)
        _ = try await q.cancel(id: "s2")
        // Younger than the age: kept even with no job left.
        #expect(try await q.expireBatches(olderThan: 3600).isEmpty)
        #expect(try await q.expireBatches(olderThan: 10) == ["b1"])
        #expect(try await q.batch(id: "b1") == nil)
        try await q.removeBatch(id: "b1")
    }
}
