import Foundation

/// Durable storage of jobs, shared by the API (which adds and reads them) and the workers (which
/// claim and run them). The embedded default is ``SQLiteJobQueue``.
///
/// Workers hold a claimed job under a lease they renew with ``heartbeat(id:worker:)``; a job
/// whose lease ran out (its worker died) is claimed again by the next ``claim(worker:)``.
public protocol JobQueue: Sendable {
    /// Adds a queued job.
    func enqueue(_ job: Job) async throws
    /// The job, or nil.
    func job(id: String) async throws -> Job?
    /// Takes the oldest queued job, or one whose lease expired, for `worker`.
    func claim(worker: String) async throws -> Job?
    /// Renews the lease; returns false when the job is no longer this worker's (cancelled, taken).
    func heartbeat(id: String, worker: String) async throws -> Bool
    /// Records progress of a running job.
    func update(id: String, worker: String, status: JobStatus, progress: Double, eta: Double?) async throws
    /// Finishes a job.
    func complete(id: String, worker: String, stems: [StemFile], metrics: JobMetrics) async throws
    /// Fails a job with a code and message.
    func fail(id: String, worker: String?, code: ErrorCode, message: String) async throws
    /// Hands a running job back (a worker stopping gracefully): queued again at once, this
    /// attempt not counted; its checkpoint stays for whoever takes it next.
    func release(id: String, worker: String) async throws
    /// Removes a job's record (a running worker notices at its next heartbeat); returns it.
    func cancel(id: String) async throws -> Job?
    /// Stops a job that has not finished: it stays, as `cancelled` with its finish time, until
    /// it expires like any finished job (a running worker notices at its next heartbeat).
    /// Returns it as it is now; nil when there is no such job or it had already finished.
    func markCancelled(id: String) async throws -> Job?
    /// Jobs ahead of this one in the queue (0 when it runs or is next).
    func position(id: String) async throws -> Int?
    /// Number of jobs per status.
    func counts() async throws -> [JobStatus: Int]
    /// A finished job with the same dedupe key whose stems are still there.
    func finishedJob(dedupeKey: String) async throws -> Job?
    /// Records the dedupe key (hash of decoded audio + options) of a job.
    func setDedupeKey(id: String, key: String) async throws
    /// Counts `count` songs submitted together by `client` when, with those of the last `period`
    /// seconds, they stay within `limit` (0: no limit); otherwise counts nothing and says after
    /// how many seconds enough of the earlier ones fall out of the window (for Retry-After).
    func recordSubmission(client: String, count: Int, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double)
    /// Takes an `Idempotency-Key` (`id`: a digest of its owner and key) for a request whose
    /// content digest is `fingerprint`, or says what became of it; claims older than `ttl`
    /// seconds are forgotten.
    func claimIdempotencyKey(id: String, fingerprint: String, ttl: Double) async throws -> IdempotencyClaim
    /// Keeps the answer to a claimed key, for the retries that follow.
    func completeIdempotencyKey(id: String, response: StoredResponse) async throws
    /// Lets go of a claimed key whose request failed, so a retry runs it again.
    func releaseIdempotencyKey(id: String) async throws
    /// Adds a webhook delivery (one per job and terminal state: a second is ignored).
    func addDelivery(_ delivery: WebhookDelivery) async throws
    /// Pending deliveries that are due, at most `limit`, each put off by `lease` seconds so
    /// that another process does not send it at the same time; deliveries older than two
    /// retry windows are forgotten.
    func claimDueDeliveries(limit: Int, lease: Double) async throws -> [WebhookDelivery]
    /// Stores a delivery after an attempt.
    func updateDelivery(_ delivery: WebhookDelivery) async throws
    /// A job's deliveries, oldest first.
    func deliveries(jobID: String) async throws -> [WebhookDelivery]
    /// The times of `client`'s counted submissions within the last `period` seconds.
    func submissionWindow(client: String, period: Double) async throws -> SubmissionWindow
    /// Takes back the `count` latest submissions of `client`: songs counted, then refused by a
    /// later check (not audio, too long), do not use up the limit.
    func refundSubmissions(client: String, count: Int) async throws
    /// Removes finished jobs older than `age` seconds; returns them so their files can go too.
    func expire(olderThan age: Double) async throws -> [Job]
    /// The jobs of `owner` (every owner's when nil), newest first, those after `cursor` only,
    /// at most `limit`; `statuses` nil takes any.
    func jobs(owner: String?, statuses: [JobStatus]?, after cursor: ListCursor?, limit: Int) async throws -> [Job]

    /// Stores a batch (its jobs are enqueued on their own, before it).
    func addBatch(_ batch: Batch) async throws
    /// The batch, or nil.
    func batch(id: String) async throws -> Batch?
    /// Batches created before `time` (epoch seconds), for ``expireBatches(olderThan:)``.
    func batches(createdBefore time: Double) async throws -> [Batch]
    /// The batches of `owner` (every owner's when nil), newest first, those after `cursor`
    /// only, at most `limit`.
    func batches(owner: String?, after cursor: ListCursor?, limit: Int) async throws -> [Batch]
    /// Removes a batch record (not its jobs).
    func removeBatch(id: String) async throws
}

