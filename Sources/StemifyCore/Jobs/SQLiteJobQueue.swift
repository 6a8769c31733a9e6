import Foundation
import GRDB

/// The embedded job queue: one SQLite file (GRDB), durable across restarts, nothing else to run.
///
/// Why SQLite by default: a single machine needs no server; WAL mode and one writer at a time
/// are plenty for a handful of jobs per minute. PostgreSQL takes over for many machines.
public final class SQLiteJobQueue: JobQueue {
    private let db: DatabaseQueue
    /// Seconds a claimed job stays with its worker without a heartbeat.
    public let leaseSeconds: Double
    /// Claims after which a job whose workers keep dying is failed instead of retried.
    public let maxAttempts: Int
    /// Seconds added after an expired lease before the first retry; doubled per attempt.
    public let retryBackoff: Double
    /// Seconds since 1970. Injected so that lease and rate-limit tests do not depend on how
    /// busy the machine running them is.
    private let clock: @Sendable () -> Double

    /// Opens (creating and migrating) the database at `path`.
    public init(path: String, leaseSeconds: Double = 60, maxAttempts: Int = 3, retryBackoff: Double = 5,
                clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) throws {
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        var config = Configuration()
        config.busyMode = .timeout(10)
        db = try DatabaseQueue(path: path, configuration: config)
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        self.retryBackoff = retryBackoff
        self.clock = clock
        try Self.migrator.migrate(db)
    }

