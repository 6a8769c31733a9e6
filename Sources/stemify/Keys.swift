import ArgumentParser
import Foundation
import StemifyCore

/// `stemify keys`: the API keys a server with `api_keys: on` accepts.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API keys (used when api_keys is on).", subcommands: [Create.self, List.self, Revoke.self],
        defaultSubcommand: List.self)

    /// Where the keys live: the same settings `stemify serve` reads.
    struct Location: ParsableArguments {
        @Option(help: "YAML configuration file (its data_dir or keys_file). Environment variables apply as for serve.")
        var config: String?

        func store() throws -> APIKeyStore {
            let configuration = try reportingErrors { try StemifyConfiguration.load(file: config) }
            return APIKeyStore(path: configuration.resolvedKeysFile)
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key; it is printed once and only its hash is kept.")

        @Option(help: "A name to recognise the key by.")
        var name: String
        @Option(help: "Songs per rate_limit_period (0: unlimited). Default: rate_limit.")
        var quota: Int?
        @Option(help: "Comma-separated scopes: submit, read, admin.")
        var scope = "submit,read"
        @OptionGroup var location: Location

        func run() throws {
            var scopes: [KeyScope] = []
            for word in scope.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard let s = KeyScope(rawValue: word) else { throw CLIError("unknown scope '\(word)': use submit, read, admin") }
                scopes.append(s)
            }
            let (key, secret) = try reportingErrors { try location.store().create(name: name, scopes: scopes, quota: quota) }
            print(secret)
            FileHandle.standardError.write(Data("key \(key.id) '\(key.name)' (\(key.scopes.map(\.rawValue).joined(separator: ","))): keep the line above, it is not stored\n".utf8))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every key: id, name, scopes, quota, state.")
        @OptionGroup var location: Location

        func run() throws {
            for key in try reportingErrors({ try location.store().all() }) {
                let quota = key.quota.map { $0 == 0 ? "unlimited" : "\($0)/period" } ?? "rate_limit"
                let state = key.revokedAt.map { "revoked \(ISO8601DateFormatter().string(from: $0))" } ?? "active"
                print("\(key.id)\t\(key.name)\t\(key.scopes.map(\.rawValue).joined(separator: ","))\t\(quota)\t\(state)")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id: requests with it get 401 from then on.")
        @Argument(help: "The key's id (key_…), from 'stemify keys list'.")
        var id: String
        @OptionGroup var location: Location

        func run() throws {
            let key = try reportingErrors { try location.store().revoke(id: id) }
            print("revoked \(key.id) '\(key.name)'")
        }
    }
}
