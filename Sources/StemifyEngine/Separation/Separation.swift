/// Random access to a track's audio, at the model's rate and channel count.
public protocol AudioSource {
    var channelCount: Int { get }
    var frameCount: Int { get }
    /// Frames `[start, start + count)` as `[C, count]`; positions outside the track read as zeros.
    func read(from start: Int, count: Int) throws -> Tensor
}

/// An in-memory track `[C, L]`.
public struct TensorAudioSource: AudioSource {
    public let audio: Tensor
    public init(_ audio: Tensor) { self.audio = audio }
    public var channelCount: Int { audio.shape[0] }
    public var frameCount: Int { audio.shape[1] }
    public func read(from start: Int, count: Int) throws -> Tensor { audio.slicingLast(start..<(start + count)) }
}

/// Per-call separation settings.
public struct SeparationOptions: Sendable {
    /// Random time shifts averaged (the "shift trick"); 0 is deterministic. The default is 1,
    /// like the reference CLI.
    public var shifts = 1
    /// Overlap between chunks, in [0, 1). The default is 0.25.
    public var overlap = 0.25
    /// Indices of the sources the caller will use; nil means all. Bag members whose weights are
    /// zero for all of them are not run, and the other sources come out as zeros.
    public var sourcesNeeded: Set<Int>?
    /// Seed for the shift offsets; nil draws one.
    public var seed: UInt64?
    /// The shift offsets themselves, each in `0...samplerate/2`, one per shift and bag member
    /// in the reference's drawing order (`random.randint(0, max_shift)`); overrides `seed`.
    /// Reproduces a reference run exactly.
    public var shiftOffsets: [Int]?
    /// Configured models (RoFormers): chunks covering each sample (`num_overlap`); nil takes
    /// the model configuration's. Demucs bags use `overlap` instead.
    public var overlapCount: Int?
    /// Most chunks run at once, each on a share of the engine's threads; nil lets the engine
    /// choose (``EngineThreads/maxLanes``). The stems do not depend on it.
    public var lanes: Int?

    public init(shifts: Int = 1, overlap: Double = 0.25, sourcesNeeded: Set<Int>? = nil, seed: UInt64? = nil, shiftOffsets: [Int]? = nil,
                overlapCount: Int? = nil, lanes: Int? = nil) {
        self.overlapCount = overlapCount
        self.lanes = lanes
        self.shifts = shifts
        self.overlap = overlap
        self.sourcesNeeded = sourcesNeeded
        self.seed = seed
        self.shiftOffsets = shiftOffsets
    }
}

/// How far a separation has got, reported after every chunk.
public struct SeparationProgress: Sendable, Equatable {
    public var completedChunks: Int
    public var totalChunks: Int
    /// Samples of output written so far.
    public var framesDone: Int
    public var fraction: Double { totalChunks == 0 ? 1 : Double(completedChunks) / Double(totalChunks) }
}

/// Why a separation stopped.
public enum SeparationError: Error, Equatable, CustomStringConvertible {
    case cancelled
    case invalidOptions(String)
    case channelMismatch(source: Int, model: Int)

    public var description: String {
        switch self {
        case .cancelled: "separation cancelled"
        case let .invalidOptions(why): "invalid separation options: \(why)"
        case let .channelMismatch(s, m): "the audio has \(s) channels but the model takes \(m)"
        }
    }
}

/// The reference's `Separator.separate_tensor` + `apply_model`, streamed.
///
/// Whole-track normalisation (mean and unbiased std of the mono mix), then every (model, shift)
/// pair — a *pass* — walks the track in chunks of the model's segment with the given overlap;
/// each chunk is centred in real neighbouring audio up to the model's valid length, separated,
/// trimmed, weighted by a triangular window and overlap-added. Passes advance together, the
/// one furthest behind first, and a sample is emitted as soon as every pass has finished it,
/// so memory holds about one segment per pass whatever the track length.
///
/// Reference: `demucs/apply.py` (`apply_model`, `TensorChunk.padded`), `demucs/api.py`
/// (`Separator.separate_tensor`).
public struct StreamingSeparation {
    public let bag: ModelBag
    public let options: SeparationOptions

    public init(bag: ModelBag, options: SeparationOptions) throws {
        guard options.shifts >= 0 else { throw SeparationError.invalidOptions("shifts must be ≥ 0, got \(options.shifts)") }
        guard options.overlap >= 0 && options.overlap < 1 else {
            throw SeparationError.invalidOptions("overlap must be in [0, 1), got \(options.overlap)")
        }
        self.bag = bag
        self.options = options
    }

