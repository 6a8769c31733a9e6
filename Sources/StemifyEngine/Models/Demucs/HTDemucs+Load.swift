import Foundation

/// Architecture of an ``HTDemucs``, from the checkpoint's constructor kwargs.
///
/// Field names follow the reference's kwargs in camelCase; comments give the published
/// `htdemucs` values. Every size in the forward derives from these.
public struct HTDemucsConfig: Sendable, Equatable {
    /// `sources`: ["drums", "bass", "other", "vocals"] (+ "guitar", "piano" for htdemucs_6s)
    public var sources: [String]
    /// `audio_channels`: 2
    public var audioChannels = 2
    /// `channels`: 48, first hidden width; `channels_time`: nil (same)
    public var channels = 48
    public var channelsTime: Int?
    /// `growth`: 2, width factor per level
    public var growth = 2.0
    /// `nfft`: 4096 (hop nfft/4)
    public var nfft = 4096
    /// `depth`: 4
    public var depth = 4
    /// `rewrite`: true
    public var rewrite = true
    /// `freq_emb`: 0.2, `emb_scale`: 10
    public var freqEmb = 0.2
    public var embScale = 10.0
    /// `kernel_size`: 8, `stride`: 4, `time_stride`: 2
    public var kernelSize = 8
    public var stride = 4
    public var timeStride = 2
    /// `context`: 1 (decoder rewrite 3×3), `context_enc`: 0 (encoder rewrite 1×1)
    public var context = 1
    public var contextEnc = 0
    /// `norm_starts`: 4, `norm_groups`: 4
    public var normStarts = 4
    public var normGroups = 4
    /// `dconv_mode`: 3 (bit 1 encoder, bit 2 decoder), `dconv_depth`: 2, `dconv_comp`: 8
    public var dconvMode = 1
    public var dconvDepth = 2
    public var dconvComp = 8.0
    /// `bottom_channels`: 512 (htdemucs), 0 (htdemucs_6s)
    public var bottomChannels = 0
    /// `t_layers`: 5, `t_heads`: 8, `t_hidden_scale`: 4
    public var tLayers = 5
    public var tHeads = 8
    public var tHiddenScale = 4.0
    /// `t_max_period`: 10000, `t_weight_pos_embed`: 1
    public var tMaxPeriod = 10000.0
    public var tWeightPosEmbed = 1.0
    /// `samplerate`: 44100
    public var samplerate = 44100
    /// `segment`: 39/5 seconds, as a fraction so the training length is exact
    public var segment = (numerator: 39, denominator: 5)
    /// `use_train_segment`: true

    public static func == (a: HTDemucsConfig, b: HTDemucsConfig) -> Bool {
        a.sources == b.sources && a.channels == b.channels && a.depth == b.depth && a.nfft == b.nfft
            && a.bottomChannels == b.bottomChannels && a.segment == b.segment && a.samplerate == b.samplerate
    }

    /// Segment length in seconds.
    public var segmentSeconds: Double { Double(segment.numerator) / Double(segment.denominator) }

    /// `int(segment · samplerate)`, computed exactly like the reference's Fraction arithmetic.
    public var trainingLength: Int { segment.numerator * samplerate / segment.denominator }

    /// Reads the kwargs of a `demucs.htdemucs.HTDemucs` checkpoint.
    ///
    /// - Throws: ``CheckpointError/unknownKwarg(key:klass:)`` for a name the reference class
    ///   does not have, ``CheckpointError/unsupportedKwarg(key:value:)`` for a value that selects
    ///   a code path this engine does not implement (Wiener filtering, sparse attention, …).
    public init(kwargs: [String: KwargValue]) throws {
        guard case let .list(names)? = kwargs["sources"] else { throw CheckpointError.malformedPackage("kwargs has no 'sources' list") }
        sources = try names.map { v -> String in
            guard case let .string(s) = v else { throw CheckpointError.unsupportedKwarg(key: "sources", value: "\(v)") }
            return s
        }
        for (key, value) in kwargs where key != "sources" {
            func int() throws -> Int { try value.int(key) }
            func number() throws -> Double { try value.number(key) }
            func require(_ ok: Bool) throws { try value.require(key, ok) }
            switch key {
            case "audio_channels": audioChannels = try int()
            case "channels": channels = try int()
            case "channels_time": if value != .none { channelsTime = try int() }
            case "growth": growth = try number()
            case "nfft": nfft = try int(); try require(nfft >= 16 && nfft & (nfft - 1) == 0)
            case "depth": depth = try int()
            case "rewrite": rewrite = try number() != 0
            case "freq_emb": freqEmb = try number()
            case "emb_scale": embScale = try number()
            case "kernel_size": kernelSize = try int()
            case "stride": stride = try int()
            case "time_stride": timeStride = try int()
            case "context": context = try int()
            case "context_enc": contextEnc = try int()
            case "norm_starts": normStarts = try int()
            case "norm_groups": normGroups = try int()
            case "dconv_mode": dconvMode = try int()
            case "dconv_depth": dconvDepth = try int(); try require(dconvDepth > 0)
            case "dconv_comp": dconvComp = try number()
            case "bottom_channels": bottomChannels = try int()
            case "t_layers": tLayers = try int()
            case "t_heads": tHeads = try int()
            case "t_hidden_scale": tHiddenScale = try number()
            case "t_max_period": tMaxPeriod = try number()
            case "t_weight_pos_embed": tWeightPosEmbed = try number()
            case "samplerate": samplerate = try int()
            case "segment":
                switch value {
                case let .fraction(n, d): segment = (n, d)
                case let .int(i): segment = (i, 1)
                default: throw CheckpointError.unsupportedKwarg(key: key, value: "\(value)")
                }
            // Paths of the reference this engine implements only in their published setting.
            case "cac": try require(value == .bool(true))
            case "wiener_iters", "end_iters": try require(try number() == 0)
            case "wiener_residual": try require(try number() == 0)
            case "multi_freqs": try require(value == .none || value == .list([]))
            case "t_emb": try require(value == .string("sin"))
            case "t_norm_in", "t_norm_first", "t_norm_out", "t_layer_scale", "t_gelu", "use_train_segment":
                try require(try number() == 1)
            case "t_norm_in_group", "t_group_norm", "t_sparse_self_attn", "t_sparse_cross_attn", "t_cross_first",
                 "t_sin_random_shift":
                try require(try number() == 0)
            // Training-only or inert at inference.
            case "multi_freqs_depth", "emb_smooth", "dconv_init", "t_dropout", "t_max_positions", "t_weight_decay",
                 "t_lr", "t_cape_mean_normalize", "t_cape_augment", "t_cape_glob_loc_scale", "t_mask_type",
                 "t_mask_random_seed", "t_sparse_attn_window", "t_global_window", "t_sparsity", "t_auto_sparsity",
                 "rescale":
                break
            default:
                throw CheckpointError.unknownKwarg(key: key, klass: "HTDemucs")
            }
        }
    }
}

