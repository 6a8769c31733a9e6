import Foundation

/// Pieces the two hybrid families (``HDemucs``, ``HTDemucs``) share.

/// `(x - mean) / (1e-5 + std)` in place (the reference's normalisation of both branches).
func normalize(_ x: inout Tensor, mean: Float, std: Float) {
    let inv = 1 / (1e-5 + std)
    x.data.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = (p[i] - mean) * inv } }
}

/// `x · std + mean` in place.
func denormalize(_ x: inout Tensor, mean: Float, std: Float) {
    x.data.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = p[i] * std + mean } }
}

/// `x += scale · emb(f)ᵀ` broadcast over time; `emb [F, Ch]` is `freq_emb.embedding.weight`
/// (the `ScaledEmbedding` scale is folded into `scale`).
func addFrequencyEmbedding(_ x: inout Tensor, _ emb: Tensor, scale: Float) {
    let (ch, f, t) = (x.shape[0], x.shape[1], x.shape[2])
    precondition(emb.shape == [f, ch], "frequency embedding \(emb.shape) does not fit \(x.shape)")
    for c in 0..<ch {
        for fi in 0..<f {
            let v = scale * emb.data[fi * ch + c]
            let base = (c * f + fi) * t
            for i in 0..<t { x.data[base + i] += v }
        }
    }
}

/// Complex as channels (`_magnitude` with `cac`): `[C, F, T]` pairs → `[2C, F, T]`, channel
/// `2c` real and `2c+1` imaginary.
func complexAsChannels(re: Tensor, im: Tensor) -> Tensor {
    let (c, f, t) = (re.shape[0], re.shape[1], re.shape[2])
    let plane = f * t
    var x = Tensor(uninitialized: [2 * c, f, t])
    for ch in 0..<c {
        x.data[(2 * ch) * plane..<(2 * ch + 1) * plane] = re.data[ch * plane..<(ch + 1) * plane]
        x.data[(2 * ch + 1) * plane..<(2 * ch + 2) * plane] = im.data[ch * plane..<(ch + 1) * plane]
    }
    return x
}

/// The kwargs that shape the U-Net of both hybrid families (`HDemucs.__init__` and
/// `HTDemucs.__init__` build their encoders and decoders with the same loop).
struct HybridLayout {
    var audioChannels: Int
    var sources: Int
    var cac: Bool
    var channels: Int
    var channelsTime: Int?
    var growth: Double
    var nfft: Int
    var depth: Int
    var kernelSize: Int
    var stride: Int
    var timeStride: Int
    var rewrite: Bool
    var context: Int
    var contextEnc: Int
    var normStarts: Int
    var normGroups: Int
    var dconvMode: Int
    var dconvDepth: Int
    var dconvComp: Double
    /// Levels from which the DConv branches carry a BLSTM / LocalState (`Int.max`: never).
    var dconvLstm = Int.max
    var dconvAttn = Int.max
    var multiFreqs: [Double] = []
    var multiFreqsDepth = 0
    var freqEmb: Double

    struct Layer<Options> {
        var cin: Int
        var cout: Int
        var options: Options
        var multi: Bool
    }

