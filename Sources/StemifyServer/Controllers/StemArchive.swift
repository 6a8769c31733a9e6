import Foundation
import Logging
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import AsyncHTTPClient
import _NIOFileSystem
import StemifyCore

/// Stems as one ZIP response (a job's, a batch's), written while the stems are read from the
/// folder or the bucket: no copy of the archive is made, on disk or in memory.
struct StemArchive: Sendable {
    struct Entry: Sendable {
        /// The path inside the archive.
        var name: String
        var stem: StemFile
    }

    let storage: any JobStorage

    func response(_ entries: [Entry], filename: String, logger: Logger) -> Response {
        let storage = self.storage
        let body = ResponseBody { writer in
            var zip = ZipStream()
            for entry in entries {
                try await writer.write(ByteBuffer(bytes: zip.begin(entry.name)))
                do {
                    try await Self.forEachChunk(of: entry.stem.file, storage: storage) { chunk in
                        try chunk.withUnsafeReadableBytes { try zip.append($0) }
                        try await writer.write(chunk)
                    }
                } catch {
                    // The headers are gone: the client gets a truncated archive, which every unzip reports.
                    logger.error("stem archive failed", metadata: ["entry": "\(entry.name)", "error": "\(error)"])
                    throw error
                }
                try await writer.write(ByteBuffer(bytes: zip.end()))
            }
            try await writer.write(ByteBuffer(bytes: zip.finish()))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [
            .contentType: "application/zip", .cacheControl: "no-store",
            .contentDisposition: StemHeaders.disposition(filename),
        ], body: body)
    }

    /// Reads a kept stem in 1 MiB chunks, from the folder or the bucket.
    static func forEachChunk(of location: String, storage: any JobStorage, _ body: (ByteBuffer) async throws -> Void) async throws {
        if let objects = storage as? ObjectStorage, let key = objects.key(location) {
            let answer = try await objects.client.get(key)
            guard answer.status == .ok else {
                throw StemifyError(.unavailable, "the stem storage is unavailable", detail: "GET \(key): \(answer.status)")
            }
            for try await chunk in answer.body { try await body(chunk) }
            return
        }
        try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(location)) { handle in
            for try await chunk in handle.readChunks(chunkLength: .mebibytes(1)) { try await body(chunk) }
        }
    }
}

/// A job's song (its file name or link) as a folder or file name.
package func zipFolderName(_ job: Job) -> String {
    switch job.input {
    case let .upload(_, filename): zipFolderName(filename)
    case let .youtube(url): zipFolderName(url)
    }
}

/// A stem's file name as people keep it: `Artist - Song (vocals).mp3`, for downloads and archives.
package func stemFileName(_ song: String, _ stem: StemFile) -> String { "\(song) (\(stem.name)).\(stem.format)" }

/// A song's name as a folder: its file name without the extension (or the link), with
/// anything a file system or an unzip could take for a path or a device turned into `_`.
package func zipFolderName(_ name: String) -> String {
    var base = name
    if let dot = base.lastIndex(of: "."), dot != base.startIndex, !base.hasPrefix("http") { base = String(base[..<dot]) }
    let cleaned = String(base.unicodeScalars.map { s -> Character in
        s.value < 0x20 || s.value == 0x7F || "/\\:*?\"<>|".unicodeScalars.contains(s) ? "_" : Character(s)
    })
    let trimmed = cleaned.trimmingCharacters(in: CharacterSet(charactersIn: ". ")).prefix(80)
    return trimmed.isEmpty ? "song" : String(trimmed)
}
