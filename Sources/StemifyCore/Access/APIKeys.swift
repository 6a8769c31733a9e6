public import Foundation
import Synchronization

/// What a key may do.
public enum KeyScope: String, Codable, Sendable, CaseIterable, Comparable {
    /// Create jobs, batches and uploads, cancel and delete one's own.
    case submit
    /// Read one's own jobs, batches, stems and exports; list them.
    case read
    /// Everything, on every owner's work.
    case admin

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// An API key as it is kept: its SHA-256, never the key, so a leaked file grants nothing.
public struct APIKey: Codable, Sendable, Equatable {
    /// Short public id (`key_…`): owner of what the key creates, shown in listings and logs.
    public var id: String
    public var name: String
    /// Lowercase hex SHA-256 of the whole key.
    public var hash: String
    public var scopes: [KeyScope]
    /// Songs per `rate_limit_period`; nil takes `rate_limit`, 0 is unlimited.
    public var quota: Int?
    public var createdAt: Date
    public var revokedAt: Date?

    enum CodingKeys: String, CodingKey { case id, name, hash, scopes, quota, createdAt = "created_at", revokedAt = "revoked_at" }

    /// The owner string of what this key creates.
    public var owner: String { "k:\(id)" }
}

/// The keys file (`keys_file`, default `DATA_DIR/keys.json`): written by `stemify keys`, read
/// by the server, which notices changes (a new or revoked key) without a restart.
public final class APIKeyStore: Sendable {
    public let path: String
    private let cache = Mutex<(modified: Date, size: Int, byHash: [String: APIKey])?>(nil)

    public init(path: String) { self.path = path }

    /// The prefix of every key, so leaked ones are recognisable (secret scanners).
    public static let keyPrefix = "sk_"

    /// The SHA-256 of `secret`, lowercase hex: what is stored and compared.
    public static func digest(_ secret: String) -> String { Digest.hex(secret) }

    /// `count` random bytes as base64url without padding.
    public static func randomToken(bytes count: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Every key in the file, revoked ones included; none when there is no file.
    public func all() throws -> [APIKey] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode([APIKey].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw StemifyError(.internalError, "the API keys cannot be read", detail: "\(path): \(error)")
        }
    }

    /// The live key whose secret is `secret`, or nil (unknown or revoked).
    public func key(secret: String) throws -> APIKey? {
        guard secret.hasPrefix(Self.keyPrefix), secret.count <= 200 else { return nil }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let modified = attributes?[.modificationDate] as? Date ?? .distantPast
        let size = attributes?[.size] as? Int ?? -1
        let byHash: [String: APIKey]
        if let cached = cache.withLock({ $0 }), cached.modified == modified, cached.size == size {
            byHash = cached.byHash
        } else {
            byHash = Dictionary(try all().map { ($0.hash, $0) }, uniquingKeysWith: { first, _ in first })
            cache.withLock { $0 = (modified, size, byHash) }
        }
        guard let key = byHash[Self.digest(secret)], key.revokedAt == nil else { return nil }
        return key
    }

    /// Adds a key; returns it with its secret, which is shown once and never stored.
    public func create(name: String, scopes: [KeyScope], quota: Int?) throws -> (key: APIKey, secret: String) {
        guard !name.isEmpty, name.count <= 100 else { throw StemifyError(.invalidOption, "a key's name is 1–100 characters") }
        guard !scopes.isEmpty else { throw StemifyError(.invalidOption, "a key needs at least one scope: submit, read, admin") }
        if let quota, quota < 0 { throw StemifyError(.invalidOption, "a quota is a number of songs, 0 for none") }
        let secret = Self.keyPrefix + Self.randomToken()
        let key = APIKey(id: "key_" + Self.randomToken(bytes: 9), name: name, hash: Self.digest(secret),
                         scopes: Array(Set(scopes)).sorted(), quota: quota, createdAt: Date(), revokedAt: nil)
        try write(try all() + [key])
        return (key, secret)
    }

    /// Revokes the key with this id (kept in the file, marked, so its jobs still name it).
    public func revoke(id: String) throws -> APIKey {
        var keys = try all()
        guard let index = keys.firstIndex(where: { $0.id == id }) else {
            throw StemifyError(.notFound, "no key '\(id.prefix(64))'")
        }
        if keys[index].revokedAt == nil { keys[index].revokedAt = Date() }
        try write(keys)
        return keys[index]
    }

    private func write(_ keys: [APIKey]) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let url = URL(fileURLWithPath: path)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try encoder.encode(keys).write(to: url, options: .atomic)
            // Hashes only, but nobody else needs to read them.
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        } catch {
            throw StemifyError(.internalError, "the API keys cannot be written", detail: "\(path): \(error)")
        }
    }
}
