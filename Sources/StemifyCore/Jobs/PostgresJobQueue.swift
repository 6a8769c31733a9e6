import Foundation
public import Logging
import PostgresNIO
import Synchronization

/// The shared job queue for many machines: PostgreSQL (postgres-nio), selected by a
/// `postgres://user:password@host:port/database` queue URL.
///
/// The pattern of mature job systems: a worker claims the oldest runnable job with
/// `SELECT … FOR UPDATE SKIP LOCKED` (no two workers get the same row, none waits for another),
/// holds it under a lease it renews, and a job whose worker vanished becomes claimable again
/// once the lease ran out plus a backoff that doubles with each attempt, until `maxAttempts`.
/// Times come from the database's clock, so machines whose clocks disagree still agree on
/// leases. `NOTIFY stemify_jobs` on every new job wakes idle workers at once.
public final class PostgresJobQueue: JobQueue {
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let listener: Task<Void, Never>
    private let logger: Logger
    private let wakeups = WakeUps()
    public let leaseSeconds: Double
    public let maxAttempts: Int
    /// Seconds added after an expired lease before the first retry; doubled per attempt.
    public let retryBackoff: Double

    /// Connects, applies pending migrations and starts listening for new jobs.
    ///
    /// - Throws: ``ConfigurationError`` for a malformed URL; the database's error when it cannot
    ///   be reached or migrated.
    public init(url: String, leaseSeconds: Double = 60, maxAttempts: Int = 3, retryBackoff: Double = 5,
                logger: Logger) async throws {
        let configuration = try Self.configuration(url)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        self.retryBackoff = retryBackoff
        runner = Task { await client.run() }
        let wakeups = self.wakeups
        listener = Task {
            // One connection stays in LISTEN; after a lost connection (a database restart) it
            // listens again, and workers fall back to polling meanwhile.
            while !Task.isCancelled {
                do {
                    try await client.withConnection { connection in
                        try await connection.listen(on: "stemify_jobs") { notifications in
                            for try await _ in notifications { wakeups.wakeAll() }
                        }
                    }
                } catch {
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
        do {
            // The pool would keep retrying an unreachable server; a process starting against a
            // wrong URL should say so within seconds. Once the server answered, the migration
            // may take as long as it takes (a busy machine, another process holding the lock).
            let answered = AnsweredFlag()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.migrate { answered.value.store(true, ordering: .relaxed) } }
                group.addTask {
                    try await Task.sleep(for: .seconds(15))
                    while answered.value.load(ordering: .relaxed) { try await Task.sleep(for: .seconds(60)) }
                    throw ConfigurationError(key: "queue_url", message: "no PostgreSQL answered at \(configuration.host ?? url) within 15 s")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            shutdown()
            throw error
        }
    }

    /// Stops the connection pool and the listener.
    public func shutdown() {
        listener.cancel()
        runner.cancel()
    }

    deinit { shutdown() }

    static func configuration(_ url: String) throws -> PostgresClient.Configuration {
        guard let u = URLComponents(string: url), ["postgres", "postgresql"].contains(u.scheme ?? ""), let host = u.host, !host.isEmpty else {
            throw ConfigurationError(key: "queue_url", message: "expected postgres://user:password@host:port/database, got '\(url)'")
        }
        let database = u.path.hasPrefix("/") ? String(u.path.dropFirst()) : u.path
        return PostgresClient.Configuration(
            host: host, port: u.port ?? 5432, username: u.user ?? "postgres", password: u.password,
            database: database.isEmpty ? nil : database, tls: .disable)
    }

    /// Versioned migrations, applied once under an advisory lock so that processes starting
    /// together do not race. A shipped migration is never edited; changes are new versions.
    static let migrations: [String] = [JobRow.schema(real: "DOUBLE PRECISION"), Batch.schema(real: "DOUBLE PRECISION"), JobRow.ownerIndex,
                                       JobRow.idempotencySchema(real: "DOUBLE PRECISION"), WebhookDelivery.schema(real: "DOUBLE PRECISION")]

    private func migrate(connected: @Sendable () -> Void = {}) async throws {
        try await client.withTransaction(logger: logger) { connection in
            connected()
            try await connection.query("SELECT pg_advisory_xact_lock(727001)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS stemify_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())", logger: logger)
            var applied = 0
            for try await v in try await connection.query("SELECT COALESCE(MAX(version), 0) FROM stemify_migrations", logger: logger).decode(Int.self) {
                applied = v
            }
            for (index, sql) in Self.migrations.enumerated() where index + 1 > applied {
                for statement in sql.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO stemify_migrations (version) VALUES (\(index + 1))", logger: logger)
            }
        }
    }

    /// The database's clock, in epoch seconds.
    private static let now = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"
    private static let running = JobRow.sqlList(JobRow.running)
    private static let finished = JobRow.sqlList(JobRow.finished)

    private func rows(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [JobRow] {
        let sequence = if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
        var out: [JobRow] = []
        for try await r in sequence.decode((String, String, Double, Double?, String, String, String, String?, String, Double, Double?,
                                              Double?, String?, String?, String?, String?, Int).self) {
            out.append(JobRow(id: r.0, status: r.1, progress: r.2, eta: r.3, options: r.4, inputKind: r.5, inputValue: r.6,
                              inputName: r.7, client: r.8, createdAt: r.9, startedAt: r.10, finishedAt: r.11, errorCode: r.12,
                              errorMessage: r.13, stems: r.14, metrics: r.15, attempts: r.16))
        }
        return out
    }

    public func enqueue(_ job: Job) async throws {
        let r = try JobRow(job)
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("""
                INSERT INTO jobs (id, status, progress, options, input_kind, input_value, input_name, client, created_at)
                VALUES (\(r.id), \(r.status), 0, \(r.options), \(r.inputKind), \(r.inputValue), \(r.inputName), \(r.client), \(r.createdAt))
                """, logger: logger)
            try await connection.query("NOTIFY stemify_jobs", logger: logger)
        }
    }

    public func job(id: String) async throws -> Job? {
        try await rows("SELECT \(unescaped: JobRow.columns) FROM jobs WHERE id = \(id)").first?.job()
    }

    public func jobs(owner: String?, statuses: [JobStatus]?, after cursor: ListCursor?, limit: Int) async throws -> [Job] {
        var sql = "SELECT \(JobRow.columns) FROM jobs"
        let conditions = JobRow.listingConditions(owner: owner, statuses: statuses, cursor: cursor)
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY created_at DESC, id DESC LIMIT \(max(0, limit))"
        return try await rows(Self.listing(sql, owner: owner, cursor: cursor)).map { try $0.job() }
    }

    public func claim(worker: String) async throws -> Job? {
        let (lease, maxAttempts, backoff) = (leaseSeconds, maxAttempts, retryBackoff)
        let claimed: JobRow? = try await client.withTransaction(logger: logger) { connection in
            // Runnable: queued, or running under a lease that ran out more than the backoff ago.
            guard let row = try await self.rows("""
                SELECT \(unescaped: JobRow.columns) FROM jobs
                WHERE status = 'queued'
                   OR (status IN \(unescaped: Self.running)
                       AND lease_until + \(backoff) * power(2, GREATEST(attempts - 1, 0)) < \(unescaped: Self.now))
                ORDER BY created_at LIMIT 1
                FOR UPDATE SKIP LOCKED
                """, on: connection).first else { return nil }
            if row.attempts >= maxAttempts {
                try await connection.query("""
                    UPDATE jobs SET status = 'failed', error_code = \(ErrorCode.internalError.rawValue),
                        error_message = \("the job was interrupted \(row.attempts) times"), finished_at = \(unescaped: Self.now),
                        worker = NULL, eta = NULL
                    WHERE id = \(row.id)
                    """, logger: self.logger)
                // Failed here, not by a worker: announced here.
                var failed = try row.job()
                failed.status = .failed
                if let delivery = WebhookDelivery(for: failed) { try await self.insert(delivery, on: connection) }
                return nil
            }
            let status = JobRow.firstStatus(inputKind: row.inputKind).rawValue
            return try await self.rows("""
                UPDATE jobs SET status = \(status), worker = \(worker), lease_until = \(unescaped: Self.now) + \(lease),
                    attempts = attempts + 1, started_at = COALESCE(started_at, \(unescaped: Self.now)), progress = 0
                WHERE id = \(row.id)
                RETURNING \(unescaped: JobRow.columns)
                """, on: connection).first
        }
        return try claimed?.job()
    }

    public func heartbeat(id: String, worker: String) async throws -> Bool {
        try await !rows("""
            UPDATE jobs SET lease_until = \(unescaped: Self.now) + \(leaseSeconds)
            WHERE id = \(id) AND worker = \(worker) AND status IN \(unescaped: Self.running)
            RETURNING \(unescaped: JobRow.columns)
            """).isEmpty
    }

    public func update(id: String, worker: String, status: JobStatus, progress: Double, eta: Double?) async throws {
        try await client.query("""
            UPDATE jobs SET status = \(status.rawValue), progress = GREATEST(progress, \(progress)), eta = \(eta)
            WHERE id = \(id) AND worker = \(worker)
            """, logger: logger)
    }

    public func complete(id: String, worker: String, stems: [StemFile], metrics: JobMetrics) async throws {
        let stemsJSON = String(decoding: try JSONEncoder().encode(stems), as: UTF8.self)
        let metricsJSON = String(decoding: try JSONEncoder().encode(metrics), as: UTF8.self)
        try await client.query("""
            UPDATE jobs SET status = 'done', progress = 1, eta = 0, stems = \(stemsJSON), metrics = \(metricsJSON),
                finished_at = \(unescaped: Self.now), worker = NULL
            WHERE id = \(id) AND worker = \(worker)
            """, logger: logger)
    }

    public func fail(id: String, worker: String?, code: ErrorCode, message: String) async throws {
        try await client.query("""
            UPDATE jobs SET status = 'failed', error_code = \(code.rawValue), error_message = \(message),
                finished_at = \(unescaped: Self.now), worker = NULL, eta = NULL
            WHERE id = \(id) AND (\(worker)::TEXT IS NULL OR worker = \(worker))
            """, logger: logger)
    }

    public func release(id: String, worker: String) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("""
                UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL, attempts = GREATEST(attempts - 1, 0)
                WHERE id = \(id) AND worker = \(worker)
                """, logger: logger)
            try await connection.query("NOTIFY stemify_jobs", logger: logger)
        }
    }

    public func cancel(id: String) async throws -> Job? {
        try await rows("DELETE FROM jobs WHERE id = \(id) RETURNING \(unescaped: JobRow.columns)").first?.job()
    }

    public func markCancelled(id: String) async throws -> Job? {
        try await rows("""
            UPDATE jobs SET status = 'cancelled', finished_at = \(unescaped: Self.now), eta = NULL, worker = NULL, lease_until = NULL
            WHERE id = \(id) AND status NOT IN \(unescaped: JobRow.sqlList(JobRow.finished))
            RETURNING \(unescaped: JobRow.columns)
            """).first?.job()
    }

    public func position(id: String) async throws -> Int? {
        var out: Int?
        for try await n in try await client.query("""
            SELECT (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.created_at < j.created_at)::INTEGER
            FROM jobs j WHERE j.id = \(id) AND j.status = 'queued'
            """, logger: logger).decode(Int.self) {
            out = n
        }
        return out
    }

    public func counts() async throws -> [JobStatus: Int] {
        var out: [JobStatus: Int] = [:]
        for try await (status, n) in try await client.query("SELECT status, COUNT(*)::INTEGER FROM jobs GROUP BY status", logger: logger)
            .decode((String, Int).self) {
            if let s = JobStatus(rawValue: status) { out[s] = n }
        }
        return out
    }

    public func finishedJob(dedupeKey: String) async throws -> Job? {
        try await rows("""
            SELECT \(unescaped: JobRow.columns) FROM jobs WHERE dedupe_key = \(dedupeKey) AND status = 'done'
            ORDER BY finished_at DESC LIMIT 1
            """).first?.job()
    }

    public func setDedupeKey(id: String, key: String) async throws {
        try await client.query("UPDATE jobs SET dedupe_key = \(key) WHERE id = \(id)", logger: logger)
    }

    public func recordSubmission(client name: String, count: Int, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double) {
        try await client.withTransaction(logger: logger) { connection in
            // One client's submissions are counted one at a time across all API machines.
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(name)))", logger: self.logger)
            try await connection.query("DELETE FROM submissions WHERE at < \(unescaped: Self.now) - \(period)", logger: self.logger)
            var now = 0.0
            for try await t in try await connection.query("SELECT \(unescaped: Self.now)", logger: self.logger).decode(Double.self) { now = t }
            var times: [Double] = []
            for try await t in try await connection.query("SELECT at FROM submissions WHERE client = \(name) ORDER BY at",
                                                          logger: self.logger).decode(Double.self) {
                times.append(t)
            }
            let decision = admission(times: times, count: count, period: period, limit: limit, now: now)
            if decision.allowed {
                try await connection.query(
                    "INSERT INTO submissions (client, at) SELECT \(name), \(now) FROM generate_series(1, \(count))", logger: self.logger)
            }
            return decision
        }
    }

    public func claimIdempotencyKey(id: String, fingerprint: String, ttl: Double) async throws -> IdempotencyClaim {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM idempotency WHERE created_at < \(unescaped: Self.now) - \(ttl)", logger: self.logger)
            var inserted = false
            for try await _ in try await connection.query("""
                INSERT INTO idempotency (id, fingerprint, created_at) VALUES (\(id), \(fingerprint), \(unescaped: Self.now))
                ON CONFLICT (id) DO NOTHING RETURNING id
                """, logger: self.logger).decode(String.self) {
                inserted = true
            }
            if inserted { return .claimed }
            for try await r in try await connection.query("SELECT fingerprint, status, body, location FROM idempotency WHERE id = \(id)",
                                                          logger: self.logger).decode((String, Int?, String?, String?).self) {
                return JobRow.claim(stored: r.0, status: r.1, body: r.2, location: r.3, asked: fingerprint)
            }
            // Removed between the two statements (expired): the next try claims it.
            return .inProgress
        }
    }

    public func completeIdempotencyKey(id: String, response: StoredResponse) async throws {
        try await client.query("""
            UPDATE idempotency SET status = \(response.status), body = \(response.body), location = \(response.location) WHERE id = \(id)
            """, logger: logger)
    }

    public func releaseIdempotencyKey(id: String) async throws {
        try await client.query("DELETE FROM idempotency WHERE id = \(id) AND status IS NULL", logger: logger)
    }

    public func addDelivery(_ delivery: WebhookDelivery) async throws {
        try await insert(delivery, on: nil)
    }

    private func insert(_ delivery: WebhookDelivery, on connection: PostgresConnection?) async throws {
        let record = try delivery.encoded()
        let query: PostgresQuery = """
            INSERT INTO webhooks (id, job_id, state, next_at, created_at, record)
            VALUES (\(delivery.id), \(delivery.jobID), \(delivery.state.rawValue), \(delivery.nextAttemptAt), \(delivery.createdAt), \(record))
            ON CONFLICT (id) DO NOTHING
            """
        if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
    }

    public func claimDueDeliveries(limit: Int, lease: Double) async throws -> [WebhookDelivery] {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM webhooks WHERE created_at < \(unescaped: Self.now) - \(2 * WebhookDelivery.retryWindow)",
                                       logger: self.logger)
            var out: [WebhookDelivery] = []
            for try await record in try await connection.query("""
                UPDATE webhooks SET next_at = \(unescaped: Self.now) + \(lease)
                WHERE id IN (SELECT id FROM webhooks WHERE state = 'pending' AND next_at <= \(unescaped: Self.now)
                             ORDER BY next_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING record
                """, logger: self.logger).decode(String.self) {
                out.append(try WebhookDelivery.decode(record))
            }
            return out
        }
    }

    public func updateDelivery(_ delivery: WebhookDelivery) async throws {
        let record = try delivery.encoded()
        try await client.query("""
            UPDATE webhooks SET state = \(delivery.state.rawValue), next_at = \(delivery.nextAttemptAt), record = \(record) WHERE id = \(delivery.id)
            """, logger: logger)
    }

    public func deliveries(jobID: String) async throws -> [WebhookDelivery] {
        var out: [WebhookDelivery] = []
        for try await record in try await client.query("SELECT record FROM webhooks WHERE job_id = \(jobID) ORDER BY created_at",
                                                       logger: logger).decode(String.self) {
            out.append(try WebhookDelivery.decode(record))
        }
        return out
    }

    public func submissionWindow(client name: String, period: Double) async throws -> SubmissionWindow {
        var now = 0.0
        for try await t in try await client.query("SELECT \(unescaped: Self.now)", logger: logger).decode(Double.self) { now = t }
        var times: [Double] = []
        for try await t in try await client.query("SELECT at FROM submissions WHERE client = \(name) AND at >= \(now - period) ORDER BY at",
                                                  logger: logger).decode(Double.self) {
            times.append(t)
        }
        return SubmissionWindow(times: times, now: now)
    }

    public func refundSubmissions(client name: String, count: Int) async throws {
        guard count > 0 else { return }
        try await client.query(
            "DELETE FROM submissions WHERE ctid IN (SELECT ctid FROM submissions WHERE client = \(name) ORDER BY at DESC LIMIT \(count))",
            logger: logger)
    }

    public func expire(olderThan age: Double) async throws -> [Job] {
        try await rows("""
            DELETE FROM jobs WHERE status IN \(unescaped: Self.finished) AND finished_at < \(unescaped: Self.now) - \(age)
            RETURNING \(unescaped: JobRow.columns)
            """).map { try $0.job() }
    }

    public func addBatch(_ batch: Batch) async throws {
        let (songs, created) = (try batch.songsJSON(), batch.createdAt.timeIntervalSince1970)
        try await client.query(
            "INSERT INTO batches (id, client, created_at, songs) VALUES (\(batch.id), \(batch.owner), \(created), \(songs))",
            logger: logger)
    }

    public func batch(id: String) async throws -> Batch? {
        try await batches("SELECT id, client, created_at, songs FROM batches WHERE id = \(id)").first
    }

    public func batches(createdBefore time: Double) async throws -> [Batch] {
        try await batches("SELECT id, client, created_at, songs FROM batches WHERE created_at < \(time)")
    }

    public func batches(owner: String?, after cursor: ListCursor?, limit: Int) async throws -> [Batch] {
        var sql = "SELECT id, client, created_at, songs FROM batches"
        let conditions = JobRow.listingConditions(owner: owner, statuses: nil, cursor: cursor)
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY created_at DESC, id DESC LIMIT \(max(0, limit))"
        return try await batches(Self.listing(sql, owner: owner, cursor: cursor))
    }

    /// A listing's query (the conditions both SQL backends share, their `?` numbered as
    /// PostgreSQL's `$1`, `$2`, …) with its values bound.
    static func listing(_ sql: String, owner: String?, cursor: ListCursor?) -> PostgresQuery {
        var binds = PostgresBindings()
        if let owner { binds.append(owner) }
        if let cursor {
            binds.append(cursor.createdAt)
            binds.append(cursor.createdAt)
            binds.append(cursor.id)
        }
        var out = ""
        var n = 0
        for c in sql {
            if c == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(c)
            }
        }
        return PostgresQuery(unsafeSQL: out, binds: binds)
    }

    public func removeBatch(id: String) async throws {
        try await client.query("DELETE FROM batches WHERE id = \(id)", logger: logger)
    }

    private func batches(_ query: PostgresQuery) async throws -> [Batch] {
        var out: [Batch] = []
        for try await r in try await client.query(query, logger: logger).decode((String, String, Double, String).self) {
            out.append(try Batch(id: r.0, client: r.1, createdAt: r.2, songs: r.3))
        }
        return out
    }

    public func waitForWork(timeout: Double) async {
        await wakeups.wait(timeout: timeout)
    }
}

