import Foundation

/// A network that separates one fixed-length chunk of stereo audio: `[2, chunk] → [S, 2, chunk']`.
/// The RoFormers conform; their chunk length comes from the training configuration.
public protocol ChunkNetwork: Sendable {
    var audioChannels: Int { get }
    func forward(_ chunk: Tensor) -> Tensor
}

/// A trained network with the configuration it was published with: what ``FadedChunkSeparation``
/// needs to run it the way its authors do.
public struct ConfiguredModel: Sendable {
    public let config: TrainingConfig
    public let network: any ChunkNetwork

    public init(config: TrainingConfig, network: any ChunkNetwork) {
        self.config = config
        self.network = network
    }

    /// Reads `NAME.ckpt`/`.pth` (a PyTorch state dict) and `NAME.yaml` and builds the network
    /// of the config's family.
    public static func load(checkpoint: URL, config: URL) throws -> ConfiguredModel {
        let text: String
        do { text = try String(contentsOf: config, encoding: .utf8) } catch {
            throw CheckpointError.unreadable(path: config.path, reason: "cannot read the YAML configuration")
        }
        let parsed = try TrainingConfig(yaml: text, path: config.lastPathComponent)
        return try load(checkpoint: try ModelPackage.readCheckpointFile(checkpoint), config: parsed)
    }

    /// The network of `config`'s family from state-dict bytes.
    public static func load(checkpoint bytes: [UInt8], config: TrainingConfig) throws -> ConfiguredModel {
        let state = try ModelPackage.loadStateDict(bytes: bytes)
        let network: any ChunkNetwork
        let outputs: Int
        switch config.family {
        case .bsRoformer, .melBandRoformer:
            let roformer = try RoFormer(config: config, state: state)
            (network, outputs) = (roformer, roformer.stems)
        case .scnet:
            let scnet = try SCNet(config: config, state: state)
            (network, outputs) = (scnet, scnet.stems)
        }
        guard outputs == config.stems.count || outputs == config.instruments.count else {
            throw CheckpointError.invalidConfig(path: "config", reason: "the network has \(outputs) outputs for instruments \(config.instruments)")
        }
        return ConfiguredModel(config: config, network: network)
    }

    /// Stems a separation returns, in order.
    public var sources: [String] { config.stems }
    public var samplerate: Int { config.sampleRate }
}

/// The chunked inference of Music-Source-Separation-Training (`msst.utils.model_utils.demix`,
/// generic mode), streamed: memory holds about one chunk of output whatever the track length.
///
/// - The track is reflect-padded by `border = chunk − step` at both ends when it is longer than
///   `2·border`, and the result cropped back.
/// - Chunks start every `step = chunk / numOverlap` samples; a chunk cut short by the end is
///   padded to full length (reflecting itself when longer than half a chunk, zeros otherwise).
/// - Each output is weighted by a window with linear fades of `chunk / 10` and the sums are
///   divided by the summed weights (0 where they are 0).
/// - Which chunks fade is decided per batch of `batchSize` chunks, as the reference does it: no
///   fade-in when the batch holds only the first chunk, else no fade-out for a batch that reaches
///   the end. Chunks are still run one at a time here.
/// - Mono input is duplicated to stereo and the first output channel kept.
/// - With `inference.normalize`, the track is taken as `(x − mean) / std` of its mono mix
///   (population std, 1 where it is not above float32's epsilon) and the stems as `y · std + mean`,
///   as msst's inference wraps `demix`.
public struct FadedChunkSeparation {
    public let model: ConfiguredModel
    public let numOverlap: Int
    /// Most chunks run at once (``SeparationOptions/lanes``).
    public let lanes: Int?

    /// - Parameters:
    ///   - numOverlap: chunks covering each sample; nil takes the configuration's.
    ///   - lanes: most chunks run at once; nil lets the engine choose.
    public init(model: ConfiguredModel, numOverlap: Int? = nil, lanes: Int? = nil) throws {
        let n = numOverlap ?? model.config.numOverlap
        guard n >= 1, n <= model.config.chunkSize else {
            throw SeparationError.invalidOptions("the overlap count must be in 1...\(model.config.chunkSize), got \(n)")
        }
        self.model = model
        self.numOverlap = n
        self.lanes = lanes
    }