    /// Versioned schema. A shipped migration is never edited; changes are new migrations.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in try db.execute(sql: JobRow.schema(real: "REAL")) }
        m.registerMigration("v2") { db in try db.execute(sql: Batch.schema(real: "REAL")) }
        m.registerMigration("v3") { db in try db.execute(sql: JobRow.ownerIndex) }
        m.registerMigration("v4") { db in try db.execute(sql: JobRow.idempotencySchema(real: "REAL")) }
        m.registerMigration("v5") { db in try db.execute(sql: WebhookDelivery.schema(real: "REAL")) }
        return m
    }

    public func enqueue(_ job: Job) async throws {
        let r = try JobRow(job)
        try await db.write { db in
            try db.execute(sql: """
                INSERT INTO jobs (id, status, progress, options, input_kind, input_value, input_name, client, created_at)
                VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.id, r.status, r.options, r.inputKind, r.inputValue, r.inputName, r.client, r.createdAt])
        }
    }

    public func job(id: String) async throws -> Job? {
        try await db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map { try Self.job($0) } }
    }

    public func jobs(owner: String?, statuses: [JobStatus]?, after cursor: ListCursor?, limit: Int) async throws -> [Job] {
        let (sql, arguments) = Self.listing("jobs", owner: owner, statuses: statuses, cursor: cursor, limit: limit)
        return try await db.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map { try Self.job($0) } }
    }

    public func claim(worker: String) async throws -> Job? {
        let now = clock()
        let (lease, maxAttempts, backoff) = (leaseSeconds, maxAttempts, retryBackoff)
        return try await db.write { db in
            // Runnable: queued, or running under a lease that ran out more than the backoff ago.
            guard let row = try Row.fetchOne(db, sql: """
                SELECT * FROM jobs WHERE status = 'queued'
                   OR (status IN \(JobRow.sqlList(JobRow.running))
                       AND lease_until + ? * (1 << MAX(attempts - 1, 0)) < ?)
                ORDER BY created_at LIMIT 1
                """, arguments: [backoff, now]) else { return nil }
            var job = try Self.job(row)
            if job.attempts >= maxAttempts {
                try db.execute(sql: """
                    UPDATE jobs SET status = ?, error_code = ?, error_message = ?, finished_at = ?, worker = NULL WHERE id = ?
                    """, arguments: [JobStatus.failed.rawValue, ErrorCode.internalError.rawValue,
                                     "the job was interrupted \(job.attempts) times", now, job.id])
                // Failed here, not by a worker: announced here.
                job.status = .failed
                if let delivery = WebhookDelivery(for: job, now: now) { try Self.insert(delivery, db) }
                return nil
            }
            let status = JobRow.firstStatus(inputKind: row["input_kind"])
            try db.execute(sql: """
                UPDATE jobs SET status = ?, worker = ?, lease_until = ?, attempts = attempts + 1,
                    started_at = COALESCE(started_at, ?), progress = 0 WHERE id = ?
                """, arguments: [status.rawValue, worker, now + lease, now, job.id])
            job.status = status
            job.attempts += 1
            job.progress = 0
            return job
        }
    }

    public func heartbeat(id: String, worker: String) async throws -> Bool {
        let until = clock() + leaseSeconds
        return try await db.write { db in
            try db.execute(sql: "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND status IN \(JobRow.sqlList(JobRow.running))",
                           arguments: [until, id, worker])
            return db.changesCount > 0
        }
    }

    public func update(id: String, worker: String, status: JobStatus, progress: Double, eta: Double?) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE jobs SET status = ?, progress = MAX(progress, ?), eta = ? WHERE id = ? AND worker = ?",
                           arguments: [status.rawValue, progress, eta, id, worker])
        }
    }

    public func complete(id: String, worker: String, stems: [StemFile], metrics: JobMetrics) async throws {
        let stemsJSON = String(decoding: try JSONEncoder().encode(stems), as: UTF8.self)
        let metricsJSON = String(decoding: try JSONEncoder().encode(metrics), as: UTF8.self)
        let now = clock()
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'done', progress = 1, eta = 0, stems = ?, metrics = ?, finished_at = ?, worker = NULL
                WHERE id = ? AND worker = ?
                """, arguments: [stemsJSON, metricsJSON, now, id, worker])
        }
    }

    public func fail(id: String, worker: String?, code: ErrorCode, message: String) async throws {
        let now = clock()
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'failed', error_code = ?, error_message = ?, finished_at = ?, worker = NULL, eta = NULL
                WHERE id = ? AND (? IS NULL OR worker = ?)
                """, arguments: [code.rawValue, message, now, id, worker, worker])
        }
    }

    public func release(id: String, worker: String) async throws {
        try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL, attempts = MAX(attempts - 1, 0)
                WHERE id = ? AND worker = ?
                """, arguments: [id, worker])
        }
    }

    public func cancel(id: String) async throws -> Job? {
        try await db.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]) else { return nil }
            try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [id])
            return try Self.job(row)
        }
    }

    public func markCancelled(id: String) async throws -> Job? {
        let now = clock()
        return try await db.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'cancelled', finished_at = ?, eta = NULL, worker = NULL, lease_until = NULL
                WHERE id = ? AND status NOT IN \(JobRow.sqlList(JobRow.finished))
                """, arguments: [now, id])
            guard db.changesCount > 0 else { return nil }
            return try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map { try Self.job($0) }
        }
    }

    public func position(id: String) async throws -> Int? {
        try await db.read { db in
            guard let created = try Double.fetchOne(db, sql: "SELECT created_at FROM jobs WHERE id = ? AND status = 'queued'", arguments: [id]) else {
                return nil
            }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND created_at < ?", arguments: [created])
        }
    }

    public func counts() async throws -> [JobStatus: Int] {
        try await db.read { db in
            var out: [JobStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status") {
                if let s = JobStatus(rawValue: row["status"]) { out[s] = row["n"] }
            }
            return out
        }
    }

    public func finishedJob(dedupeKey: String) async throws -> Job? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE dedupe_key = ? AND status = 'done' ORDER BY finished_at DESC LIMIT 1",
                             arguments: [dedupeKey]).map { try Self.job($0) }
        }
    }

    public func setDedupeKey(id: String, key: String) async throws {
        try await db.write { db in try db.execute(sql: "UPDATE jobs SET dedupe_key = ? WHERE id = ?", arguments: [key, id]) }
    }

    public func recordSubmission(client: String, count: Int, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double) {
        let now = clock()
        return try await db.write { db in
            try db.execute(sql: "DELETE FROM submissions WHERE at < ?", arguments: [now - period])
            let times = try Double.fetchAll(db, sql: "SELECT at FROM submissions WHERE client = ? ORDER BY at", arguments: [client])
            let decision = admission(times: times, count: count, period: period, limit: limit, now: now)
            if decision.allowed {
                for _ in 0..<count { try db.execute(sql: "INSERT INTO submissions (client, at) VALUES (?, ?)", arguments: [client, now]) }
            }
            return decision
        }
    }

    public func claimIdempotencyKey(id: String, fingerprint: String, ttl: Double) async throws -> IdempotencyClaim {
        let now = clock()
        return try await db.write { db in
            try db.execute(sql: "DELETE FROM idempotency WHERE created_at < ?", arguments: [now - ttl])
            if let row = try Row.fetchOne(db, sql: "SELECT fingerprint, status, body, location FROM idempotency WHERE id = ?", arguments: [id]) {
                return JobRow.claim(stored: row["fingerprint"], status: row["status"], body: row["body"], location: row["location"], asked: fingerprint)
            }
            try db.execute(sql: "INSERT INTO idempotency (id, fingerprint, created_at) VALUES (?, ?, ?)", arguments: [id, fingerprint, now])
            return .claimed
        }
    }

    public func completeIdempotencyKey(id: String, response: StoredResponse) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE idempotency SET status = ?, body = ?, location = ? WHERE id = ?",
                           arguments: [response.status, response.body, response.location, id])
        }
    }

    public func releaseIdempotencyKey(id: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM idempotency WHERE id = ? AND status IS NULL", arguments: [id]) }
    }

    public func addDelivery(_ delivery: WebhookDelivery) async throws {
        try await db.write { db in try Self.insert(delivery, db) }
    }

    private static func insert(_ delivery: WebhookDelivery, _ db: Database) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO webhooks (id, job_id, state, next_at, created_at, record) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [delivery.id, delivery.jobID, delivery.state.rawValue, delivery.nextAttemptAt, delivery.createdAt,
                                   try delivery.encoded()])
    }

    public func claimDueDeliveries(limit: Int, lease: Double) async throws -> [WebhookDelivery] {
        let now = clock()
        return try await db.write { db in
            try db.execute(sql: "DELETE FROM webhooks WHERE created_at < ?", arguments: [now - 2 * WebhookDelivery.retryWindow])
            let records = try String.fetchAll(db, sql: "SELECT record FROM webhooks WHERE state = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?",
                                              arguments: [now, limit])
            let due = try records.map(WebhookDelivery.decode)
            for d in due { try db.execute(sql: "UPDATE webhooks SET next_at = ? WHERE id = ?", arguments: [now + lease, d.id]) }
            return due
        }
    }

    public func updateDelivery(_ delivery: WebhookDelivery) async throws {
        let record = try delivery.encoded()
        try await db.write { db in
            try db.execute(sql: "UPDATE webhooks SET state = ?, next_at = ?, record = ? WHERE id = ?",
                           arguments: [delivery.state.rawValue, delivery.nextAttemptAt, record, delivery.id])
        }
    }

    public func deliveries(jobID: String) async throws -> [WebhookDelivery] {
        try await db.read { db in
            try String.fetchAll(db, sql: "SELECT record FROM webhooks WHERE job_id = ? ORDER BY created_at", arguments: [jobID])
        }.map(WebhookDelivery.decode)
    }

    public func submissionWindow(client: String, period: Double) async throws -> SubmissionWindow {
        let now = clock()
        let times = try await db.read { db in
            try Double.fetchAll(db, sql: "SELECT at FROM submissions WHERE client = ? AND at >= ? ORDER BY at", arguments: [client, now - period])
        }
        return SubmissionWindow(times: times, now: now)
    }

    public func refundSubmissions(client: String, count: Int) async throws {
        guard count > 0 else { return }
        try await db.write { db in
            try db.execute(sql: "DELETE FROM submissions WHERE rowid IN (SELECT rowid FROM submissions WHERE client = ? ORDER BY at DESC LIMIT ?)",
                           arguments: [client, count])
        }
    }

    public func expire(olderThan age: Double) async throws -> [Job] {
        let cutoff = clock() - age
        return try await db.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM jobs WHERE status IN \(JobRow.sqlList(JobRow.finished)) AND finished_at < ?",
                                        arguments: [cutoff])
            try db.execute(sql: "DELETE FROM jobs WHERE status IN \(JobRow.sqlList(JobRow.finished)) AND finished_at < ?", arguments: [cutoff])
            return try rows.map { try Self.job($0) }
        }
    }

    public func addBatch(_ batch: Batch) async throws {
        let songs = try batch.songsJSON()
        try await db.write { db in
            try db.execute(sql: "INSERT INTO batches (id, client, created_at, songs) VALUES (?, ?, ?, ?)",
                           arguments: [batch.id, batch.owner, batch.createdAt.timeIntervalSince1970, songs])
        }
    }

    public func batch(id: String) async throws -> Batch? {
        try await db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM batches WHERE id = ?", arguments: [id]).map { try Self.batch($0) }
        }
    }

    public func batches(createdBefore time: Double) async throws -> [Batch] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM batches WHERE created_at < ?", arguments: [time]).map { try Self.batch($0) }
        }
    }

    public func batches(owner: String?, after cursor: ListCursor?, limit: Int) async throws -> [Batch] {
        let (sql, arguments) = Self.listing("batches", owner: owner, statuses: nil, cursor: cursor, limit: limit)
        return try await db.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map { try Self.batch($0) } }
    }

    /// A listing's query over `table` (a constant of this file) and its arguments.
    private static func listing(_ table: String, owner: String?, statuses: [JobStatus]?, cursor: ListCursor?, limit: Int)
        -> (String, StatementArguments) {
        let conditions = JobRow.listingConditions(owner: owner, statuses: statuses, cursor: cursor)
        var arguments = StatementArguments(owner.map { [$0] } ?? [])
        if let cursor { arguments += [cursor.createdAt, cursor.createdAt, cursor.id] }
        let sql = "SELECT * FROM \(table)" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY created_at DESC, id DESC LIMIT \(max(0, limit))"
        return (sql, arguments)
    }

    public func removeBatch(id: String) async throws {
        try await db.write { db in try db.execute(sql: "DELETE FROM batches WHERE id = ?", arguments: [id]) }
    }

    private static func batch(_ row: Row) throws -> Batch {
        try Batch(id: row["id"], client: row["client"], createdAt: row["created_at"], songs: row["songs"])
    }

    private static func job(_ row: Row) throws -> Job {
        try JobRow(id: row["id"], status: row["status"], progress: row["progress"], eta: row["eta"], options: row["options"],
               inputKind: row["input_kind"], inputValue: row["input_value"], inputName: row["input_name"], client: row["client"],
               createdAt: row["created_at"], startedAt: row["started_at"], finishedAt: row["finished_at"],
               errorCode: row["error_code"], errorMessage: row["error_message"], stems: row["stems"], metrics: row["metrics"],
               attempts: row["attempts"]).job()
    }
}
