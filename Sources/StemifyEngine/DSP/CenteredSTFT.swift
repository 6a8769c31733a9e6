import Foundation

/// `torch.stft` and `torch.istft` as the RoFormers and SCNet call them: `center=True` with
/// reflect padding of `nfft/2`, a window as long as the transform (periodic Hann, or none:
/// SCNet passes no window, which torch takes as all ones), one-sided spectra.
///
/// The spectrum layout is the one the band split reads, `[T, F, C, 2]`: per frame, per bin, per
/// channel, real then imaginary (the reference's `b (f s) t c` with time moved first).
public struct CenteredSTFT: Sendable {
    public let nfft: Int
    public let hop: Int
    /// `normalized=True`: the forward transform is scaled by `1/√nfft` and the inverse undoes it.
    public let normalized: Bool
    private let fft: FFT
    /// In Double: frames are windowed before any rounding (see ``FFT``).
    private let window: [Double]

    public init(nfft: Int, hop: Int, normalized: Bool = false, hann: Bool = true) {
        self.nfft = nfft
        self.hop = hop
        self.normalized = normalized
        fft = FFT(size: nfft)
        window = hann ? periodicHann(nfft) : [Double](repeating: 1, count: nfft)
    }

    /// Bins of a one-sided spectrum.
    public var bins: Int { nfft / 2 + 1 }

    /// Frames for `length` samples: `1 + length / hop`.
    public func frames(for length: Int) -> Int { 1 + length / hop }

    /// `[C, L]` → `[T, F, C, 2]`. Needs `L > nfft/2` (torch's reflect padding does too).
    public func forward(_ x: Tensor) -> Tensor {
        let channels = x.shape[0], length = x.shape[1]
        let t = frames(for: length), f = bins
        var out = Tensor(uninitialized: [t, f, channels, 2])
        let scale = normalized ? 1 / Double(nfft).squareRoot() : 1
        out.data.withUnsafeMutableBufferPointer { ob in
            let op = UnsafeMutableSendablePointer(ob.baseAddress!)
            for c in 0..<channels {
                let padded = reflectPad1d(Array(x.data[c * length..<(c + 1) * length]), left: nfft / 2, right: nfft / 2)
                padded.withUnsafeBufferPointer { pp in
                    let src = UnsafeSendable(pp.baseAddress!)
                    parallelFor(t, minPerTask: 16) { range in
                        var re = [Double](repeating: 0, count: nfft), im = [Double](repeating: 0, count: nfft)
                        for frame in range {
                            for i in 0..<nfft { re[i] = Double(src.pointer[frame * hop + i]) * window[i]; im[i] = 0 }
                            re.withUnsafeMutableBufferPointer { r in
                                im.withUnsafeMutableBufferPointer { m in fft.transform(re: r.baseAddress!, im: m.baseAddress!, inverse: false) }
                            }
                            for b in 0..<f {
                                let at = ((frame * f + b) * channels + c) * 2
                                op.pointer[at] = Float(re[b] * scale)
                                op.pointer[at + 1] = Float(im[b] * scale)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `[T, F, C, 2]` → `[C, length]`: windowed overlap-add divided by the summed squared window,
    /// `nfft/2` samples trimmed at the start. Imaginary parts of DC and Nyquist are ignored, as
    /// `irfft` does.
    public func inverse(_ spec: Tensor, length: Int) -> Tensor {
        let t = spec.shape[0], f = spec.shape[1], channels = spec.shape[2]
        precondition(f == bins && spec.shape[3] == 2, "inverse: spectrum \(spec.shape) for nfft \(nfft)")
        let full = nfft + hop * (t - 1)
        precondition(nfft / 2 + length <= full, "inverse: \(t) frames are too few for \(length) samples")
        var envelope = [Double](repeating: 0, count: full)
        for frame in 0..<t {
            for i in 0..<nfft { envelope[frame * hop + i] += window[i] * window[i] }
        }
        let scale = (normalized ? Double(nfft).squareRoot() : 1) / Double(nfft)
        var out = Tensor(zeros: [channels, length])
        // Each frame's inverse transform on its own (in parallel), then the overlap-add, all in
        // Double and rounded once per sample.
        var frameBuffer = [Double](repeating: 0, count: t * nfft)
        for c in 0..<channels {
            frameBuffer.withUnsafeMutableBufferPointer { fb in
                let fp = UnsafeMutableSendablePointer(fb.baseAddress!)
                spec.data.withUnsafeBufferPointer { sb in
                    let sp = UnsafeSendable(sb.baseAddress!)
                    parallelFor(t, minPerTask: 16) { range in
                        var re = [Double](repeating: 0, count: nfft), im = [Double](repeating: 0, count: nfft)
                        for frame in range {
                            for b in 0..<f {
                                let at = ((frame * f + b) * channels + c) * 2
                                re[b] = Double(sp.pointer[at])
                                im[b] = Double(sp.pointer[at + 1])
                            }
                            im[0] = 0
                            im[nfft / 2] = 0
                            for b in 1..<(nfft / 2) {
                                re[nfft - b] = re[b]
                                im[nfft - b] = -im[b]
                            }
                            re.withUnsafeMutableBufferPointer { r in
                                im.withUnsafeMutableBufferPointer { m in fft.transform(re: r.baseAddress!, im: m.baseAddress!, inverse: true) }
                            }
                            let dst = fp.pointer + frame * nfft
                            for i in 0..<nfft { dst[i] = re[i] * scale * window[i] }
                        }
                    }
                }
            }
            var y = [Double](repeating: 0, count: full)
            for frame in 0..<t {
                for i in 0..<nfft { y[frame * hop + i] += frameBuffer[frame * nfft + i] }
            }
            let begin = nfft / 2
            for i in 0..<length {
                let e = envelope[begin + i]
                out.data[c * length + i] = Float(e > 1e-11 ? y[begin + i] / e : y[begin + i])
            }
        }
        return out
    }
}
