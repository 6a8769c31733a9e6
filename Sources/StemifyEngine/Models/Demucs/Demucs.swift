import CStemifySystem
import Foundation

/// Time-domain Demucs (v2, and the waveform members of the `mdx` bags), `demucs/demucs.py`.
///
/// ```
///  mix ──norm──pad──×2 resample──► encoder ×depth ──[BLSTM]──► decoder ×depth ──÷2 resample──crop──► stems
///                                     └──────── skips (centre-trimmed) ────────┘
/// ```
/// Figure 2 of Défossez, Usunier, Bottou, Bach, "Music Source Separation in the Waveform
/// Domain" (2019), with the v3 DConv residual branches in each encoder layer. Each encoder
/// layer: conv (kernel 8, stride 4) → [GroupNorm] → GELU → [DConv] → 1×1 rewrite → [GroupNorm]
/// → GLU. Each decoder layer: rewrite (kernel 3) → [GroupNorm] → GLU → [DConv] → transposed
/// conv → [GroupNorm] → GELU (not after the last). No padding inside: the input is centred in
/// a valid length instead.
public struct Demucs: Sendable {
    public let config: DemucsConfig
    public let weights: DemucsWeights

    public init(config: DemucsConfig, weights: DemucsWeights) {
        self.config = config
        self.weights = weights
    }

    /// `valid_length`: the nearest length ≥ `length` for which every convolution is exact.
    public func validLength(_ length: Int) -> Int {
        let k = config.kernelSize, s = config.stride
        var n = config.resample ? 2 * length : length
        for _ in 0..<config.depth { n = max(1, Int((Double(n - k) / Double(s)).rounded(.up)) + 1) }
        for _ in 0..<config.depth { n = (n - 1) * s + k }
        if config.resample { n = (n + 1) / 2 }
        return n
    }

    /// `[C, L] → [S, C, L]`.
    public func forward(_ mix: Tensor, trace: ((String, Tensor) -> Void)? = nil) -> Tensor {
        let cfg = config
        let audio = cfg.audioChannels, length = mix.shape[1]
        precondition(mix.shape[0] == audio, "Demucs.forward: mix \(mix.shape), expected [\(audio), L]")
        var x = mix
        var mean: Float = 0, std: Float = 1
        if cfg.normalize {
            var mono = [Float](repeating: 0, count: length)
            for c in 0..<audio { for i in 0..<length { mono[i] += mix.data[c * length + i] } }
            for i in 0..<length { mono[i] /= Float(audio) }
            (mean, std) = mono.withUnsafeBufferPointer { meanAndStd($0) }
            normalize(&x, mean: mean, std: std)
        }
        let delta = validLength(length) - length
        x = x.slicingLast(-(delta / 2)..<(length + delta - delta / 2))
        if cfg.resample { x = resampleFrac(x, from: 1, to: 2) }
        x = x.reshaped([audio, 1, x.shape[1]])

        var saved: [Tensor] = []
        for (i, encode) in weights.encoder.enumerated() {
            x = encode(x)
            trace?("enc\(i)", x)
            saved.append(x)
        }
        if let lstm = weights.lstm {
            let (c, t) = (x.shape[0], x.shape[2])
            x = lstm(x.reshaped([c, t])).reshaped([c, 1, t])
        }
        // Whether `x` already holds the next skip with the last decoder's output summed in.
        var summed = false
        // The last level's tensors (250 MB each in a 44 s chunk) are too large for the heap's
        // free blocks, which the levels before left at ~200 MB: handed back first, they no longer
        // add to the peak (`stemify_release_free_memory`; long chunks only, as in ``Lanes``).
        let releasesBeforeLast = Double(length) >= Lanes.releaseAfterSeconds * Double(cfg.samplerate)
        for (i, decode) in weights.decoder.enumerated() {
            if releasesBeforeLast && i + 1 == weights.decoder.count { stemify_release_free_memory() }
            var y: Tensor
            if summed {
                y = consume x
            } else {
                // The skip is consumed: trimmed and summed in place.
                y = saved.removeLast()
                let delta = y.shape[2] - x.shape[2]
                precondition(delta >= 0, "skip \(y.shape) is shorter than \(x.shape)")
                if delta > 0 { y.cropLast((delta / 2)..<(delta / 2 + x.shape[2])) }
                add(&y, x)
                _ = consume x
            }
            // A decoder ending in its transposed convolution sums it straight into the next skip:
            // at the last levels of a 44 s chunk its output would be the largest tensor alive.
            if trace == nil, i + 1 < weights.decoder.count, let tail = decode.transposedTail {
                let head = decode(consume y, steps: tail.head)
                var skip = saved.removeLast()
                let (stride, kernel) = (tail.conv.geometry.stride.1, tail.conv.geometry.kernel.1)
                let length = (head.shape[2] - 1) * stride + kernel
                let delta = skip.shape[2] - length
                precondition(delta >= 0, "skip \(skip.shape) is shorter than \(length)")
                convTranspose1d(head, weight: tail.conv.weight, bias: tail.conv.bias, stride: stride, activation: tail.activation,
                                addingInto: &skip, offset: delta / 2)
                if delta > 0 { skip.cropLast((delta / 2)..<(delta / 2 + length)) }
                x = skip
                summed = true
            } else {
                x = decode(consume y)
                trace?("dec\(i)", x)
                summed = false
            }
        }
        var out = x.reshaped([x.shape[0], x.shape[2]])
        if cfg.resample { out = resampleFrac(out, from: 2, to: 1) }
        denormalize(&out, mean: mean, std: std)
        out = centreTrimmed(out, to: length)
        return out.reshaped([cfg.sources.count, audio, length])
    }
}

