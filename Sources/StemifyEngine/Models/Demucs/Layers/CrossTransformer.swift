/// The cross-domain transformer between the two branches (`demucs/transformer.py`,
/// `CrossTransformerEncoder` with `MyTransformerEncoderLayer` and `CrossTransformerEncoderLayer`).
///
/// Layers alternate self-attention (even indices) and cross-attention (odd), each branch with
/// its own weights; a cross layer of one branch attends to the other branch's input to that
/// layer. Every layer is pre-norm with LayerScale and ends with a GroupNorm(1) over all tokens
/// (`norm_first`, `layer_scale`, `norm_out` as in every published HT checkpoint).
public struct CrossTransformer: Sendable {
    /// One branch's layer at one depth.
    public struct Layer: Sendable {
        public var isCross: Bool
        /// `self_attn` or `cross_attn`
        public var attention: MultiheadAttentionWeights
        /// `norm1` (query), `norm2` (keys, cross only), and the feed-forward's norm
        /// (`norm2` for self layers, `norm3` for cross layers)
        public var normQuery: LayerNormLayer
        public var normKey: LayerNormLayer?
        public var normFeedForward: LayerNormLayer
        /// `linear1 [hidden, C]`, `linear2 [C, hidden]`
        public var linear1: LinearLayer
        public var linear2: LinearLayer
        /// `gamma_1.scale`, `gamma_2.scale` `[C]`
        public var gamma1: Tensor
        public var gamma2: Tensor
        /// `norm_out`: MyGroupNorm(1, C)
        public var normOut: LayerNormLayer

        static func load(_ r: inout StateReader, _ p: String, cross: Bool, dim: Int, hidden: Int, heads: Int) throws -> Layer {
            let attn = cross ? "cross_attn" : "self_attn"
            return Layer(
                isCross: cross,
                attention: MultiheadAttentionWeights(
                    inProjWeight: try r.take("\(p).\(attn).in_proj_weight", [3 * dim, dim]),
                    inProjBias: try r.take("\(p).\(attn).in_proj_bias", [3 * dim]),
                    outProjWeight: try r.take("\(p).\(attn).out_proj.weight", [dim, dim]),
                    outProjBias: try r.take("\(p).\(attn).out_proj.bias", [dim]),
                    heads: heads),
                normQuery: try .load(&r, "\(p).norm1", channels: dim),
                normKey: cross ? try .load(&r, "\(p).norm2", channels: dim) : nil,
                normFeedForward: try .load(&r, cross ? "\(p).norm3" : "\(p).norm2", channels: dim),
                linear1: try .load(&r, "\(p).linear1", inFeatures: dim, outFeatures: hidden),
                linear2: try .load(&r, "\(p).linear2", inFeatures: hidden, outFeatures: dim),
                gamma1: try r.take("\(p).gamma_1.scale", [dim]),
                gamma2: try r.take("\(p).gamma_2.scale", [dim]),
                normOut: try .load(&r, "\(p).norm_out", channels: dim))
        }

        /// `x [N, C]`, attending to `other [M, C]` when this is a cross layer.
        func callAsFunction(_ x: Tensor, other: Tensor?) -> Tensor {
            var x = x
            // x = x + γ1 · attention(norm1(x) [, norm2(other)])
            let q = normQuery(x)
            let kv = isCross ? normKey!(other!) : nil
            addScaledLastAxis(&x, multiheadAttention(q, keyValue: kv, weights: attention), gamma1)
            // x = x + γ2 · linear2(gelu(linear1(norm(x))))
            var h = linear1(normFeedForward(x))
            gelu(&h)
            addScaledLastAxis(&x, linear2(h), gamma2)
            groupNormTokens(&x, weight: normOut.weight, bias: normOut.bias)
            return x
        }
    }

    /// `norm_in`, `norm_in_t`: LayerNorm(C) before the positional embeddings
    public var normIn: LayerNormLayer
    public var normInTime: LayerNormLayer
    /// `layers.{i}` (frequency branch) and `layers_t.{i}` (time branch)
    public var layers: [Layer]
    public var timeLayers: [Layer]
    public var maxPeriod: Float
    public var positionalWeight: Float

