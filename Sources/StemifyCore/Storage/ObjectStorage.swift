public import Foundation
import NIOCore
import NIOFoundationCompat

/// ``JobStorage`` in an S3-compatible bucket, so the API and workers share no folder:
///
///     PREFIX/uploads/ID                     the validated upload
///     PREFIX/stems/ID/NAME.EXT              finished stems (Content-Type, -Disposition, Cache-Control set)
///     PREFIX/work/ID/checkpoint.bin         the latest separation checkpoint
///     PREFIX/work/ID/part/FILE/OFFSET       the partial stems, as the byte ranges each save added
///
/// Each process works in local scratch folders under `scratch` (`work/ID/`, `uploads/ID`).
/// Saving a checkpoint uploads only what the partial stems gained since the last save, then
/// the checkpoint itself, so the bucket never holds a checkpoint whose partial stems are
/// shorter than it says; a worker that takes the job over downloads both and continues.
public final class ObjectStorage: JobStorage, @unchecked Sendable {
    public let client: S3Client
    let scratch: URL
    /// Base URL of a CDN or public bucket serving the keys; presigned URLs when nil.
    let publicBaseURL: String?
    /// Lifetime of presigned stem URLs.
    let urlExpiry: Int

    /// Per job: the checkpoint file's modification date last saved and the bytes of each
    /// partial stem already in the bucket. Only the job's own heartbeat touches its entry.
    private var saved: [String: (modified: Date?, bytes: [String: Int])] = [:]
    private let lock = NSLock()

    public init(client: S3Client, scratch: URL, publicBaseURL: String? = nil, urlExpiry: Int = 3600) {
        self.client = client
        self.scratch = scratch
        self.publicBaseURL = publicBaseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.urlExpiry = urlExpiry
    }

    /// `s3://bucket/key` for a key of this bucket.
    func location(_ key: String) -> String { "s3://\(client.location.bucket)/\(key)" }

    /// The key of a location in this bucket; nil for anything else (a path left by a folder
    /// deployment, another bucket).
    public func key(_ location: String) -> String? {
        let head = "s3://\(client.location.bucket)/"
        guard location.hasPrefix(head) else { return nil }
        return String(location.dropFirst(head.count))
    }

    // MARK: - Uploads

    public func uploadPath(_ id: String) -> URL { scratch.appendingPathComponent("uploads/\(id)") }

    public func keepUpload(_ id: String) async throws -> String {
        let key = client.key("uploads/\(id)")
        try await client.upload(uploadPath(id), to: key, headers: [("content-type", "application/octet-stream")])
        try? FileManager.default.removeItem(at: uploadPath(id))
        return location(key)
    }

    public func fetchUpload(_ location: String, job id: String) async throws -> String {
        let local = workDirectory(id).appendingPathComponent("upload")
        try FileManager.default.createDirectory(at: workDirectory(id), withIntermediateDirectories: true)
        guard let key = key(location), try await client.download(key, to: local) else {
            throw StemifyError(.internalError, "the uploaded file is no longer stored", detail: "missing upload \(location)")
        }
        return local.path
    }

    // MARK: - Stems

    public func workDirectory(_ id: String) -> URL { scratch.appendingPathComponent("work/\(id)") }
    public func stemsDirectory(_ id: String) -> URL { workDirectory(id).appendingPathComponent("stems") }

    public func keepStems(_ files: [URL], job id: String) async throws -> [String] {
        var locations: [String] = []
        for file in files {
            let key = client.key("stems/\(id)/\(file.lastPathComponent)")
            try await client.upload(file, to: key, headers: StemHeaders.of(filename: file.lastPathComponent))
            try? FileManager.default.removeItem(at: file)
            locations.append(location(key))
        }
        return locations
    }

    public func exists(_ location: String) async -> Bool {
        guard let key = key(location) else { return false }
        return (try? await client.exists(key)) ?? false
    }

    public func copyStem(_ location: String, job id: String) async throws -> String {
        guard let source = key(location) else { throw StemifyError(.internalError, "a stored stem is missing", detail: location) }
        let key = client.key("stems/\(id)/\(URL(fileURLWithPath: source).lastPathComponent)")
        try await client.copy(source, to: key)
        return self.location(key)
    }

    public func directURL(_ location: String) -> String? {
        guard let key = key(location) else { return nil }
        if let publicBaseURL {
            return publicBaseURL + "/" + S3Location.encodedPath(key)
        }
        return client.presignedURL(key, expires: urlExpiry).absoluteString
    }

    // MARK: - Checkpoints

    private func workKey(_ id: String, _ name: String = "") -> String { client.key("work/\(id)/\(name)") }