extension HTDemucs {
    /// Builds the model from a loaded package, taking every tensor the kwargs imply.
    ///
    /// Ports the layer construction of `HTDemucs.__init__`, so the same kwargs produce the same
    /// layers and state-dict keys.
    /// - Throws: ``CheckpointError`` for a missing, misshapen or unexpected tensor.
    public init(package: ModelPackage) throws {
        guard package.klass == "demucs.htdemucs.HTDemucs" else { throw CheckpointError.unsupportedClass(package.klass) }
        let cfg = try HTDemucsConfig(kwargs: package.kwargs)
        var r = StateReader(package)
        var w = HTDemucsWeights(encoder: [], timeEncoder: [], decoder: [], timeDecoder: [])

        let plan = try HybridLayout(
            audioChannels: cfg.audioChannels, sources: cfg.sources.count, cac: true, channels: cfg.channels,
            channelsTime: cfg.channelsTime, growth: cfg.growth, nfft: cfg.nfft, depth: cfg.depth, kernelSize: cfg.kernelSize,
            stride: cfg.stride, timeStride: cfg.timeStride, rewrite: cfg.rewrite, context: cfg.context, contextEnc: cfg.contextEnc,
            normStarts: cfg.normStarts, normGroups: cfg.normGroups, dconvMode: cfg.dconvMode, dconvDepth: cfg.dconvDepth,
            dconvComp: cfg.dconvComp, freqEmb: cfg.freqEmb).plan()
        for (i, e) in plan.encoders.enumerated() { w.encoder.append(try .load(&r, "encoder.\(i)", cin: e.cin, cout: e.cout, e.options)) }
        for (i, d) in plan.decoders.enumerated() { w.decoder.append(try .load(&r, "decoder.\(i)", cin: d.cin, cout: d.cout, d.options)) }
        for (i, e) in plan.timeEncoders.enumerated() { w.timeEncoder.append(try .load(&r, "tencoder.\(i)", cin: e.cin, cout: e.cout, e.options)) }
        for (i, d) in plan.timeDecoders.enumerated() { w.timeDecoder.append(try .load(&r, "tdecoder.\(i)", cin: d.cin, cout: d.cout, d.options)) }
        if let shape = plan.embedding { w.frequencyEmbedding = try r.take("freq_emb.embedding.weight", shape) }

        var dim = cfg.channels * Int(pow(cfg.growth, Double(cfg.depth - 1)))
        if cfg.bottomChannels > 0 {
            let b = cfg.bottomChannels
            w.channelUpsampler = try .load(&r, "channel_upsampler", cin: dim, cout: b, kernel: (1, 1), oneD: true)
            w.channelDownsampler = try .load(&r, "channel_downsampler", cin: b, cout: dim, kernel: (1, 1), oneD: true)
            w.channelUpsamplerTime = try .load(&r, "channel_upsampler_t", cin: dim, cout: b, kernel: (1, 1), oneD: true)
            w.channelDownsamplerTime = try .load(&r, "channel_downsampler_t", cin: b, cout: dim, kernel: (1, 1), oneD: true)
            dim = b
        }
        if cfg.tLayers > 0 {
            guard dim % cfg.tHeads == 0, dim % 4 == 0 else {
                throw CheckpointError.unsupportedKwarg(key: "t_heads", value: "\(cfg.tHeads) for transformer width \(dim)")
            }
            w.transformer = try .load(
                &r, "crosstransformer", dim: dim, hidden: Int(Double(dim) * cfg.tHiddenScale), heads: cfg.tHeads,
                layers: cfg.tLayers, maxPeriod: Float(cfg.tMaxPeriod), positionalWeight: Float(cfg.tWeightPosEmbed))
        }
        try r.finish()
        self.init(config: cfg, weights: w)
    }
}