    /// Separates `source`, handing each finished stretch to `emit(start, stems [S, C, n], mix [C, n])`.
    ///
    /// - Parameters:
    ///   - progress: called after every chunk.
    ///   - isCancelled: polled before every chunk; when true the run throws
    ///     ``SeparationError/cancelled``.
    ///   - resume: the state a previous run checkpointed: output before `resume.emitted` is not
    ///     produced again, and the rest is identical to an uninterrupted run (same options,
    ///     seed and source).
    ///   - checkpoint: called after output was emitted, with the state to resume from.
    public func run(
        _ source: any AudioSource,
        emit: (Int, Tensor, Tensor) throws -> Void,
        progress: (SeparationProgress) -> Void = { _ in },
        isCancelled: () -> Bool = { false },
        resume: SeparationCheckpoint? = nil,
        checkpoint: ((SeparationCheckpoint) throws -> Void)? = nil
    ) throws {
        let channels = bag.audioChannels
        guard source.channelCount == channels else {
            throw SeparationError.channelMismatch(source: source.channelCount, model: channels)
        }
        let length = source.frameCount
        let sourceCount = bag.sources.count
        guard length > 0 else { return }

        // Parity: `ref = wav.mean(0); (wav - ref.mean()) / (ref.std() + 1e-8)`, unbiased std.
        let (mean, std) = try monoMeanAndStd(source, unbiased: true)
        let scale = std + 1e-8

        var rng = SplitMix64(seed: options.seed ?? UInt64.random(in: 0...UInt64.max))
        let maxShift = Int(0.5 * Double(bag.samplerate))
        var offsets = options.shiftOffsets?.makeIterator()
        if let given = options.shiftOffsets {
            guard given.count == options.shifts * bag.models.count, given.allSatisfy({ (0...maxShift).contains($0) }) else {
                throw SeparationError.invalidOptions("shiftOffsets needs \(options.shifts * bag.models.count) values in 0...\(maxShift)")
            }
        }
        var passes: [Pass] = []
        var totals = [Float](repeating: 0, count: sourceCount)
        for (m, model) in bag.models.enumerated() {
            let w = bag.weights[m]
            for s in 0..<sourceCount { totals[s] += w[s] }
            let segment = model.segmentLength
            let stride = Int((1 - options.overlap) * Double(segment))
            guard stride > 0 else { throw SeparationError.invalidOptions("overlap \(options.overlap) leaves no stride") }
            // Parity: the reference pads by max_shift, then starts at a random offset into that.
            let starts = options.shifts == 0 ? [0] : (0..<options.shifts).map { _ in
                (offsets?.next() ?? Int(rng.next() % UInt64(maxShift + 1))) - maxShift
            }
            if let needed = options.sourcesNeeded, needed.allSatisfy({ w[$0] == 0 }) { continue }
            for p0 in starts {
                passes.append(Pass(model: m, start: p0, length: length - p0, segment: segment, stride: stride,
                                   sources: sourceCount, channels: channels))
            }
        }
        let shiftCount = max(options.shifts, 1)
        let totalChunks = passes.reduce(0) { $0 + $1.chunkCount }
        var done = 0
        var emitted = 0
        if let resume {
            guard resume.passes.count == passes.count, resume.length == length,
                  zip(resume.passes, passes).allSatisfy({ $0.start == $1.start && $0.acc.count == $1.acc.count })
            else { throw SeparationError.invalidOptions("the checkpoint was made with other options, models or audio") }
            for (i, state) in resume.passes.enumerated() {
                passes[i].next = state.next
                passes[i].base = state.base
                passes[i].acc = state.acc
                passes[i].weightSum = state.weightSum
            }
            emitted = resume.emitted
            done = passes.reduce(0) { $0 + $1.next }
        }

        let longest = bag.models.map(\.segmentLength).max() ?? 0
        let lanes = Lanes(chunks: totalChunks, seconds: Double(longest) / Double(bag.samplerate), requested: options.lanes)
        while emitted < length {
            if isCancelled() { throw SeparationError.cancelled }
            // The next chunks in the order one at a time would take them: the pass furthest
            // behind first (a finished pass has frontier == length).
            var plan = passes
            var group: [(pass: Int, position: Int, length: Int)] = []
            while group.count < lanes.count,
                  let p = plan.indices.filter({ !plan[$0].isFinished }).min(by: { plan[$0].frontier < plan[$1].frontier }) {
                let (q, n) = plan[p].nextChunk
                group.append((p, q, n))
                plan[p].next += 1
            }
            guard !group.isEmpty else { break }
            let inputs = try group.map { chunk in
                let model = bag.models[passes[chunk.pass].model]
                let valid = model.validLength(chunk.length)
                let readStart = chunk.position - (valid - chunk.length) / 2
                var input = try source.read(from: readStart, count: valid)
                // Parity: the track is normalised first, so padding past its ends is zero afterwards.
                let inside = max(0, -readStart)..<max(max(0, -readStart), min(valid, length - readStart))
                input.data.withUnsafeMutableBufferPointer { b in
                    for c in 0..<channels {
                        for i in inside { b[c * valid + i] = (b[c * valid + i] - mean) / scale }
                    }
                }
                return (model: model, input: input, trim: (valid - chunk.length) / 2)
            }
            let outputs = lanes.map(inputs) { $0.model.forward($0.input) }
            for (k, out) in outputs.enumerated() {
                // Cancellation still lands between chunks, as one at a time.
                if k > 0, isCancelled() { throw SeparationError.cancelled }
                passes[group[k].pass].accumulate(out, trimmedFrom: inputs[k].trim, count: group[k].length)
                done += 1

                let frontier = min(length, passes.map(\.frontier).min() ?? length)
                if frontier > emitted {
                    let n = frontier - emitted
                    var stems = Tensor(zeros: [sourceCount, channels, n])
                    // Per model: average of its shifts; then the bag's weighted average per source.
                    for m in bag.models.indices {
                        let mine = passes.indices.filter { passes[$0].model == m }
                        if mine.isEmpty { continue }
                        var sum = Tensor(zeros: [sourceCount, channels, n])
                        for i in mine { passes[i].addResult(from: emitted, count: n, into: &sum) }
                        let w = bag.weights[m]
                        for s in 0..<sourceCount {
                            let factor = w[s]
                            for i in 0..<(channels * n) {
                                stems.data[s * channels * n + i] += sum.data[s * channels * n + i] / Float(shiftCount) * factor
                            }
                        }
                    }
                    for s in 0..<sourceCount {
                        let total = totals[s]
                        for i in 0..<(channels * n) {
                            let v = stems.data[s * channels * n + i] / total
                            stems.data[s * channels * n + i] = v * scale + mean
                        }
                    }
                    try emit(emitted, stems, try source.read(from: emitted, count: n))
                    emitted = frontier
                    try checkpoint?(SeparationCheckpoint(
                        length: length, emitted: emitted,
                        passes: passes.map { .init(start: $0.start, next: $0.next, base: $0.base, acc: $0.acc, weightSum: $0.weightSum) }))
                }
                progress(SeparationProgress(completedChunks: done, totalChunks: totalChunks, framesDone: emitted))
            }
        }
    }

}

