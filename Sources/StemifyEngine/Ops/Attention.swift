import Foundation

/// Weights of `nn.MultiheadAttention` (packed input projection, as PyTorch stores them).
public struct MultiheadAttentionWeights: Sendable {
    /// `in_proj_weight [3C, C]`: query, key and value projections stacked.
    public var inProjWeight: Tensor
    /// `in_proj_bias [3C]`.
    public var inProjBias: Tensor
    /// `out_proj.weight [C, C]`.
    public var outProjWeight: Tensor
    /// `out_proj.bias [C]`.
    public var outProjBias: Tensor
    /// Number of heads; the head size is `C / heads`.
    public var heads: Int

    public init(inProjWeight: Tensor, inProjBias: Tensor, outProjWeight: Tensor, outProjBias: Tensor, heads: Int) {
        self.inProjWeight = inProjWeight
        self.inProjBias = inProjBias
        self.outProjWeight = outProjWeight
        self.outProjBias = outProjBias
        self.heads = heads
    }
}

/// Query rows scored at once. The full score matrix for 2688 tokens and 8 heads is 231 MB in
/// the reference; one block of rows for one head is `blockRows × M` floats (2.7 MB at M = 2688).
public let attentionBlockRows = 1024

/// Multi-head attention of `query [N, C]` over `keyValue [M, C]` (self-attention when nil),
/// `nn.MultiheadAttention(batch_first=True)` in eval mode, no mask.
///
/// Scores are computed exactly, one block of query rows and one head at a time, so memory stays
/// at `attentionBlockRows × M` floats however long the sequence.
///
/// - Parameter blockRows: query rows per block (tests use small blocks to cover the seams).
public func multiheadAttention(_ query: Tensor, keyValue: Tensor?, weights w: MultiheadAttentionWeights, blockRows: Int = attentionBlockRows) -> Tensor {
    let c = query.shape[1]
    let n = query.shape[0]
    let heads = w.heads
    let dh = c / heads
    precondition(c % heads == 0 && w.inProjWeight.shape == [3 * c, c], "attention: query \(query.shape), in_proj \(w.inProjWeight.shape)")

    // q [N, C] and kv [M, 2C] (k at column 0, v at column C), projected with the rows of the
    // packed in_proj weight in place.
    let other = keyValue ?? query
    let m = other.shape[0]
    var q = Tensor(uninitialized: [n, c])
    var kv = Tensor(uninitialized: [m, 2 * c])
    w.inProjWeight.data.withUnsafeBufferPointer { wp in
        w.inProjBias.data.withUnsafeBufferPointer { bp in
            query.data.withUnsafeBufferPointer { xp in
                q.data.withUnsafeMutableBufferPointer { qp in
                    linear(xp.baseAddress!, rows: n, inFeatures: c, weight: wp.baseAddress!, outFeatures: c,
                           bias: bp.baseAddress!, into: qp.baseAddress!)
                }
            }
            other.data.withUnsafeBufferPointer { xp in
                kv.data.withUnsafeMutableBufferPointer { kp in
                    linear(xp.baseAddress!, rows: m, inFeatures: c, weight: wp.baseAddress! + c * c, outFeatures: 2 * c,
                           bias: bp.baseAddress! + c, into: kp.baseAddress!)
                }
            }
        }
    }
    let k = kv, v = kv
    let scale = 1 / Float(dh).squareRoot()

    var attended = Tensor(uninitialized: [n, c])
    var scores = [Float](repeating: 0, count: blockRows * m)
    var inverseSums = [Float](repeating: 0, count: blockRows)
    q.data.withUnsafeBufferPointer { qp in
        k.data.withUnsafeBufferPointer { kp in
            v.data.withUnsafeBufferPointer { vp in
                attended.data.withUnsafeMutableBufferPointer { ap in
                    scores.withUnsafeMutableBufferPointer { sp in
                      inverseSums.withUnsafeMutableBufferPointer { ip in
                        for h in 0..<heads {
                            var r0 = 0
                            while r0 < n {
                                let rows = min(blockRows, n - r0)
                                // scores[rows, M] = scale · q_h[r0..] · k_hᵀ
                                gemm(transB: true, m: rows, n: m, k: dh, alpha: scale,
                                     a: qp.baseAddress! + r0 * c + h * dh, lda: c,
                                     b: kp.baseAddress! + h * dh, ldb: 2 * c,
                                     c: sp.baseAddress!, ldc: m)
                                softmaxNumerators(sp.baseAddress!, rows: rows, cols: m, inverseSums: ip.baseAddress!)
                                // attended[r0.., h] = softmax(scores) · v_h
                                let out = ap.baseAddress! + r0 * c + h * dh
                                gemm(m: rows, n: dh, k: m, a: sp.baseAddress!, lda: m,
                                     b: vp.baseAddress! + c + h * dh, ldb: 2 * c, c: out, ldc: c)
                                for r in 0..<rows {
                                    let inv = ip[r]
                                    for j in 0..<dh { out[r * c + j] *= inv }
                                }
                                r0 += rows
                            }
                        }
                      }
                    }
                }
            }
        }
    }
    return linear(attended, weight: w.outProjWeight, bias: w.outProjBias)
}

/// Row-wise softmax in place, max subtracted first for stability.
func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, parallel: Bool = true) {
    let sp = UnsafeMutableSendablePointer(p)
    let kernels = VectorKernels.active
    parallelFor(rows, minPerTask: parallel ? 16 : Int.max) { range in
        for r in range {
            let row = sp.pointer + r * cols
            let inv = 1 / kernels.expSum(row, cols, kernels.max(row, cols))
            mapInPlace(row, 0..<cols, vector: { $0 * inv }, scalar: { $0 * inv })
        }
    }
}

/// Softmax without its last pass: `p[r, j] = exp(p[r, j] − max_j p[r, ·])` in place and
/// `inverseSums[r] = 1 / Σ_j p[r, j]`. Attention scales the product with the values instead,
/// `head size` numbers a row rather than `cols`: one pass fewer over the largest tensor it makes.
func softmaxNumerators(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int, inverseSums: UnsafeMutablePointer<Float>, parallel: Bool = true) {
    let sp = UnsafeMutableSendablePointer(p), ip = UnsafeMutableSendablePointer(inverseSums)
    let kernels = VectorKernels.active
    parallelFor(rows, minPerTask: parallel ? 16 : Int.max) { range in
        for r in range {
            let row = sp.pointer + r * cols
            ip.pointer[r] = 1 / kernels.expSum(row, cols, kernels.max(row, cols))
        }
    }
}
