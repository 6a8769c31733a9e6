import Foundation

/// A source converted to the model's channel count and sample rate, read lazily.
///
/// Channels first (mono is duplicated, extra channels dropped), then julius' `resample_frac`
/// windowed-sinc resampler (24 zero crossings, roll-off 0.945, replicate padding), exactly as
/// the reference's `convert_audio`. Any output range is computed from the input range around it,
/// so the whole track is never held in memory.
///
/// Reference: `demucs/audio.py` (`convert_audio`, `convert_audio_channels`),
/// julius `resample.py` (`ResampleFrac`).
public struct ConvertedAudioSource: AudioSource {
    public let base: any AudioSource
    public let channelCount: Int
    public let frameCount: Int
    private let oldRate: Int
    private let newRate: Int
    private let width: Int
    /// `kernels[i]`: filter of output phase `i`, `2·width + oldRate` taps. In Double, as the
    /// products are summed: an upsampled track's empty upper band is then the resampler's
    /// rounding, which a magnitude-output Demucs turns into phase (see ``FFT``), so it is kept at
    /// least as small as the reference's float32 one.
    private let kernels: [[Double]]

    /// - Parameters:
    ///   - rate: the base source's sample rate.
    ///   - targetRate: the model's rate.
    ///   - channels: the model's channel count.
    public init(_ base: any AudioSource, rate: Int, targetRate: Int, channels: Int) {
        self.base = base
        self.channelCount = channels
        let g = gcd(rate, targetRate)
        oldRate = rate / g
        newRate = targetRate / g
        if oldRate == newRate {
            width = 0
            kernels = []
            frameCount = base.frameCount
            return
        }
        let zeros = 24.0, rolloff = 0.945
        let sr = Double(min(oldRate, newRate)) * rolloff
        let w = Int((zeros * Double(oldRate) / sr).rounded(.up))
        width = w
        var ks: [[Double]] = []
        for i in 0..<newRate {
            var k = [Double](repeating: 0, count: 2 * w + oldRate)
            for (j, idx) in (-w..<(w + oldRate)).enumerated() {
                var t = (-Double(i) / Double(newRate) + Double(idx) / Double(oldRate)) * sr
                t = min(max(t, -zeros), zeros) * Double.pi
                let window = pow(cos(t / zeros / 2), 2)
                let sinc = t == 0 ? 1 : sin(t) / t
                k[j] = sinc * window
            }
            let sum = k.reduce(0, +)
            ks.append(k.map { $0 / sum })
        }
        kernels = ks
        // Parity: the floored output length, `int(new_sr * length / old_sr)`.
        frameCount = newRate * base.frameCount / oldRate
    }

    public func read(from start: Int, count: Int) throws -> Tensor {
        var out = Tensor(zeros: [channelCount, count])
        let lo = max(start, 0), hi = min(start + count, frameCount)
        guard hi > lo else { return out }
        let converted: Tensor
        if oldRate == newRate {
            converted = try adaptChannels(base.read(from: lo, count: hi - lo))
            for c in 0..<channelCount {
                for i in 0..<(hi - lo) { out.data[c * count + (lo - start) + i] = converted.data[c * (hi - lo) + i] }
            }
            return out
        }
        // Output m = n·new + i uses input n·old - width + j, j < 2·width + old, clamped (replicate).
        let n0 = lo / newRate, n1 = (hi - 1) / newRate
        let inLo = n0 * oldRate - width, inHi = n1 * oldRate - width + 2 * width + oldRate
        let inputLength = base.frameCount
        let readLo = max(0, min(inLo, inputLength - 1)), readHi = max(readLo + 1, min(inHi, inputLength))
        let x = try adaptChannels(base.read(from: readLo, count: readHi - readLo))
        let span = readHi - readLo
        for c in 0..<channelCount {
            let row = c * span
            for m in lo..<hi {
                let n = m / newRate, i = m % newRate
                let k = kernels[i]
                var acc = 0.0
                let first = n * oldRate - width
                for j in 0..<k.count {
                    let p = min(max(first + j, 0), inputLength - 1) - readLo
                    acc += k[j] * Double(x.data[row + p])
                }
                out.data[c * count + (m - start)] = Float(acc)
            }
        }
        return out
    }

    /// Mono duplicated, extra channels dropped (`convert_audio_channels`).
    private func adaptChannels(_ x: Tensor) -> Tensor {
        let have = x.shape[0], n = x.shape[1]
        if have == channelCount { return x }
        var out = Tensor(zeros: [channelCount, n])
        for c in 0..<channelCount {
            let src = have == 1 ? 0 : c
            out.data[c * n..<(c + 1) * n] = x.data[src * n..<(src + 1) * n]
        }
        return out
    }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

/// julius `resample_frac(x, old, new)` of a whole `[C, L]` tensor (Demucs' ×2 and ÷2 steps):
/// `floor(L · new / old)` samples.
public func resampleFrac(_ x: Tensor, from old: Int, to new: Int) -> Tensor {
    let channels = x.shape[0], length = x.shape[x.shape.count - 1]
    let converted = ConvertedAudioSource(TensorAudioSource(x.reshaped([channels, length])), rate: old, targetRate: new, channels: channels)
    do {
        return try converted.read(from: 0, count: converted.frameCount)
    } catch {
        preconditionFailure("reading an in-memory tensor failed: \(error)")
    }
}