/// Where a separation stands: what was emitted and each pass's overlap-add state, enough to
/// continue on another machine with an identical result.
public struct SeparationCheckpoint: Sendable, Equatable {
    struct PassState: Sendable, Equatable {
        var start: Int
        var next: Int
        var base: Int
        var acc: [Float]
        var weightSum: [Float]
    }
    /// Frames in the track.
    public var length: Int
    /// Frames already handed to `emit`.
    public var emitted: Int
    var passes: [PassState]

    /// Little-endian: magic, length, emitted, pass count, then per pass start, next, base, two
    /// float counts and the floats.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = Array("STMFCKP1".utf8)
        func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { out += $0 } }
        func floats(_ f: [Float]) { int(f.count); f.withUnsafeBytes { out += $0 } }
        int(length); int(emitted); int(passes.count)
        for p in passes { int(p.start); int(p.next); int(p.base); floats(p.acc); floats(p.weightSum) }
        return out
    }

    /// - Throws: ``SeparationError/invalidOptions(_:)`` for bytes that are not a whole checkpoint.
    public init(decoding bytes: [UInt8]) throws {
        var at = 8
        let bad = SeparationError.invalidOptions("not a separation checkpoint, or a truncated one")
        guard bytes.count >= 8, Array(bytes[0..<8]) == Array("STMFCKP1".utf8) else { throw bad }
        func int() throws -> Int {
            guard at + 8 <= bytes.count else { throw bad }
            defer { at += 8 }
            return Int(Int64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: Int64.self) }))
        }
        func floats() throws -> [Float] {
            let n = try int()
            guard n >= 0, at + 4 * n <= bytes.count else { throw bad }
            defer { at += 4 * n }
            return bytes.withUnsafeBytes { p in (0..<n).map { p.loadUnaligned(fromByteOffset: at + 4 * $0, as: Float.self) } }
        }
        length = try int()
        emitted = try int()
        let count = try int()
        guard count >= 0 && count < 1 << 16 else { throw bad }
        passes = try (0..<count).map { _ in
            PassState(start: try int(), next: try int(), base: try int(), acc: try floats(), weightSum: try floats())
        }
        guard at == bytes.count else { throw bad }
    }

    /// `(length, emitted)` from the first bytes of an encoded checkpoint, without reading the
    /// overlap-add state (tens of MB for the v3 models); nil when they are not a checkpoint's.
    public static func progress(ofEncoded prefix: [UInt8]) -> (length: Int, emitted: Int)? {
        guard prefix.count >= 24, Array(prefix[0..<8]) == Array("STMFCKP1".utf8) else { return nil }
        func int(_ at: Int) -> Int {
            Int(Int64(littleEndian: prefix.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: Int64.self) }))
        }
        return (int(8), int(16))
    }

    init(length: Int, emitted: Int, passes: [PassState]) {
        self.length = length
        self.emitted = emitted
        self.passes = passes
    }
}