/// The answer a request with an `Idempotency-Key` got, kept for its retries.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var body: String
    public var location: String?

    public init(status: Int, body: String, location: String?) {
        self.status = status
        self.body = body
        self.location = location
    }
}

/// What ``JobQueue/claimIdempotencyKey(id:fingerprint:ttl:)`` found.
public enum IdempotencyClaim: Sendable, Equatable {
    /// First use: go on, then complete or release it.
    case claimed
    /// Used before for the same request: its answer.
    case replay(StoredResponse)
    /// Used before for another request.
    case mismatch
    /// The first request with it is still being answered.
    case inProgress
}

/// A client's counted submissions in the rate limit's window, for the `RateLimit-*` headers.
public struct SubmissionWindow: Sendable, Equatable {
    /// Oldest first, epoch seconds.
    public var times: [Double]
    /// The backend's clock when they were read.
    public var now: Double

    public init(times: [Double], now: Double) {
        self.times = times
        self.now = now
    }

    /// Songs still allowed now under `limit` (0: none is, or no limit when `limit` is 0).
    public func remaining(limit: Int) -> Int { max(0, limit - times.count) }

    /// Seconds until the oldest counted song leaves the window (0 when none is counted).
    public func reset(period: Double) -> Double { times.first.map { max(0, $0 + period - now) } ?? 0 }
}

/// Where a listing goes on: the last job of the page before (newest first, ties by id).
public struct ListCursor: Sendable, Equatable {
    public var createdAt: Double
    public var id: String

    public init(createdAt: Double, id: String) {
        self.createdAt = createdAt
        self.id = id
    }

    /// After the last job of a page.
    public init(after job: Job) { self.init(createdAt: job.createdAt.timeIntervalSince1970, id: job.id) }

    /// Whether a job created at `time` with `id` comes after this cursor in the listing's order.
    public func precedes(createdAt time: Double, id: String) -> Bool { time < createdAt || (time == createdAt && id < self.id) }
}

extension JobQueue {
    /// One song.
    public func recordSubmission(client: String, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double) {
        try await recordSubmission(client: client, count: 1, period: period, limit: limit)
    }

    /// Waits up to `timeout` seconds for new work; backends that can be told about it (LISTEN)
    /// return sooner.
    public func waitForWork(timeout: Double) async {
        try? await Task.sleep(for: .seconds(timeout))
    }
}

/// The rate-limit decision of both SQL backends: `times` are the client's submissions within
/// the window, oldest first. When `count` more would pass `limit`, the wait is until the one
/// whose leaving makes room for all of them.
func admission(times: [Double], count: Int, period: Double, limit: Int, now: Double) -> (allowed: Bool, retryAfter: Double) {
    guard limit > 0, times.count + count > limit else { return (true, 0) }
    let freeing = min(times.count + count - limit, times.count) - 1
    return (false, max(1, freeing >= 0 ? times[freeing] + period - now : period))
}

/// A `jobs` row in the column types both backends store (JSON text, epoch seconds).
struct JobRow {
    var id: String
    var status: String
    var progress: Double
    var eta: Double?
    var options: String
    var inputKind: String
    var inputValue: String
    var inputName: String?
    var client: String
    var createdAt: Double
    var startedAt: Double?
    var finishedAt: Double?
    var errorCode: String?
    var errorMessage: String?
    var stems: String?
    var metrics: String?
    var attempts: Int

    /// The columns in this order, for SELECT and RETURNING lists.
    static let columns = "id, status, progress, eta, options, input_kind, input_value, input_name, client, created_at, "
        + "started_at, finished_at, error_code, error_message, stems, metrics, attempts"

    /// The row a new job is inserted as.
    init(_ job: Job) throws {
        (inputKind, inputValue, inputName) = switch job.input {
        case let .upload(path, filename): ("upload", path, filename)
        case let .youtube(url): ("youtube", url, nil)
        }
        id = job.id
        status = job.status.rawValue
        progress = job.progress
        options = String(decoding: try JSONEncoder().encode(job.options), as: UTF8.self)
        client = job.owner
        createdAt = job.createdAt.timeIntervalSince1970
        attempts = job.attempts
    }

    init(id: String, status: String, progress: Double, eta: Double?, options: String, inputKind: String, inputValue: String,
         inputName: String?, client: String, createdAt: Double, startedAt: Double?, finishedAt: Double?, errorCode: String?,
         errorMessage: String?, stems: String?, metrics: String?, attempts: Int) {
        (self.id, self.status, self.progress, self.eta, self.options) = (id, status, progress, eta, options)
        (self.inputKind, self.inputValue, self.inputName, self.client) = (inputKind, inputValue, inputName, client)
        (self.createdAt, self.startedAt, self.finishedAt) = (createdAt, startedAt, finishedAt)
        (self.errorCode, self.errorMessage, self.stems, self.metrics, self.attempts) = (errorCode, errorMessage, stems, metrics, attempts)
    }

