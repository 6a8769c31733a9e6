import Foundation
import Crypto

/// SHA-256 as lowercase hex: key and token hashes, idempotency fingerprints, checksums.
public enum Digest {
    public static func hex(_ text: String) -> String { hex(bytes: SHA256.hash(data: Data(text.utf8))) }

    /// A file's digest, read 1 MiB at a time.
    public static func hex(file path: String) throws -> String {
        var hasher = SHA256()
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hex(bytes: hasher.finalize())
    }

    static func hex(bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
