import Foundation

/// Band-split RoPE transformers: BS-RoFormer (Lu et al., 2023) and Mel-Band RoFormer (Wang et al.,
/// 2023), as `msst` 0.1.0 implements them.
///
/// ```
/// audio ─ STFT ─┬─ band split (RMSNorm + Linear per band) → [T, bands, D]
///               │    depth × ( time transformer over T for each band,
///               │              frequency transformer over bands for each frame )
///               │    mask estimator per stem: per band MLP (Tanh) → GLU → complex mask
///               └─ × mask ─ iSTFT → stems
/// ```
/// The two differ in the bands (contiguous `freqs_per_bands` vs overlapping mel bands whose
/// masks are averaged), where the closing norms sit, and the mask MLP's depth.
///
/// Reference: `msst/models/bs_roformer/bs_roformer.py`, `mel_band_roformer.py`.
public struct RoFormer: ChunkNetwork {
    public enum Bands: Sendable, Equatable {
        /// BS-RoFormer: consecutive runs of bins.
        case split(freqsPerBand: [Int])
        /// Mel-Band RoFormer: each band's bins, ascending; bands overlap.
        case mel(binsPerBand: [[Int]])
    }

    struct BandProjection: Sendable {
        var norm: Tensor
        var weight: Tensor
        var bias: Tensor
    }

    /// One stem's mask estimator: per band, Linear layers (Tanh between them), then GLU.
    struct MaskEstimator: Sendable {
        var bands: [[(weight: Tensor, bias: Tensor)]]
    }

    public let family: TrainingConfig.Family
    public let audioChannels: Int
    public let stems: Int
    let stft: CenteredSTFT
    let bands: Bands
    let dim: Int
    let zeroDC: Bool
    let skipConnection: Bool
    /// The mel variant's istft has no `length`: it returns `hop · (frames − 1)` samples.
    let matchInputLength: Bool
    /// Per band, the interleaved `(bin, channel)` indices it reads (`freq_indices`).
    let bandInputs: [[Int]]
    var bandSplit: [BandProjection]
    /// `depth` × (time, frequency).
    var layers: [(time: RoFormerTransformer, frequency: RoFormerTransformer)]
    var finalNorm: Tensor?
    var maskEstimators: [MaskEstimator]

