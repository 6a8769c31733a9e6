import Foundation
import StemifyCore
import StemifyTestSupport
import Testing

/// What every `JobStorage` promises, checked on the shared folder and on a bucket of the test
/// S3 server. Two instances play two machines: the same folder for `FolderStorage`, scratch
/// folders of their own for `ObjectStorage`.
@Suite("Job storage contract")
struct StorageContractTests {
    static func machines(_ kind: String) async throws -> (any JobStorage, any JobStorage) {
        let scratch = { FileManager.default.temporaryDirectory.appendingPathComponent("stemify-storage-\(UUID())") }
        switch kind {
        case "folder":
            let root = scratch()
            return (FolderStorage(root: root), FolderStorage(root: root))
        default:
            let (endpoint, url) = try freshBucket()
            var c = StemifyConfiguration()
            (c.storageURL, c.storageEndpoint, c.storageAccessKey, c.storageSecretKey) = (url, endpoint, "test", "test")
            c.dataDirectory = scratch().path
            let a = try await c.openStorage()
            c.dataDirectory = scratch().path
            return (a, try await c.openStorage())
        }
    }

    static func job(_ id: String, upload: String) -> Job {
        Job(id: id, status: .done, progress: 1, etaSeconds: nil, options: JobOptions(), input: .upload(path: upload, filename: "song.mp3"),
            owner: "test", createdAt: Date(), startedAt: nil, finishedAt: nil, errorCode: nil, errorMessage: nil,
            stems: [], metrics: nil, attempts: 1)
    }

    @Test("an upload kept by the API reaches a worker; stems kept by a worker reach the API; copies outlive their original",
          arguments: ["folder", "S3"])
    func files(_ kind: String) async throws {
        let (api, worker) = try await Self.machines(kind)
        let id = UUID().uuidString.lowercased()
        try FileManager.default.createDirectory(at: api.uploadPath(id).deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("the song".utf8).write(to: api.uploadPath(id))
        let upload = try await api.keepUpload(id)
        #expect(try String(contentsOfFile: try await worker.fetchUpload(upload, job: id), encoding: .utf8) == "the song")

        try FileManager.default.createDirectory(at: worker.stemsDirectory(id), withIntermediateDirectories: true)
        let files = ["vocals.wav", "drums.wav"].map { worker.stemsDirectory(id).appendingPathComponent($0) }
        for file in files { try Data(file.lastPathComponent.utf8).write(to: file) }
        let stems = try await worker.keepStems(files, job: id)
        #expect(stems.count == 2)
        for stem in stems { #expect(await api.exists(stem)) }
        let copy = try await worker.copyStem(stems[0], job: "other-\(id)")
        #expect(copy != stems[0])

        await api.removeAll(Self.job(id, upload: upload))
        for stem in stems { #expect(await !api.exists(stem)) }
        #expect(await api.exists(copy))
        await #expect(throws: StemifyError.self) { _ = try await worker.fetchUpload(upload, job: id) }
        await api.removeAll(Self.job("other-\(id)", upload: "/nonexistent"))
        #expect(await !api.exists(copy))
    }

    @Test("a checkpoint saved by one worker is where another restores it, until the work is removed", arguments: ["folder", "S3"])
    func checkpoints(_ kind: String) async throws {
        let (first, second) = try await Self.machines(kind)
        let id = UUID().uuidString.lowercased()
        for folder in [first.stemsDirectory(id), first.workDirectory(id)] {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        }
        let partial = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try partial.write(to: first.stemsDirectory(id).appendingPathComponent(".vocals.partial.f32"))
        try Data("state".utf8).write(to: first.checkpointPath(id))
        try await first.saveCheckpoint(job: id)

        try await second.restoreCheckpoint(job: id)
        #expect(try Data(contentsOf: second.checkpointPath(id)) == Data("state".utf8))
        #expect(try Data(contentsOf: second.stemsDirectory(id).appendingPathComponent(".vocals.partial.f32")) == partial)

        await second.removeWork(id)
        try await first.restoreCheckpoint(job: id)
        #expect(!FileManager.default.fileExists(atPath: first.checkpointPath(id).path))
    }
}
