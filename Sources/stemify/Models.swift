import ArgumentParser
import Foundation
import StemifyCore

/// `stemify models`: what a model folder holds.
struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, download and verify models in a model folder.", subcommands: [List.self, Pull.self, Verify.self],
        defaultSubcommand: List.self)

    struct List: ParsableCommand {
        @Option(help: "Model folder. Default: $DEMUCS_MODEL_PATH.")
        var repo: String?

        func run() throws {
            guard let path = repo ?? ProcessInfo.processInfo.environment["DEMUCS_MODEL_PATH"] else {
                throw CLIError("no model folder: pass --repo DIR or set DEMUCS_MODEL_PATH")
            }
            let listing = ModelRepository(directory: URL(fileURLWithPath: path)).list()
            print("Bag of models:\n    " + listing.bags.joined(separator: "\n    "))
            print("Single models:\n    " + listing.singles.joined(separator: "\n    "))
            print("Configured models (checkpoint + YAML):\n    " + listing.configured.joined(separator: "\n    "))
        }
    }
}

/// The model folder from `--repo` or the environment.
func modelFolder(_ repo: String?) throws -> URL {
    guard let path = repo ?? ProcessInfo.processInfo.environment["DEMUCS_MODEL_PATH"] else {
        throw CLIError("no model folder: pass --repo DIR or set DEMUCS_MODEL_PATH")
    }
    return URL(fileURLWithPath: path)
}

extension Models {
    /// `stemify models pull NAME`.
    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download a published model (HuggingFace first, then the legacy URLs).")

        @Option(help: "Model folder. Default: $DEMUCS_MODEL_PATH.")
        var repo: String?

        @Argument(help: "Model name, e.g. htdemucs.")
        var name: String

        func run() throws {
            let c = try reportingErrors { try StemifyConfiguration.load(file: nil) }
            let downloader = ModelDownloader(huggingFaceBase: c.modelHuggingFaceURL, legacyBase: c.modelLegacyURL, mirror: c.modelMirrorURL)
            try reportingErrors { try downloader.pull(name, into: try modelFolder(repo)) { print("downloaded \($0)") } }
            print("\(name) is ready")
        }
    }

    /// `stemify models verify`.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check the sha256 prefix in every SIG-CHECKSUM.th file name.")

        @Option(help: "Model folder. Default: $DEMUCS_MODEL_PATH.")
        var repo: String?

        func run() throws {
            let bad = try ModelDownloader().verify(directory: try modelFolder(repo))
            if bad.isEmpty {
                print("all checksums match")
            } else {
                print("checksum mismatch: " + bad.joined(separator: ", "))
                throw ExitCode(1)
            }
        }
    }
}
