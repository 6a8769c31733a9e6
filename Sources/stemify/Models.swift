import ArgumentParser
import Foundation
import StemifyCore

/// `stemify models`: what a model folder holds.
struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the models in a model folder.", subcommands: [List.self], defaultSubcommand: List.self)

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
        }
    }
}
