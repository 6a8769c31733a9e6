import Foundation

/// The axial transformer of both RoFormers: pre-norm attention with rotary positions and a
/// per-head sigmoid gate, then a GELU feed-forward, each added back to its input.
///
/// Reference: `msst/models/bs_roformer/bs_roformer.py` (`Attention`, `FeedForward`,
/// `Transformer`), `rotary_embedding_torch` 0.9.1 (`RotaryEmbedding.rotate_queries_or_keys`).
struct RoFormerTransformer: Sendable {
    struct Layer: Sendable {
        var attentionNorm: Tensor
        /// `to_qkv.weight [3·H·Dh, D]`, no bias; rows are `(qkv, head, d)`.
        var qkv: Tensor
        /// `to_gates [H, D]` + bias.
        var gates: Tensor
        var gatesBias: Tensor
        /// `to_out.0.weight [D, H·Dh]`, no bias.
        var out: Tensor
        var feedForwardNorm: Tensor
        var ff1: Tensor, ff1Bias: Tensor
        var ff2: Tensor, ff2Bias: Tensor
    }

    var layers: [Layer]
    /// The closing RMSNorm of a Mel-Band RoFormer transformer (`norm_output=True`); BS-RoFormer
    /// has one norm after the whole stack instead.
    var outputNorm: Tensor?
    let heads: Int
    let headDim: Int
    /// Rotary inverse frequencies, `[Dh/2]` (the state dict's `rotary_embed.freqs`).
    let rotaryFrequencies: [Float]

    /// Tokens per block of the residual stream: bounds the q/k/v and hidden activations to a
    /// few tens of MB whatever the chunk length.
    static let blockTokens = 8192

    /// Runs the stack on `sequences` sequences of `length` tokens, `x [sequences·length, D]`.
    func callAsFunction(_ x: inout Tensor, sequences: Int, length: Int) {
        let d = x.shape[1]
        let (cosTable, sinTable) = rotaryTables(length: length)
        x.data.withUnsafeMutableBufferPointer { xb in
            let xp = xb.baseAddress!
            for layer in layers {
                let perBlock = max(1, Self.blockTokens / length)
                var s0 = 0
                while s0 < sequences {
                    let n = min(perBlock, sequences - s0)
                    attention(layer, xp + s0 * length * d, sequences: n, length: length, dim: d, cos: cosTable, sin: sinTable)
                    s0 += n
                }
                var r0 = 0
                let rows = sequences * length
                while r0 < rows {
                    let n = min(Self.blockTokens, rows - r0)
                    feedForward(layer, xp + r0 * d, rows: n, dim: d)
                    r0 += n
                }
            }
            if let outputNorm {
                outputNorm.data.withUnsafeBufferPointer { g in
                    l2RMSNorm(xp, rows: sequences * length, dim: d, gamma: g.baseAddress!, into: xp)
                }
            }
        }
    }

