import Foundation

/// `torch.fft.rfft` / `irfft` with `norm="ortho"` along the last axis, for any length, as two
/// products with cosine and sine tables. SCNet transforms its time axis (476 frames for an 11 s
/// chunk, not a power of two) between dual-path layers; rows number in the thousands, so the
/// products run near GEMM speed where a per-row FFT would not.
struct RealDFT: Sendable {
    let length: Int
    var bins: Int { length / 2 + 1 }
    /// `[length, bins]`: `cos(2πkt/N)/√N`, `−sin(2πkt/N)/√N`.
    private let forwardCos: [Float], forwardSin: [Float]
    /// `[bins, length]`: the Hermitian inverse, each bin counted once or twice.
    private let inverseCos: [Float], inverseSin: [Float]

    init(length n: Int) {
        length = n
        let k = n / 2 + 1
        let scale = 1 / Double(n).squareRoot()
        var fc = [Float](repeating: 0, count: n * k), fs = fc, ic = fc, isn = fc
        for t in 0..<n {
            for b in 0..<k {
                // Angle reduced in integers first: cos(2π·((b·t) mod N)/N) stays exact for large b·t.
                let angle = 2 * Double.pi * Double((b * t) % n) / Double(n)
                fc[t * k + b] = Float(cos(angle) * scale)
                fs[t * k + b] = Float(-sin(angle) * scale)
                // irfft: DC and (for even N) Nyquist once, the other bins twice; their imaginary
                // parts are ignored.
                let weight: Double = (b == 0 || (n % 2 == 0 && b == n / 2)) ? 1 : 2
                let ignoresImaginary = b == 0 || (n % 2 == 0 && b == n / 2)
                ic[b * n + t] = Float(weight * cos(angle) * scale)
                isn[b * n + t] = ignoresImaginary ? 0 : Float(-weight * sin(angle) * scale)
            }
        }
        (forwardCos, forwardSin, inverseCos, inverseSin) = (fc, fs, ic, isn)
    }

    /// `x [R, N]` → real and imaginary parts `[R, N/2+1]` each.
    func forward(_ x: UnsafePointer<Float>, rows: Int, re: UnsafeMutablePointer<Float>, im: UnsafeMutablePointer<Float>) {
        forwardCos.withUnsafeBufferPointer { c in
            gemm(m: rows, n: bins, k: length, a: x, lda: length, b: c.baseAddress!, ldb: bins, c: re, ldc: bins)
        }
        forwardSin.withUnsafeBufferPointer { s in
            gemm(m: rows, n: bins, k: length, a: x, lda: length, b: s.baseAddress!, ldb: bins, c: im, ldc: bins)
        }
    }

    /// Real and imaginary parts `[R, N/2+1]` → `x [R, N]`.
    func inverse(re: UnsafePointer<Float>, im: UnsafePointer<Float>, rows: Int, into x: UnsafeMutablePointer<Float>) {
        inverseCos.withUnsafeBufferPointer { c in
            gemm(m: rows, n: length, k: bins, a: re, lda: bins, b: c.baseAddress!, ldb: length, c: x, ldc: length)
        }
        inverseSin.withUnsafeBufferPointer { s in
            gemm(m: rows, n: length, k: bins, a: im, lda: bins, b: s.baseAddress!, ldb: length, beta: 1, c: x, ldc: length)
        }
    }
}
