import Foundation
public import Hummingbird
public import Logging
import ServiceLifecycle
public import StemifyCore

/// Everything `stemify serve` runs, built from its configuration; also what the tests start.
///
/// - Parameters:
///   - configuration: deployment settings.
///   - logger: the application's logger (JSON lines from `stemify serve`).
/// - Returns: the application, with in-process workers and the expiry janitor as services.
public func buildApplication(configuration: StemifyConfiguration, logger: Logger) async throws -> some ApplicationProtocol {
    try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
    let queue = try await configuration.openQueue(logger: logger)
    let models = configuration.modelStore()
    let metrics = ServiceMetrics()
    EngineThreads.set(configuration.threads)

    let router = Router(context: AppRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    StemifyController(queue: queue, models: models, configuration: configuration, metrics: metrics).addRoutes(to: router)
    JobsController(queue: queue, storage: configuration.storage).addRoutes(to: router)
    ServiceController(queue: queue, models: models, configuration: configuration, metrics: metrics).addRoutes(to: router)

    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "stemify"),
        logger: logger)
    let runners = configuration.makeRunners(queue: queue, models: models, logger: logger, metrics: metrics)
    app.addServices(WorkerService(runners: runners), JanitorService(queue: queue, configuration: configuration, logger: logger))
    return app
}

import DemucsKit

/// The workers of a process (`stemify serve` in-process, or `stemify worker`). On shutdown
/// (SIGTERM) each stops its separation at the next chunk and hands its job back.
public struct WorkerService: Service {
    let runners: [JobRunner]

    public init(runners: [JobRunner]) { self.runners = runners }

    public func run() async throws {
        // A service that returns stops the whole application; with no workers, wait for shutdown.
        if runners.isEmpty {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                for runner in runners { group.addTask { await runner.run() } }
            }
        }
    }
}

/// Removes finished jobs and their files after the configured time.
struct JanitorService: Service {
    let queue: any JobQueue
    let configuration: StemifyConfiguration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    for job in try await queue.expire(olderThan: configuration.resultTTLSeconds) {
                        configuration.storage.removeAll(job)
                        logger.info("job expired", metadata: ["job.id": "\(job.id)"])
                    }
                } catch {
                    logger.warning("expiry failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(60))
            }
        }
    }
}