/// Idle workers waiting for a NOTIFY; each wait also ends after its timeout.
final class WakeUps: Sendable {
    private enum Waiter {
        case waiting(CheckedContinuation<Void, Never>)
        /// Woken (timer, cancellation) before it started waiting.
        case early
    }
    private let waiters = Mutex<[UUID: Waiter]>([:])

    func wakeAll() {
        let all = waiters.withLock { w in
            defer { w = w.filter { if case .early = $0.value { true } else { false } } }
            return w.values.compactMap { if case let .waiting(c) = $0 { c } else { nil } }
        }
        for c in all { c.resume() }
    }

    func wait(timeout: Double) async {
        let id = UUID()
        let timer = Task { [weak self] in
            try? await Task.sleep(for: .seconds(timeout))
            self?.wake(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                let early = waiters.withLock { w in
                    if case .early = w[id] { w[id] = nil; return true }
                    w[id] = .waiting(c)
                    return false
                }
                if early { c.resume() }
            }
        } onCancel: {
            wake(id)
        }
        timer.cancel()
        // A timer that fired after a NOTIFY already ended the wait leaves a mark; drop it.
        waiters.withLock { _ = $0.removeValue(forKey: id) }
    }

    private func wake(_ id: UUID) {
        let c: CheckedContinuation<Void, Never>? = waiters.withLock { w in
            switch w[id] {
            case let .waiting(c)?: w[id] = nil; return c
            case .early?: return nil
            case nil: w[id] = .early; return nil
            }
        }
        c?.resume()
    }
}

/// Set once the database answered during start-up.
private final class AnsweredFlag: Sendable {
    let value = Atomic<Bool>(false)
}
