public import Foundation

/// Where a job's files live. Every process of a deployment sees the same storage: the API
/// writes uploads and serves stems, workers write stems and separation checkpoints. The one
/// implementation is a folder (local, or mounted on every machine); an object store would
/// implement the same four places.
public protocol JobStorage: Sendable {
    /// Where an upload is streamed to.
    func uploadPath(_ id: String) -> URL
    /// The job's scratch folder: download, decoded input, separation checkpoint.
    func workDirectory(_ id: String) -> URL
    /// Where the job's stems are written and served from.
    func stemsDirectory(_ id: String) -> URL
    /// Removes everything the job left (expiry, cancellation).
    func removeAll(_ job: Job)
}

/// ``JobStorage`` in a folder: `uploads/ID`, `work/ID/`, `stems/ID/`.
public struct FolderStorage: JobStorage {
    public let root: URL

    public init(root: URL) { self.root = root }

    public func uploadPath(_ id: String) -> URL { root.appendingPathComponent("uploads/\(id)") }
    public func workDirectory(_ id: String) -> URL { root.appendingPathComponent("work/\(id)") }
    public func stemsDirectory(_ id: String) -> URL { root.appendingPathComponent("stems/\(id)") }

    public func removeAll(_ job: Job) {
        let fm = FileManager.default
        try? fm.removeItem(at: stemsDirectory(job.id))
        try? fm.removeItem(at: workDirectory(job.id))
        if case let .upload(path, _) = job.input { try? fm.removeItem(atPath: path) }
    }
}
