import Foundation

/// Hybrid Demucs (v3), `demucs/hdemucs.py`, `HDemucs.forward`.
///
/// ```
///  mix ──STFT──► spectrogram ──norm──► freq encoder ×4 ──(+)──► merged encoder ×2 ─┐
///   │                                                    ▲                          │ zeros
///   └──────────────────────────norm──► time encoder ×4 ──┘ (injected at level 4)    ▼
///                                                         merged decoder ×2 ──► freq decoder ×4 ──► iSTFT ─┐
///                                                                   └─(pre)──► time decoder ×4 ───────────(+)──► stems
/// ```
/// Figure 1 of Défossez, "Hybrid Spectrogram and Waveform Source Separation" (MDX workshop,
/// 2021). The two branches run side by side until their strides match (the spectrogram is
/// down to one bin), then share the deepest layers; the decoder starts from zeros and gets
/// everything through the skips. The deep DConv branches carry a BLSTM and LocalState.
/// Chunks run at their real length. Shapes below, batch axis dropped.
public struct HDemucs: Sendable {
    public let config: HDemucsConfig
    public let weights: HDemucsWeights
    private let spectrogram: Spectrogram

    public init(config: HDemucsConfig, weights: HDemucsWeights) {
        self.config = config
        self.weights = weights
        self.spectrogram = Spectrogram(nfft: config.nfft, hybridOld: config.hybridOld)
    }

    /// `[C, L] → [S, C, L]` for any `L`.
    public func forward(_ mix: Tensor, trace: ((String, Tensor) -> Void)? = nil) -> Tensor {
        let cfg = config
        let audio = cfg.audioChannels
        let length = mix.shape[1]
        precondition(mix.shape[0] == audio, "HDemucs.forward: mix \(mix.shape), expected [\(audio), L]")

        // Spectrogram [C, Fq, T]: as channels [2C, Fq, T] (cac) or its magnitude [C, Fq, T].
        // Only the magnitude model needs the mixture's spectrum again (its phase, at the end).
        var x: Tensor
        var mixture: (re: Tensor, im: Tensor)?
        do {
            let (re, im) = spectrogram.forward(mix)
            if cfg.cac {
                x = complexAsChannels(re: re, im: im)
            } else {
                x = Tensor(uninitialized: re.shape)
                for i in 0..<x.count { x.data[i] = (re.data[i] * re.data[i] + im.data[i] * im.data[i]).squareRoot() }
                mixture = (re, im)
            }
        }
        let (mean, std) = x.data.withUnsafeBufferPointer { meanAndStd($0) }
        normalize(&x, mean: mean, std: std)
        var xt = mix.reshaped([audio, 1, length])
        let (meanT, stdT) = xt.data.withUnsafeBufferPointer { meanAndStd($0) }
        normalize(&xt, mean: meanT, std: stdT)

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
            switch encode {
            case let .layer(layer): x = layer(x, inject: inject)
            case let .bands(wrap): x = wrap.encode(x)
            }
            trace?("enc\(i)", x)
            if i == 0, let emb = weights.frequencyEmbedding {
                addFrequencyEmbedding(&x, emb, scale: Float(cfg.freqEmb * cfg.embScale))
            }
            saved.append(x)
        }

        // The decoder starts from zeros: the signal comes back through the skips.
        // Memory: every input and skip is consumed, and the time branch runs to its end as soon
        // as it splits off (it needs nothing more from the frequency branch), so its skips are
        // gone before the first frequency level, the largest, is decoded.
        x = Tensor(zeros: x.shape)
        let split = weights.decoder.count - weights.timeDecoder.count
        for (i, decode) in weights.decoder.enumerated() {
            let skip = saved.removeLast(), len = lengths.removeLast()
            var pre: Tensor?
            switch decode {
            case let .layer(layer): (x, pre) = layer(consume x, skip: consume skip, length: len)
            case let .bands(wrap): x = wrap.decode(consume x, skip: consume skip)
            }
            trace?("dec\(i)", x)
            guard i == split else { continue }
            for (k, tdec) in weights.timeDecoder.enumerated() {
                let lengthT = lengthsT.removeLast()
                if tdec.isEmpty, let pre {
                    xt = tdec(pre.reshaped([pre.shape[0], 1, pre.shape[pre.shape.count - 1]]), skip: nil, length: lengthT).out
                } else {
                    xt = tdec(consume xt, skip: savedT.removeLast(), length: lengthT).out
                }
                trace?("tdec\(k)", xt)
            }
        }
        precondition(saved.isEmpty && savedT.isEmpty && lengthsT.isEmpty, "unbalanced skip connections")

