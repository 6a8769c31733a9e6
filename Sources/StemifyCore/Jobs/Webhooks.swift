public import Foundation
import Crypto

/// One announcement of a job's terminal state to its `callback_url`, retried until it is
/// answered 2xx or a day has passed. Kept in the queue's store, so whichever API process is up
/// delivers it, after restarts too.
public struct WebhookDelivery: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable { case pending, delivered, failed }

    /// One POST and what came of it.
    public struct Attempt: Codable, Sendable, Equatable {
        public var at: Double
        /// The receiver's status; nil when there was no answer.
        public var status: Int?
        /// Why it did not count (timeout, refused address, status), for the job's owner.
        public var error: String?

        public init(at: Double, status: Int?, error: String?) {
            self.at = at
            self.status = status
            self.error = error
        }
    }

    /// `JOB:EVENT`: one delivery per job and terminal state.
    public var id: String
    public var jobID: String
    public var url: String
    /// `job.done`, `job.failed` or `job.cancelled`.
    public var event: String
    public var state: State
    public var createdAt: Double
    /// When it is next tried (pending ones).
    public var nextAttemptAt: Double
    public var attempts: [Attempt]

    enum CodingKeys: String, CodingKey {
        case id, jobID = "job_id", url, event, state, createdAt = "created_at", nextAttemptAt = "next_attempt_at", attempts
    }

    /// A new delivery of `job`'s terminal state, due now; nil when it has no callback.
    public init?(for job: Job, now: Double = Date().timeIntervalSince1970) {
        guard let url = job.options.callbackURL, job.status.isTerminal else { return nil }
        id = "\(job.id):\(job.status.rawValue)"
        jobID = job.id
        self.url = url
        event = "job.\(job.status.rawValue)"
        state = .pending
        createdAt = now
        nextAttemptAt = now
        attempts = []
    }

    /// How long deliveries are retried.
    public static let retryWindow = 86400.0

    /// Records an attempt: delivered on a 2xx; otherwise the next try after `base`·3^(n−1)
    /// seconds (capped at an hour), or failed once the day is over (or `final`, for a refused
    /// address that will not change).
    public mutating func record(_ attempt: Attempt, base: Double, final: Bool = false) {
        attempts.append(attempt)
        if let status = attempt.status, (200..<300).contains(status) {
            state = .delivered
            return
        }
        let wait = min(3600, base * pow(3, Double(attempts.count - 1)))
        if final || attempt.at + wait > createdAt + Self.retryWindow {
            state = .failed
        } else {
            nextAttemptAt = attempt.at + wait
        }
    }

    /// Hex HMAC-SHA256 of `TIMESTAMP.BODY` with `secret`: the `v1` of `Stemify-Signature`,
    /// which a receiver recomputes to trust a delivery (and compares the time to refuse replays).
    public static func signature(secret: String, timestamp: Int, body: [UInt8]) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array("\(timestamp).".utf8) + body, using: SymmetricKey(data: Array(secret.utf8)))
        return Digest.hex(bytes: code)
    }

    /// The record as stored (one JSON text).
    public func encoded() throws -> String { String(decoding: try JSONEncoder().encode(self), as: UTF8.self) }

    public static func decode(_ text: String) throws -> WebhookDelivery {
        try JSONDecoder().decode(WebhookDelivery.self, from: Data(text.utf8))
    }

    /// Migration 5 of both SQL backends.
    static func schema(real: String) -> String {
        """
        CREATE TABLE webhooks (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, state TEXT NOT NULL, next_at \(real) NOT NULL,
                               created_at \(real) NOT NULL, record TEXT NOT NULL);
        CREATE INDEX webhooks_due ON webhooks (state, next_at);
        CREATE INDEX webhooks_by_job ON webhooks (job_id)
        """
    }
}
