import Crypto
import DemucsKit
public import Foundation
public import Logging

/// A worker: claims jobs from the queue and runs them (download → decode → separate → encode).
///
/// The heavy work runs on a thread of its own; an async loop beside it renews the lease every
/// second, writes the latest progress, and notices cancellation (the job vanished or was taken),
/// which stops the separation before its next chunk.
public final class JobRunner: Sendable {
    public let id: String
    let queue: any JobQueue
    let models: ModelStore
    let configuration: StemifyConfiguration
    let logger: Logger
    let metrics: ServiceMetrics?

    public init(id: String = "worker-\(UUID().uuidString.prefix(8))", queue: any JobQueue, models: ModelStore,
                configuration: StemifyConfiguration, logger: Logger, metrics: ServiceMetrics? = nil) {
        self.id = id
        self.queue = queue
        self.models = models
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
    }

    /// Runs until the task is cancelled, waiting up to `idle` seconds for work when the queue is
    /// empty. Cancelled during a job, it stops the separation at its next chunk and hands the
    /// job back with its checkpoint (a graceful stop).
    public func run(idle: Double = 0.25) async {
        while !Task.isCancelled {
            do {
                if let job = try await queue.claim(worker: id) {
                    await process(job)
                } else {
                    await queue.waitForWork(timeout: idle)
                }
            } catch {
                logger.error("queue error", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Runs one claimed job to its end.
    public func process(_ job: Job) async {
        var log = logger
        log[metadataKey: "job.id"] = "\(job.id)"
        log[metadataKey: "job.model"] = "\(job.options.model)"
        log.info("job started", metadata: ["job.attempt": "\(job.attempts)"])
        let state = RunState()
        let started = Date()
        let jobLogger = log
        let work = Task { [self] in
            defer { state.finish() }
            return try await onThread { try self.execute(job, state: state, logger: jobLogger) }
        }
        // Heartbeat and progress every second until the work ends. (Awaiting the work in a task
        // group child would not do: a task's value cannot be cancelled, so the group would wait.)
        var lastBeat = Date.distantPast
        var stopping = false
        while !state.isFinished {
            try? await Task.sleep(for: .milliseconds(100))
            if Task.isCancelled && !stopping {
                stopping = true
                state.cancel()
            }
            guard Date().timeIntervalSince(lastBeat) >= 1, !state.isFinished else { continue }
            lastBeat = Date()
            let snapshot = state.snapshot()
            do {
                if try await !queue.heartbeat(id: job.id, worker: id) {
                    state.cancel()
                } else {
                    try await queue.update(id: job.id, worker: id, status: snapshot.status, progress: snapshot.progress, eta: snapshot.eta)
                }
            } catch {
                log.warning("heartbeat failed", metadata: ["error": "\(error)"])
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        switch await work.result {
        case let .success((stems, metricsRecord)):
            removeWork(job)
            do {
                try await queue.complete(id: job.id, worker: id, stems: stems, metrics: metricsRecord)
                metrics?.recordFinished(model: job.options.model, seconds: elapsed, audioSeconds: metricsRecord.audioSeconds)
                log.info("job done", metadata: ["job.seconds": "\(Int(elapsed))", "job.cache_hit": "\(metricsRecord.cacheHit)"])
            } catch {
                log.error("cannot record completion", metadata: ["error": "\(error)"])
            }
        case let .failure(error):
            if state.isCancelled || (error as? SeparationError) == .cancelled {
                if stopping {
                    // Graceful stop: the next worker continues from the checkpoint.
                    // In a task of its own: this one is cancelled, and the release must still happen.
                    let (queue, worker) = (queue, id)
                    try? await Task { try await queue.release(id: job.id, worker: worker) }.value
                    log.info("job handed back")
                } else if (try? await queue.job(id: job.id)) == nil {
                    configuration.storage.removeAll(job)
                    log.info("job cancelled")
                } else {
                    // Another worker holds it now (this one missed its lease) and uses the work folder.
                    log.warning("job lost to another worker")
                }
                return
            }
            removeWork(job)
            let (code, message): (ErrorCode, String) = if let e = error as? StemifyError {
                (e.code, e.message)
            } else {
                (.separationFailed, "separation failed")
            }
            metrics?.recordFailure(code: code)
            try? await queue.fail(id: job.id, worker: id, code: code, message: message)
            // Unexpected errors carry details for the log only; the client sees the code.
            if let error = error as? StemifyError {
                log.info("job failed", metadata: ["error.code": "\(code)", "error.detail": "\(error.detail ?? "")"])
            } else {
                log.error("job failed", metadata: ["error.code": "\(code)", "error": "\(error)"])
            }
        }
    }

    /// The job's work, synchronous, on its own thread.
    func execute(_ job: Job, state: RunState, logger: Logger) throws -> ([StemFile], JobMetrics) {
        let fm = FileManager.default
        let workDir = workDirectory(job)
        let outDir = configuration.storage.stemsDirectory(job.id)
        try fm.createDirectory(at: workDir, withIntermediateDirectories: true)
        let started = Date()

        // Input: an upload on disk, or a video to download first.
        let inputPath: String
        switch job.input {
        case let .upload(path, _):
            inputPath = path
        case let .youtube(url):
            state.set(.downloading, 0)
            let youtube = YouTube(configuration: configuration)
            inputPath = try youtube.download(url, into: workDir)
        }
        if state.isCancelled { throw SeparationError.cancelled }

        state.set(.decoding, 0.02)
        let probe = try FFmpeg.probe(inputPath)
        if let d = probe.duration, d > configuration.maxDurationSeconds {
            throw StemifyError(.audioTooLong, "the audio is \(Int(d)) s long; the limit is \(Int(configuration.maxDurationSeconds)) s")
        }
        let raw = workDir.appendingPathComponent("input.wav").path
        try FFmpeg.decode(inputPath, probe: probe, to: raw)
        let source = try WAVFileSource(path: raw)
        let audioSeconds = Double(source.frameCount) / 44100
        if audioSeconds > configuration.maxDurationSeconds {
            throw StemifyError(.audioTooLong, "the audio is \(Int(audioSeconds)) s long; the limit is \(Int(configuration.maxDurationSeconds)) s")
        }

        // Same audio, same options: reuse the finished stems.
        let key = try dedupeKey(raw: raw, options: job.options)
        let cached = try blocking { try await self.queue.finishedJob(dedupeKey: key) }
        try blocking { try await self.queue.setDedupeKey(id: job.id, key: key) }
        if let cached, cached.stems.allSatisfy({ fm.fileExists(atPath: $0.file) }) {
            try fm.createDirectory(at: outDir, withIntermediateDirectories: true)
            var stems: [StemFile] = []
            for stem in cached.stems {
                let dest = outDir.appendingPathComponent(URL(fileURLWithPath: stem.file).lastPathComponent)
                try? fm.removeItem(at: dest)
                try fm.copyItem(atPath: stem.file, toPath: dest.path)
                var copy = stem
                copy.file = dest.path
                stems.append(copy)
            }
            return (stems, JobMetrics(processingSeconds: Date().timeIntervalSince(started), audioSeconds: audioSeconds,
                                      inputFormat: probe.format, outputBytes: stems.reduce(0) { $0 + $1.bytes }, cacheHit: true))
        }

        state.set(.separating, 0.05)
        let bag = try models.bag(job.options.model)
        // The shift offsets come from the audio and options, so a resumed or repeated run
        // draws the same ones.
        let seed = UInt64(key.prefix(16), radix: 16) ?? 0
        let separator = try TrackSeparator(
            bag: bag,
            separation: SeparationOptions(shifts: job.options.shifts, overlap: job.options.overlap, seed: seed),
            output: StemOutputOptions(format: job.options.outputFormat, clipMode: .shared, normalize: job.options.normalize,
                                      instrumental: job.options.removeVocals, mp3Bitrate: configuration.mp3Bitrate))
        let checkpoint = workDir.appendingPathComponent("checkpoint.bin")
        if let handle = FileHandle(forReadingAtPath: checkpoint.path) {
            // The separator reads the whole checkpoint; the log line needs only its header.
            let header = (try? handle.read(upToCount: 24)).map { [UInt8]($0) } ?? []
            try? handle.close()
            if let state = SeparationCheckpoint.progress(ofEncoded: header) {
                logger.info("job resumed", metadata: ["job.resumed_frames": "\(state.emitted)", "job.frames": "\(state.length)"])
            }
        }
        let separationStart = Date()
        let files = try separator.separate(source: source, into: outDir, progress: { p in
            // Separation is 5–90 % of the job; encoding the rest.
            let elapsed = Date().timeIntervalSince(separationStart)
            let eta = p.fraction > 0 ? elapsed * (1 - p.fraction) / p.fraction : nil
            state.set(p.fraction >= 1 ? .encoding : .separating, 0.05 + 0.85 * p.fraction, eta: eta)
        }, isCancelled: { state.isCancelled },
           checkpoint: checkpoint, checkpointInterval: configuration.checkpointInterval)
        let stems = try files.map { url -> StemFile in
            let bytes = (try fm.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
            return StemFile(name: url.deletingPathExtension().lastPathComponent, file: url.path,
                            format: job.options.outputFormat.rawValue, bytes: bytes, duration: audioSeconds)
        }
        return (stems, JobMetrics(processingSeconds: Date().timeIntervalSince(started), audioSeconds: audioSeconds,
                                  inputFormat: probe.format, outputBytes: stems.reduce(0) { $0 + $1.bytes }, cacheHit: false))
    }

    func workDirectory(_ job: Job) -> URL { configuration.storage.workDirectory(job.id) }

    private func removeWork(_ job: Job) {
        try? FileManager.default.removeItem(at: workDirectory(job))
    }

    private func dedupeKey(raw: String, options: JobOptions) throws -> String {
        var hasher = SHA256()
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: raw))
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        // Sorted keys: JSONEncoder's key order is otherwise not stable between runs.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        hasher.update(data: try encoder.encode(options))
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Runs async queue work from the worker's thread.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// Progress shared between the worker thread and its heartbeat loop.
final class RunState: @unchecked Sendable {
    private let lock = NSLock()
    private var status: JobStatus = .decoding
    private var progress = 0.0
    private var eta: Double?
    private var cancelled = false
    private var finished = false

    func set(_ status: JobStatus, _ progress: Double, eta: Double? = nil) {
        lock.withLock {
            self.status = status
            self.progress = max(self.progress, progress)
            self.eta = eta
        }
    }

    func snapshot() -> (status: JobStatus, progress: Double, eta: Double?) { lock.withLock { (status, progress, eta) } }
    func cancel() { lock.withLock { cancelled = true } }
    func finish() { lock.withLock { finished = true } }
    var isFinished: Bool { lock.withLock { finished } }
    var isCancelled: Bool { lock.withLock { cancelled } }
}
