import Foundation

/// Architecture of an ``HDemucs``, from the checkpoint's constructor kwargs (defaults are the
/// reference's; the published members use them with `cac`, `hybrid_old` or `multi_freqs` set).
public struct HDemucsConfig: Sendable {
    public var sources: [String]
    public var audioChannels = 2
    /// `channels`: 48; `channels_time`: nil (same)
    public var channels = 48
    public var channelsTime: Int?
    public var growth = 2.0
    /// `nfft`: 4096 (hop nfft/4)
    public var nfft = 4096
    /// `cac`: complex as channels; false runs on magnitudes and reuses the mixture's phase
    public var cac = true
    public var depth = 6
    public var rewrite = true
    /// `hybrid_old`: the zero-padding STFT bug of some MDX models
    public var hybridOld = false
    /// `multi_freqs`: band split ratios of the outermost `multi_freqs_depth` layers
    public var multiFreqs: [Double] = []
    public var multiFreqsDepth = 2
    public var freqEmb = 0.2
    public var embScale = 10.0
    public var kernelSize = 8
    public var timeStride = 2
    public var stride = 4
    public var context = 1
    public var contextEnc = 0
    public var normStarts = 4
    public var normGroups = 4
    public var dconvMode = 1
    public var dconvDepth = 2
    public var dconvComp = 4.0
    /// Layers from which the DConv branches carry LocalState attention and a BLSTM.
    public var dconvAttn = 4
    public var dconvLstm = 4
    public var samplerate = 44100
    /// `int(segment · samplerate)`; the kwarg default is 40 s, bags set 44.
    public var segmentLength = 40 * 44100

    /// - Throws: ``CheckpointError`` for an unknown kwarg or a code path not implemented
    ///   (Wiener filtering iterations, the spectrogram-only `hybrid=False` variant).
    public init(kwargs: [String: KwargValue]) throws {
        sources = try kwargs.sources()
        var segment: KwargValue = .int(40)
        for (key, value) in kwargs where key != "sources" {
            switch key {
            case "audio_channels": audioChannels = try value.int(key)
            case "channels": channels = try value.int(key)
            case "channels_time": if value != .none { channelsTime = try value.int(key) }
            case "growth": growth = try value.number(key)
            case "nfft": nfft = try value.int(key); try value.require(key, nfft >= 16 && nfft & (nfft - 1) == 0)
            case "cac": cac = try value.number(key) != 0
            case "depth": depth = try value.int(key)
            case "rewrite": rewrite = try value.number(key) != 0
            case "hybrid": try value.require(key, try value.number(key) == 1)
            case "hybrid_old": hybridOld = try value.number(key) != 0
            case "multi_freqs":
                switch value {
                case .none: multiFreqs = []
                case let .list(items): multiFreqs = try items.map { try $0.number(key) }
                default: throw CheckpointError.unsupportedKwarg(key: key, value: "\(value)")
                }
            case "multi_freqs_depth": multiFreqsDepth = try value.int(key)
            case "freq_emb": freqEmb = try value.number(key)
            case "emb_scale": embScale = try value.number(key)
            case "kernel_size": kernelSize = try value.int(key)
            case "time_stride": timeStride = try value.int(key)
            case "stride": stride = try value.int(key)
            case "context": context = try value.int(key)
            case "context_enc": contextEnc = try value.int(key)
            case "norm_starts": normStarts = try value.int(key)
            case "norm_groups": normGroups = try value.int(key)
            case "dconv_mode": dconvMode = try value.int(key)
            case "dconv_depth": dconvDepth = try value.int(key); try value.require(key, dconvDepth > 0)
            case "dconv_comp": dconvComp = try value.number(key)
            case "dconv_attn": dconvAttn = try value.int(key)
            case "dconv_lstm": dconvLstm = try value.int(key)
            case "samplerate": samplerate = try value.int(key)
            case "segment": segment = value
            case "wiener_iters", "end_iters": try value.require(key, try value.number(key) == 0)
            // Inert with 0 Wiener iterations, or training only.
            case "wiener_residual", "emb_smooth", "dconv_init", "rescale": break
            default: throw CheckpointError.unknownKwarg(key: key, klass: "HDemucs")
            }
        }
        segmentLength = try segment.samples(at: samplerate, key: "segment")
    }
}

