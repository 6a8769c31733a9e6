/// `nn.Linear` on tokens: `[N, In] → [N, Out]`, `y = x·Wᵀ + b`.
///
/// - Parameters:
///   - weight: `[Out, In]`.
///   - bias: `[Out]` or nil.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    let inF = weight.shape[1], outF = weight.shape[0]
    let n = x.count / inF
    precondition(x.shape.last == inF, "linear: input \(x.shape), weight \(weight.shape)")
    var out = Tensor(zeros: [n, outF])
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.data.withUnsafeMutableBufferPointer { op in
                gemm(transB: true, m: n, n: outF, k: inF, a: xp.baseAddress!, lda: inF,
                     b: wp.baseAddress!, ldb: inF, c: op.baseAddress!, ldc: outF)
                if let bias {
                    bias.data.withUnsafeBufferPointer { bp in
                        for r in 0..<n {
                            let row = op.baseAddress! + r * outF
                            for i in 0..<outF { row[i] += bp[i] }
                        }
                    }
                }
            }
        }
    }
    return out
}