    /// `[C, L]` → `[stems, C, L']` with `L' = L` (BS-RoFormer, or Mel with
    /// `match_input_audio_length`), else `hop · (L / hop)`.
    public func forward(_ audio: Tensor) -> Tensor {
        let channels = audio.shape[0], length = audio.shape[1]
        precondition(channels == audioChannels, "RoFormer: \(channels) channels, the model takes \(audioChannels)")
        let spec = stft.forward(audio)
        let frames = spec.shape[0], rowWidth = spec.count / frames
        let bandCount = bandInputs.count

        // Band split: x [T, bands, D].
        var x = Tensor(zeros: [frames, bandCount, dim])
        for (b, indices) in bandInputs.enumerated() {
            let width = 2 * indices.count
            var input = Tensor(uninitialized: [frames, width])
            for t in 0..<frames {
                for (j, k) in indices.enumerated() {
                    input.data[t * width + 2 * j] = spec.data[t * rowWidth + 2 * k]
                    input.data[t * width + 2 * j + 1] = spec.data[t * rowWidth + 2 * k + 1]
                }
            }
            let p = bandSplit[b]
            input.data.withUnsafeMutableBufferPointer { ib in
                p.norm.data.withUnsafeBufferPointer { l2RMSNorm(ib.baseAddress!, rows: frames, dim: width, gamma: $0.baseAddress!, into: ib.baseAddress!) }
            }
            let features = linear(input, weight: p.weight, bias: p.bias)
            for t in 0..<frames {
                for i in 0..<dim { x.data[(t * bandCount + b) * dim + i] = features.data[t * dim + i] }
            }
        }

        // Axial transformers: over time within each band, then over bands within each frame.
        x = x.reshaped([frames * bandCount, dim])
        var outputs: [Tensor] = []
        for (i, layer) in layers.enumerated() {
            if skipConnection {
                for earlier in outputs { add(&x, earlier) }
            }
            var byBand = x.reshaped([frames, bandCount, dim]).swappingLeadingAxes().reshaped([bandCount * frames, dim])
            layer.time(&byBand, sequences: bandCount, length: frames)
            x = byBand.reshaped([bandCount, frames, dim]).swappingLeadingAxes().reshaped([frames * bandCount, dim])
            layer.frequency(&x, sequences: frames, length: bandCount)
            if skipConnection && i < layers.count - 1 { outputs.append(x) }
        }
        if let finalNorm {
            x.data.withUnsafeMutableBufferPointer { xb in
                finalNorm.data.withUnsafeBufferPointer { l2RMSNorm(xb.baseAddress!, rows: frames * bandCount, dim: dim, gamma: $0.baseAddress!, into: xb.baseAddress!) }
            }
        }

        // Masks, averaged where mel bands overlap, applied to the mixture's spectrum.
        let outLength = matchInputLength ? length : stft.hop * (frames - 1)
        var result = Tensor(zeros: [stems, channels, outLength])
        let coverage: [Float] = {
            var count = [Float](repeating: 0, count: rowWidth / 2)
            for indices in bandInputs { for k in indices { count[k] += 1 } }
            return count.map { max($0, 1e-8) }
        }()
        for s in 0..<stems {
            var mask = [Float](repeating: 0, count: frames * rowWidth)
            for (b, indices) in bandInputs.enumerated() {
                let bandMask = estimateMask(maskEstimators[s].bands[b], x, band: b, bands: bandCount, frames: frames, width: 2 * indices.count)
                for t in 0..<frames {
                    for (j, k) in indices.enumerated() {
                        mask[t * rowWidth + 2 * k] += bandMask[t * 2 * indices.count + 2 * j]
                        mask[t * rowWidth + 2 * k + 1] += bandMask[t * 2 * indices.count + 2 * j + 1]
                    }
                }
            }
            var masked = spec
            for t in 0..<frames {
                for k in 0..<(rowWidth / 2) {
                    let at = t * rowWidth + 2 * k
                    let (mr, mi) = (mask[at] / coverage[k], mask[at + 1] / coverage[k])
                    let (sr, si) = (spec.data[at], spec.data[at + 1])
                    masked.data[at] = sr * mr - si * mi
                    masked.data[at + 1] = sr * mi + si * mr
                }
                if zeroDC {
                    for c in 0..<channels {
                        masked.data[t * rowWidth + 2 * c] = 0
                        masked.data[t * rowWidth + 2 * c + 1] = 0
                    }
                }
            }
            let audioOut = stft.inverse(masked, length: outLength)
            result.data.replaceSubrange((s * channels * outLength)..<((s + 1) * channels * outLength), with: audioOut.data)
        }
        return result
    }

    /// The band's MLP on `x[:, band, :]` → `[T, width]` (GLU halves the last layer's output).
    private func estimateMask(_ mlp: [(weight: Tensor, bias: Tensor)], _ x: Tensor, band: Int, bands: Int, frames: Int, width: Int) -> [Float] {
        var h = Tensor(uninitialized: [frames, dim])
        for t in 0..<frames {
            for i in 0..<dim { h.data[t * dim + i] = x.data[(t * bands + band) * dim + i] }
        }
        for (i, layer) in mlp.enumerated() {
            h = linear(h, weight: layer.weight, bias: layer.bias)
            if i < mlp.count - 1 {
                h.data.withUnsafeMutableBufferPointer { tanhInPlace($0.baseAddress!, $0.count) }
            }
        }
        var out = [Float](repeating: 0, count: frames * width)
        h.data.withUnsafeBufferPointer { hb in
            out.withUnsafeMutableBufferPointer { ob in
                gluLastAxis(hb.baseAddress!, rows: frames, half: width, into: ob.baseAddress!, ldo: width)
            }
        }
        return out
    }
}
