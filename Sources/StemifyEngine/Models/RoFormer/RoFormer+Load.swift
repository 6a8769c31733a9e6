import Foundation

extension RoFormer {
    /// The `model:` keys each family's constructor takes. Keys that only shape training (dropout,
    /// the multi-resolution loss, gradient checkpointing) are accepted and ignored; values the
    /// engine does not implement are refused by name.
    static let knownKeys: Set<String> = [
        "dim", "depth", "stereo", "num_stems", "time_transformer_depth", "freq_transformer_depth",
        "linear_transformer_depth", "dim_head", "heads", "attn_dropout", "ff_dropout", "flash_attn",
        "dim_freqs_in", "stft_n_fft", "stft_hop_length", "stft_win_length", "stft_normalized", "zero_dc",
        "mask_estimator_depth", "multi_stft_resolution_loss_weight", "multi_stft_resolutions_window_sizes",
        "multi_stft_hop_size", "multi_stft_normalized", "mlp_expansion_factor", "use_torch_checkpoint",
        "skip_connection", "use_pope",
    ]
    static let bandSplitKeys: Set<String> = ["freqs_per_bands"]
    static let melKeys: Set<String> = ["num_bands", "sample_rate", "match_input_audio_length"]

    /// Builds the network from its configuration and state dict (keys as `state_dict()` names them).
    public init(config: TrainingConfig, state: [String: Tensor]) throws {
        let kw = config.model
        let family = config.family
        guard family == .bsRoformer || family == .melBandRoformer else {
            throw CheckpointError.invalidConfig(path: "config", reason: "a \(family.rawValue) configuration is not a RoFormer's")
        }
        let allowed = Self.knownKeys.union(family == .bsRoformer ? Self.bandSplitKeys : Self.melKeys)
        if let unknown = kw.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw CheckpointError.unknownKwarg(key: unknown, klass: family.rawValue)
        }
        func int(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int { try kw.int(key, fallback, range) }
        func bool(_ key: String, _ fallback: Bool) throws -> Bool { try kw.bool(key, fallback) }
        guard kw["dim"] != nil, kw["depth"] != nil else { throw CheckpointError.malformedPackage("model config needs 'dim' and 'depth'") }
        let dim = try int("dim", 0, 1...8192)
        let depth = try int("depth", 0, 1...256)
        let heads = try int("heads", 8, 1...256)
        let dimHead = try int("dim_head", 64, 2...1024)
        guard dimHead % 2 == 0 else { throw CheckpointError.unsupportedKwarg(key: "dim_head", value: "\(dimHead) (rotary pairs need an even size)") }
        let stems = try int("num_stems", 1, 1...64)
        let timeDepth = try int("time_transformer_depth", 2, 0...64)
        let freqDepth = try int("freq_transformer_depth", 2, 0...64)
        guard try int("linear_transformer_depth", 0, 0...64) == 0 else {
            throw CheckpointError.unsupportedKwarg(key: "linear_transformer_depth", value: "\(kw["linear_transformer_depth"]!) (no published checkpoint uses linear attention)")
        }
        guard try !bool("use_pope", false) else { throw CheckpointError.unsupportedKwarg(key: "use_pope", value: "True") }
        guard try bool("stereo", false) else {
            throw CheckpointError.unsupportedKwarg(key: "stereo", value: "False (the reference's inference always feeds stereo)")
        }
        let (nfft, hop) = try kw.stft(size: "stft_n_fft", 2048, hop: "stft_hop_length", 512, window: "stft_win_length")
        let normalized = try bool("stft_normalized", false)
        let maskDepth = try int("mask_estimator_depth", family == .bsRoformer ? 2 : 1, 1...16)
        let expansion = try int("mlp_expansion_factor", 4, 1...64)
        let bins = nfft / 2 + 1
        if let v = kw["dim_freqs_in"], v.int(in: bins...bins) == nil {
            throw CheckpointError.unsupportedKwarg(key: "dim_freqs_in", value: "\(v) (the STFT gives \(bins) bins)")
        }
        guard config.chunkSize > nfft / 2 else {
            throw CheckpointError.invalidConfig(path: "config", reason: "chunk_size \(config.chunkSize) is too short for stft_n_fft \(nfft)")
        }

        let bands: Bands
        switch family {
        case .bsRoformer:
            guard case let .list(list)? = kw["freqs_per_bands"], list.count > 1, list.count <= bins else {
                throw CheckpointError.unsupportedKwarg(key: "freqs_per_bands", value: "\(kw["freqs_per_bands"] ?? .none)")
            }
            let widths = try list.map { v -> Int in
                guard let w = v.int(in: 1...bins) else { throw CheckpointError.unsupportedKwarg(key: "freqs_per_bands", value: "\(v)") }
                return w
            }
            guard widths.reduce(0, +) == bins else {
                throw CheckpointError.unsupportedKwarg(key: "freqs_per_bands", value: "sum \(widths.reduce(0, +)), the STFT gives \(bins) bins")
            }
            bands = .split(freqsPerBand: widths)
        case .melBandRoformer, .scnet:
            let count = try int("num_bands", 60, 2...512)
            let rate = try int("sample_rate", 44100, 1000...768_000)
            bands = .mel(binsPerBand: melBandBins(bands: count, sampleRate: rate, nfft: nfft))
        }
        let channels = 2
        var bandInputs: [[Int]] = []
        switch bands {
        case let .split(widths):
            var start = 0
            for w in widths {
                bandInputs.append(Array((start * channels)..<((start + w) * channels)))
                start += w
            }
        case let .mel(binsPerBand):
            bandInputs = binsPerBand.map { bins in bins.flatMap { b in (0..<channels).map { b * channels + $0 } } }
        }

        let matchInputLength = family == .bsRoformer ? true : try bool("match_input_audio_length", false)
        if !matchInputLength && config.chunkSize % hop != 0 {
            throw CheckpointError.invalidConfig(path: "config", reason: "chunk_size \(config.chunkSize) is not a multiple of stft_hop_length \(hop), so the network returns a shorter chunk (set match_input_audio_length)")
        }

        var reader = StateReader(state: state)
        var bandSplit: [BandProjection] = []
        for (b, inputs) in bandInputs.enumerated() {
            let w = 2 * inputs.count
            let key = "band_split.to_features.\(b)"
            bandSplit.append(BandProjection(norm: try reader.take("\(key).0.gamma", [w]),
                                            weight: try reader.take("\(key).1.weight", [dim, w]),
                                            bias: try reader.take("\(key).1.bias", [dim])))
        }
        let inner = heads * dimHead
        let hidden = 4 * dim
        var frequencies: [String: [Float]] = [:]
        func transformer(_ prefix: String, depth: Int, outputNorm: Bool, rotary: String) throws -> RoFormerTransformer {
            var layers: [RoFormerTransformer.Layer] = []
            for j in 0..<depth {
                let a = "\(prefix).layers.\(j).0", f = "\(prefix).layers.\(j).1"
                // One rotary module per axis is shared by every layer; the state dict repeats it.
                let freqs = try reader.take("\(a).rotary_embed.freqs", [dimHead / 2]).data
                if let first = frequencies[rotary], first != freqs {
                    throw CheckpointError.malformedPackage("'\(a).rotary_embed.freqs' differs from the shared rotary embedding")
                }
                frequencies[rotary] = freqs
                layers.append(RoFormerTransformer.Layer(
                    attentionNorm: try reader.take("\(a).norm.gamma", [dim]),
                    qkv: try reader.take("\(a).to_qkv.weight", [3 * inner, dim]),
                    gates: try reader.take("\(a).to_gates.weight", [heads, dim]),
                    gatesBias: try reader.take("\(a).to_gates.bias", [heads]),
                    out: try reader.take("\(a).to_out.0.weight", [dim, inner]),
                    feedForwardNorm: try reader.take("\(f).net.0.gamma", [dim]),
                    ff1: try reader.take("\(f).net.1.weight", [hidden, dim]), ff1Bias: try reader.take("\(f).net.1.bias", [hidden]),
                    ff2: try reader.take("\(f).net.4.weight", [dim, hidden]), ff2Bias: try reader.take("\(f).net.4.bias", [dim])))
            }
            let norm = outputNorm ? try reader.take("\(prefix).norm.gamma", [dim]) : nil
            return RoFormerTransformer(layers: layers, outputNorm: norm, heads: heads, headDim: dimHead,
                                       rotaryFrequencies: frequencies[rotary] ?? rotaryInverseFrequencies(dimHead))
        }
        var layers: [(time: RoFormerTransformer, frequency: RoFormerTransformer)] = []
        let perTransformerNorm = family == .melBandRoformer
        for i in 0..<depth {
            layers.append((time: try transformer("layers.\(i).0", depth: timeDepth, outputNorm: perTransformerNorm, rotary: "time"),
                           frequency: try transformer("layers.\(i).1", depth: freqDepth, outputNorm: perTransformerNorm, rotary: "frequency")))
        }
        let finalNorm = family == .bsRoformer ? try reader.take("final_norm.gamma", [dim]) : nil
        // BS-RoFormer's MLP has `depth` Linear layers, the mel one `depth + 1`.
        let linears = family == .bsRoformer ? maskDepth : maskDepth + 1
        var estimators: [MaskEstimator] = []
        for s in 0..<stems {
            var perBand: [[(weight: Tensor, bias: Tensor)]] = []
            for (b, inputs) in bandInputs.enumerated() {
                let out = 2 * (2 * inputs.count)
                var mlp: [(weight: Tensor, bias: Tensor)] = []
                for l in 0..<linears {
                    let fanIn = l == 0 ? dim : dim * expansion
                    let fanOut = l == linears - 1 ? out : dim * expansion
                    let key = "mask_estimators.\(s).to_freqs.\(b).0.\(2 * l)"
                    mlp.append((try reader.take("\(key).weight", [fanOut, fanIn]), try reader.take("\(key).bias", [fanOut])))
                }
                perBand.append(mlp)
            }
            estimators.append(MaskEstimator(bands: perBand))
        }
        try reader.finish()

        self.family = family
        audioChannels = channels
        self.stems = stems
        stft = CenteredSTFT(nfft: nfft, hop: hop, normalized: normalized)
        self.bands = bands
        self.dim = dim
        zeroDC = try bool("zero_dc", true)
        skipConnection = family == .bsRoformer ? try bool("skip_connection", false) : false
        self.matchInputLength = matchInputLength
        self.bandInputs = bandInputs
        self.bandSplit = bandSplit
        self.layers = layers
        self.finalNorm = finalNorm
        maskEstimators = estimators
    }
}