/// `center_trim`: the middle `length` samples along the last axis, the odd one dropped on the right.
func centreTrimmed(_ x: Tensor, to length: Int) -> Tensor {
    let delta = x.shape[x.shape.count - 1] - length
    precondition(delta >= 0, "centreTrimmed: \(x.shape) is shorter than \(length)")
    return delta == 0 ? x : x.slicingLast((delta / 2)..<(delta / 2 + length))
}

/// One encoder (`encoder.{i}`) or decoder (`decoder.{i}`) layer of ``Demucs``: a `Sequential`
/// whose parts depend on the kwargs.
public struct DemucsLayer: Sendable {
    public enum Activation: Sendable { case gelu, relu, glu }
    public enum Step: Sendable {
        case conv(ConvLayer)
        case norm(GroupNormLayer)
        case activation(Activation)
        case dconv(DConv)
    }
    public var steps: [Step]

    /// `[C, 1, T] → [C', 1, T']`.
    public func callAsFunction(_ x: consuming Tensor) -> Tensor {
        self(x, steps: steps.count)
    }

    /// The layer's last transposed convolution when the layer ends with it (then perhaps a
    /// ReLU or GELU), and the number of steps before it: ``Demucs`` then sums its output straight
    /// into the next skip (``convTranspose1d(_:weight:bias:stride:activation:addingInto:offset:)``).
    var transposedTail: (conv: ConvLayer, activation: OutputActivation, head: Int)? {
        var end = steps.count
        var activation = OutputActivation.identity
        if end > 0, case let .activation(act) = steps[end - 1], act != .glu {
            activation = act == .relu ? .relu : .gelu
            end -= 1
        }
        guard end > 0, case let .conv(conv) = steps[end - 1], conv.isTransposed,
              conv.geometry.kernel.0 == 1, conv.geometry.stride.0 == 1 else { return nil }
        return (conv, activation, end - 1)
    }

    /// The first `count` steps.
    func callAsFunction(_ x: consuming Tensor, steps count: Int) -> Tensor {
        var i = 0
        while i < count {
            switch steps[i] {
            case let .conv(conv):
                // A rewrite followed by its GLU: gated as it is produced, so the doubled tensor
                // (497 MB at the first level of a 44 s chunk) never exists.
                if i + 1 < count, case .activation(.glu) = steps[i + 1], !conv.isTransposed {
                    x = conv.gated(consume x)
                    i += 1
                } else {
                    x = conv(consume x)
                }
            case let .norm(norm): norm(&x)
            case .activation(.gelu): gelu(&x)
            case .activation(.relu): for i in 0..<x.count where x.data[i] < 0 { x.data[i] = 0 }
            case .activation(.glu): x = glu(consume x)
            case let .dconv(dconv): x = dconv(consume x)
            }
            i += 1
        }
        return x
    }
}

