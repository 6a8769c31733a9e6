import Foundation

/// SCNet: sparse compression network for music source separation (Tong et al., 2024), as
/// `msst` 0.1.0 implements it (`msst/models/scnet/scnet.py`, `separation.py`).
///
/// ```
/// audio ─ STFT (no window) → [2·C, F, T]
///   SD blocks ×3: split F into low/mid/high bands, strided conv per band (sparse down-sampling),
///                 convolution modules along time per band, GELU, concat (= skip), 3×3 conv
///   separation network: dual-path RNN layers (BiLSTM over F, then over T), with an rFFT over
///                 time between layers (every second layer works on the spectrum of the time axis)
///   SU blocks ×3: fusion (add skip, 3×3 conv, GLU), transposed conv per band, trimmed, concat
/// → [stems·2·C, F, T] ─ iSTFT → stems
/// ```
public struct SCNet: ChunkNetwork {
    struct Band: Sendable {
        var share: Double
        var stride: Int
        var kernel: Int
    }

    /// `ConvolutionModule`: `depth` residual layers GroupNorm → Conv1d k → GLU → depthwise Conv1d
    /// → GroupNorm → Swish → 1×1 Conv1d, each along time, for every frequency row.
    struct ConvolutionLayer: Sendable {
        var norm1: (weight: Tensor, bias: Tensor)
        var expand: (weight: Tensor, bias: Tensor)  // [2h, C, 1, k]
        var depthwise: (weight: Tensor, bias: Tensor)  // [h, k]
        var norm2: (weight: Tensor, bias: Tensor)
        var project: (weight: Tensor, bias: Tensor)  // [C, h, 1, 1]
    }

    struct Encoder: Sendable {
        var bandConvs: [(weight: Tensor, bias: Tensor)]
        var bandModules: [[ConvolutionLayer]]
        var global: (weight: Tensor, bias: Tensor)
    }

    struct Decoder: Sendable {
        /// `[2C, C, 3, 3]`: the published `[2C, 2C, 3, 3]` with its two input halves summed.
        var fusion: (weight: Tensor, bias: Tensor)
        var bandConvs: [(weight: Tensor, bias: Tensor)]  // transposed, [Cin, Cout, k, 1]
    }

    struct DualPath: Sendable {
        var norms: [(weight: Tensor, bias: Tensor)]
        var lstms: [BidirectionalLSTM]
        var linears: [(weight: Tensor, bias: Tensor)]
    }

    public let audioChannels: Int
    public let stems: Int
    let stft: CenteredSTFT
    let bands: [Band]
    let convKernel: Int
    var encoders: [Encoder]
    var decoders: [Decoder]
    var dualPaths: [DualPath]

    /// `[C, L]` → `[stems, C, L]`.
    public func forward(_ audio: Tensor) -> Tensor {
        let channels = audio.shape[0], length = audio.shape[1]
        precondition(channels == audioChannels, "SCNet: \(channels) channels, the model takes \(audioChannels)")
        let hop = stft.hop
        // Right-padded to an odd number of hops, so the frame count (and the time rFFT) is even.
        var padding = hop - length % hop
        if (length + padding) / hop % 2 == 0 { padding += hop }
        var padded = Tensor(zeros: [channels, length + padding])
        for c in 0..<channels {
            for i in 0..<length { padded.data[c * (length + padding) + i] = audio.data[c * length + i] }
        }
        // [T, F, C, 2] → [C·2, F, T]: channel `2c` the real part of audio channel c, `2c+1` the imaginary.
        let spec = stft.forward(padded)
        let (frames, bins) = (spec.shape[0], spec.shape[1])
        var x = spec.permuted([2, 3, 1, 0]).reshaped([channels * 2, bins, frames])

        var skips: [(skip: Tensor, lengths: [Int], original: [Int])] = []
        for encoder in encoders {
            let (out, skip, lengths, original) = encode(x, encoder)
            skips.append((skip, lengths, original))
            x = out
        }
        for (i, layer) in dualPaths.enumerated() {
            dualPath(&x, layer)
            x = i % 2 == 0 ? rfftTime(x) : irfftTime(x)
        }
        for decoder in decoders {
            let saved = skips.removeLast()
            x = decode(x, decoder, skip: saved.skip, lengths: saved.lengths, original: saved.original)
        }

        // [stems·C·2, F, T]: consecutive channel pairs are (real, imaginary) of (stem, channel).
        var result = Tensor(zeros: [stems, channels, length])
        let plane = bins * frames
        for s in 0..<stems {
            let block = Tensor(shape: [channels, 2, bins, frames],
                               data: Array(x.data[(s * channels * 2 * plane)..<((s + 1) * channels * 2 * plane)]))
            let audioOut = stft.inverse(block.permuted([3, 2, 0, 1]), length: length + padding)
            for c in 0..<channels {
                let src = c * (length + padding)
                result.data.replaceSubrange(((s * channels + c) * length)..<((s * channels + c + 1) * length),
                                            with: audioOut.data[src..<(src + length)])
            }
        }
        return result
    }

