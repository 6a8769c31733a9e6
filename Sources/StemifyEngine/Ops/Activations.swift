import Foundation

/// GELU with the exact erf form, `x · ½ · (1 + erf(x / √2))` (`F.gelu` default, not the tanh one).
///
/// Written as `½x · erfc(-x/√2)` so negative inputs keep their relative accuracy; erfc comes from
/// a vectorisable fit accurate to 1.2e-7, not libm's scalar `erff`.
public func gelu(_ x: inout Tensor) {
    let kernels = VectorKernels.active
    x.data.withUnsafeMutableBufferPointer { p in
        let xp = UnsafeMutableSendablePointer(p.baseAddress!)
        parallelFor(p.count, minPerTask: 1 << 14) { range in
            kernels.gelu(xp.pointer + range.lowerBound, range.count)
        }
    }
}

/// GLU over the leading (channel) axis: `[2C, ...] → [C, ...]`, `a · σ(b)`.
public func glu(_ x: Tensor) -> Tensor {
    let c2 = x.shape[0]
    precondition(c2 % 2 == 0, "glu needs an even channel count, got \(x.shape)")
    var shape = x.shape
    shape[0] = c2 / 2
    var out = Tensor(uninitialized: shape)
    let half = out.count
    let kernels = VectorKernels.active
    x.data.withUnsafeBufferPointer { src in
        out.data.withUnsafeMutableBufferPointer { dst in
            let (sp, dp) = (UnsafeSendable(src.baseAddress!), UnsafeMutableSendablePointer(dst.baseAddress!))
            parallelFor(half, minPerTask: 1 << 14) { range in
                kernels.glu(sp.pointer + range.lowerBound, sp.pointer + half + range.lowerBound, 0, 0,
                            dp.pointer + range.lowerBound, range.count)
            }
        }
    }
    return out
}

/// `x[c, ...] *= scale[c]` (LayerScale on channel-first tensors).
public func scaleChannels(_ x: inout Tensor, _ scale: Tensor) {
    let c = x.shape[0]
    precondition(scale.count == c, "scale \(scale.shape) does not fit \(x.shape)")
    let inner = x.count / c
    x.data.withUnsafeMutableBufferPointer { p in
        for ci in 0..<c {
            let s = scale.data[ci]
            let row = p.baseAddress! + ci * inner
            for i in 0..<inner { row[i] *= s }
        }
    }
}

/// `x += y`, same shapes.
public func add(_ x: inout Tensor, _ y: Tensor) {
    precondition(x.shape == y.shape, "add: \(x.shape) vs \(y.shape)")
    x.data.withUnsafeMutableBufferPointer { p in
        y.data.withUnsafeBufferPointer { q in
            for i in 0..<p.count { p[i] += q[i] }
        }
    }
}

/// `exp(x)` to within 2 ulp over the float range, eight lanes, branch-free: `2^n · p(r)` with
/// `x = n·ln2 + r`, `|r| ≤ ln2/2`, and a degree-6 polynomial for `e^r`: the exp of the C kernels
/// (CStemifyKernels, same operations, so the same numbers) for the loops still written in
/// Swift (LSTM gates, SiLU, tanh, RoFormer's gates); parity tests bound its effect.
@inline(__always)
func fastExp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // Comparisons and blends inline; `clamped` went through unspecialised generic calls.
    var x = x.replacing(with: -87.3, where: x .< -87.3)
    x = x.replacing(with: 88.3, where: x .> 88.3)
    // Adding 1.5·2^23 rounds to an integer that sits in the low mantissa bits: n without a
    // float-to-int conversion. Cody–Waite: ln2 split in a part exact in float and a correction.
    // Fused multiply-adds throughout: Swift does not contract `a * b + c` on its own, and the
    // unfused chain was twice as long (latency) and twice the instructions.
    let t = fused(x, 1.442695041, 12_582_912)
    let n = t - 12_582_912
    let r = fused(n, -1.428606765330187e-06, fused(n, -0.693145751953125, x))
    var p = SIMD8<Float>(repeating: 1.0 / 720)
    p = fused(p, r, 1.0 / 120)
    p = fused(p, r, 1.0 / 24)
    p = fused(p, r, 1.0 / 6)
    p = fused(p, r, 0.5)
    p = fused(p, r, 1)
    p = fused(p, r, 1)
    let bits = (unsafeBitCast(t, to: SIMD8<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: SIMD8<Float>.self)
}

