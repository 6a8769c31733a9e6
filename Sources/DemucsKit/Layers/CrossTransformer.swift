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
            var a = multiheadAttention(q, keyValue: kv, weights: attention)
            scaleLastAxis(&a, gamma1)
            add(&x, a)
            // x = x + γ2 · linear2(gelu(linear1(norm(x))))
            var h = linear1(normFeedForward(x))
            gelu(&h)
            var f = linear2(h)
            scaleLastAxis(&f, gamma2)
            add(&x, f)
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
        let back = tokens.transposed2D().reshaped([c, t1, f])
        var out = Tensor(zeros: [c, f, t1])
        for ci in 0..<c {
            for ti in 0..<t1 {
                for fi in 0..<f { out.data[(ci * f + fi) * t1 + ti] = back.data[(ci * t1 + ti) * f + fi] }
            }
        }
        return (out, tokensT.transposed2D().reshaped([c, 1, t2]))
    }

    private func tokensFromSpectrogram(_ x: Tensor) -> Tensor {
        let (c, f, t) = (x.shape[0], x.shape[1], x.shape[2])
        var ctf = Tensor(zeros: [c, t, f])
        for ci in 0..<c {
            for fi in 0..<f {
                for ti in 0..<t { ctf.data[(ci * t + ti) * f + fi] = x.data[(ci * f + fi) * t + ti] }
            }
        }
        return ctf.reshaped([c, t * f]).transposed2D()
    }
}

/// `x[n, c] *= s[c]` (LayerScale on channel-last tokens).
func scaleLastAxis(_ x: inout Tensor, _ s: Tensor) {
    let c = s.count
    x.data.withUnsafeMutableBufferPointer { p in
        s.data.withUnsafeBufferPointer { sp in
            for r in 0..<(p.count / c) {
                for i in 0..<c { p[r * c + i] *= sp[i] }
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
