public import Foundation

/// Where a job's files live. Every process of a deployment sees the same storage: the API keeps
/// uploads and serves stems, workers keep stems and separation checkpoints.
///
/// Files are always made in local folders first (an upload as it arrives, the download, the
/// decoded input, the stems as they are encoded); the storage then *keeps* them and answers
/// with a location the job records: a path in the shared folder (``FolderStorage``), or
/// `s3://bucket/key` in an object store (``ObjectStorage``), where workers' folders are local
/// scratch and nothing is shared but the bucket.
public protocol JobStorage: Sendable {
    /// Where the API streams an upload to before it is validated.
    func uploadPath(_ id: String) -> URL
    /// Keeps the validated upload at ``uploadPath(_:)``; returns its location.
    func keepUpload(_ id: String) async throws -> String
    /// A local path with the upload's bytes (fetched into the work folder if need be).
    func fetchUpload(_ location: String, job id: String) async throws -> String

    /// The job's local work folder: download, decoded input, separation checkpoint.
    func workDirectory(_ id: String) -> URL
    /// The local folder the separator writes stems (and their partial files) into.
    func stemsDirectory(_ id: String) -> URL
    /// Keeps finished stems from ``stemsDirectory(_:)``; returns their locations, in order.
    func keepStems(_ files: [URL], job id: String) async throws -> [String]
    /// Whether a kept stem is still there (a finished job's stems reused for the same audio).
    func exists(_ location: String) async -> Bool
    /// A copy of a kept stem as job `id`'s own (its original expires with its own job).
    func copyStem(_ location: String, job id: String) async throws -> String

    /// Saves the separation's checkpoint (the work folder's `checkpoint.bin` and the partial
    /// stems) where another worker finds it. Cheap when nothing changed; called every second.
    func saveCheckpoint(job id: String) async throws
    /// Puts the latest saved checkpoint into the local folders, before a separation starts.
    func restoreCheckpoint(job id: String) async throws

    /// A URL clients fetch a stem from directly (presigned, or a CDN's); nil when the API serves it.
    func directURL(_ location: String) -> String?

    /// Removes the job's work files, local and saved (the job finished or failed).
    func removeWork(_ id: String) async
    /// Removes everything the job left (expiry, cancellation).
    func removeAll(_ job: Job) async
}

extension JobStorage {
    /// The checkpoint file inside the work folder.
    public func checkpointPath(_ id: String) -> URL { workDirectory(id).appendingPathComponent("checkpoint.bin") }
}

/// ``JobStorage`` in a folder (local, or mounted on every machine): `uploads/ID`, `work/ID/`,
/// `stems/ID/`. Locations are the files' paths; the folder itself is the shared state, so
/// keeping and checkpointing move nothing.
public struct FolderStorage: JobStorage {
    public let root: URL

    public init(root: URL) { self.root = root }

    public func uploadPath(_ id: String) -> URL { root.appendingPathComponent("uploads/\(id)") }
    public func keepUpload(_ id: String) async throws -> String { uploadPath(id).path }
    public func fetchUpload(_ location: String, job id: String) async throws -> String {
        guard FileManager.default.fileExists(atPath: location) else {
            throw StemifyError(.internalError, "the uploaded file is no longer stored", detail: "missing upload \(location)")
        }
        return location
    }

    public func workDirectory(_ id: String) -> URL { root.appendingPathComponent("work/\(id)") }
    public func stemsDirectory(_ id: String) -> URL { root.appendingPathComponent("stems/\(id)") }
    public func keepStems(_ files: [URL], job id: String) async throws -> [String] { files.map(\.path) }
    public func exists(_ location: String) async -> Bool { FileManager.default.fileExists(atPath: location) }

    public func copyStem(_ location: String, job id: String) async throws -> String {
        let fm = FileManager.default
        let dest = stemsDirectory(id).appendingPathComponent(URL(fileURLWithPath: location).lastPathComponent)
        try fm.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? fm.removeItem(at: dest)
        try fm.copyItem(atPath: location, toPath: dest.path)
        return dest.path
    }

    public func saveCheckpoint(job id: String) async throws {}
    public func restoreCheckpoint(job id: String) async throws {}
    public func directURL(_ location: String) -> String? { nil }

    public func removeWork(_ id: String) async {
        try? FileManager.default.removeItem(at: workDirectory(id))
    }

    public func removeAll(_ job: Job) async {
        let fm = FileManager.default
        try? fm.removeItem(at: stemsDirectory(job.id))
        try? fm.removeItem(at: workDirectory(job.id))
        if case let .upload(path, _) = job.input { try? fm.removeItem(atPath: path) }
    }
}
