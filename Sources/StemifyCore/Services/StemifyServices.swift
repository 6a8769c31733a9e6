import StemifyEngine
import Foundation
public import Logging
public import ServiceLifecycle

/// What a Stemify process runs, built in one place for `stemify serve` and `stemify worker`:
/// the queue `queue_url` names, the storage `storage_url` names (else the `data_dir` folder), the models of `model_path`, the
/// metrics, and this process's workers (none for an API-only process) with the expiry janitor.
public struct StemifyServices: Sendable {
    public let queue: any JobQueue
    public let storage: any JobStorage
    public let models: ModelStore
    public let metrics: ServiceMetrics
    public let runners: [JobRunner]
    /// The workers and the janitor, for a ServiceGroup or an Application.
    public let background: [any Service]

    /// - Parameters:
    ///   - janitor: whether this process removes expired jobs (the API does; workers need not).
    public static func build(configuration c: StemifyConfiguration, logger: Logger, janitor: Bool) async throws -> StemifyServices {
        try FileManager.default.createDirectory(atPath: c.dataDirectory, withIntermediateDirectories: true)
        let queue = try await c.openQueue(logger: logger)
        let storage = try await c.openStorage()
        let models = ModelStore(
            directory: c.modelDirectory,
            downloader: c.modelDownload ? ModelDownloader(huggingFaceBase: c.modelHuggingFaceURL, legacyBase: c.modelLegacyURL, mirror: c.modelMirrorURL) : nil)
        let metrics = ServiceMetrics()
        // OpenBLAS and the engine's own loops share one pool per process.
        EngineThreads.set(c.threads)
        EngineThreads.setMaxLanes(c.lanes)
        InstructionSet.select(c.instructionSet)
        try MatrixKernels.load()
        // Runners are named HOST-PID-N so logs and leases say where a job runs.
        let host = ProcessInfo.processInfo.hostName, pid = ProcessInfo.processInfo.processIdentifier
        let runners = (0..<c.workers).map { i in
            JobRunner(id: "\(host)-\(pid)-\(i)", queue: queue, models: models, storage: storage, configuration: c, logger: logger, metrics: metrics)
        }
        var background: [any Service] = [WorkerService(runners: runners)]
        if janitor { background.append(JanitorService(queue: queue, storage: storage, ttl: c.resultTTLSeconds, logger: logger)) }
        return StemifyServices(queue: queue, storage: storage, models: models, metrics: metrics, runners: runners, background: background)
    }
}

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

/// Removes finished jobs and their files after `result_ttl`.
struct JanitorService: Service {
    let queue: any JobQueue
    let storage: any JobStorage
    let ttl: Double
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    for job in try await queue.expire(olderThan: ttl) {
                        await storage.removeAll(job)
                        logger.info("job expired", metadata: ["job.id": "\(job.id)"])
                    }
                    for id in try await queue.expireBatches(olderThan: ttl) {
                        logger.info("batch expired", metadata: ["batch.id": "\(id)"])
                    }
                } catch {
                    logger.warning("expiry failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(60))
            }
        }
    }
}
