import Foundation

/// GELU with the exact erf form, `x · ½ · (1 + erf(x / √2))` (`F.gelu` default, not the tanh one).
public func gelu(_ x: inout Tensor) {
    x.data.withUnsafeMutableBufferPointer { p in
        let xp = UnsafeMutableSendablePointer(p.baseAddress!)
        parallelFor(p.count, minPerTask: 1 << 14) { range in
            for i in range {
                let v = xp.pointer[i]
                xp.pointer[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752))
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
    var out = Tensor(zeros: shape)
    let half = out.count
    x.data.withUnsafeBufferPointer { src in
        out.data.withUnsafeMutableBufferPointer { dst in
            let dp = UnsafeMutableSendablePointer(dst.baseAddress!)
            let sp = src.baseAddress!
            parallelFor(half, minPerTask: 1 << 14) { range in
                for i in range {
                    dp.pointer[i] = sp[i] * (1 / (1 + fastExp(-sp[half + i])))
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

/// `exp(x)` to within 2 ulp over the float range, branch-free so loops vectorise: `2^n · p(r)`
/// with `x = n·ln2 + r`, `|r| ≤ ln2/2`, and a degree-6 polynomial for `e^r`. Used where libm's
/// `expf` call dominated (softmax, sigmoid); parity tests bound its effect.
@inline(__always)
func fastExp(_ x: Float) -> Float {
    let x = min(max(x, -87.3), 88.3)
    // Round to nearest by adding and removing 1.5·2^23 (no libm call, so loops vectorise).
    let n = (x * 1.442695041 + 12_582_912) - 12_582_912
    // Cody–Waite: ln2 split in a high part exact in float and a low correction.
    let r = (x - n * 0.693145751953125) - n * 1.428606765330187e-06
    var p: Float = 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    return p * Float(bitPattern: UInt32(bitPattern: Int32(n) &+ 127) << 23)
}