    /// The three band splits `ceil(F·share)` of `bins` frequency rows.
    func splits(_ bins: Int) -> [Range<Int>] {
        let a = Int((Double(bins) * bands[0].share).rounded(.up))
        let b = Int((Double(bins) * (bands[0].share + bands[1].share)).rounded(.up))
        return [0..<a, a..<b, b..<bins]
    }

    /// SD block: `[Cin, F, T]` → (output, skip, band lengths after, band lengths before).
    private func encode(_ x: Tensor, _ e: Encoder) -> (Tensor, Tensor, [Int], [Int]) {
        let (cin, bins, t) = (x.shape[0], x.shape[1], x.shape[2])
        var outputs: [Tensor] = []
        var original: [Int] = []
        for (b, range) in splits(bins).enumerated() {
            let band = bands[b]
            let n = range.count
            original.append(n)
            let total = band.stride == 1 ? band.kernel - 1 : (band.stride - n % band.stride) % band.stride
            let left = total / 2
            // Zero rows around the band (not its neighbours' rows), split as F.pad splits them.
            let input = Tensor.concatenatingMiddle([Tensor(zeros: [cin, left, t]), x.slicingMiddle(range),
                                                    Tensor(zeros: [cin, total - left, t])])
            let conv = e.bandConvs[b]
            var y = conv2d(input, weight: conv.weight, bias: conv.bias,
                           geometry: ConvGeometry(kernel: (band.kernel, 1), stride: (band.stride, 1)))
            for layer in e.bandModules[b] { convolutionLayer(&y, layer) }
            gelu(&y)
            outputs.append(y)
        }
        let lengths = outputs.map { $0.shape[1] }
        let skip = Tensor.concatenatingMiddle(outputs)
        let out = conv2d(skip, weight: e.global.weight, bias: e.global.bias, geometry: ConvGeometry(kernel: (3, 3), padding: (1, 1)))
        return (out, skip, lengths, original)
    }

    /// `x += layer(x)` on `[C, F, T]`, each frequency row a separate sequence.
    private func convolutionLayer(_ x: inout Tensor, _ l: ConvolutionLayer) {
        var h = x
        groupNorm(&h, groups: 1, weight: l.norm1.weight, bias: l.norm1.bias, perRow: true)
        let k = convKernel
        h = glu(conv2d(h, weight: l.expand.weight, bias: l.expand.bias, geometry: ConvGeometry(kernel: (1, k), padding: (0, k / 2))))
        h = depthwiseTime(h, weight: l.depthwise.weight, bias: l.depthwise.bias)
        groupNorm(&h, groups: 1, weight: l.norm2.weight, bias: l.norm2.bias, perRow: true)
        h.data.withUnsafeMutableBufferPointer { p in
            let hp = UnsafeMutableSendablePointer(p.baseAddress!)
            parallelFor(p.count, minPerTask: 1 << 14) { range in
                mapInPlace(hp.pointer, range, vector: { $0 / (1 + fastExp(-$0)) }, scalar: { $0 / (1 + fastExp(-$0)) })
            }
        }
        add(&x, conv2d(h, weight: l.project.weight, bias: l.project.bias, geometry: ConvGeometry(kernel: (1, 1))))
    }

