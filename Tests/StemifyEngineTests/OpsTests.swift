import StemifyEngine
import Foundation
import StemifyTestSupport
import Testing

/// Single ops against values the reference PyTorch code computed (`tools/make_fixtures.py`, `make_ops`).
///
/// Float32 ops that only reorder sums agree with PyTorch to well above 100 dB; 90 dB leaves room
/// for BLAS and libm differences while any indexing or formula error lands far below it.
let opToleranceDB = 90.0

func op(_ name: String) throws -> Tensor {
    try readNPY(fixturesDirectory().appendingPathComponent("ops/\(name).npy"))
}

func expectClose(_ estimate: Tensor, _ reference: Tensor, _ what: String, minSNR: Double = opToleranceDB) {
    #expect(estimate.shape == reference.shape, "\(what): shape \(estimate.shape) vs \(reference.shape)")
    guard estimate.shape == reference.shape else { return }
    let db = snr(reference: reference, estimate: estimate)
    #expect(db >= minSNR, "\(what): SNR \(db) dB")
}

@Suite("Ops against the reference")
struct OpsTests {
    @Test("Conv2d with a K×1 kernel and stride 4×1, as the frequency encoders")
    func conv2dStrided() throws {
        let w = try op("conv2d_k8s4_weight")
        let out = conv2d(try op("conv2d_k8s4_in"), weight: w, bias: try op("conv2d_k8s4_bias"),
                         geometry: ConvGeometry(kernel: (8, 1), stride: (4, 1), padding: (2, 0)))
        expectClose(out, try op("conv2d_k8s4_out"), "conv2d k8s4")
    }

    @Test("Conv2d 3×3 with padding 1, as the frequency decoder rewrite")
    func conv2d3x3() throws {
        let out = conv2d(try op("conv2d_3x3_in"), weight: try op("conv2d_3x3_weight"), bias: try op("conv2d_3x3_bias"),
                         geometry: ConvGeometry(kernel: (3, 3), padding: (1, 1)))
        expectClose(out, try op("conv2d_3x3_out"), "conv2d 3x3")
    }

    @Test("Conv1d with dilation 2, as DConv's second layer")
    func conv1dDilated() throws {
        let x = try op("conv1d_dilated_in"), w = try op("conv1d_dilated_weight")
        let out = conv2d(x.reshaped([4, 1, 30]), weight: w.reshaped([6, 4, 1, 3]), bias: try op("conv1d_dilated_bias"),
                         geometry: ConvGeometry(kernel: (1, 3), padding: (0, 2), dilation: (1, 2)))
        expectClose(out.reshaped([6, 30]), try op("conv1d_dilated_out"), "conv1d dilated")
    }

    /// The direct kernel for convolutions with few outputs splits rows into stretches of 2048
    /// positions and outputs into groups of six; the reference fixture above is one short row of
    /// six. Here the seams: several stretches, output counts that are not multiples of six, rows
    /// shorter than a vector, no padding. The expected values are the definition, in Double.
    @Test("1×K convolutions with few outputs (the direct kernel) across stretch and group seams",
          arguments: [(5, 3, 2500, 7, 3, 2, 2), (3, 2, 5, 13, 5, 2, 1), (4, 1, 4100, 16, 3, 1, 1), (6, 2, 40, 1, 3, 0, 4)])
    func directRowConvolution(_ c: (cin: Int, h: Int, w: Int, cout: Int, k: Int, pad: Int, dilation: Int)) {
        var seed: UInt64 = 7
        func value() -> Float {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(seed >> 40) / Float(1 << 24) * 2 - 1
        }
        let x = Tensor(shape: [c.cin, c.h, c.w], data: (0..<(c.cin * c.h * c.w)).map { _ in value() })
        let weight = Tensor(shape: [c.cout, c.cin, 1, c.k], data: (0..<(c.cout * c.cin * c.k)).map { _ in value() })
        let bias = Tensor(shape: [c.cout], data: (0..<c.cout).map { _ in value() })
        let g = ConvGeometry(kernel: (1, c.k), padding: (0, c.pad), dilation: (1, c.dilation))
        let out = conv2d(x, weight: weight, bias: bias, geometry: g)
        let wo = c.w + 2 * c.pad - c.dilation * (c.k - 1)
        var expected = Tensor(zeros: [c.cout, c.h, wo])
        for o in 0..<c.cout {
            for y in 0..<c.h {
                for t in 0..<wo {
                    var acc = Double(bias.data[o])
                    for ci in 0..<c.cin {
                        for j in 0..<c.k {
                            let i = t - c.pad + j * c.dilation
                            if i >= 0 && i < c.w {
                                acc += Double(weight.data[(o * c.cin + ci) * c.k + j]) * Double(x.data[(ci * c.h + y) * c.w + i])
                            }
                        }
                    }
                    expected.data[(o * c.h + y) * wo + t] = Float(acc)
                }
            }
        }
        expectClose(out, expected, "direct 1×\(c.k) conv \(c)", minSNR: 120)
    }

