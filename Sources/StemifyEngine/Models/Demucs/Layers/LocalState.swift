import Foundation

/// `demucs.demucs.LocalState`: attention over time without positional embedding, whose scores
/// are penalised by the distance between steps through learned decay rates, inside the DConv
/// branch of the deepest layers.
///
/// Per head: `score[s, t] = k_t·q_s / √d − |t − s| · Σ_f (f+1)·σ(decay_f(s))/2 / √ndecay`, the
/// diagonal set to −100 (a step does not attend to itself), softmax over `t`, then the weighted
/// sum of contents, a 1×1 projection and a residual.
public struct LocalState: Sendable {
    /// `content`, `query`, `key`: Conv1d(C, C, 1)
    public var content: ConvLayer
    public var query: ConvLayer
    public var key: ConvLayer
    /// `query_decay`: Conv1d(C, heads·ndecay, 1)
    public var queryDecay: ConvLayer?
    /// `proj`: Conv1d(C, C, 1)
    public var proj: ConvLayer
    public var heads: Int
    public var ndecay: Int

    public init(content: ConvLayer, query: ConvLayer, key: ConvLayer, queryDecay: ConvLayer?, proj: ConvLayer, heads: Int, ndecay: Int) {
        (self.content, self.query, self.key, self.queryDecay, self.proj) = (content, query, key, queryDecay, proj)
        (self.heads, self.ndecay) = (heads, ndecay)
    }

    /// Query steps scored at once: memory is `blockRows × T` floats however long the input.
    static let blockRows = 512

    static func load(_ r: inout StateReader, _ prefix: String, channels: Int, heads: Int, ndecay: Int) throws -> LocalState {
        func conv(_ name: String, _ cout: Int) throws -> ConvLayer {
            try .load(&r, "\(prefix).\(name)", cin: channels, cout: cout, kernel: (1, 1), oneD: true)
        }
        // Registration order of the reference (content, query, key, query_decay, proj): DiffQ
        // states are matched to parameters in that order.
        let content = try conv("content", channels), query = try conv("query", channels), key = try conv("key", channels)
        let decay = ndecay > 0 ? try conv("query_decay", heads * ndecay) : nil
        return LocalState(content: content, query: query, key: key, queryDecay: decay, proj: try conv("proj", channels),
                          heads: heads, ndecay: ndecay)
    }

    /// `[C, 1, T] → [C, 1, T]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let c = x.shape[0], t = x.shape[x.shape.count - 1]
        let x3 = x.reshaped([c, 1, t])
        let q = query(x3), k = key(x3), v = content(x3)
        let d = c / heads
        // Per head and query step: the distance penalty's slope.
        var slope = [Float](repeating: 0, count: heads * t)
        if let queryDecay, ndecay > 0 {
            let dq = queryDecay(x3)
            let norm = 1 / Float(ndecay).squareRoot()
            for h in 0..<heads {
                for f in 0..<ndecay {
                    let row = (h * ndecay + f) * t
                    for s in 0..<t {
                        let sig = 1 / (1 + expf(-dq.data[row + s])) / 2
                        slope[h * t + s] += Float(f + 1) * sig * norm
                    }
                }
            }
        }
        var result = Tensor(uninitialized: [c, 1, t])
        let block = min(Self.blockRows, t)
        var scores = [Float](repeating: 0, count: block * t)
        let scale = 1 / Float(d).squareRoot()
        q.data.withUnsafeBufferPointer { qp in
            k.data.withUnsafeBufferPointer { kp in
                v.data.withUnsafeBufferPointer { vp in
                    result.data.withUnsafeMutableBufferPointer { rp in
                        scores.withUnsafeMutableBufferPointer { sp in
                            for h in 0..<heads {
                                let base = h * d * t
                                var s0 = 0
                                while s0 < t {
                                    let rows = min(block, t - s0)
                                    // scores[s, t'] = q_sᵀ k_t' / √d for query steps s0..<s0+rows
                                    gemm(transA: true, m: rows, n: t, k: d, alpha: scale,
                                         a: qp.baseAddress! + base + s0, lda: t,
                                         b: kp.baseAddress! + base, ldb: t,
                                         c: sp.baseAddress!, ldc: t)
                                    for r in 0..<rows {
                                        let s = s0 + r
                                        let row = sp.baseAddress! + r * t
                                        let a = slope[h * t + s]
                                        if a != 0 { for j in 0..<t { row[j] -= Float(abs(j - s)) * a } }
                                        row[s] = -100
                                    }
                                    softmaxRows(sp.baseAddress!, rows: rows, cols: t)
                                    // result[c, s] = Σ_t' v[c, t'] · w[s, t']
                                    gemm(transB: true, m: d, n: rows, k: t,
                                         a: vp.baseAddress! + base, lda: t,
                                         b: sp.baseAddress!, ldb: t,
                                         c: rp.baseAddress! + base + s0, ldc: t)
                                    s0 += rows
                                }
                            }
                        }
                    }
                }
            }
        }
        var out = proj(result)
        add(&out, x3)
        return out
    }
}