/// Architecture of a ``Demucs``, from the checkpoint's constructor kwargs.
public struct DemucsConfig: Sendable {
    public var sources: [String]
    public var audioChannels = 2
    public var channels = 64
    public var growth = 2.0
    public var depth = 6
    public var rewrite = true
    /// `lstm_layers`: a BLSTM between encoder and decoder (0 in v3 models, which use DConv LSTMs)
    public var lstmLayers = 0
    public var kernelSize = 8
    public var stride = 4
    public var context = 1
    public var gelu = true
    public var glu = true
    public var normStarts = 4
    public var normGroups = 4
    public var dconvMode = 1
    public var dconvDepth = 2
    public var dconvComp = 4.0
    public var dconvAttn = 4
    public var dconvLstm = 4
    /// `normalize`: divide each chunk by its own mono std
    public var normalize = true
    /// `resample`: run at twice the sample rate
    public var resample = true
    public var samplerate = 44100
    public var segmentLength = 40 * 44100

    public init(kwargs: [String: KwargValue]) throws {
        sources = try kwargs.sources()
        var segment: KwargValue = .int(40)
        for (key, value) in kwargs where key != "sources" {
            switch key {
            case "audio_channels": audioChannels = try value.int(key)
            case "channels": channels = try value.int(key)
            case "growth": growth = try value.number(key)
            case "depth": depth = try value.int(key)
            case "rewrite": rewrite = try value.number(key) != 0
            case "lstm_layers": lstmLayers = try value.int(key)
            case "kernel_size": kernelSize = try value.int(key)
            case "stride": stride = try value.int(key)
            case "context": context = try value.int(key)
            case "gelu": gelu = try value.number(key) != 0
            case "glu": glu = try value.number(key) != 0
            case "norm_starts": normStarts = try value.int(key)
            case "norm_groups": normGroups = try value.int(key)
            case "dconv_mode": dconvMode = try value.int(key)
            case "dconv_depth": dconvDepth = try value.int(key); try value.require(key, dconvDepth > 0)
            case "dconv_comp": dconvComp = try value.number(key)
            case "dconv_attn": dconvAttn = try value.int(key)
            case "dconv_lstm": dconvLstm = try value.int(key)
            case "normalize": normalize = try value.number(key) != 0
            case "resample": resample = try value.number(key) != 0
            case "samplerate": samplerate = try value.int(key)
            case "segment": segment = value
            case "dconv_init", "rescale": break
            default: throw CheckpointError.unknownKwarg(key: key, klass: "Demucs")
            }
        }
        segmentLength = try segment.samples(at: samplerate, key: "segment")
    }
}

/// Weights of ``Demucs``: `encoder.{i}` input first, `decoder.{i}` deepest first, `lstm`.
public struct DemucsWeights: Sendable {
    public var encoder: [DemucsLayer]
    public var decoder: [DemucsLayer]
    public var lstm: BLSTM?
}