    static func load(_ r: inout StateReader, _ p: String, dim: Int, hidden: Int, heads: Int, layers count: Int,
                     maxPeriod: Float, positionalWeight: Float) throws -> CrossTransformer {
        var layers: [Layer] = [], timeLayers: [Layer] = []
        for i in 0..<count {
            let cross = i % 2 == 1
            layers.append(try .load(&r, "\(p).layers.\(i)", cross: cross, dim: dim, hidden: hidden, heads: heads))
            timeLayers.append(try .load(&r, "\(p).layers_t.\(i)", cross: cross, dim: dim, hidden: hidden, heads: heads))
        }
        return CrossTransformer(
            normIn: try .load(&r, "\(p).norm_in", channels: dim), normInTime: try .load(&r, "\(p).norm_in_t", channels: dim),
            layers: layers, timeLayers: timeLayers, maxPeriod: maxPeriod, positionalWeight: positionalWeight)
    }

    /// - Parameters:
    ///   - x: frequency branch `[C, F, T1]`.
    ///   - xt: time branch `[C, 1, T2]`.
    /// - Returns: both, same shapes.
    public func callAsFunction(_ x: Tensor, _ xt: Tensor) -> (Tensor, Tensor) {
        let (c, f, t1) = (x.shape[0], x.shape[1], x.shape[2])
        let t2 = xt.shape[2]
        // "b c fr t1 -> b (t1 fr) c": token n = t·F + f. Swapping the last two axes first makes
        // the token axis contiguous, then one transpose gives [T1·F, C].
        var tokens = normIn(tokensFromSpectrogram(x))
        let pos2d = tokensFromSpectrogram(sin2DEmbedding(dim: c, height: f, width: t1, maxPeriod: maxPeriod))
        addScaled(&tokens, pos2d, positionalWeight)
        var tokensT = normInTime(xt.reshaped([c, t2]).transposed2D())
        addScaled(&tokensT, sinEmbedding(length: t2, dim: c, maxPeriod: maxPeriod), positionalWeight)

        for (layer, layerT) in zip(layers, timeLayers) {
            if layer.isCross {
                let old = tokens
                tokens = layer(tokens, other: tokensT)
                tokensT = layerT(tokensT, other: old)
            } else {
                tokens = layer(tokens, other: nil)
                tokensT = layerT(tokensT, other: nil)
            }
        }
        // Back to [C, F, T1] and [C, 1, T2].
        return (spectrogramFromTokens(tokens, channels: c, frequencies: f, frames: t1),
                tokensT.transposed2D().reshaped([c, 1, t2]))
    }

    /// `[C, F, T] → [T·F, C]`, token `t·F + f`.
    private func tokensFromSpectrogram(_ x: Tensor) -> Tensor {
        let (c, f, t) = (x.shape[0], x.shape[1], x.shape[2])
        var out = Tensor(uninitialized: [t * f, c])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for ci in 0..<c {
                    for fi in 0..<f {
                        let row = src.baseAddress! + (ci * f + fi) * t
                        for ti in 0..<t { dst[(ti * f + fi) * c + ci] = row[ti] }
                    }
                }
            }
        }
        return out
    }

    /// `[T·F, C] → [C, F, T]`.
    private func spectrogramFromTokens(_ x: Tensor, channels c: Int, frequencies f: Int, frames t: Int) -> Tensor {
        var out = Tensor(uninitialized: [c, f, t])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for ti in 0..<t {
                    for fi in 0..<f {
                        let token = src.baseAddress! + (ti * f + fi) * c
                        for ci in 0..<c { dst[(ci * f + fi) * t + ti] = token[ci] }
                    }
                }
            }
        }
        return out
    }
}

/// `x[n, c] += s[c] · y[n, c]`: LayerScale and the residual add on channel-last tokens.
func addScaledLastAxis(_ x: inout Tensor, _ y: Tensor, _ s: Tensor) {
    let c = s.count
    precondition(x.count == y.count && x.count % c == 0, "addScaledLastAxis: \(x.shape), \(y.shape), scale \(s.shape)")
    x.data.withUnsafeMutableBufferPointer { p in
        y.data.withUnsafeBufferPointer { q in
            s.data.withUnsafeBufferPointer { sp in
                for r in 0..<(p.count / c) {
                    let (xr, yr) = (p.baseAddress! + r * c, q.baseAddress! + r * c)
                    for i in 0..<c { xr[i] += sp[i] * yr[i] }
                }
            }
        }
    }
}

/// `x += w · y`.
func addScaled(_ x: inout Tensor, _ y: Tensor, _ w: Float) {
    precondition(x.count == y.count, "addScaled: \(x.shape) vs \(y.shape)")
    x.data.withUnsafeMutableBufferPointer { p in
        y.data.withUnsafeBufferPointer { q in
            for i in 0..<p.count { p[i] += w * q[i] }
        }
    }
}