        let sources = cfg.sources.count
        denormalize(&x, mean: mean, std: std)
        var wave: Tensor
        if let mixture {
            let (specRe, specIm) = withMixturePhase(consume x, re: mixture.re, im: mixture.im)
            wave = spectrogram.inverse(re: specRe, im: specIm, length: length)
        } else {
            wave = spectrogram.inverse(complexAsChannels: consume x, length: length)
        }
        denormalize(&xt, mean: meanT, std: stdT)
        add(&wave, xt.reshaped([sources * audio, length]))
        return wave.reshaped([sources, audio, length])
    }
}

/// A frequency-branch layer: plain, or split into bands (``MultiWrap``).
public enum FrequencyEncoder: Sendable {
    case layer(HEncLayer)
    case bands(MultiWrap)
}

/// See ``FrequencyEncoder``.
public enum FrequencyDecoder: Sendable {
    case layer(HDecLayer)
    case bands(MultiWrap)
}

/// Weights of ``HDemucs``, nested like its state dict.
public struct HDemucsWeights: Sendable {
    /// `encoder.{i}`: frequency branch, then the merged layers; input first.
    public var encoder: [FrequencyEncoder]
    /// `decoder.{i}`: deepest first.
    public var decoder: [FrequencyDecoder]
    /// `tencoder.{i}`: time branch up to the merge (the last is only a convolution).
    public var timeEncoder: [HEncLayer]
    /// `tdecoder.{i}`: deepest first (the first is only a transposed convolution).
    public var timeDecoder: [HDecLayer]
    /// `freq_emb.embedding.weight [Fq/stride, Ch]`.
    public var frequencyEmbedding: Tensor?
}

extension HDemucs: SeparationModel {
    public var sources: [String] { config.sources }
    public var audioChannels: Int { config.audioChannels }
    public var samplerate: Int { config.samplerate }
    public var segmentLength: Int { config.segmentLength }
    /// Any length: the reference runs Hybrid Demucs on the chunk as it is.
    public func validLength(_ length: Int) -> Int { length }
    public func forward(_ mix: Tensor) -> Tensor { forward(mix, trace: nil) }
    public func withBagSegment(_ seconds: Double) -> any SeparationModel {
        var c = config
        c.segmentLength = Int(Double(c.samplerate) * seconds)
        return HDemucs(config: c, weights: weights)
    }
}

/// `HDemucs._mask` without complex-as-channels: each estimated magnitude `[S·C, F, T]` takes the
/// mixture's phase (`_wiener` with 0 iterations, i.e. `demucs.wiener.wiener(niters=0)`).
///
/// The reference's `atan2` maps an exact zero bin to angle 0 (it adds 1 to the real part first).
/// Where the mixture is not exactly zero but at the FFT's round-off level (digital silence
/// after normalisation is a constant, whose bins above 1 are round-off), its phase is noise, and
/// the reference itself gives different stems on CPUs whose FFT rounds differently (AVX-512 vs
/// AVX2 MKL: 21–24 dB on such inputs; `tools/parity.py --reference-self-check`).
package func withMixturePhase(_ magnitude: consuming Tensor, re: Tensor, im: Tensor) -> (re: Tensor, im: Tensor) {
    let channels = re.shape[0], plane = re.shape[1] * re.shape[2]
    precondition(magnitude.count % (channels * plane) == 0, "magnitudes \(magnitude.shape) do not fit the mixture \(re.shape)")
    // The real parts overwrite the magnitudes in place: each is read once, just before.
    var outRe = magnitude
    var outIm = Tensor(uninitialized: outRe.shape)
    for row in 0..<(outRe.count / plane) {
        let dst = row * plane, src = (row % channels) * plane
        for i in 0..<plane {
            let m = outRe.data[dst + i]
            let (zr, zi) = (re.data[src + i], im.data[src + i])
            let angle = zr == 0 && zi == 0 ? 0 : atan2f(zi, zr)
            outRe.data[dst + i] = m * cosf(angle)
            outIm.data[dst + i] = m * sinf(angle)
        }
    }
    return (outRe, outIm)
}