    @Test("Conv1d kernel 8 stride 4, as the time encoders")
    func conv1dStrided() throws {
        let x = try op("conv1d_k8s4_in"), w = try op("conv1d_k8s4_weight")
        let out = conv2d(x.reshaped([2, 1, 64]), weight: w.reshaped([4, 2, 1, 8]), bias: try op("conv1d_k8s4_bias"),
                         geometry: ConvGeometry(kernel: (1, 8), stride: (1, 4), padding: (0, 2)))
        let ref = try op("conv1d_k8s4_out")
        expectClose(out.reshaped(ref.shape), ref, "conv1d k8s4")
    }

    @Test("ConvTranspose2d K×1 stride 4×1 and ConvTranspose1d")
    func convTranspose() throws {
        let out2 = convTranspose2d(try op("convtr2d_in"), weight: try op("convtr2d_weight"), bias: try op("convtr2d_bias"), stride: (4, 1))
        expectClose(out2, try op("convtr2d_out"), "convtr2d")
        let x = try op("convtr1d_in"), w = try op("convtr1d_weight")
        let out1 = convTranspose2d(x.reshaped([4, 1, 20]), weight: w.reshaped([4, 3, 1, 8]), bias: try op("convtr1d_bias"), stride: (1, 4))
        let ref = try op("convtr1d_out")
        expectClose(out1.reshaped(ref.shape), ref, "convtr1d")
    }

    @Test("GroupNorm, LayerNorm, GELU (exact erf), GLU, mean and unbiased std")
    func normsAndActivations() throws {
        var g = try op("groupnorm_in")
        groupNorm(&g, groups: 4, weight: try op("groupnorm_weight"), bias: try op("groupnorm_bias"))
        expectClose(g, try op("groupnorm_out"), "groupnorm")
        let l = layerNorm(try op("layernorm_in"), weight: try op("layernorm_weight"), bias: try op("layernorm_bias"))
        expectClose(l, try op("layernorm_out"), "layernorm")
        var a = try op("gelu_in")
        gelu(&a)
        expectClose(a, try op("gelu_out"), "gelu", minSNR: 120)
        expectClose(glu(try op("glu_in")), try op("glu_out"), "glu")
        let s = try op("std_in")
        let (mean, std) = s.data.withUnsafeBufferPointer { meanAndStd($0) }
        expectClose(Tensor(shape: [2], data: [mean, std]), try op("std_out"), "mean/std", minSNR: 120)
    }

    @Test("Multi-head self- and cross-attention, computed in blocks of query rows")
    func attention() throws {
        let w = MultiheadAttentionWeights(
            inProjWeight: try op("mha_in_proj_weight"), inProjBias: try op("mha_in_proj_bias"),
            outProjWeight: try op("mha_out_proj_weight"), outProjBias: try op("mha_out_proj_bias"), heads: 4)
        let q = try op("mha_q"), kv = try op("mha_kv")
        for block in [1, 3, attentionBlockRows] {
            expectClose(multiheadAttention(q, keyValue: kv, weights: w, blockRows: block), try op("mha_cross_out"), "cross attention, blocks of \(block)")
            expectClose(multiheadAttention(q, keyValue: nil, weights: w, blockRows: block), try op("mha_self_out"), "self attention, blocks of \(block)")
        }
    }

    @Test("The 1-D and 2-D sinusoidal embeddings")
    func embeddings() throws {
        expectClose(sinEmbedding(length: 12, dim: 16), try op("sin_emb"), "1-D embedding")
        expectClose(sin2DEmbedding(dim: 16, height: 3, width: 5), try op("sin2d_emb"), "2-D embedding")
    }
}