    /// Every layer's channels and options, in the reference's registration order: encoders input
    /// first, decoders deepest first, then the time branch's, and the frequency embedding shape.
    func plan() throws -> (encoders: [Layer<HEncLayer.Options>], decoders: [Layer<HDecLayer.Options>],
                           timeEncoders: [Layer<HEncLayer.Options>], timeDecoders: [Layer<HDecLayer.Options>],
                           embedding: [Int]?) {
        // A forged checkpoint must fail here, not trap below or allocate without bound.
        guard (1...16).contains(audioChannels), (1...64).contains(sources), (1...16).contains(depth),
              (1...64).contains(kernelSize), (1...64).contains(stride), (1...64).contains(timeStride),
              (1...4096).contains(channels), (channelsTime ?? 1) >= 1, growth > 0, growth <= 8, nfft <= 1 << 16,
              normGroups >= 1, dconvComp > 0, (0...16).contains(context), (0...16).contains(contextEnc),
              (0...8).contains(dconvDepth), multiFreqs.allSatisfy({ $0 > 0 && $0 < 1 }), (0...16).contains(multiFreqsDepth),
              Double(max(channels, channelsTime ?? 0)) * pow(growth, Double(depth)) <= Double(1 << 16)
        else { throw CheckpointError.unsupportedKwarg(key: "architecture", value: "outside the bounds of any published model") }
        var chin = audioChannels
        var chinZ = cac ? 2 * chin : chin
        var chout = channelsTime ?? channels
        var choutZ = channels
        var freqs = nfft / 2
        var encoders: [Layer<HEncLayer.Options>] = [], decoders: [Layer<HDecLayer.Options>] = []
        var timeEncoders: [Layer<HEncLayer.Options>] = [], timeDecoders: [Layer<HDecLayer.Options>] = []
        var embedding: [Int]?
        for index in 0..<depth {
            let norm = index >= normStarts
            let freq = freqs > 1
            var ker = kernelSize, stri = stride
            if !freq { ker = timeStride * 2; stri = timeStride }
            var pad = true, lastFreq = false
            if freq && freqs <= kernelSize { ker = freqs; pad = false; lastFreq = true }
            let multi = !multiFreqs.isEmpty && index < multiFreqsDepth
            if multi && (norm || !freq || !pad) {
                throw CheckpointError.unsupportedKwarg(key: "multi_freqs_depth", value: "\(multiFreqsDepth) reaches a normalised or unpadded layer")
            }
            if lastFreq { choutZ = max(chout, choutZ); chout = choutZ }

            let enc = HEncLayer.Options(
                kernel: ker, stride: stri, isFrequency: freq, pad: pad, norm: norm, normGroups: normGroups,
                rewrite: rewrite, context: contextEnc, dconv: dconvMode & 1 != 0, dconvCompress: dconvComp,
                dconvDepth: dconvDepth, dconvLSTM: index >= dconvLstm, dconvAttention: index >= dconvAttn, empty: false)
            encoders.append(Layer(cin: chinZ, cout: choutZ, options: enc, multi: multi))
            if freq {
                var tenc = enc
                (tenc.kernel, tenc.stride, tenc.isFrequency, tenc.pad, tenc.empty) = (kernelSize, stride, false, true, lastFreq)
                timeEncoders.append(Layer(cin: chin, cout: chout, options: tenc, multi: false))
            }
            if index == 0 {
                chin = audioChannels * sources
                chinZ = cac ? 2 * chin : chin
            }
            let dec = HDecLayer.Options(
                kernel: ker, stride: stri, isFrequency: freq, pad: pad, norm: norm, normGroups: normGroups,
                rewrite: rewrite, context: context, contextFrequency: !multi, dconv: dconvMode & 2 != 0,
                dconvCompress: dconvComp, dconvDepth: dconvDepth, dconvLSTM: index >= dconvLstm,
                dconvAttention: index >= dconvAttn, empty: false, last: index == 0)
            decoders.insert(Layer(cin: choutZ, cout: chinZ, options: dec, multi: multi), at: 0)
            if freq {
                var tdec = dec
                (tdec.kernel, tdec.stride, tdec.isFrequency, tdec.pad, tdec.empty) = (kernelSize, stride, false, true, lastFreq)
                tdec.contextFrequency = true
                timeDecoders.insert(Layer(cin: chout, cout: chin, options: tdec, multi: false), at: 0)
            }
            chin = chout
            chinZ = choutZ
            chout = Int(growth * Double(chout))
            choutZ = Int(growth * Double(choutZ))
            if freq { freqs = freqs <= kernelSize ? 1 : freqs / stride }
            if index == 0 && freqEmb != 0 { embedding = [freqs, chinZ] }
        }
        return (encoders, decoders, timeEncoders, timeDecoders, embedding)
    }
}