    /// Separates `source` (1 or 2 channels), handing each finished stretch to
    /// `emit(start, stems [S, C, n], mix [C, n])` with `C` the source's channel count. The
    /// parameters are those of ``StreamingSeparation/run(_:emit:progress:isCancelled:resume:checkpoint:)``.
    public func run(
        _ source: any AudioSource,
        emit: (Int, Tensor, Tensor) throws -> Void,
        progress: (SeparationProgress) -> Void = { _ in },
        isCancelled: () -> Bool = { false },
        resume: SeparationCheckpoint? = nil,
        checkpoint: ((SeparationCheckpoint) throws -> Void)? = nil
    ) throws {
        let inChannels = source.channelCount
        guard inChannels == 1 || inChannels == 2 else {
            throw SeparationError.channelMismatch(source: inChannels, model: 2)
        }
        let length = source.frameCount
        guard length > 0 else { return }
        let config = model.config
        let chunk = config.chunkSize
        let step = chunk / numOverlap
        let border = chunk - step
        let fade = chunk / 10
        let padded = length > 2 * border && border > 0
        let offset = padded ? border : 0
        let paddedLength = length + 2 * offset
        let chunks = (paddedLength + step - 1) / step
        let outputs = config.stems.count
        let target = config.targetInstrument.flatMap { config.instruments.firstIndex(of: $0) }
        let window = fadeWindow(chunk, fade)

        // Overlap-add state over padded positions `base ..< base + chunk`.
        var next = 0, base = 0, emitted = 0
        var acc = [Float](repeating: 0, count: outputs * inChannels * chunk)
        var weights = [Float](repeating: 0, count: chunk)
        if let resume {
            guard resume.length == length, resume.passes.count == 1, resume.passes[0].acc.count == acc.count,
                  resume.passes[0].weightSum.count == chunk
            else { throw SeparationError.invalidOptions("the checkpoint was made with other options, models or audio") }
            let state = resume.passes[0]
            (next, base, acc, weights, emitted) = (state.next, state.base, state.acc, state.weightSum, resume.emitted)
        }

        var normalization: (mean: Float, std: Float)? = nil
        if config.normalize {
            let stats = try monoMeanAndStd(source, unbiased: false)
            normalization = (stats.mean, stats.std.isFinite && stats.std > Float.ulpOfOne ? stats.std : 1)
        }

        let lanes = Lanes(chunks: chunks, seconds: Double(chunk) / Double(config.sampleRate), requested: self.lanes)
        while next < chunks {
            if isCancelled() { throw SeparationError.cancelled }
            let group = next..<min(chunks, next + lanes.count)
            let inputs = try group.map { n in
                let start = n * step
                return try readChunk(source, from: start - offset, count: min(chunk, paddedLength - start), chunk: chunk, length: length,
                                     normalization: normalization)
            }
            for (k, var out) in lanes.map(inputs, model.network.forward).enumerated() {
                // Cancellation still lands between chunks, as one at a time.
                if k > 0, isCancelled() { throw SeparationError.cancelled }
                let start = next * step
                let count = min(chunk, paddedLength - start)
                if let target, out.shape[0] == config.instruments.count, outputs == 1 {
                    // A network with a head per instrument, asked for the target only.
                    let plane = out.count / out.shape[0]
                    out = Tensor(shape: [1] + out.shape.dropFirst(), data: Array(out.data[(target * plane)..<((target + 1) * plane)]))
                }

                // The batch this chunk belongs to decides its fades.
                let batchEnd = min((next / config.batchSize + 1) * config.batchSize, chunks)
                let after = batchEnd * step
                var w = window
                if after - step == 0 {
                    for i in 0..<fade { w[i] = 1 }
                } else if after >= paddedLength {
                    for i in (chunk - fade)..<chunk { w[i] = 1 }
                }

                // Positions before `start` are final: slide the window there.
                let shift = start - base
                if shift > 0 {
                    let rows = outputs * inChannels
                    for r in 0..<rows {
                        for i in 0..<chunk { acc[r * chunk + i] = i + shift < chunk ? acc[r * chunk + i + shift] : 0 }
                    }
                    for i in 0..<chunk { weights[i] = i + shift < chunk ? weights[i + shift] : 0 }
                    base = start
                }
                let produced = out.shape[2]
                precondition(produced >= count, "the network returned \(produced) samples for a chunk of \(chunk)")
                for s in 0..<outputs {
                    for c in 0..<inChannels {
                        let src = (s * 2 + c) * produced, dst = (s * inChannels + c) * chunk
                        for i in 0..<count { acc[dst + i] += out.data[src + i] * w[i] }
                    }
                }
                for i in 0..<count { weights[i] += w[i] }
                next += 1

                // Emit what no later chunk touches, cropped to the track.
                let final = next == chunks ? paddedLength : next * step
                let lo = max(emitted + offset, base), hi = min(final, offset + length)
                if hi > lo {
                    let n = hi - lo
                    var stems = Tensor(zeros: [outputs, inChannels, n])
                    for r in 0..<(outputs * inChannels) {
                        for i in 0..<n {
                            let k = lo - base + i
                            var v = acc[r * chunk + k] / weights[k]
                            if v.isNaN { v = 0 }
                            if let normalization { v = v * normalization.std + normalization.mean }
                            stems.data[r * n + i] = v
                        }
                    }
                    try emit(lo - offset, stems, try source.read(from: lo - offset, count: n))
                    emitted = hi - offset
                }
                // After every chunk: the first output comes only after `border` samples, several
                // chunks in when they overlap four times.
                try checkpoint?(SeparationCheckpoint(
                    length: length, emitted: emitted,
                    passes: [.init(start: 0, next: next, base: base, acc: acc, weightSum: weights)]))
                progress(SeparationProgress(completedChunks: next, totalChunks: chunks, framesDone: emitted))
            }
        }
    }