/// `1 / 10000^(2i/d)` for `i < d/2` in Float32, `RotaryEmbedding(dim=d).freqs`.
func rotaryInverseFrequencies(_ dim: Int) -> [Float] {
    (0..<(dim / 2)).map { 1 / powf(10000, Float(2 * $0) / Float(dim)) }
}

/// The bins each mel band covers: where `librosa.filters.mel(sr, n_fft, n_mels)` (Slaney scale
/// and norm, 0 Hz to Nyquist) is positive, with the reference's two forced entries (the first
/// band always holds bin 0, the last band the Nyquist bin).
///
/// A weight is positive exactly where the bin's frequency lies strictly inside the band's two
/// outer mel edges, so only those edges are computed.
package func melBandBins(bands: Int, sampleRate: Int, nfft: Int) -> [[Int]] {
    let bins = nfft / 2 + 1
    let fSp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fSp, logStep = log(6.4) / 27
    func hzToMel(_ f: Double) -> Double { f >= minLogHz ? minLogMel + log(f / minLogHz) / logStep : f / fSp }
    func melToHz(_ m: Double) -> Double { m >= minLogMel ? minLogHz * exp(logStep * (m - minLogMel)) : fSp * m }
    let (lo, hi) = (hzToMel(0), hzToMel(Double(sampleRate) / 2))
    let edges = (0..<(bands + 2)).map { melToHz(lo + (hi - lo) * Double($0) / Double(bands + 1)) }
    let freqs = (0..<bins).map { Double($0) * Double(sampleRate) / Double(nfft) }
    var out: [[Int]] = []
    for b in 0..<bands {
        var members = (0..<bins).filter { k in
            let lower = (freqs[k] - edges[b]) / (edges[b + 1] - edges[b])
            let upper = (edges[b + 2] - freqs[k]) / (edges[b + 2] - edges[b + 1])
            return min(lower, upper) > 0
        }
        if b == 0 && members.first != 0 { members.insert(0, at: 0) }
        if b == bands - 1 && members.last != bins - 1 { members.append(bins - 1) }
        out.append(members)
    }
    return out
}
