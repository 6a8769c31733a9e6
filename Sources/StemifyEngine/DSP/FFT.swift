import Foundation

/// In-place iterative radix-2 complex FFT of a fixed power-of-two size.
///
/// Twiddles are computed in Double and stored as Float. The STFT is a small part of a forward
/// (a few hundred 4096-point transforms per chunk), so a plain radix-2 is enough.
public struct FFT: Sendable {
    public let size: Int
    private let cosTable: [Float]
    private let sinTable: [Float]
    private let bitReverse: [Int]

    public init(size: Int) {
        precondition(size > 1 && size & (size - 1) == 0, "FFT size must be a power of two, got \(size)")
        self.size = size
        cosTable = (0..<size / 2).map { Float(cos(2 * Double.pi * Double($0) / Double(size))) }
        sinTable = (0..<size / 2).map { Float(sin(2 * Double.pi * Double($0) / Double(size))) }
        let bits = size.trailingZeroBitCount
        bitReverse = (0..<size).map { i in
            var r = 0
            for b in 0..<bits where i & (1 << b) != 0 { r |= 1 << (bits - 1 - b) }
            return r
        }
    }

    /// Forward (`inverse == false`, `e^{-iωt}`) or unscaled inverse (`e^{+iωt}`) transform.
    public func transform(re: UnsafeMutablePointer<Float>, im: UnsafeMutablePointer<Float>, inverse: Bool) {
        for i in 0..<size {
            let j = bitReverse[i]
            if j > i {
                swap(&re[i], &re[j])
                swap(&im[i], &im[j])
            }
        }
        let sign: Float = inverse ? 1 : -1
        var len = 2
        cosTable.withUnsafeBufferPointer { ct in
            sinTable.withUnsafeBufferPointer { st in
                while len <= size {
                    let half = len / 2
                    let step = size / len
                    var start = 0
                    while start < size {
                        for k in 0..<half {
                            let wr = ct[k * step], wi = sign * st[k * step]
                            let a = start + k, b = a + half
                            let xr = re[b] * wr - im[b] * wi
                            let xi = re[b] * wi + im[b] * wr
                            re[b] = re[a] - xr
                            im[b] = im[a] - xi
                            re[a] += xr
                            im[a] += xi
                        }
                        start += len
                    }
                    len <<= 1
                }
            }
        }
    }
}
