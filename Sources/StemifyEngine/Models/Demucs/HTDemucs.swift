/// Hybrid Transformer Demucs (v4), `demucs/htdemucs.py`, `HTDemucs.forward`.
///
/// ```
///  mix ──STFT──► |Z| as channels ──norm──► freq encoder ×depth ─┐          ┌─► freq decoder ×depth ──► iSTFT ─┐
///   │                                                           ├─ cross- ─┤                                 (+)──► stems
///   └──────────────────────────────norm──► time encoder ×depth ─┘ transf.  └─► time decoder ×depth ──────────┘
/// ```
/// Figure 1 of Rouard, Massa, Défossez, "Hybrid Transformers for Music Source Separation"
/// (ICASSP 2023). Shapes below, batch axis dropped: `S` sources, `C` audio channels, `Fq` bins
/// (`nfft/2`), `T` frames, `L` samples; `Ch` hidden channels.
public struct HTDemucs: Sendable {
    public let config: HTDemucsConfig
    public let weights: HTDemucsWeights
    private let spectrogram: Spectrogram

    /// A model from an architecture and its weights (``init(package:)`` builds both from a file).
    public init(config: HTDemucsConfig, weights: HTDemucsWeights) {
        self.config = config
        self.weights = weights
        self.spectrogram = Spectrogram(nfft: config.nfft)
    }

    /// Samples in one forward: `int(segment · samplerate)` (`use_train_segment`).
    public var trainingLength: Int { config.trainingLength }

    /// Separates one chunk.
    ///
    /// - Parameter mix: `[C, L]` with `L ≤ trainingLength`; shorter chunks are zero-padded on the
    ///   right like the reference and the output cropped back.
    ///   - trace: receives named intermediate tensors (`enc0`, `tenc0`, …, `dec0`, `tdec0`, …),
    ///     for layer-by-layer comparison with the reference; nil in normal runs.
    /// - Returns: `[S, C, L]`.
    public func forward(_ mix: Tensor, trace: ((String, Tensor) -> Void)? = nil) -> Tensor {
        let cfg = config
        let audio = cfg.audioChannels
        let length = mix.shape[1]
        precondition(mix.shape[0] == audio && length <= trainingLength,
                     "HTDemucs.forward: mix \(mix.shape), expected [\(audio), ≤\(trainingLength)]")
        // Parity: the reference pads a short chunk with zeros up to the training length.
        let padded = length < trainingLength ? mix.slicingLast(0..<trainingLength) : mix
        let total = trainingLength

        // Spectrogram, complex as channels: [2C, Fq, T], channel 2c real, 2c+1 imaginary.
        var x: Tensor
        do {
            let (re, im) = spectrogram.forward(padded)
            trace?("spec_re", re)
            trace?("spec_im", im)
            x = complexAsChannels(re: re, im: im)
        }
        // Parity: unbiased std, `(x - mean) / (1e-5 + std)`, for both branches.
        let (mean, std) = x.data.withUnsafeBufferPointer { meanAndStd($0) }
        normalize(&x, mean: mean, std: std)
        var xt = padded.reshaped([audio, 1, total])
        let (meanT, stdT) = xt.data.withUnsafeBufferPointer { meanAndStd($0) }
        normalize(&xt, mean: meanT, std: stdT)

        // Encoders. Frequency levels keep T frames; time levels divide L by the stride.
        var saved: [Tensor] = [], savedT: [Tensor] = []
        var lengths: [Int] = [], lengthsT: [Int] = []
        for (i, encode) in weights.encoder.enumerated() {
            lengths.append(x.shape[2])
            var inject: Tensor?
            if i < weights.timeEncoder.count {
                lengthsT.append(xt.shape[2])
                let tenc = weights.timeEncoder[i]
                xt = tenc(xt)
                trace?("tenc\(i)", xt)
                if tenc.isEmpty { inject = xt } else { savedT.append(xt) }
            }
            // x: [Ch·growth^i, Fq/stride^(i+1), T]
            x = encode(x, inject: inject)
            trace?("enc\(i)", x)
            if i == 0, let emb = weights.frequencyEmbedding {
                addFrequencyEmbedding(&x, emb, scale: Float(cfg.freqEmb * cfg.embScale))
            }
            saved.append(x)
        }

        // Cross-domain transformer, optionally in `bottom_channels` dimensions.
        if let transformer = weights.transformer {
            if let up = weights.channelUpsampler, let upT = weights.channelUpsamplerTime {
                x = up(x)
                xt = upT(xt)
            }
            (x, xt) = transformer(x, xt)
            trace?("ct_x", x)
            trace?("ct_xt", xt)
            if let down = weights.channelDownsampler, let downT = weights.channelDownsamplerTime {
                x = down(x)
                xt = downT(xt)
            }
        }

        // Decoders, deepest first. Inputs and skips are consumed, and the time branch runs to its
        // end as soon as it has what it needs from the frequency branch (nothing, unless its
        // deepest layer is empty), so its skips are gone before the largest frequency levels.
        let split = weights.decoder.count - weights.timeDecoder.count
        for (i, decode) in weights.decoder.enumerated() {
            let pre: Tensor
            (x, pre) = decode(consume x, skip: saved.removeLast(), length: lengths.removeLast())
            trace?("dec\(i)", x)
            guard i == split else { continue }
            for (k, tdec) in weights.timeDecoder.enumerated() {
                let lengthT = lengthsT.removeLast()
                if tdec.isEmpty {
                    // `pre[:, :, 0]`: the merged layer had a single frequency row.
                    xt = tdec(pre.reshaped([pre.shape[0], 1, pre.shape[2]]), skip: nil, length: lengthT).out
                } else {
                    xt = tdec(consume xt, skip: savedT.removeLast(), length: lengthT).out
                }
                trace?("tdec\(k)", xt)
            }
        }
        precondition(saved.isEmpty && savedT.isEmpty && lengthsT.isEmpty, "unbalanced skip connections")

        // x: [S·2C, Fq, T] → denormalise → complex spectrogram per (source, channel) → iSTFT.
        let sources = cfg.sources.count
        denormalize(&x, mean: mean, std: std)
        var wave = spectrogram.inverse(complexAsChannels: consume x, length: total)

        // Sum of both branches: [S·C, L] → [S, C, L].
        denormalize(&xt, mean: meanT, std: stdT)
        add(&wave, xt.reshaped([sources * audio, total]))
        if length < total { wave = wave.slicingLast(0..<length) }
        return wave.reshaped([sources, audio, length])
    }
}

/// Weights of ``HTDemucs``, nested like its state dict.
public struct HTDemucsWeights: Sendable {
    /// `encoder.{i}`: frequency branch, input first.
    public var encoder: [HEncLayer]
    /// `tencoder.{i}`: time branch, one per frequency layer.
    public var timeEncoder: [HEncLayer]
    /// `decoder.{i}`: frequency branch, deepest first.
    public var decoder: [HDecLayer]
    /// `tdecoder.{i}`: time branch, deepest first.
    public var timeDecoder: [HDecLayer]
    /// `freq_emb.embedding.weight [Fq/stride, Ch]`.
    public var frequencyEmbedding: Tensor?
    /// `channel_upsampler(_t)`, `channel_downsampler(_t)`: 1×1 convs to and from `bottom_channels`.
    public var channelUpsampler: ConvLayer?
    public var channelUpsamplerTime: ConvLayer?
    public var channelDownsampler: ConvLayer?
    public var channelDownsamplerTime: ConvLayer?
    /// `crosstransformer`.
    public var transformer: CrossTransformer?
}