    public func saveCheckpoint(job id: String) async throws {
        let fm = FileManager.default
        let checkpoint = checkpointPath(id)
        guard let modified = (try? fm.attributesOfItem(atPath: checkpoint.path))?[.modificationDate] as? Date else { return }
        let state = lock.withLock { saved[id] }
        if state?.modified == modified { return }
        // The checkpoint first: the separator synchronised the partial stems at least this far
        // before writing it, so what is uploaded below covers it.
        guard let data = fm.contents(atPath: checkpoint.path) else { return }
        var bytes = state?.bytes ?? [:]
        let stems = stemsDirectory(id)
        for name in (try? fm.contentsOfDirectory(atPath: stems.path)) ?? [] where name.hasSuffix(".partial.f32") {
            // Gone: the separation finished meanwhile (its stems are kept next) and there is nothing to save.
            guard let handle = try? FileHandle(forReadingFrom: stems.appendingPathComponent(name)) else { return }
            defer { try? handle.close() }
            var offset = bytes[name] ?? 0
            try handle.seek(toOffset: UInt64(offset))
            while let chunk = try handle.read(upToCount: client.partSize), !chunk.isEmpty {
                try await client.put(workKey(id, "part/\(name)/\(Self.offsetName(offset))"), .init(data: chunk))
                offset += chunk.count
                bytes[name] = offset
            }
        }
        try await client.put(workKey(id, "checkpoint.bin"), .init(data: data))
        lock.withLock { saved[id] = (modified, bytes) }
    }

    public func restoreCheckpoint(job id: String) async throws {
        let fm = FileManager.default
        let (work, stems) = (workDirectory(id), stemsDirectory(id))
        // Whatever this machine has is older than, or the same as, what the bucket has.
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: stems, withIntermediateDirectories: true)
        lock.withLock { saved[id] = nil }
        let keys = try await client.list(workKey(id))
        guard keys.contains(workKey(id, "checkpoint.bin")) else { return }
        // part/FILE/OFFSET → each file's segments in order.
        var segments: [String: [(offset: Int, key: String)]] = [:]
        for key in keys {
            let parts = key.dropFirst(workKey(id, "part/").count).split(separator: "/")
            guard key.hasPrefix(workKey(id, "part/")), parts.count == 2, parts[0].hasSuffix(".partial.f32"),
                  !parts[0].contains(".."), let offset = Int(parts[1]) else { continue }
            segments[String(parts[0]), default: []].append((offset, key))
        }
        var bytes: [String: Int] = [:]
        let piece = work.appendingPathComponent(".segment")
        for (name, list) in segments {
            let file = stems.appendingPathComponent(name)
            guard fm.createFile(atPath: file.path, contents: nil), let handle = FileHandle(forWritingAtPath: file.path) else {
                throw StemifyError(.internalError, "cannot write a partial stem", detail: file.path)
            }
            defer { try? handle.close() }
            var end = 0
            for segment in list.sorted(by: { $0.offset < $1.offset }) {
                // A gap means a save was cut short in a way this layout cannot repair: start over.
                guard segment.offset <= end, try await client.download(segment.key, to: piece) else {
                    try? fm.removeItem(at: work)
                    try fm.createDirectory(at: stems, withIntermediateDirectories: true)
                    return
                }
                let data = try Data(contentsOf: piece)
                try handle.seek(toOffset: UInt64(segment.offset))
                try handle.write(contentsOf: data)
                end = max(end, segment.offset + data.count)
            }
            bytes[name] = end
        }
        try? fm.removeItem(at: piece)
        // Last, so a checkpoint on disk always has its partial stems beside it.
        guard try await client.download(workKey(id, "checkpoint.bin"), to: checkpointPath(id)) else { return }
        lock.withLock { saved[id] = (nil, bytes) }
    }

    /// Offsets as fixed-width decimals, so keys list in byte order.
    package static func offsetName(_ offset: Int) -> String {
        let digits = String(offset)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }

    // MARK: - Removal

    public func removeWork(_ id: String) async {
        try? FileManager.default.removeItem(at: workDirectory(id))
        lock.withLock { saved[id] = nil }
        await deleteAll(under: workKey(id))
    }

    public func removeAll(_ job: Job) async {
        await removeWork(job.id)
        try? FileManager.default.removeItem(at: uploadPath(job.id))
        await deleteAll(under: client.key("stems/\(job.id)/"))
        if case let .upload(location, _) = job.input, let key = key(location) { try? await client.delete(key) }
    }

    private func deleteAll(under prefix: String) async {
        for key in (try? await client.list(prefix)) ?? [] { try? await client.delete(key) }
    }
}

/// The headers a stem is stored and served with, one definition for the bucket and the API.
public enum StemHeaders {
    public static let contentTypes = ["mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "json": "application/json"]
    /// A job's stems never change once written.
    public static let cacheControl = "public, max-age=86400, immutable"

    public static func contentType(_ format: String) -> String { contentTypes[format] ?? "application/octet-stream" }
    /// An attachment named `filename`; a name beyond printable ASCII also goes as RFC 6266's
    /// `filename*` (UTF-8), with an ASCII stand-in for old clients.
    public static func disposition(_ filename: String) -> String {
        let plain = String(String.UnicodeScalarView(filename.unicodeScalars.map {
            $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "\\" ? $0 : "_"
        }))
        guard plain != filename else { return "attachment; filename=\"\(filename)\"" }
        let token = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~")
        let encoded = filename.addingPercentEncoding(withAllowedCharacters: token) ?? plain
        return "attachment; filename=\"\(plain)\"; filename*=UTF-8''\(encoded)"
    }

    static func of(filename: String) -> [(String, String)] {
        let format = URL(fileURLWithPath: filename).pathExtension
        return [("content-type", contentType(format)), ("content-disposition", disposition(filename)), ("cache-control", cacheControl)]
    }
}
