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
    /// Cancels a job (a running worker notices at its next heartbeat) and removes its record.
    func cancel(id: String) async throws -> Job?
    /// Jobs ahead of this one in the queue (0 when it runs or is next).
    func position(id: String) async throws -> Int?
    /// Number of jobs per status.
    func counts() async throws -> [JobStatus: Int]
    /// A finished job with the same dedupe key whose stems are still there.
    func finishedJob(dedupeKey: String) async throws -> Job?
    /// Records the dedupe key (hash of decoded audio + options) of a job.
    func setDedupeKey(id: String, key: String) async throws
    /// Counts a submission from `client` and returns how many fell within `period` seconds,
    /// with the oldest one's time (for Retry-After).
    func recordSubmission(client: String, period: Double, limit: Int) async throws -> (allowed: Bool, retryAfter: Double)
    /// Removes finished jobs older than `age` seconds; returns them so their files can go too.
    func expire(olderThan age: Double) async throws -> [Job]
}