    /// `Conv1d(h, h, k, padding=k/2, groups=h)` along time for every row of `[h, F, T]`.
    private func depthwiseTime(_ x: Tensor, weight: Tensor, bias: Tensor) -> Tensor {
        let (c, f, t) = (x.shape[0], x.shape[1], x.shape[2])
        let k = weight.shape[1], half = k / 2
        var out = Tensor(uninitialized: x.shape)
        x.data.withUnsafeBufferPointer { xp in
            out.data.withUnsafeMutableBufferPointer { op in
                let (xs, os) = (UnsafeSendable(xp.baseAddress!), UnsafeMutableSendablePointer(op.baseAddress!))
                parallelFor(c * f, minPerTask: 8) { range in
                    for row in range {
                        let ch = row / f
                        let src = xs.pointer + row * t, dst = os.pointer + row * t
                        for i in 0..<t {
                            var acc = bias.data[ch]
                            for j in 0..<k where i + j - half >= 0 && i + j - half < t {
                                acc += weight.data[ch * k + j] * src[i + j - half]
                            }
                            dst[i] = acc
                        }
                    }
                }
            }
        }
        return out
    }

    /// One dual-path layer on `[C, F, T]`: a BiLSTM over frequency for each frame, then one over
    /// time for each frequency, each after a GroupNorm and followed by a Linear and a residual.
    private func dualPath(_ x: inout Tensor, _ d: DualPath) {
        let (c, f, t) = (x.shape[0], x.shape[1], x.shape[2])
        for path in 0..<2 {
            var h = x
            groupNorm(&h, groups: 1, weight: d.norms[path].weight, bias: d.norms[path].bias)
            // Sequences along F (batch T) or along T (batch F), time-major for the LSTM:
            // [F, T, C] or [T, F, C].
            var seq = h.permuted([1, 2, 0])
            if path == 1 { seq = seq.swappingLeadingAxes() }
            let y = d.lstms[path](seq)
            var projected = linear(y.reshaped([y.count / y.shape[2], y.shape[2]]), weight: d.linears[path].weight, bias: d.linears[path].bias)
            // Back to [C, F, T].
            if path == 1 { projected = projected.reshaped([t, f, c]).swappingLeadingAxes() }
            add(&x, projected.reshaped([f, t, c]).permuted([2, 0, 1]))
        }
    }

    /// `rfft(x, dim=T, norm="ortho")`, real parts then imaginary parts on the channel axis.
    private func rfftTime(_ x: Tensor) -> Tensor {
        let (c, f, t) = (x.shape[0], x.shape[1], x.shape[2])
        let dft = RealDFT(length: t)
        let k = dft.bins
        var out = Tensor(uninitialized: [2 * c, f, k])
        x.data.withUnsafeBufferPointer { xp in
            out.data.withUnsafeMutableBufferPointer { op in
                dft.forward(xp.baseAddress!, rows: c * f, re: op.baseAddress!, im: op.baseAddress! + c * f * k)
            }
        }
        return out
    }

    /// `irfft` of the channel halves (real, imaginary) along T, back to an even length.
    private func irfftTime(_ x: Tensor) -> Tensor {
        let (c2, f, k) = (x.shape[0], x.shape[1], x.shape[2])
        let c = c2 / 2, t = 2 * (k - 1)
        let dft = RealDFT(length: t)
        var out = Tensor(uninitialized: [c, f, t])
        x.data.withUnsafeBufferPointer { xp in
            out.data.withUnsafeMutableBufferPointer { op in
                dft.inverse(re: xp.baseAddress!, im: xp.baseAddress! + c * f * k, rows: c * f, into: op.baseAddress!)
            }
        }
        return out
    }

    /// SU block: fusion with the skip, then a transposed conv per band, trimmed to its length before the SD layer.
    private func decode(_ x: Tensor, _ d: Decoder, skip: Tensor, lengths: [Int], original: [Int]) -> Tensor {
        var fused = x
        add(&fused, skip)
        fused = glu(conv2d(fused, weight: d.fusion.weight, bias: d.fusion.bias, geometry: ConvGeometry(kernel: (3, 3), padding: (1, 1))))
        var outputs: [Tensor] = []
        var start = 0
        for (b, n) in lengths.enumerated() {
            let band = fused.slicingMiddle(start..<(start + n))
            start += n
            let conv = d.bandConvs[b]
            let out = convTranspose2d(band, weight: conv.weight, bias: conv.bias, stride: (bands[b].stride, 1))
            let produced = out.shape[1]
            let dist = abs(original[b] - produced) / 2
            outputs.append(out.slicingMiddle(dist..<min(dist + original[b], produced)))
        }
        return Tensor.concatenatingMiddle(outputs)
    }
}