/// One model at one shift walking the track: overlap-add state for about one segment.
private struct Pass {
    let model: Int
    /// Track position of the pass's first sample (≤ 0 with shifts).
    let start: Int
    let length: Int
    let segment: Int
    let stride: Int
    let sources: Int
    let channels: Int
    /// Triangular cross-fade, `weight / weight.max()` (transition power 1).
    let window: [Float]
    var next = 0
    /// Track position of `acc[..., 0]`.
    var base: Int
    /// `[S·C, segment]` weighted sums and their weight totals, positions `base...`.
    var acc: [Float]
    var weightSum: [Float]

    init(model: Int, start: Int, length: Int, segment: Int, stride: Int, sources: Int, channels: Int) {
        self.model = model
        self.start = start
        self.length = length
        self.segment = segment
        self.stride = stride
        self.sources = sources
        self.channels = channels
        let half = segment / 2
        let peak = Float(max(half, segment - half))
        window = (0..<segment).map { i in Float(i < half ? i + 1 : segment - i) / peak }
        base = start
        acc = [Float](repeating: 0, count: sources * channels * segment)
        weightSum = [Float](repeating: 0, count: segment)
    }

    var chunkCount: Int { (length + stride - 1) / stride }
    var isFinished: Bool { next >= chunkCount }
    /// Everything before this track position is final for this pass.
    var frontier: Int { isFinished ? start + length : start + next * stride }
    var nextChunk: (position: Int, length: Int) { (start + next * stride, min(segment, length - next * stride)) }

    /// Adds a chunk's output, trimmed to `count` samples from `offset` (`center_trim`).
    mutating func accumulate(_ out: Tensor, trimmedFrom offset: Int, count: Int) {
        let q = start + next * stride
        // Positions before q are final and already emitted (this pass was the furthest behind).
        compact(to: q)
        let valid = out.shape[2]
        let rows = sources * channels
        for r in 0..<rows {
            for i in 0..<count {
                acc[r * segment + (q - base) + i] += window[i] * out.data[r * valid + offset + i]
            }
        }
        for i in 0..<count { weightSum[(q - base) + i] += window[i] }
        next += 1
    }

    /// `into[s, c, i] += acc / weightSum` at positions `from..<from+count`.
    func addResult(from: Int, count: Int, into out: inout Tensor) {
        let rows = sources * channels
        for r in 0..<rows {
            for i in 0..<count {
                let k = from - base + i
                out.data[r * count + i] += acc[r * segment + k] / weightSum[k]
            }
        }
    }

    private mutating func compact(to position: Int) {
        let shift = position - base
        guard shift > 0 else { return }
        let rows = sources * channels
        for r in 0..<rows {
            for i in 0..<segment {
                acc[r * segment + i] = i + shift < segment ? acc[r * segment + i + shift] : 0
            }
        }
        for i in 0..<segment { weightSum[i] = i + shift < segment ? weightSum[i + shift] : 0 }
        base = position
    }
}

/// Small, fast, seedable generator for shift offsets.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Mean and standard deviation of a track's mono mix (channels averaged), read a block at a time:
/// Demucs divides by the unbiased one (`torch.std`), msst's `normalize_audio` by the population one
/// (`numpy.std`).
func monoMeanAndStd(_ source: any AudioSource, unbiased: Bool) throws -> (mean: Float, std: Float) {
    let length = source.frameCount, channels = source.channelCount
    func forEachMonoSample(_ body: (Double) -> Void) throws {
        let block = 1 << 16
        var start = 0
        while start < length {
            let n = min(block, length - start)
            let x = try source.read(from: start, count: n)
            for i in 0..<n {
                var m: Float = 0
                for c in 0..<channels { m += x.data[c * n + i] }
                body(Double(m / Float(channels)))
            }
            start += n
        }
    }
    var sum = 0.0
    try forEachMonoSample { sum += $0 }
    let mean = sum / Double(length)
    var sq = 0.0
    try forEachMonoSample { sq += ($0 - mean) * ($0 - mean) }
    let divisor = unbiased ? max(length - 1, 1) : max(length, 1)
    return (Float(mean), Float((sq / Double(divisor)).squareRoot()))
}