    /// Padded positions `from ..< from + count` of the track (reflected past its ends), as a
    /// stereo chunk of `chunk` samples padded the reference's way, normalised before the padding
    /// (the reference normalises the whole track, then pads).
    private func readChunk(_ source: any AudioSource, from: Int, count: Int, chunk: Int, length: Int,
                           normalization: (mean: Float, std: Float)?) throws -> Tensor {
        let channels = source.channelCount
        // The stretch of the track the reflections and the chunk touch.
        func reflect(_ i: Int) -> Int { i < 0 ? -i : (i >= length ? 2 * (length - 1) - i : i) }
        let indices = (0..<count).map { reflect(from + $0) }
        let lo = indices.min()!, hi = indices.max()!
        var raw = try source.read(from: lo, count: hi - lo + 1)
        if let (mean, std) = normalization {
            for i in raw.data.indices { raw.data[i] = (raw.data[i] - mean) / std }
        }
        let span = hi - lo + 1
        var part = Tensor(zeros: [2, chunk])
        let reflectTail = count > chunk / 2
        for c in 0..<2 {
            let sc = min(c, channels - 1)
            for (i, k) in indices.enumerated() { part.data[c * chunk + i] = raw.data[sc * span + k - lo] }
            if reflectTail {
                for j in 0..<(chunk - count) { part.data[c * chunk + count + j] = part.data[c * chunk + count - 2 - j] }
            }
        }
        return part
    }
}

/// Ones with linear fades of `fade` samples at both ends (`_getWindowingArray`); the ramps are
/// `torch.linspace`'s, which computes its second half from the end.
func fadeWindow(_ size: Int, _ fade: Int) -> [Float] {
    var w = [Float](repeating: 1, count: size)
    guard fade > 0 else { return w }
    func linspace(_ a: Float, _ b: Float) -> [Float] {
        if fade == 1 { return [a] }
        let step = (b - a) / Float(fade - 1)
        return (0..<fade).map { i in i < fade / 2 ? a + step * Float(i) : b - step * Float(fade - 1 - i) }
    }
    let (up, down) = (linspace(0, 1), linspace(1, 0))
    for i in 0..<fade { w[size - fade + i] = down[i] }
    for i in 0..<fade { w[i] = up[i] }
    return w
}
