import CStemifySystem
import Dispatch

/// How a separation spreads the engine's threads over chunks.
///
/// Splitting every operation of one chunk over the cores scales poorly: on 2 cores a chunk of
/// htdemucs ran only 1.16× faster than on one (each thread re-packs the whole weight matrix of a
/// split GEMM, and the element-wise passes between GEMMs leave a core idle). Chunks are
/// independent until their overlap-add, so a separation runs `count` of them at once, each on a
/// lane of `width` threads. A chunk's arithmetic does not depend on its lane's width (every
/// product and reduction is computed in the same order on any number of threads; tests compare
/// lane counts and widths), so a resumed run's output does not depend on which chunks happened
/// to share a group.
struct Lanes {
    let count: Int
    let width: Int
    /// Whether the allocator's free pages go back to the system before each group of chunks
    /// (the first: what loading the model left).
    /// Chunks of `releaseAfterSeconds` and up (Demucs v3's 44 s) leave free blocks of hundreds of
    /// MB whose sizes drift from chunk to chunk (see `stemify_release_free_memory`); shorter ones
    /// reuse theirs (htdemucs: 311 MB free after every group of a 60 s song, and releasing them
    /// cost 5 % of its run in pages faulted back in).
    let releasesFreeMemory: Bool
    static let releaseAfterSeconds = 20.0

    /// Seconds of audio in flight the automatic choice allows: each lane holds one chunk's
    /// activations (htdemucs: ~280 MB a 7.8 s chunk), so Demucs v3's 44 s chunks run one at a time.
    static let audioInFlight = 24.0

    /// Lanes for a run of `chunks` chunks of `seconds` each on the calling thread's width, at
    /// most `requested`, else the process-wide `EngineThreads.maxLanes`, else as many as fit
    /// in `audioInFlight`.
    init(chunks: Int, seconds: Double, requested: Int? = nil) {
        let threads = EngineThreads.count
        let limit = requested ?? EngineThreads.maxLanes ?? max(1, Int(Self.audioInFlight / max(seconds, 0.001)))
        count = max(1, min(threads, chunks, limit))
        width = max(1, threads / count)
        releasesFreeMemory = seconds >= Self.releaseAfterSeconds
    }

    /// `forward(job)` for every job, `count` at a time, results in the jobs' order. A group
    /// short of `count` (a run's last) shares out all the lanes' threads: the last of eleven
    /// htdemucs chunks on one of two cores left the other idle for a seventh of the run.
    func map<Job, Result>(_ jobs: [Job], _ forward: (Job) -> Result) -> [Result] {
        precondition(jobs.count <= count, "more jobs than lanes")
        if releasesFreeMemory { stemify_release_free_memory() }
        let width = max(1, self.width * count / max(jobs.count, 1))
        if jobs.count == 1 { return [EngineThreads.withWidth(width) { forward(jobs[0]) }] }
        var results = [Result?](repeating: nil, count: jobs.count)
        results.withUnsafeMutableBufferPointer { slots in
            withoutActuallyEscaping(forward) { forward in
                // Each task writes its own slot; the closure is only called, never stored.
                let shared = LaneShared(forward: forward, jobs: jobs, slots: slots)
                DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
                    let result = EngineThreads.withWidth(width) { shared.forward(shared.jobs[i]) }
                    shared.slots[i] = result
                }
            }
        }
        return results.map { $0! }
    }
}

private struct LaneShared<Job, Result>: @unchecked Sendable {
    let forward: (Job) -> Result
    let jobs: [Job]
    let slots: UnsafeMutableBufferPointer<Result?>
}
