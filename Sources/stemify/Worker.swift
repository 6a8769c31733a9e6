import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import StemifyCore
import UnixSignals

/// `stemify worker`: separations only, against the shared queue (`queue_url`) and the shared
/// storage (`data_dir`, a folder every machine mounts). SIGTERM or SIGINT stops it gracefully:
/// the current separation stops at its next chunk and the job goes back to the queue with its
/// checkpoint, so another worker continues it.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run separation workers against the shared queue.")

    @Option(help: "YAML configuration file.")
    var config: String?

    @Option(help: "Shared folder for uploads, stems and checkpoints (default ./stemify-data).")
    var dataDir: String?

    @Option(help: "Workers in this process (default: the `workers` setting).")
    var workers: Int?

    func run() async throws {
        var c = try reportingErrors { try StemifyConfiguration.load(file: config) }
        if let dataDir { c.dataDirectory = dataDir }
        if let workers { c.workers = workers }
        guard c.workers > 0 else { throw CLIError("a worker process needs at least one worker (--workers)") }
        let level = Logger.Level(rawValue: c.logLevel) ?? .info
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        let logger = Logger(label: "stemify-worker")
        let services = try await StemifyServices.build(configuration: c, logger: logger, janitor: false)
        logger.info("worker started", metadata: ["workers": "\(c.workers)", "data_dir": "\(c.dataDirectory)",
                                                  "queue": "\(c.queueURL.map { $0.hasPrefix("postgres") ? "postgres" : $0.hasPrefix("redis") ? "redis" : $0 } ?? "sqlite")"])
        let group = ServiceGroup(configuration: .init(
            services: services.background.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.info("worker stopped")
    }
}