extension Demucs {
    /// Builds the model from a loaded package (`Demucs.__init__`, registration order).
    public init(package: ModelPackage) throws {
        guard package.klass == "demucs.demucs.Demucs" else { throw CheckpointError.unsupportedClass(package.klass) }
        let cfg = try DemucsConfig(kwargs: package.kwargs)
        // `Demucs.load_state_dict`: older checkpoints number the layer after the norm one lower.
        var renamed = package
        for idx in 0..<cfg.depth {
            for a in ["encoder", "decoder"] {
                for b in ["bias", "weight"] {
                    let new = "\(a).\(idx).3.\(b)", old = "\(a).\(idx).2.\(b)"
                    if renamed.state[new] == nil, let t = renamed.state.removeValue(forKey: old) { renamed.state[new] = t }
                }
            }
        }
        var r = StateReader(renamed)
        let chScale = cfg.glu ? 2 : 1
        let act: DemucsLayer.Activation = cfg.gelu ? .gelu : .relu
        let rewriteAct: DemucsLayer.Activation = cfg.glu ? .glu : .relu
        var encoderSpecs: [(cin: Int, ch: Int, index: Int)] = []
        var cin = cfg.audioChannels, ch = cfg.channels
        for index in 0..<cfg.depth {
            encoderSpecs.append((cin, ch, index))
            cin = ch
            ch = Int(cfg.growth * Double(ch))
        }
        func dconv(_ p: String, _ channels: Int, _ index: Int) throws -> DConv {
            try .load(&r, p, channels: channels, compress: cfg.dconvComp, depth: cfg.dconvDepth,
                      lstm: index >= cfg.dconvLstm, attention: index >= cfg.dconvAttn)
        }
        func norm(_ p: String, _ channels: Int, _ index: Int) throws -> GroupNormLayer? {
            index >= cfg.normStarts ? try .load(&r, p, groups: cfg.normGroups, channels: channels) : nil
        }

        var encoders: [DemucsLayer] = []
        for (cin, ch, index) in encoderSpecs {
            var steps: [DemucsLayer.Step] = []
            let p = "encoder.\(index)"
            steps.append(.conv(try .load(&r, "\(p).0", cin: cin, cout: ch, kernel: (1, cfg.kernelSize), stride: (1, cfg.stride), oneD: true)))
            if let n = try norm("\(p).1", ch, index) { steps.append(.norm(n)) }
            steps.append(.activation(act))
            var next = 3
            if cfg.dconvMode & 1 != 0 { steps.append(.dconv(try dconv("\(p).3", ch, index))); next = 4 }
            if cfg.rewrite {
                steps.append(.conv(try .load(&r, "\(p).\(next)", cin: ch, cout: chScale * ch, kernel: (1, 1), oneD: true)))
                if let n = try norm("\(p).\(next + 1)", chScale * ch, index) { steps.append(.norm(n)) }
                steps.append(.activation(rewriteAct))
            }
            encoders.append(DemucsLayer(steps: steps))
        }
        var decoders: [DemucsLayer] = []
        for (cin, ch, index) in encoderSpecs.reversed() {
            var steps: [DemucsLayer.Step] = []
            let p = "decoder.\(cfg.depth - 1 - index)"
            let out = index > 0 ? cin : cfg.sources.count * cfg.audioChannels
            var next = 0
            if cfg.rewrite {
                let k = 2 * cfg.context + 1
                steps.append(.conv(try .load(&r, "\(p).0", cin: ch, cout: chScale * ch, kernel: (1, k), padding: (0, cfg.context), oneD: true)))
                if let n = try norm("\(p).1", chScale * ch, index) { steps.append(.norm(n)) }
                steps.append(.activation(rewriteAct))
                next = 3
            }
            if cfg.dconvMode & 2 != 0 { steps.append(.dconv(try dconv("\(p).\(next)", ch, index))); next += 1 }
            steps.append(.conv(try .load(&r, "\(p).\(next)", cin: ch, cout: out, kernel: (1, cfg.kernelSize), stride: (1, cfg.stride),
                                         transposed: true, oneD: true)))
            if index > 0 {
                if let n = try norm("\(p).\(next + 1)", out, index) { steps.append(.norm(n)) }
                steps.append(.activation(act))
            }
            decoders.append(DemucsLayer(steps: steps))
        }
        let lstm: BLSTM? = cfg.lstmLayers > 0
            ? try .load(&r, "lstm", channels: encoderSpecs.last!.ch, layers: cfg.lstmLayers, maxSteps: nil, skip: false)
            : nil
        try r.finish()
        self.init(config: cfg, weights: DemucsWeights(encoder: encoders, decoder: decoders, lstm: lstm))
    }
}

extension Demucs: SeparationModel {
    public var sources: [String] { config.sources }
    public var audioChannels: Int { config.audioChannels }
    public var samplerate: Int { config.samplerate }
    public var segmentLength: Int { config.segmentLength }
    public func forward(_ mix: Tensor) -> Tensor { forward(mix, trace: nil) }
    public func withBagSegment(_ seconds: Double) -> any SeparationModel {
        var c = config
        c.segmentLength = Int(Double(c.samplerate) * seconds)
        return Demucs(config: c, weights: weights)
    }
}