    /// The job this row stores; a row whose options do not decode (written by a newer version,
    /// or edited by hand) is an error, never a job silently run with default options.
    func job() throws -> Job {
        let decoder = JSONDecoder()
        let decodedOptions: JobOptions
        do { decodedOptions = try decoder.decode(JobOptions.self, from: Data(options.utf8)) } catch {
            throw StemifyError(.internalError, "a stored job cannot be read", detail: "job \(id): options \(options) do not decode: \(error)")
        }
        return Job(
            id: id, status: JobStatus(rawValue: status) ?? .failed, progress: progress, etaSeconds: eta,
            options: decodedOptions,
            input: inputKind == "youtube" ? .youtube(url: inputValue) : .upload(path: inputValue, filename: inputName ?? "upload"),
            owner: client,
            createdAt: Date(timeIntervalSince1970: createdAt),
            startedAt: startedAt.map { Date(timeIntervalSince1970: $0) },
            finishedAt: finishedAt.map { Date(timeIntervalSince1970: $0) },
            errorCode: errorCode.map { ErrorCode(rawValue: $0) ?? .internalError }, errorMessage: errorMessage,
            stems: stems.flatMap { try? decoder.decode([StemFile].self, from: Data($0.utf8)) } ?? [],
            metrics: metrics.flatMap { try? decoder.decode(JobMetrics.self, from: Data($0.utf8)) },
            attempts: attempts)
    }

    /// Statuses of a job a worker holds (under a lease).
    static let running: [JobStatus] = [.downloading, .decoding, .separating, .encoding]
    /// Statuses a job ends in.
    static let finished: [JobStatus] = [.done, .failed, .cancelled]

    /// `('a','b')` for an `IN` clause (constants of this file, never input).
    static func sqlList(_ statuses: [JobStatus]) -> String {
        "(" + statuses.map { "'\($0.rawValue)'" }.joined(separator: ",") + ")"
    }

    /// The tables of both backends, in the SQL both speak; `real` is the backend's name for a
    /// double. Migration 1 of each; a shipped migration is never edited.
    static func schema(real: String) -> String {
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            progress \(real) NOT NULL DEFAULT 0,
            eta \(real),
            options TEXT NOT NULL,
            input_kind TEXT NOT NULL,
            input_value TEXT NOT NULL,
            input_name TEXT,
            client TEXT NOT NULL,
            created_at \(real) NOT NULL,
            started_at \(real),
            finished_at \(real),
            error_code TEXT,
            error_message TEXT,
            stems TEXT,
            metrics TEXT,
            worker TEXT,
            lease_until \(real),
            attempts INTEGER NOT NULL DEFAULT 0,
            dedupe_key TEXT
        );
        CREATE INDEX jobs_by_status ON jobs (status, created_at);
        CREATE INDEX jobs_by_dedupe ON jobs (dedupe_key);
        CREATE TABLE submissions (client TEXT NOT NULL, at \(real) NOT NULL);
        CREATE INDEX submissions_by_client ON submissions (client, at);
        """
    }

    /// Migration 3 of both backends: a job's owner lists its jobs (the `client` column holds the owner).
    static let ownerIndex = "CREATE INDEX jobs_by_owner ON jobs (client, created_at)"

    /// Migration 4 of both backends: answers kept for `Idempotency-Key` retries.
    static func idempotencySchema(real: String) -> String {
        """
        CREATE TABLE idempotency (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER, body TEXT, location TEXT,
                                  created_at \(real) NOT NULL);
        CREATE INDEX idempotency_by_created ON idempotency (created_at)
        """
    }

    /// A stored claim as an ``IdempotencyClaim`` for a request whose digest is `fingerprint`.
    static func claim(stored fingerprint: String, status: Int?, body: String?, location: String?, asked: String) -> IdempotencyClaim {
        guard fingerprint == asked else { return .mismatch }
        guard let status else { return .inProgress }
        return .replay(StoredResponse(status: status, body: body ?? "", location: location?.isEmpty == false ? location : nil))
    }

    /// The `WHERE` conditions of a listing, with `?` for `owner` then the cursor's time, time, id.
    static func listingConditions(owner: String?, statuses: [JobStatus]?, cursor: ListCursor?) -> [String] {
        var conditions: [String] = []
        if owner != nil { conditions.append("client = ?") }
        if let statuses { conditions.append("status IN \(sqlList(statuses))") }
        if cursor != nil { conditions.append("(created_at < ? OR (created_at = ? AND id < ?))") }
        return conditions
    }

    /// The status a claimed job starts in.
    static func firstStatus(inputKind: String) -> JobStatus { inputKind == "youtube" ? .downloading : .decoding }
}
