public import Foundation

/// Songs submitted together: one job each, in the order they were sent. The queue keeps the
/// batch beside its jobs; a job cancelled or expired on its own leaves its place in the batch.
public struct Batch: Codable, Sendable, Equatable {
    public struct Song: Codable, Sendable, Equatable {
        public var jobID: String
        /// The uploaded file's name or the link, as the client sent it (shown, never used as a path).
        public var name: String

        public init(jobID: String, name: String) {
            self.jobID = jobID
            self.name = name
        }

        enum CodingKeys: String, CodingKey { case jobID = "job_id", name }
    }

    public var id: String
    /// As a job's ``Job/owner``.
    public var owner: String
    public var createdAt: Date
    public var songs: [Song]

    public init(id: String, owner: String, createdAt: Date, songs: [Song]) {
        self.id = id
        self.owner = owner
        self.createdAt = createdAt
        self.songs = songs
    }

    /// The songs as the queue stores them (one JSON text column or hash field).
    func songsJSON() throws -> String { String(decoding: try JSONEncoder().encode(songs), as: UTF8.self) }

    /// A stored batch; its songs must decode, or the row is an error rather than an empty batch.
    init(id: String, client: String, createdAt: Double, songs: String) throws {
        do {
            self.songs = try JSONDecoder().decode([Song].self, from: Data(songs.utf8))
        } catch {
            throw StemifyError(.internalError, "a stored batch cannot be read", detail: "batch \(id): songs do not decode: \(error)")
        }
        self.id = id
        owner = client
        self.createdAt = Date(timeIntervalSince1970: createdAt)
    }

    /// The table of both SQL backends; migration 2 of each.
    static func schema(real: String) -> String {
        """
        CREATE TABLE batches (id TEXT PRIMARY KEY, client TEXT NOT NULL, created_at \(real) NOT NULL, songs TEXT NOT NULL);
        CREATE INDEX batches_by_created ON batches (created_at)
        """
    }
}

extension JobQueue {
    /// Removes batches created more than `age` seconds ago none of whose jobs remain (their jobs
    /// expire on their own, after they finish); returns their ids.
    public func expireBatches(olderThan age: Double) async throws -> [String] {
        var removed: [String] = []
        for batch in try await batches(createdBefore: Date().timeIntervalSince1970 - age) {
            var anyLeft = false
            for song in batch.songs where try await job(id: song.jobID) != nil {
                anyLeft = true
                break
            }
            if !anyLeft {
                try await removeBatch(id: batch.id)
                removed.append(batch.id)
            }
        }
        return removed
    }
}
