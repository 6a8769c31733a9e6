/// `nn.Linear` on tokens: `[N, In] → [N, Out]`, `y = x·Wᵀ + b`.
///
/// - Parameters:
///   - weight: `[Out, In]`.
///   - bias: `[Out]` or nil.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    let inF = weight.shape[1], outF = weight.shape[0]
    let n = x.count / inF
    precondition(x.shape.last == inF, "linear: input \(x.shape), weight \(weight.shape)")
    var out = Tensor(uninitialized: [n, outF])
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.data.withUnsafeMutableBufferPointer { op in
                if let bias {
                    bias.data.withUnsafeBufferPointer { bp in
                        linear(xp.baseAddress!, rows: n, inFeatures: inF, weight: wp.baseAddress!, outFeatures: outF,
                               bias: bp.baseAddress!, into: op.baseAddress!)
                    }
                } else {
                    linear(xp.baseAddress!, rows: n, inFeatures: inF, weight: wp.baseAddress!, outFeatures: outF,
                           bias: nil, into: op.baseAddress!)
                }
            }
        }
    }
    return out
}

/// Pointer form of ``linear(_:weight:bias:)``: `out [rows, outF] = x [rows, inF] · Wᵀ + b`, with
/// `weight` any `[outF, inF]` block (attention takes its q, k, v rows of the packed projection).
func linear(
    _ x: UnsafePointer<Float>, rows n: Int, inFeatures inF: Int,
    weight: UnsafePointer<Float>, outFeatures outF: Int, bias: UnsafePointer<Float>?,
    into out: UnsafeMutablePointer<Float>
) {
    if let bias {
        // Rows start as the bias, then the product accumulates onto them (beta 1).
        for r in 0..<n { (out + r * outF).update(from: bias, count: outF) }
    }
    gemm(transB: true, m: n, n: outF, k: inF, a: x, lda: inF, b: weight, ldb: inF,
         beta: bias == nil ? 0 : 1, c: out, ldc: outF)
}
