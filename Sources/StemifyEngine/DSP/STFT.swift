import Foundation

/// The reference's spectrogram pair (`HTDemucs._spec` / `_ispec` over `demucs/spec.py`).
///
/// Parity traps, all reproduced here:
/// - the signal is first reflect-padded by `3·hop/2` on the left and up to a multiple of `hop`
///   plus `3·hop/2` on the right (`pad1d`, with its zero-extension rule for short inputs);
/// - then `torch.stft(center=True)` reflect-pads by `nfft/2` again;
/// - periodic Hann window, `normalized=True` (scale `1/√nfft`);
/// - the Nyquist bin is dropped and frames `[2, 2 + ⌈L/hop⌉)` are kept.
///
/// `hybridOld` reproduces the padding bug some Hybrid Demucs models were trained with: zero
/// padding instead of reflection before the STFT, and an inverse cropped from the start.
public struct Spectrogram: Sendable {
    public let nfft: Int
    public let hop: Int
    public let hybridOld: Bool
    private let fft: FFT
    /// In Double: frames are windowed before any rounding (see ``FFT``).
    private let window: [Double]

    public init(nfft: Int, hybridOld: Bool = false) {
        self.nfft = nfft
        self.hybridOld = hybridOld
        self.hop = nfft / 4
        fft = FFT(size: nfft)
        window = periodicHann(nfft)
    }

    /// Number of frames `_spec` keeps for `length` samples.
    public func frames(for length: Int) -> Int { (length + hop - 1) / hop }

    /// `_spec`: `[C, L]` → real and imaginary parts, each `[C, nfft/2, ⌈L/hop⌉]`.
    public func forward(_ x: Tensor) -> (re: Tensor, im: Tensor) {
        let channels = x.shape[0], length = x.shape[x.shape.count - 1]
        let le = frames(for: length)
        let pad = hop / 2 * 3
        let bins = nfft / 2
        var re = Tensor(zeros: [channels, bins, le])
        var im = Tensor(zeros: [channels, bins, le])
        let scale = 1 / Double(nfft).squareRoot()
        for c in 0..<channels {
            let signal = Array(x.data[c * length..<(c + 1) * length])
            let once = hybridOld
                ? [Float](repeating: 0, count: pad) + signal + [Float](repeating: 0, count: pad + le * hop - length)
                : reflectPad1d(signal, left: pad, right: pad + le * hop - length)
            let padded = reflectPad1d(once, left: nfft / 2, right: nfft / 2)
            var fr = [Double](repeating: 0, count: nfft)
            var fi = [Double](repeating: 0, count: nfft)
            for frame in 0..<le {
                // Frame `frame + 2` of the centred STFT.
                let start = (frame + 2) * hop
                for i in 0..<nfft { fr[i] = Double(padded[start + i]) * window[i]; fi[i] = 0 }
                fr.withUnsafeMutableBufferPointer { rp in
                    fi.withUnsafeMutableBufferPointer { ip in
                        fft.transform(re: rp.baseAddress!, im: ip.baseAddress!, inverse: false)
                    }
                }
                for b in 0..<bins {
                    re.data[(c * bins + b) * le + frame] = Float(fr[b] * scale)
                    im.data[(c * bins + b) * le + frame] = Float(fi[b] * scale)
                }
            }
        }
        return (re, im)
    }

    /// `_ispec`: real and imaginary parts `[C, nfft/2, T]` → `[C, length]`.
    ///
    /// Adds back the dropped Nyquist bin and the two frames on each side as zeros, runs
    /// `torch.istft(center=True, normalized=True)` (windowed overlap-add divided by the summed
    /// squared window) and crops `3·hop/2` samples on the left.
    public func inverse(re: Tensor, im: Tensor, length: Int) -> Tensor {
        let channels = re.shape[0], bins = re.shape[1], t = re.shape[2]
        precondition(bins == nfft / 2 && im.shape == re.shape, "inverse: spectrum \(re.shape) for nfft \(nfft)")
        return re.data.withUnsafeBufferPointer { rp in
            im.data.withUnsafeBufferPointer { ip in
                inverse(channels: channels, frames: t, length: length, re: rp.baseAddress!, im: ip.baseAddress!, channelStride: bins * t)
            }
        }
    }

    /// `_ispec` of a spectrum with complex as channels, `[2C, nfft/2, T]` (channel `2c` real,
    /// `2c+1` imaginary: the network's output), read in place rather than split into two copies.
    public func inverse(complexAsChannels x: Tensor, length: Int) -> Tensor {
        let channels = x.shape[0] / 2, bins = x.shape[1], t = x.shape[2]
        precondition(bins == nfft / 2 && x.shape[0] % 2 == 0, "inverse: spectrum \(x.shape) for nfft \(nfft)")
        let plane = bins * t
        return x.data.withUnsafeBufferPointer { xp in
            inverse(channels: channels, frames: t, length: length, re: xp.baseAddress!, im: xp.baseAddress! + plane, channelStride: 2 * plane)
        }
    }