/// `a · b + c` rounded once (one `vfmadd` with the engine's `-target-cpu`).
@inline(__always)
func fused(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> SIMD8<Float> {
    c.addingProduct(a, b)
}

@inline(__always)
func fused(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: Float) -> SIMD8<Float> {
    SIMD8(repeating: c).addingProduct(a, b)
}

@inline(__always)
func fused(_ a: SIMD8<Float>, _ b: Float, _ c: Float) -> SIMD8<Float> {
    SIMD8(repeating: c).addingProduct(a, SIMD8(repeating: b))
}

@inline(__always)
func fused(_ a: SIMD8<Float>, _ b: Float, _ c: SIMD8<Float>) -> SIMD8<Float> {
    c.addingProduct(a, SIMD8(repeating: b))
}

/// Scalar forms for loop tails: lane 0 of the vector forms, so both give the same numbers.
@inline(__always)
func fastExp(_ x: Float) -> Float { fastExp(SIMD8(repeating: x))[0] }

/// Applies `scalar` to every element of `p[range]`, eight lanes at a time through `vector`.
@inline(__always)
func mapInPlace(
    _ p: UnsafeMutablePointer<Float>, _ range: Range<Int>,
    vector: (SIMD8<Float>) -> SIMD8<Float>, scalar: (Float) -> Float
) {
    var i = range.lowerBound
    let raw = UnsafeMutableRawPointer(p)
    while i + 8 <= range.upperBound {
        let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        raw.storeBytes(of: vector(v), toByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    while i < range.upperBound {
        p[i] = scalar(p[i])
        i += 1
    }
}


/// Sum of `p[0..<count]`: eight float lanes per block of 1024 elements, blocks added in Double,
/// so long reductions stay accurate and fast.
@inline(__always)
func sum(_ p: UnsafePointer<Float>, _ count: Int) -> Double {
    var total = 0.0
    var start = 0
    let raw = UnsafeRawPointer(p)
    while start < count {
        let end = min(count, start + 1024)
        var lanes = SIMD8<Float>()
        var i = start
        while i + 8 <= end {
            lanes += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        var block = Double(lanes.sum())
        while i < end {
            block += Double(p[i])
            i += 1
        }
        total += block
        start = end
    }
    return total
}

/// `Σ (p[i] - mean)²` over `p[0..<count]`, blocked like ``sum(_:_:)``.
@inline(__always)
func sumOfSquaredDeviations(_ p: UnsafePointer<Float>, _ count: Int, mean: Float) -> Double {
    var total = 0.0
    var start = 0
    let raw = UnsafeRawPointer(p)
    let m = SIMD8<Float>(repeating: mean)
    while start < count {
        let end = min(count, start + 1024)
        var lanes = SIMD8<Float>()
        var i = start
        while i + 8 <= end {
            let d = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - m
            lanes += d * d
            i += 8
        }
        var block = Double(lanes.sum())
        while i < end {
            let d = p[i] - mean
            block += Double(d * d)
            i += 1
        }
        total += block
        start = end
    }
    return total
}

/// `tanh` in place over `p[0..<count]`, as `2 / (1 + e^{-2x}) − 1` through the vector exp
/// (absolute error ~1e-7, which is what parity measures).
func tanhInPlace(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
    let xp = UnsafeMutableSendablePointer(p)
    parallelFor(count, minPerTask: 1 << 14) { range in
        mapInPlace(xp.pointer, range, vector: { 2 / (1 + fastExp(-2 * $0)) - 1 }, scalar: { 2 / (1 + fastExp(-2 * $0)) - 1 })
    }
}

/// `nn.GLU(dim=-1)` on `rows × 2d` values: `a · σ(b)` with `a`, `b` the two halves of each row,
/// written as `rows × d` values with row stride `ldo`.
func gluLastAxis(_ x: UnsafePointer<Float>, rows: Int, half d: Int, into out: UnsafeMutablePointer<Float>, ldo: Int) {
    let (xs, os) = (UnsafeSendable(x), UnsafeMutableSendablePointer(out))
    let kernels = VectorKernels.active
    parallelFor(rows, minPerTask: 16) { range in
        for r in range {
            let a = xs.pointer + r * 2 * d
            kernels.glu(a, a + d, 0, 0, os.pointer + r * ldo, d)
        }
    }
}
