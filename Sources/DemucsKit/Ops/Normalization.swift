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
                parallelFor(n, minPerTask: 64) { range in
                    for r in range {
                        let row = xp.pointer + r * c
                        var sum = 0.0
                        for i in 0..<c { sum += Double(row[i]) }
                        let mean = sum / Double(c)
                        var sq = 0.0
                        for i in 0..<c { let d = Double(row[i]) - mean; sq += d * d }
                        let inv = Float(1 / (sq / Double(c) + Double(eps)).squareRoot())
                        let m = Float(mean)
                        for i in 0..<c { row[i] = (row[i] - m) * inv * wp[i] + bp[i] }
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
    let (mean, inv) = x.data.withUnsafeBufferPointer { p -> (Float, Float) in
        var sum = 0.0
        for v in p { sum += Double(v) }
        let mean = sum / Double(p.count)
        var sq = 0.0
        for v in p { let d = Double(v) - mean; sq += d * d }
        return (Float(mean), Float(1 / (sq / Double(p.count) + Double(eps)).squareRoot()))
    }
    x.data.withUnsafeMutableBufferPointer { p in
        weight.data.withUnsafeBufferPointer { wp in
            bias.data.withUnsafeBufferPointer { bp in
                for r in 0..<n {
                    let row = p.baseAddress! + r * c
                    for i in 0..<c { row[i] = (row[i] - mean) * inv * wp[i] + bp[i] }
                }
            }
        }
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
