import Foundation

/// In-process counters and histograms rendered in the Prometheus text format at `/metrics`.
/// Job counts by state come from the queue at scrape time; these cover what the queue does not keep.
public final class ServiceMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var finishedByModel: [String: Int] = [:]
    private var failuresByCode: [String: Int] = [:]
    private var processing = Histogram(bounds: [5, 15, 30, 60, 120, 300, 600, 1200])
    private var realTimeFactor = Histogram(bounds: [0.1, 0.25, 0.5, 1, 2, 4])
    private var submissions = 0
    private var cancelled = 0
    private var rejectedByCode: [String: Int] = [:]

    public init() {}

    struct Histogram {
        let bounds: [Double]
        var buckets: [Int]
        var sum = 0.0
        var count = 0
        init(bounds: [Double]) {
            self.bounds = bounds
            buckets = Array(repeating: 0, count: bounds.count)
        }
        mutating func observe(_ v: Double) {
            for (i, b) in bounds.enumerated() where v <= b { buckets[i] += 1 }
            sum += v
            count += 1
        }
        func render(_ name: String) -> String {
            var s = ""
            for (i, b) in bounds.enumerated() { s += "\(name)_bucket{le=\"\(b)\"} \(buckets[i])\n" }
            s += "\(name)_bucket{le=\"+Inf\"} \(count)\n\(name)_sum \(sum)\n\(name)_count \(count)\n"
            return s
        }
    }

    public func recordSubmission() { lock.withLock { submissions += 1 } }
    public func recordRejection(code: ErrorCode) { lock.withLock { rejectedByCode[code.rawValue, default: 0] += 1 } }

    public func recordFinished(model: String, seconds: Double, audioSeconds: Double) {
        lock.withLock {
            finishedByModel[model, default: 0] += 1
            processing.observe(seconds)
            if audioSeconds > 0 { realTimeFactor.observe(seconds / audioSeconds) }
        }
    }

    public func recordFailure(code: ErrorCode) { lock.withLock { failuresByCode[code.rawValue, default: 0] += 1 } }
    /// A job stopped by its owner before it finished (counted where the cancel was asked).
    public func recordCancelled() { lock.withLock { cancelled += 1 } }

    /// The Prometheus text exposition, with the queue's counts.
    public func render(counts: [JobStatus: Int]) -> String {
        lock.withLock {
            var s = "# HELP stemify_jobs Jobs in the queue by state.\n# TYPE stemify_jobs gauge\n"
            for status in JobStatus.allCases { s += "stemify_jobs{state=\"\(status.rawValue)\"} \(counts[status] ?? 0)\n" }
            s += "# HELP stemify_queue_depth Jobs waiting for a worker.\n# TYPE stemify_queue_depth gauge\n"
            s += "stemify_queue_depth \(counts[.queued] ?? 0)\n"
            s += "# HELP stemify_submissions_total Accepted submissions.\n# TYPE stemify_submissions_total counter\n"
            s += "stemify_submissions_total \(submissions)\n"
            s += "# HELP stemify_jobs_finished_total Finished jobs by model.\n# TYPE stemify_jobs_finished_total counter\n"
            for (m, n) in finishedByModel.sorted(by: { $0.key < $1.key }) { s += "stemify_jobs_finished_total{model=\"\(m)\"} \(n)\n" }
            s += "# HELP stemify_job_failures_total Failed jobs by error code.\n# TYPE stemify_job_failures_total counter\n"
            for (c, n) in failuresByCode.sorted(by: { $0.key < $1.key }) { s += "stemify_job_failures_total{code=\"\(c)\"} \(n)\n" }
            s += "# HELP stemify_jobs_cancelled_total Jobs cancelled before they finished.\n# TYPE stemify_jobs_cancelled_total counter\n"
            s += "stemify_jobs_cancelled_total \(cancelled)\n"
            s += "# HELP stemify_rejected_requests_total Refused submissions by error code.\n# TYPE stemify_rejected_requests_total counter\n"
            for (c, n) in rejectedByCode.sorted(by: { $0.key < $1.key }) { s += "stemify_rejected_requests_total{code=\"\(c)\"} \(n)\n" }
            s += "# HELP stemify_processing_seconds Wall time per finished job.\n# TYPE stemify_processing_seconds histogram\n"
            s += processing.render("stemify_processing_seconds")
            s += "# HELP stemify_real_time_factor Processing time over audio duration.\n# TYPE stemify_real_time_factor histogram\n"
            s += realTimeFactor.render("stemify_real_time_factor")
            return s
        }
    }
}