    /// Channel `c`'s bin `b` of frame `f` is at `c · channelStride + b · frames + f` of `re` and `im`.
    private func inverse(channels: Int, frames t: Int, length: Int, re: UnsafePointer<Float>, im: UnsafePointer<Float>,
                         channelStride: Int) -> Tensor {
        let bins = nfft / 2
        let pad = hop / 2 * 3
        let le = hop * ((length + hop - 1) / hop) + (hybridOld ? 0 : 2 * pad)
        let frames = t + 4
        let full = nfft + hop * (frames - 1)
        // torch.istft trims nfft/2 at the start (center=True) and keeps `le` samples.
        precondition(nfft / 2 + le <= full, "inverse: \(t) frames are too few for \(length) samples")
        var envelope = [Double](repeating: 0, count: full)
        for f in 0..<frames {
            for i in 0..<nfft { envelope[f * hop + i] += window[i] * window[i] }
        }
        var out = Tensor(zeros: [channels, length])
        // normalized=True undoes the forward 1/√nfft; the inverse FFT carries 1/nfft.
        let scale = Double(nfft).squareRoot() / Double(nfft)
        var fr = [Double](repeating: 0, count: nfft)
        var fi = [Double](repeating: 0, count: nfft)
        var ya = [Double](repeating: 0, count: full)
        var yb = [Double](repeating: 0, count: full)
        // Two channels per transform: their signals are real, so the inverse of Xa + i·Xb is
        // xa + i·xb; half the FFTs of one channel at a time.
        for c0 in stride(from: 0, to: channels, by: 2) {
            let c1 = c0 + 1 < channels ? c0 + 1 : nil
            for i in 0..<full { ya[i] = 0; yb[i] = 0 }
            // Frames 0, 1 and the last two are the zero padding `_ispec` adds: they add nothing.
            for frame in 0..<t {
                // Hermitian completion of each; irfft ignores the imaginary parts of DC and Nyquist.
                for b in 0..<bins {
                    let a = c0 * channelStride + b * t + frame
                    let ar = Double(re[a]), ai = b == 0 ? 0 : Double(im[a])
                    var (br, bi): (Double, Double) = (0, 0)
                    if let c1 {
                        let k = c1 * channelStride + b * t + frame
                        (br, bi) = (Double(re[k]), b == 0 ? 0 : Double(im[k]))
                    }
                    fr[b] = ar - bi
                    fi[b] = ai + br
                    if b > 0 {
                        fr[nfft - b] = ar + bi
                        fi[nfft - b] = br - ai
                    }
                }
                fr[bins] = 0
                fi[bins] = 0
                fr.withUnsafeMutableBufferPointer { rp in
                    fi.withUnsafeMutableBufferPointer { ip in
                        fft.transform(re: rp.baseAddress!, im: ip.baseAddress!, inverse: true)
                    }
                }
                let start = (frame + 2) * hop
                for i in 0..<nfft {
                    let w = scale * window[i]
                    ya[start + i] += fr[i] * w
                    yb[start + i] += fi[i] * w
                }
            }
            let begin = nfft / 2 + (hybridOld ? 0 : pad)
            for (c, y) in [(c0, ya), (c1, yb)] {
                guard let c else { continue }
                for i in 0..<length {
                    let e = envelope[begin + i]
                    out.data[c * length + i] = Float(e > 1e-11 ? y[begin + i] / e : y[begin + i])
                }
            }
        }
        return out
    }
}

/// The reference's `pad1d(x, (left, right), mode="reflect")`: reflect padding that first
/// zero-extends inputs too short to reflect (torch refuses padding ≥ the input length).
public func reflectPad1d(_ x: [Float], left: Int, right: Int) -> [Float] {
    var x = x
    var left = left, right = right
    let length = x.count
    let maxPad = max(left, right)
    if length <= maxPad {
        let extra = maxPad - length + 1
        let extraRight = min(right, extra)
        let extraLeft = extra - extraRight
        left -= extraLeft
        right -= extraRight
        x = [Float](repeating: 0, count: extraLeft) + x + [Float](repeating: 0, count: extraRight)
    }
    let n = x.count
    var out = [Float](repeating: 0, count: n + left + right)
    for i in 0..<left { out[i] = x[left - i] }
    for i in 0..<n { out[left + i] = x[i] }
    for i in 0..<right { out[left + n + i] = x[n - 2 - i] }
    return out
}