    /// `x += to_out(gate · softmax(rot(q)·rot(k)ᵀ/√Dh) · v)` for whole sequences at `x`.
    private func attention(_ w: Layer, _ x: UnsafeMutablePointer<Float>, sequences: Int, length: Int, dim d: Int,
                           cos: [Float], sin: [Float]) {
        let rows = sequences * length
        let inner = heads * headDim
        var normed = [Float](repeating: 0, count: rows * d)
        var qkv = [Float](repeating: 0, count: rows * 3 * inner)
        var gate = [Float](repeating: 0, count: rows * heads)
        var attended = [Float](repeating: 0, count: rows * inner)
        let (hd, h) = (headDim, heads)
        normed.withUnsafeMutableBufferPointer { nb in
            w.attentionNorm.data.withUnsafeBufferPointer { l2RMSNorm(x, rows: rows, dim: d, gamma: $0.baseAddress!, into: nb.baseAddress!) }
            qkv.withUnsafeMutableBufferPointer { qb in
                w.qkv.data.withUnsafeBufferPointer { wp in
                    linear(nb.baseAddress!, rows: rows, inFeatures: d, weight: wp.baseAddress!, outFeatures: 3 * inner, bias: nil, into: qb.baseAddress!)
                }
            }
            gate.withUnsafeMutableBufferPointer { gb in
                w.gates.data.withUnsafeBufferPointer { wp in
                    w.gatesBias.data.withUnsafeBufferPointer { bp in
                        linear(nb.baseAddress!, rows: rows, inFeatures: d, weight: wp.baseAddress!, outFeatures: h,
                               bias: bp.baseAddress!, into: gb.baseAddress!)
                    }
                }
            }
        }
        qkv.withUnsafeMutableBufferPointer { qb in
            gate.withUnsafeBufferPointer { gb in
                attended.withUnsafeMutableBufferPointer { ab in
                    let (qp, gp, ap) = (UnsafeMutableSendablePointer(qb.baseAddress!), UnsafeSendable(gb.baseAddress!),
                                        UnsafeMutableSendablePointer(ab.baseAddress!))
                    // Rotary positions on q and k: pairs (2i, 2i+1) of each head turn by angle p·θᵢ.
                    parallelFor(rows, minPerTask: 256) { range in
                        for r in range {
                            let p = r % length
                            for part in 0..<2 {
                                for head in 0..<h {
                                    let v = qp.pointer + r * 3 * inner + part * inner + head * hd
                                    for i in 0..<(hd / 2) {
                                        let (c, s) = (cos[p * hd / 2 + i], sin[p * hd / 2 + i])
                                        let (a, b) = (v[2 * i], v[2 * i + 1])
                                        v[2 * i] = a * c - b * s
                                        v[2 * i + 1] = b * c + a * s
                                    }
                                }
                            }
                        }
                    }
                    let scale = 1 / Float(hd).squareRoot()
                    parallelFor(sequences * h) { range in
                        var scores = [Float](repeating: 0, count: length * length)
                        var inverseSums = [Float](repeating: 0, count: length)
                        scores.withUnsafeMutableBufferPointer { sb in
                          inverseSums.withUnsafeMutableBufferPointer { ib in
                            let sp = sb.baseAddress!, ip = ib.baseAddress!
                            for job in range {
                                let (seq, head) = (job / h, job % h)
                                let base = qp.pointer + seq * length * 3 * inner + head * hd
                                gemm(transB: true, m: length, n: length, k: hd, alpha: scale,
                                     a: base, lda: 3 * inner, b: base + inner, ldb: 3 * inner,
                                     c: sp, ldc: length, parallel: false)
                                softmaxNumerators(sp, rows: length, cols: length, inverseSums: ip, parallel: false)
                                let o = ap.pointer + seq * length * inner + head * hd
                                gemm(m: length, n: hd, k: length, a: sp, lda: length, b: base + 2 * inner, ldb: 3 * inner,
                                     c: o, ldc: inner, parallel: false)
                                for t in 0..<length {
                                    // The gate and softmax's denominator in one scale.
                                    let g = ip[t] / (1 + fastExp(-gp.pointer[(seq * length + t) * h + head]))
                                    for i in 0..<hd { o[t * inner + i] *= g }
                                }
                            }
                          }
                        }
                    }
                }
            }
        }
        attended.withUnsafeBufferPointer { ab in
            w.out.data.withUnsafeBufferPointer { wp in
                gemm(transB: true, m: rows, n: d, k: inner, a: ab.baseAddress!, lda: inner, b: wp.baseAddress!, ldb: inner,
                     beta: 1, c: x, ldc: d)
            }
        }
    }

    /// `x += W₂ · gelu(W₁ · rmsnorm(x) + b₁) + b₂` on `rows` tokens at `x`.
    private func feedForward(_ w: Layer, _ x: UnsafeMutablePointer<Float>, rows: Int, dim d: Int) {
        var normed = Tensor(uninitialized: [rows, d])
        normed.data.withUnsafeMutableBufferPointer { nb in
            w.feedForwardNorm.data.withUnsafeBufferPointer { l2RMSNorm(x, rows: rows, dim: d, gamma: $0.baseAddress!, into: nb.baseAddress!) }
        }
        var hidden = linear(normed, weight: w.ff1, bias: w.ff1Bias)
        gelu(&hidden)
        let inner = w.ff1.shape[0]
        for r in 0..<rows {
            for i in 0..<d { x[r * d + i] += w.ff2Bias.data[i] }
        }
        hidden.data.withUnsafeBufferPointer { hb in
            w.ff2.data.withUnsafeBufferPointer { wp in
                gemm(transB: true, m: rows, n: d, k: inner, a: hb.baseAddress!, lda: inner, b: wp.baseAddress!, ldb: inner,
                     beta: 1, c: x, ldc: d)
            }
        }
    }

    /// `cos`, `sin` of `p·θᵢ` for positions `0..<length`, `[length, Dh/2]`. The angle is a Float32
    /// product as in the reference; its cosine is rounded once from Double.
    private func rotaryTables(length: Int) -> ([Float], [Float]) {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: length * half), s = c
        for p in 0..<length {
            for i in 0..<half {
                let angle = Double(Float(p) * rotaryFrequencies[i])
                c[p * half + i] = Float(Foundation.cos(angle))
                s[p * half + i] = Float(Foundation.sin(angle))
            }
        }
        return (c, s)
    }
}
