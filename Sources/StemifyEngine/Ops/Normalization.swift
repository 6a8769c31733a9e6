/// Normalisation layers. Statistics accumulate in Double: the reference's float32 reductions and
/// ours then differ by rounding only, far below the parity threshold.

/// `nn.GroupNorm(groups, C)` on `[C, F, T]`, biased variance.
///
/// - Parameter perRow: normalise each frequency row `f` on its own. That is the reference's
///   DConv on a frequency layer, which reshapes `[B, C, F, T]` to `[B·F, C, T]` first.
public func groupNorm(_ x: inout Tensor, groups: Int, weight: Tensor, bias: Tensor, eps: Float = 1e-5, perRow: Bool = false) {
    let c = x.shape[0]
    let rows = perRow ? x.shape[1] : 1
    let t = x.count / c / rows
    precondition(c % groups == 0 && weight.count == c && bias.count == c, "groupNorm: \(x.shape), groups \(groups), weight \(weight.shape)")
    let cg = c / groups
    let n = Double(cg * t)
    x.data.withUnsafeMutableBufferPointer { p in
        let xp = UnsafeMutableSendablePointer(p.baseAddress!)
        weight.data.withUnsafeBufferPointer { wp in
            bias.data.withUnsafeBufferPointer { bp in
                parallelFor(rows * groups) { range in
                    for job in range {
                        let r = job / groups, g = job % groups
                        var total = 0.0, sq = 0.0
                        for ci in g * cg..<(g + 1) * cg { total += sum(xp.pointer + (ci * rows + r) * t, t) }
                        let mean = total / n
                        for ci in g * cg..<(g + 1) * cg {
                            sq += sumOfSquaredDeviations(xp.pointer + (ci * rows + r) * t, t, mean: Float(mean))
                        }
                        let inv = 1 / (sq / n + Double(eps)).squareRoot()
                        for ci in g * cg..<(g + 1) * cg {
                            let row = xp.pointer + (ci * rows + r) * t
                            let scale = Float(inv) * wp[ci]
                            let shift = bp[ci] - Float(mean) * scale
                            mapInPlace(row, 0..<t, vector: { $0 * scale + shift }, scalar: { $0 * scale + shift })
                        }
                    }
                }
            }
        }
    }
}

/// `nn.LayerNorm(C)` over the last axis of `[N, C]`.
public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float = 1e-5) -> Tensor {
    let c = x.shape[x.shape.count - 1]
    let n = x.count / c
    precondition(weight.count == c && bias.count == c, "layerNorm: \(x.shape), weight \(weight.shape)")
    var out = x
    out.data.withUnsafeMutableBufferPointer { p in
        let xp = UnsafeMutableSendablePointer(p.baseAddress!)
        weight.data.withUnsafeBufferPointer { wp in
            bias.data.withUnsafeBufferPointer { bp in
                let (w, b) = (UnsafeSendable(wp.baseAddress!), UnsafeSendable(bp.baseAddress!))
                parallelFor(n, minPerTask: 64) { range in
                    for r in range {
                        let row = xp.pointer + r * c
                        let mean = Float(sum(row, c) / Double(c))
                        let variance = sumOfSquaredDeviations(row, c, mean: mean) / Double(c)
                        let inv = Float(1 / (variance + Double(eps)).squareRoot())
                        affine(row, c, mean: mean, inv: inv, weight: w.pointer, bias: b.pointer)
                    }
                }
            }
        }
    }
    return out
}

/// The reference's `MyGroupNorm(1, C)` on tokens `[N, C]`: one mean and variance over all
/// `N·C` values, then a per-channel affine. (It transposes to `[B, C, N]` and calls GroupNorm.)
public func groupNormTokens(_ x: inout Tensor, weight: Tensor, bias: Tensor, eps: Float = 1e-5) {
    let c = x.shape[x.shape.count - 1]
    let n = x.count / c
    precondition(weight.count == c && bias.count == c, "groupNormTokens: \(x.shape), weight \(weight.shape)")
    x.data.withUnsafeMutableBufferPointer { p in
        let count = p.count
        let mean = Float(sum(p.baseAddress!, count) / Double(count))
        let variance = sumOfSquaredDeviations(p.baseAddress!, count, mean: mean) / Double(count)
        let inv = Float(1 / (variance + Double(eps)).squareRoot())
        let xp = UnsafeMutableSendablePointer(p.baseAddress!)
        weight.data.withUnsafeBufferPointer { wp in
            bias.data.withUnsafeBufferPointer { bp in
                let (w, b) = (UnsafeSendable(wp.baseAddress!), UnsafeSendable(bp.baseAddress!))
                parallelFor(n, minPerTask: 64) { range in
                    for r in range { affine(xp.pointer + r * c, c, mean: mean, inv: inv, weight: w.pointer, bias: b.pointer) }
                }
            }
        }
    }
}

/// The RoFormers' `RMSNorm`: `F.normalize(x, dim=-1) · √C · γ` over the last axis of `rows × C`
/// values, written to `out` (which may be `x`). Not mean-square + eps: the norm is clamped at
/// 1e-12 as `F.normalize` does.
func l2RMSNorm(_ x: UnsafePointer<Float>, rows: Int, dim c: Int, gamma: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    let (xs, os, gs) = (UnsafeSendable(x), UnsafeMutableSendablePointer(out), UnsafeSendable(gamma))
    let root = Float(c).squareRoot()
    parallelFor(rows, minPerTask: 64) { range in
        for r in range {
            let row = xs.pointer + r * c, dst = os.pointer + r * c
            var sq = 0.0
            for i in 0..<c { sq += Double(row[i]) * Double(row[i]) }
            let scale = root / Float(max(sq.squareRoot(), 1e-12))
            for i in 0..<c { dst[i] = row[i] * scale * gs.pointer[i] }
        }
    }
}

/// `row[i] = (row[i] - mean) · inv · weight[i] + bias[i]`.
@inline(__always)
private func affine(_ row: UnsafeMutablePointer<Float>, _ c: Int, mean: Float, inv: Float,
                    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>) {
    let raw = UnsafeMutableRawPointer(row)
    let (wr, br) = (UnsafeRawPointer(weight), UnsafeRawPointer(bias))
    var i = 0
    while i + 8 <= c {
        let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        let w = wr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        let b = br.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        raw.storeBytes(of: (v - mean) * inv * w + b, toByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    while i < c {
        row[i] = (row[i] - mean) * inv * weight[i] + bias[i]
        i += 1
    }
}

/// Mean and unbiased standard deviation (`torch.std`, Bessel's correction) of all elements.
public func meanAndStd(_ values: UnsafeBufferPointer<Float>) -> (mean: Float, std: Float) {
    var sum = 0.0
    for v in values { sum += Double(v) }
    let mean = sum / Double(values.count)
    var sq = 0.0
    for v in values { let d = Double(v) - mean; sq += d * d }
    return (Float(mean), Float((sq / Double(max(values.count - 1, 1))).squareRoot()))
}
