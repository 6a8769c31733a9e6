public import Foundation
import Crypto

/// Uploads in progress (the tus 1.0 protocol's state, kept apart from HTTP): each is a data
/// file whose size is its offset, beside a small JSON record of its declared length, owner and
/// file name, under `directory` (the API process's data folder). An upload expires `expiry`
/// seconds after its last byte arrived; a finished one is taken by the job it becomes.
///
/// With several API processes behind a balancer, an upload lives where it was created: route
/// `/api/uploads/ID` to one process, or give them one shared data folder.
public actor ResumableUploads {
    public struct Upload: Codable, Sendable, Equatable {
        public var id: String
        /// Bytes declared at creation.
        public var length: Int
        /// Its owner (API key or owner token, never an address); nobody else sees it.
        public var client: String
        public var filename: String
        public var createdAt: Date
        /// Bytes stored so far (the data file's size; not in the record).
        public var offset = 0
        /// When it is removed unless more bytes arrive (or a job takes it).
        public var expiresAt = Date.distantFuture

        enum CodingKeys: String, CodingKey { case id, length, client, filename, createdAt = "created_at" }

        public var isComplete: Bool { offset == length }
    }

    let directory: URL
    let expiry: Double
    /// Uploads a PATCH is writing to now: a second one at the same time is refused.
    private var writing: Set<String> = []
    private var lastSweep = Date.distantPast

    public init(directory: URL, expiry: Double) {
        self.directory = directory
        self.expiry = expiry
    }

    private func dataPath(_ id: String) -> URL { directory.appendingPathComponent(id) }
    private func recordPath(_ id: String) -> URL { directory.appendingPathComponent("\(id).json") }

    /// A new, empty upload of `length` bytes, at most `limit`.
    public func create(length: Int, limit: Int, client: String, filename: String?) throws -> Upload {
        guard length > 0 else { throw StemifyError(.emptyFile, "Upload-Length must be positive") }
        guard length <= limit else { throw StemifyError(.fileTooLarge, "the upload exceeds \(limit / (1024 * 1024)) MB") }
        sweepIfDue()
        let id = UUID().uuidString.lowercased()
        // A file name is only ever shown back; no path from it is used.
        let name = String((filename ?? "upload").split(separator: "/").last?.prefix(255) ?? "upload")
        var upload = Upload(id: id, length: length, client: client, filename: name.isEmpty ? "upload" : name, createdAt: Date())
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try JSONEncoder().encode(upload).write(to: recordPath(id), options: .atomic)
            guard FileManager.default.createFile(atPath: dataPath(id).path, contents: nil) else {
                throw CocoaError(.fileWriteUnknown)
            }
        } catch {
            throw StemifyError(.internalError, "cannot store the upload", detail: "creating upload \(id) in \(directory.path): \(error)")
        }
        upload.expiresAt = Date().addingTimeInterval(expiry)
        return upload
    }

    /// The upload `id` as `client` sees it.
    public func upload(_ id: String, client: String) throws -> Upload {
        let notFound = StemifyError(.uploadNotFound, "no upload has this id")
        // Ids are ours (lowercase UUIDs): anything else names no file.
        guard UUID(uuidString: id) != nil, id == id.lowercased(),
              let data = try? Data(contentsOf: recordPath(id)),
              var upload = try? JSONDecoder().decode(Upload.self, from: data),
              upload.client == client,
              let attributes = try? FileManager.default.attributesOfItem(atPath: dataPath(id).path),
              let size = attributes[.size] as? Int, let modified = attributes[.modificationDate] as? Date
        else { throw notFound }
        upload.offset = size
        upload.expiresAt = modified.addingTimeInterval(expiry)
        if upload.expiresAt < Date() {
            remove(id)
            throw StemifyError(.uploadExpired, "the upload expired; start a new one")
        }
        return upload
    }

    /// Claims the upload for one PATCH at `offset` (its current one): the caller writes through the
    /// returned ``Chunk`` and ends with ``finish(_:expectedDigest:)`` or ``abandon(_:)``.
    /// `checksum` names the algorithm of the request's `Upload-Checksum`, if any.
    public func begin(_ id: String, client: String, offset: Int, checksum: String? = nil) throws -> Chunk {
        let upload = try upload(id, client: client)
        guard !writing.contains(id) else {
            throw StemifyError(.uploadOffsetMismatch, "another request is writing to this upload; ask for its offset (HEAD) and continue from there")
        }
        guard offset == upload.offset else {
            throw StemifyError(.uploadOffsetMismatch, "Upload-Offset is \(offset) but the upload has \(upload.offset) bytes; continue from \(upload.offset)")
        }
        let handle: FileHandle
        do {
            handle = try FileHandle(forWritingTo: dataPath(id))
            try handle.seek(toOffset: UInt64(offset))
        } catch {
            throw StemifyError(.internalError, "cannot store the upload", detail: "opening upload \(id): \(error)")
        }
        writing.insert(id)
        return Chunk(upload: upload, handle: handle, algorithm: checksum)
    }

    /// Keeps the chunk's bytes: all of them when `expectedDigest` (of the algorithm named at
    /// ``begin(_:client:offset:checksum:)``) matches or none was sent; none when it does not.
    /// Returns the upload with its new offset.
    public func finish(_ chunk: Chunk, expectedDigest: [UInt8]?) throws -> Upload {
        defer { end(chunk) }
        try chunk.flush()
        if let expectedDigest, chunk.digest() != expectedDigest {
            chunk.truncate()
            throw StemifyError(.checksumMismatch, "the chunk's checksum does not match its bytes; send it again")
        }
        var upload = chunk.upload
        upload.offset = chunk.offset
        upload.expiresAt = Date().addingTimeInterval(expiry)
        return upload
    }

    /// A chunk cut short (the connection dropped): its bytes stay, so the client resumes after
    /// them, unless it declared a checksum they can no longer be checked against. A `refused`
    /// chunk (it went past the declared length) keeps none, however many of its buffers fit.
    public func abandon(_ chunk: Chunk, refused: Bool = false) {
        try? chunk.flush()
        if refused || chunk.isChecksummed { chunk.truncate() }
        end(chunk)
    }

    private func end(_ chunk: Chunk) {
        try? chunk.handle.close()
        writing.remove(chunk.upload.id)
    }

    /// Removes the upload (tus termination, or expiry).
    public func terminate(_ id: String, client: String) throws {
        _ = try upload(id, client: client)
        guard !writing.contains(id) else {
            throw StemifyError(.uploadOffsetMismatch, "a request is still writing to this upload")
        }
        remove(id)
    }

    /// Moves a finished upload to `destination` for the job it becomes; it is no longer an upload.
    public func take(_ id: String, client: String, to destination: URL) throws -> Upload {
        let upload = try upload(id, client: client)
        guard !writing.contains(id), upload.isComplete else {
            throw StemifyError(.uploadIncomplete, "the upload has \(upload.offset) of \(upload.length) bytes; finish it first")
        }
        do {
            try? FileManager.default.removeItem(at: destination)
            try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.moveItem(at: dataPath(id), to: destination)
        } catch {
            throw StemifyError(.internalError, "cannot store the upload", detail: "moving upload \(id): \(error)")
        }
        try? FileManager.default.removeItem(at: recordPath(id))
        return upload
    }

    /// Returns a taken upload whose job was not made after all (another song of its batch
    /// failed): the same id resumes or becomes a job again, its expiry counted from now.
    public func putBack(_ upload: Upload, from source: URL) {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try JSONEncoder().encode(upload).write(to: recordPath(upload.id), options: .atomic)
            try? FileManager.default.removeItem(at: dataPath(upload.id))
            try FileManager.default.moveItem(at: source, to: dataPath(upload.id))
            try FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: dataPath(upload.id).path)
        } catch {
            // Nothing the client can do differently: the id is then unknown and it uploads again.
            remove(upload.id)
        }
    }

    private func remove(_ id: String) {
        try? FileManager.default.removeItem(at: dataPath(id))
        try? FileManager.default.removeItem(at: recordPath(id))
    }

    /// Removes expired uploads, at most once a minute (on creation: no timer of its own).
    private func sweepIfDue() {
        guard Date().timeIntervalSince(lastSweep) > 60 else { return }
        lastSweep = Date()
        sweep()
    }

    /// Removes every upload whose last byte is older than the expiry.
    public func sweep() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let now = Date()
        for name in names where name.hasSuffix(".json") {
            let id = String(name.dropLast(5))
            guard !writing.contains(id) else { continue }
            let modified = (try? FileManager.default.attributesOfItem(atPath: dataPath(id).path))?[.modificationDate] as? Date
            if (modified ?? .distantPast).addingTimeInterval(expiry) < now { remove(id) }
        }
    }

    /// One PATCH's bytes on their way to the upload's file, with the running digests a checksum
    /// header may ask for.
    public final class Chunk: @unchecked Sendable {
        public let upload: Upload
        let handle: FileHandle
        let start: Int
        public private(set) var offset: Int
        private var buffer: [UInt8] = []
        private var hasher: Hasher?

        /// A running digest of the algorithm `Upload-Checksum` named.
        enum Hasher {
            case sha1(Insecure.SHA1), md5(Insecure.MD5), sha256(SHA256)

            init?(_ algorithm: String) {
                switch algorithm {
                case "sha1": self = .sha1(Insecure.SHA1())
                case "md5": self = .md5(Insecure.MD5())
                case "sha256": self = .sha256(SHA256())
                default: return nil
                }
            }

            mutating func update(_ bytes: [UInt8]) {
                switch self {
                case var .sha1(h): h.update(data: bytes); self = .sha1(h)
                case var .md5(h): h.update(data: bytes); self = .md5(h)
                case var .sha256(h): h.update(data: bytes); self = .sha256(h)
                }
            }

            var digest: [UInt8] {
                switch self {
                case let .sha1(h): Array(h.finalize())
                case let .md5(h): Array(h.finalize())
                case let .sha256(h): Array(h.finalize())
                }
            }
        }

        init(upload: Upload, handle: FileHandle, algorithm: String?) {
            self.upload = upload
            self.handle = handle
            self.start = upload.offset
            self.offset = upload.offset
            self.hasher = algorithm.flatMap(Hasher.init)
        }

        /// The algorithms `Upload-Checksum` may name (the tus checksum extension).
        public static let algorithms = ["sha1", "md5", "sha256"]

        var isChecksummed: Bool { hasher != nil }

        /// Appends `bytes`; more than the declared length is refused (nothing of them kept).
        public func write(_ bytes: some Collection<UInt8>) throws {
            guard offset + bytes.count <= upload.length else {
                throw StemifyError(.uploadLengthExceeded, "the chunk goes past the declared Upload-Length of \(upload.length) bytes")
            }
            let start = buffer.count
            buffer.append(contentsOf: bytes)
            hasher?.update(Array(buffer[start...]))
            offset += bytes.count
            if buffer.count >= 1 << 20 { try flush() }
        }

        func flush() throws {
            guard !buffer.isEmpty else { return }
            do { try handle.write(contentsOf: buffer) } catch {
                throw StemifyError(.internalError, "cannot store the upload", detail: "writing upload \(upload.id): \(error)")
            }
            buffer.removeAll(keepingCapacity: true)
        }

        func digest() -> [UInt8]? { hasher?.digest }

        func truncate() {
            try? handle.truncate(atOffset: UInt64(start))
            offset = start
        }
    }
}