extension HDemucs {
    /// Builds the model from a loaded package, porting the layer construction of
    /// `HDemucs.__init__` and taking tensors in the reference's registration order (encoder,
    /// decoder, tencoder, tdecoder, freq_emb), which DiffQ states rely on.
    public init(package: ModelPackage) throws {
        guard package.klass == "demucs.hdemucs.HDemucs" else { throw CheckpointError.unsupportedClass(package.klass) }
        let cfg = try HDemucsConfig(kwargs: package.kwargs)
        var r = StateReader(package)

        let plan = try HybridLayout(
            audioChannels: cfg.audioChannels, sources: cfg.sources.count, cac: cfg.cac, channels: cfg.channels,
            channelsTime: cfg.channelsTime, growth: cfg.growth, nfft: cfg.nfft, depth: cfg.depth, kernelSize: cfg.kernelSize,
            stride: cfg.stride, timeStride: cfg.timeStride, rewrite: cfg.rewrite, context: cfg.context, contextEnc: cfg.contextEnc,
            normStarts: cfg.normStarts, normGroups: cfg.normGroups, dconvMode: cfg.dconvMode, dconvDepth: cfg.dconvDepth,
            dconvComp: cfg.dconvComp, dconvLstm: cfg.dconvLstm, dconvAttn: cfg.dconvAttn, multiFreqs: cfg.multiFreqs,
            multiFreqsDepth: cfg.multiFreqsDepth, freqEmb: cfg.freqEmb).plan()

        var w = HDemucsWeights(encoder: [], decoder: [], timeEncoder: [], timeDecoder: [])
        for (i, e) in plan.encoders.enumerated() {
            w.encoder.append(e.multi
                ? .bands(try .loadEncoder(&r, "encoder.\(i)", cin: e.cin, cout: e.cout, ratios: cfg.multiFreqs, e.options))
                : .layer(try .load(&r, "encoder.\(i)", cin: e.cin, cout: e.cout, e.options)))
        }
        for (i, d) in plan.decoders.enumerated() {
            w.decoder.append(d.multi
                ? .bands(try .loadDecoder(&r, "decoder.\(i)", cin: d.cin, cout: d.cout, ratios: cfg.multiFreqs, d.options))
                : .layer(try .load(&r, "decoder.\(i)", cin: d.cin, cout: d.cout, d.options)))
        }
        for (i, e) in plan.timeEncoders.enumerated() { w.timeEncoder.append(try .load(&r, "tencoder.\(i)", cin: e.cin, cout: e.cout, e.options)) }
        for (i, d) in plan.timeDecoders.enumerated() { w.timeDecoder.append(try .load(&r, "tdecoder.\(i)", cin: d.cin, cout: d.cout, d.options)) }
        if let shape = plan.embedding { w.frequencyEmbedding = try r.take("freq_emb.embedding.weight", shape) }
        try r.finish()
        self.init(config: cfg, weights: w)
    }
}

extension [String: KwargValue] {
    /// The `sources` list of names every family has.
    func sources() throws -> [String] {
        guard case let .list(names)? = self["sources"] else { throw CheckpointError.malformedPackage("kwargs has no 'sources' list") }
        return try names.map { v -> String in
            guard case let .string(s) = v else { throw CheckpointError.unsupportedKwarg(key: "sources", value: "\(v)") }
            return s
        }
    }
}

extension KwargValue {
    /// Architecture integers are bounded (2²⁰; published values are at most 44100) so that no
    /// product of them overflows while the layers are planned from a forged checkpoint.
    func int(_ key: String) throws -> Int {
        guard case let .int(i) = self, abs(i) <= 1 << 20 else { throw CheckpointError.unsupportedKwarg(key: key, value: "\(self)") }
        return i
    }

    func number(_ key: String) throws -> Double {
        guard let n = number, n.isFinite, abs(n) <= Double(1 << 20) else { throw CheckpointError.unsupportedKwarg(key: key, value: "\(self)") }
        return n
    }

    func require(_ key: String, _ ok: Bool) throws {
        if !ok { throw CheckpointError.unsupportedKwarg(key: key, value: "\(self)") }
    }

    /// `int(segment · samplerate)` for a segment given as int, float or Fraction, with the
    /// reference's arithmetic (exact for fractions).
    func samples(at rate: Int, key: String) throws -> Int {
        switch self {
        case let .int(i): return i * rate
        case let .fraction(n, d): return n * rate / d
        case let .double(d): return Int(Double(rate) * d)
        default: throw CheckpointError.unsupportedKwarg(key: key, value: "\(self)")
        }
    }
}
