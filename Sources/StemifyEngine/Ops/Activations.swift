import Foundation

/// GELU with the exact erf form, `x · ½ · (1 + erf(x / √2))` (`F.gelu` default, not the tanh one).
///
/// Written as `½x · erfc(-x/√2)` so negative inputs keep their relative accuracy; erfc comes from
/// a vectorisable fit accurate to 1.2e-7, not libm's scalar `erff`.
public func gelu(_ x: inout Tensor) {
    x.data.withUnsafeMutableBufferPointer { p in
        let xp = UnsafeMutableSendablePointer(p.baseAddress!)
        parallelFor(p.count, minPerTask: 1 << 14) { range in
            // Two vectors a step: each is a long dependent chain (division, two polynomials),
            // so a second independent one fills the pipeline.
            @inline(__always) func gelu8(_ v: SIMD8<Float>) -> SIMD8<Float> {
                let magnitude = unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self)
                let e = erfcNonNegative(magnitude * 0.70710678118654752)
                let factor = (2 - e).replacing(with: e, where: v .< 0)
                return 0.5 * v * factor
            }
            let raw = UnsafeMutableRawPointer(xp.pointer)
            var i = range.lowerBound
            while i + 16 <= range.upperBound {
                let a = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                let b = raw.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                raw.storeBytes(of: gelu8(a), toByteOffset: i * 4, as: SIMD8<Float>.self)
                raw.storeBytes(of: gelu8(b), toByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                i += 16
            }
            if i < range.upperBound {
                mapInPlace(xp.pointer, i..<range.upperBound, vector: gelu8, scalar: { gelu8(SIMD8(repeating: $0))[0] })
            }
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
    x.data.withUnsafeBufferPointer { src in
        out.data.withUnsafeMutableBufferPointer { dst in
            let dp = UnsafeMutableSendablePointer(dst.baseAddress!)
            let sp = src.baseAddress!
            let raw = UnsafeRawPointer(sp)
            let out = UnsafeMutableRawPointer(dp.pointer)
            parallelFor(half, minPerTask: 1 << 14) { range in
                var i = range.lowerBound
                while i + 8 <= range.upperBound {
                    let a = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                    let b = raw.loadUnaligned(fromByteOffset: (half + i) * 4, as: SIMD8<Float>.self)
                    out.storeBytes(of: a / (1 + fastExp(-b)), toByteOffset: i * 4, as: SIMD8<Float>.self)
                    i += 8
                }
                while i < range.upperBound {
                    dp.pointer[i] = sp[i] / (1 + fastExp(-sp[half + i]))
                    i += 1
                }
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
/// `x = n·ln2 + r`, `|r| ≤ ln2/2`, and a degree-6 polynomial for `e^r`. Used where libm's scalar
/// `expf` dominated (softmax, sigmoid, GELU); parity tests bound its effect.
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

/// `erfc(z)` for `z ≥ 0`, relative error below 1.2e-7 (Numerical Recipes' Chebyshev fit),
/// eight lanes, branch-free.
@inline(__always)
func erfcNonNegative(_ z: SIMD8<Float>) -> SIMD8<Float> {
    let t = 1 / fused(z, 0.5, 1)
    var p = SIMD8<Float>(repeating: 0.17087277)
    p = fused(p, t, -0.82215223)
    p = fused(p, t, 1.48851587)
    p = fused(p, t, -1.13520398)
    p = fused(p, t, 0.27886807)
    p = fused(p, t, -0.18628806)
    p = fused(p, t, 0.09678418)
    p = fused(p, t, 0.37409196)
    p = fused(p, t, 1.00002368)
    p = fused(p, t, -1.26551223)
    return t * fastExp(fused(-z, z, p))
}

/// Scalar forms for loop tails: lane 0 of the vector forms, so both give the same numbers.
@inline(__always)
func fastExp(_ x: Float) -> Float { fastExp(SIMD8(repeating: x))[0] }

@inline(__always)
func erfcNonNegative(_ z: Float) -> Float { erfcNonNegative(SIMD8(repeating: z))[0] }

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

/// Largest element of `p[0..<count]` (`count > 0`).
@inline(__always)
func maximum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    let raw = UnsafeRawPointer(p)
    var i = 0
    var result = p[0]
    if count >= 8 {
        var lanes = raw.loadUnaligned(as: SIMD8<Float>.self)
        i = 8
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            lanes = lanes.replacing(with: v, where: v .> lanes)
            i += 8
        }
        result = lanes.max()
    }
    while i < count {
        result = Swift.max(result, p[i])
        i += 1
    }
    return result
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
    parallelFor(rows, minPerTask: 16) { range in
        for r in range {
            let a = xs.pointer + r * 2 * d, o = os.pointer + r * ldo
            for j in 0..<d { o[j] = a[j] / (1 + fastExp(-a[d + j])) }
        }
    }
}
