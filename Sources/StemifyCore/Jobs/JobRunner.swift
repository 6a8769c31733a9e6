import Crypto
import StemifyEngine
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
    let storage: any JobStorage
    let configuration: StemifyConfiguration
    let logger: Logger
    let metrics: ServiceMetrics?

    public init(id: String = "worker-\(UUID().uuidString.prefix(8))", queue: any JobQueue, models: ModelStore,
                storage: any JobStorage, configuration: StemifyConfiguration, logger: Logger, metrics: ServiceMetrics? = nil) {
        self.id = id
        self.queue = queue
        self.models = models
        self.storage = storage
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
    }

    /// Runs until the task is cancelled, waiting up to `idle` seconds for work when the queue is
    /// empty. Cancelled during a job, it stops the separation at its next chunk and hands the
    /// job back with its checkpoint (a graceful stop); cancelled while claiming, it stops
    /// waiting for the queue's answer.
    public func run(idle: Double = 0.25) async {
        while !Task.isCancelled {
            do {
                if let job = try await abandoningOnCancel({ [queue, id] in try await queue.claim(worker: id) }) {
                    await process(job)
                } else {
                    await queue.waitForWork(timeout: idle)
                }
            } catch is CancellationError {
                return
            } catch {
                logger.error("queue error", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Runs one claimed job to its end: its stages beside a heartbeat that renews the lease
    /// every second, writes the latest progress and notices a cancelled or taken job.
    public func process(_ job: Job) async {
        var log = logger
        log[metadataKey: "job.id"] = "\(job.id)"
        log[metadataKey: "job.model"] = "\(job.options.model)"
        log.info("job started", metadata: ["job.attempt": "\(job.attempts)"])
        let state = RunState()
        let started = Date()
        let jobLogger = log
        let outcome = await withTaskGroup(of: Result<([StemFile], JobMetrics), any Error>?.self) { group in
            group.addTask {
                // A graceful stop (this task cancelled) stops the separation at its next chunk.
                await withTaskCancellationHandler {
                    do { return .success(try await self.stages(job, state: state, logger: jobLogger)) } catch { return .failure(error) }
                } onCancel: {
                    state.cancel()
                }
            }
            group.addTask {
                await self.heartbeat(job, state: state, logger: jobLogger)
                return nil
            }
            var outcome: Result<([StemFile], JobMetrics), any Error> = .failure(SeparationError.cancelled)
            for await result in group {
                guard let result else { continue }
                outcome = result
                group.cancelAll()
            }
            return outcome
        }
        let stopping = Task.isCancelled
        let elapsed = Date().timeIntervalSince(started)
        switch outcome {
        case let .success((stems, metricsRecord)):
            await storage.removeWork(job.id)
            do {
                try await persistently { try await self.queue.complete(id: job.id, worker: self.id, stems: stems, metrics: metricsRecord) }
                await announce(job.id)
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
                    // The latest checkpoint first (object storage), so it keeps all the work done.
                    let (queue, worker, storage) = (queue, id, storage)
                    try? await Task {
                        try? await storage.saveCheckpoint(job: job.id)
                        try await queue.release(id: job.id, worker: worker)
                    }.value
                    log.info("job handed back")
                } else if await isGone(job) {
                    await storage.removeAll(job)
                    log.info("job cancelled")
                } else {
                    // Another worker holds it now (this one missed its lease) and uses the work folder.
                    log.warning("job lost to another worker")
                }
                return
            }
            await storage.removeWork(job.id)
            let (code, message): (ErrorCode, String) = if let e = error as? StemifyError {
                (e.code, e.message)
            } else {
                (.separationFailed, "separation failed")
            }
            metrics?.recordFailure(code: code)
            do {
                try await persistently { try await self.queue.fail(id: job.id, worker: self.id, code: code, message: message) }
                await announce(job.id)
            } catch {
                log.error("cannot record the failure", metadata: ["error": "\(error)"])
            }
            // Unexpected errors carry details for the log only; the client sees the code.
            if let error = error as? StemifyError {
                log.info("job failed", metadata: ["error.code": "\(code)", "error.detail": "\(error.detail ?? "")"])
            } else {
                log.error("job failed", metadata: ["error.code": "\(code)", "error": "\(error)"])
            }
        }
    }

    /// Every second until cancelled: renew the lease (a job that is gone or taken cancels the
    /// work), record the latest progress, and save a new separation checkpoint to the storage.
    private func heartbeat(_ job: Job, state: RunState, logger: Logger) async {
        while (try? await Task.sleep(for: .seconds(1))) != nil {
            let snapshot = state.snapshot()
            do {
                if try await !queue.heartbeat(id: job.id, worker: id) {
                    state.cancel()
                } else {
                    try await queue.update(id: job.id, worker: id, status: snapshot.status, progress: snapshot.progress, eta: snapshot.eta)
                }
            } catch {
                logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
            }
            do {
                try await storage.saveCheckpoint(job: job.id)
            } catch {
                logger.warning("checkpoint not saved", metadata: ["error": "\(error)"])
            }
        }
    }

    /// A queue call the job cannot do without. A queue that is unreachable for a moment (a
    /// restart, a failover: any error that is not a ``StemifyError``) is tried again for up to
    /// one lease rather than failing work that is otherwise fine; past that another worker may
    /// hold the job anyway.
    func persistently<T: Sendable>(_ call: @Sendable () async throws -> T) async throws -> T {
        let deadline = Date().addingTimeInterval(configuration.leaseSeconds)
        var pause = 0.25
        while true {
            do {
                return try await call()
            } catch let error as StemifyError {
                throw error
            } catch {
                if Task.isCancelled || Date().addingTimeInterval(pause) > deadline { throw error }
                logger.warning("queue unreachable; trying again", metadata: ["error": "\(error)", "retry.seconds": "\(pause)"])
                try await Task.sleep(for: .seconds(pause))
                pause = min(pause * 2, 4)
            }
        }
    }

    /// Whether the job left the queue (its client cancelled it), as opposed to the queue being
    /// unreachable: only then may its files go.
    /// Queues the webhook of a job that has just finished (when it has a callback).
    private func announce(_ id: String) async {
        guard let job = try? await queue.job(id: id), let delivery = WebhookDelivery(for: job) else { return }
        try? await persistently { try await self.queue.addDelivery(delivery) }
    }

    /// Deleted, or cancelled: either way what this worker wrote for it goes.
    private func isGone(_ job: Job) async -> Bool {
        do {
            let now = try await persistently { try await self.queue.job(id: job.id) }
            return now == nil || now?.status == .cancelled
        } catch { return false }
    }

    /// fetch → decode → dedupe → separate → publish. Subprocesses and the engine run on threads
    /// of their own (``onThread(_:)``); queue calls are plain awaits.
    func stages(_ job: Job, state: RunState, logger: Logger) async throws -> ([StemFile], JobMetrics) {
        let started = Date()
        let workDir = storage.workDirectory(job.id)
        // A checkpoint saved by a worker that stopped (object storage; a shared folder has it in place).
        try await storage.restoreCheckpoint(job: job.id)
        try FileManager.default.createDirectory(at: workDir, withIntermediateDirectories: true)
        let inputPath = try await fetch(job, into: workDir, state: state)
        if state.isCancelled { throw SeparationError.cancelled }
        let decoded = try await decode(inputPath, into: workDir, state: state)
        let key = try await onThread { try Self.dedupeKey(raw: decoded.raw, options: job.options) }
        if let stems = try await reuse(key, for: job) {
            return (stems, JobMetrics(processingSeconds: Date().timeIntervalSince(started), audioSeconds: decoded.seconds,
                                      inputFormat: decoded.format, outputBytes: stems.reduce(0) { $0 + $1.bytes }, cacheHit: true))
        }
        try await persistently { try await self.queue.setDedupeKey(id: job.id, key: key) }
        let files = try await separate(job, decoded, key: key, workDir: workDir, state: state, logger: logger)
        let stems = try await publish(files, job: job, seconds: decoded.seconds)
        return (stems, JobMetrics(processingSeconds: Date().timeIntervalSince(started), audioSeconds: decoded.seconds,
                                  inputFormat: decoded.format, outputBytes: stems.reduce(0) { $0 + $1.bytes }, cacheHit: false))
    }

    /// The input: an upload on disk, or a video downloaded first.
    private func fetch(_ job: Job, into workDir: URL, state: RunState) async throws -> String {
        switch job.input {
        case let .upload(location, _):
            return try await storage.fetchUpload(location, job: job.id)
        case let .youtube(url):
            state.set(.downloading, 0)
            let youtube = YouTube(configuration: configuration)
            return try await onThread { try youtube.download(url, into: workDir) }
        }
    }

    struct Decoded: Sendable {
        var raw: String
        var format: String
        var seconds: Double
    }

    /// Probes and decodes to 44.1 kHz stereo Float32 (`input.wav`), enforcing the duration limit.
    private func decode(_ inputPath: String, into workDir: URL, state: RunState) async throws -> Decoded {
        state.set(.decoding, 0.02)
        let limit = configuration.maxDurationSeconds
        let raw = workDir.appendingPathComponent("input.wav").path
        return try await onThread {
            let probe = try FFmpeg.probe(inputPath)
            if let d = probe.duration, d > limit {
                throw StemifyError(.audioTooLong, "the audio is \(Int(d)) s long; the limit is \(Int(limit)) s")
            }
            try FFmpeg.decode(inputPath, probe: probe, to: raw)
            let seconds = Double(try WAVFileSource(path: raw).frameCount) / 44100
            if seconds > limit {
                throw StemifyError(.audioTooLong, "the audio is \(Int(seconds)) s long; the limit is \(Int(limit)) s")
            }
            return Decoded(raw: raw, format: probe.format, seconds: seconds)
        }
    }

    /// Same audio, same options: copies of a finished job's stems, when they are still there.
    private func reuse(_ key: String, for job: Job) async throws -> [StemFile]? {
        guard let cached = try await persistently({ try await self.queue.finishedJob(dedupeKey: key) }) else { return nil }
        for stem in cached.stems where await !storage.exists(stem.file) { return nil }
        try await persistently { try await self.queue.setDedupeKey(id: job.id, key: key) }
        // A file kept beside a stem is copied when it is still there, and forgotten otherwise.
        func companion(_ location: String?) async throws -> String? {
            guard let location, await storage.exists(location) else { return nil }
            return try await storage.copyStem(location, job: job.id)
        }
        var copies: [StemFile] = []
        for stem in cached.stems {
            var copy = stem
            copy.file = try await storage.copyStem(stem.file, job: job.id)
            copy.peaks = try await companion(stem.peaks)
            copy.playback = try await companion(stem.playback)
            copies.append(copy)
        }
        return copies
    }

    /// The engine over the decoded audio, resuming from the work folder's checkpoint if any.
    private func separate(_ job: Job, _ decoded: Decoded, key: String, workDir: URL, state: RunState, logger: Logger) async throws -> [URL] {
        state.set(.separating, 0.05)
        let model = try models.model(job.options.model)
        // The shift offsets come from the audio and options, so a resumed or repeated run
        // draws the same ones.
        let seed = UInt64(key.prefix(16), radix: 16) ?? 0
        let separation = SeparationOptions(shifts: job.options.shifts, overlap: job.options.overlap, seed: seed,
                                           overlapCount: job.options.numOverlap)
        let output = StemOutputOptions(format: job.options.outputFormat, clipMode: .shared, normalize: job.options.normalize,
                                       instrumental: job.options.removeVocals, mp3Bitrate: configuration.mp3Bitrate,
                                       peaks: true, playback: true)
        let checkpoint = storage.checkpointPath(job.id)
        if let handle = FileHandle(forReadingAtPath: checkpoint.path) {
            // The separator reads the whole checkpoint; the log line needs only its header.
            let header = (try? handle.read(upToCount: 24)).map { [UInt8]($0) } ?? []
            try? handle.close()
            if let progress = SeparationCheckpoint.progress(ofEncoded: header) {
                logger.info("job resumed", metadata: ["job.resumed_frames": "\(progress.emitted)", "job.frames": "\(progress.length)"])
            }
        }
        let (outDir, interval) = (storage.stemsDirectory(job.id), configuration.checkpointInterval)
        let encoding = JobETA.encodingSeconds(audio: decoded.seconds, stems: model.sources.count + (job.options.removeVocals ? 1 : 0),
                                              format: job.options.outputFormat)
        return try await onThread {
            let separator = try TrackSeparator(model: model, separation: separation, output: output)
            let source = try WAVFileSource(path: decoded.raw)
            let separationStart = Date()
            return try separator.separate(source: source, into: outDir, progress: { p in
                // Separation is 5–90 % of the job; encoding the rest.
                let elapsed = Date().timeIntervalSince(separationStart)
                if p.fraction >= 1 {
                    state.set(.encoding, 0.9, eta: encoding, towards: 0.99)
                } else {
                    state.set(.separating, 0.05 + 0.85 * p.fraction, eta: JobETA.remaining(fraction: p.fraction, elapsed: elapsed, encoding: encoding))
                }
            }, isCancelled: { state.isCancelled }, checkpoint: checkpoint, checkpointInterval: interval)
        }
    }

    /// Keeps the stems in the storage, as the job records them.
    private func publish(_ files: [URL], job: Job, seconds: Double) async throws -> [StemFile] {
        let sizes = files.map { (try? FileManager.default.attributesOfItem(atPath: $0.path)[.size] as? Int) ?? 0 }
        let extras = (files.map(WaveformPeaks.file(for:)) + files.map(StemOutputOptions.playbackFile(for:)))
            .filter { FileManager.default.fileExists(atPath: $0.path) }
        let locations = try await storage.keepStems(files + extras, job: job.id)
        let kept = Dictionary(uniqueKeysWithValues: zip(extras, locations.dropFirst(files.count)))
        return files.indices.map { k in
            StemFile(name: files[k].deletingPathExtension().lastPathComponent, file: locations[k],
                     format: job.options.outputFormat.rawValue, bytes: sizes[k], duration: seconds,
                     peaks: kept[WaveformPeaks.file(for: files[k])], playback: kept[StemOutputOptions.playbackFile(for: files[k])])
        }
    }

    private static func dedupeKey(raw: String, options: JobOptions) throws -> String {
        var hasher = SHA256()
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: raw))
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        // Sorted keys: JSONEncoder's key order is otherwise not stable between runs.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Where the result is announced does not change the result.
        var separating = options
        separating.callbackURL = nil
        hasher.update(data: try encoder.encode(separating))
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Progress shared between the worker thread and its heartbeat loop.
///
/// Between two reports the ETA counts down with the clock (it never climbs while nothing else
/// happens) and stops at 1 s: while work remains it never says 0. A phase with a known length
/// but no reports of its own (encoding) moves its progress along that length.
package final class RunState: @unchecked Sendable {
    private let lock = NSLock()
    private var status: JobStatus = .decoding
    private var progress = 0.0
    private var eta: Double?
    private var setAt = Date()
    /// Progress the current phase moves towards over its ETA, when it reports nothing itself.
    private var towards: Double?
    private var cancelled = false
    private let clock: @Sendable () -> Date

    package init(clock: @escaping @Sendable () -> Date = Date.init) { self.clock = clock }

    package func set(_ status: JobStatus, _ progress: Double, eta: Double? = nil, towards: Double? = nil) {
        lock.withLock {
            self.status = status
            self.progress = max(self.progress, progress)
            self.eta = eta
            self.towards = towards
            setAt = clock()
        }
    }

    package func snapshot() -> (status: JobStatus, progress: Double, eta: Double?) {
        lock.withLock {
            let passed = clock().timeIntervalSince(setAt)
            guard let eta else { return (status, progress, nil) }
            var shown = progress
            if let towards, eta > 0 { shown = progress + (towards - progress) * min(1, passed / eta) }
            return (status, shown, max(1, eta - passed))
        }
    }
    func cancel() { lock.withLock { cancelled = true } }
    var isCancelled: Bool { lock.withLock { cancelled } }
}

/// The time left of a job, from what it measured so far.
package enum JobETA {
    /// Seconds of audio one core encodes per second, per stem, with a margin for slower CPUs
    /// (this machine's ffmpeg: mp3 at 320 kb/s ~100, FLAC ~300, WAV ~550).
    package static func encodingSeconds(audio seconds: Double, stems: Int, format: FFmpeg.Format) -> Double {
        let rate: Double = switch format {
        case .mp3: 50
        case .flac: 150
        case .wav: 300
        }
        return seconds * Double(stems) / rate
    }

    /// The separation's rate so far over what is left of it, plus the encoding after it; nil
    /// before the first chunk has said anything about the rate.
    package static func remaining(fraction: Double, elapsed: Double, encoding: Double) -> Double? {
        guard fraction > 0 else { return nil }
        return elapsed * (1 - fraction) / fraction + encoding
    }
}
