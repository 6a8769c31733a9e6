import ArgumentParser
import Foundation
import Hummingbird
import Logging
import StemifyCore
import StemifyServer

/// `stemify serve`: the HTTP API, with in-process workers unless `--no-workers`.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP API (and in-process workers).")

    @Option(help: "Address to listen on (default 127.0.0.1).")
    var host: String?

    @Option(help: "Port (default 8080).")
    var port: Int?

    @Option(help: "YAML configuration file.")
    var config: String?

    @Option(help: "Folder for the jobs database, uploads and stems (default ./stemify-data).")
    var dataDir: String?

    @Option(help: "In-process workers (0: API only).")
    var workers: Int?

    @Flag(help: "Run only the API; `stemify worker` processes do the separations (shared queue and storage).")
    var noWorkers = false

    func run() async throws {
        var c = try reportingErrors { try StemifyConfiguration.load(file: config) }
        if let host { c.host = host }
        if let port { c.port = port }
        if let dataDir { c.dataDirectory = dataDir }
        if let workers { c.workers = workers }
        if noWorkers { c.workers = 0 }
        let level = Logger.Level(rawValue: c.logLevel) ?? .info
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        let logger = Logger(label: "stemify")
        logger.info("starting", metadata: [
            "host": "\(c.host)", "port": "\(c.port)", "data_dir": "\(c.dataDirectory)",
            "models": "\(c.modelDirectory.path)", "workers": "\(c.workers)",
        ])
        let app = try await buildApplication(configuration: c, logger: logger)
        try await app.runService()
    }
}
