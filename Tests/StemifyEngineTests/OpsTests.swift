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

/// The elementwise kernels of every instruction set this CPU runs (`InstructionSet`), against
/// their definitions in Double and against each other: the sets run the same operations in
/// the same order, so elementwise results must agree to the bit; only reductions may differ.
@Suite("Vector kernels on every instruction set")
struct VectorKernelTests {
    static let sets = InstructionSet.allCases.filter(\.isSupported)

    /// Lengths around every vector width (4, 8, 16) and the 1024-value blocks of the sums.
    static let lengths = [1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 1023, 1024, 1025, 3000]

    func values(_ n: Int, seed: UInt64, scale: Float = 4) -> [Float] {
        var g = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<n).map { _ in
            g = g &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (Float(g >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// Inputs with the edges: signed zeros, tiny and huge magnitudes, exp's clamp range.
    static let edges: [Float] = [0, -0.0, 1e-30, -1e-30, 5, -5, 10, -10, 40, -40, 88, -88, 100, -100, 1e20, -1e20]

    /// The engine loads OpenBLAS asking for the level of its own set (`MatrixKernels`), whatever
    /// `OPENBLAS_CORETYPE` the environment holds (one machine here had Haswell set).
    @Test("OpenBLAS runs the level of the engine's instruction set")
    func matrixKernels() throws {
        let name = try MatrixKernels.load()
        if let expected = MatrixKernels.coretype(for: InstructionSet.active) { #expect(name == expected) }
    }

    @Test("this machine runs the portable set, and AVX2 wherever it runs AVX-512")
    func supported() {
        #expect(InstructionSet.portable.isSupported)
        if InstructionSet.avx512.isSupported { #expect(InstructionSet.avx2.isSupported) }
        #expect(InstructionSet.best.isSupported)
        #expect(InstructionSet.allCases.filter { $0 > InstructionSet.best }.allSatisfy { !$0.isSupported })
    }

    @Test("GELU (exact erf) within 3e-6 relative of its definition, identical across sets", arguments: sets)
    func gelu(_ isa: InstructionSet) {
        let kernels = VectorKernels(isa)
        for n in Self.lengths {
            let x = values(n, seed: UInt64(n)) + Self.edges
            var y = x
            kernels.gelu(&y)
            for (xi, yi) in zip(x, y) {
                let exact = 0.5 * Double(xi) * erfc(-Double(xi) / 2.0.squareRoot())
                // The fit is good to 1.2e-7; Float's rounding of x/√2 enters exp squared, up to
                // ~1.5e-6 in the negative tail (PyTorch's `1 + erf` form loses all relative
                // accuracy there).
                #expect(abs(Double(yi) - exact) <= 3e-6 * abs(exact) + 1e-37, "gelu(\(xi)) = \(yi), not \(exact) [\(isa)]")
            }
            var portable = x
            VectorKernels(.portable).gelu(&portable)
            #expect(y.map(\.bitPattern) == portable.map(\.bitPattern), "\(isa) and portable GELU differ at n = \(n)")
        }
    }

    @Test("GLU with biases within 4e-7 relative of its definition, identical across sets", arguments: sets)
    func glu(_ isa: InstructionSet) {
        let kernels = VectorKernels(isa)
        for n in Self.lengths {
            let a = values(n, seed: 7 &+ UInt64(n)) + Self.edges
            let b = values(n, seed: 11 &+ UInt64(n), scale: 20) + Self.edges.reversed()
            let y = kernels.glu(a, b, biasA: 0.25, biasB: -0.5)
            for i in a.indices {
                // The bias additions are Float's, as in the model; the rest exact.
                let exact = Double(a[i] + 0.25) / (1 + exp(-Double(b[i] - 0.5)))
                #expect(abs(Double(y[i]) - exact) <= 4e-7 * abs(exact) + 1e-30, "glu(\(a[i]), \(b[i])) = \(y[i]), not \(exact) [\(isa)]")
            }
            #expect(y.map(\.bitPattern) == VectorKernels(.portable).glu(a, b, biasA: 0.25, biasB: -0.5).map(\.bitPattern))
        }
    }

    @Test("softmax numerators: exp(x − max) per value identical across sets, their sum within 1e-6", arguments: sets)
    func softmax(_ isa: InstructionSet) {
        let kernels = VectorKernels(isa)
        for n in Self.lengths {
            // Attention logits: a wide range, the largest anywhere in the row.
            var x = values(n, seed: 3 &+ UInt64(n), scale: 30)
            x[n / 2] = 45
            var e = x
            let sum = kernels.softmaxNumerators(&e)
            var exactSum = 0.0
            for (xi, ei) in zip(x, e) {
                let exact = exp(Double(xi - 45))  // the subtraction is Float's, as in the kernel
                exactSum += exact
                #expect(abs(Double(ei) - exact) <= 3e-7 * exact + 1e-37, "exp(\(xi) − 45) = \(ei), not \(exact) [\(isa)]")
            }
            #expect(abs(Double(sum) - exactSum) <= 1e-6 * exactSum, "sum \(sum), not \(exactSum) [\(isa), n = \(n)]")
            var portable = x
            _ = VectorKernels(.portable).softmaxNumerators(&portable)
            #expect(e.map(\.bitPattern) == portable.map(\.bitPattern))
        }
    }
}

@Suite("In-place crops")
struct CropTests {
    func numbered(_ shape: [Int]) -> Tensor {
        var x = Tensor(zeros: shape)
        for i in x.data.indices { x.data[i] = Float(i) + 0.5 }
        return x
    }

    @Test("cropMiddle and cropLast equal slicingMiddle and slicingLast for ranges at the edges and inside",
          arguments: [(3, 7, 5, 0, 7), (3, 7, 5, 2, 5), (1, 4, 1, 1, 4), (2, 9, 3, 0, 1), (4, 6, 2, 5, 6), (2, 5, 4, 3, 3)])
    func crops(_ c: Int, _ f: Int, _ t: Int, _ lo: Int, _ hi: Int) {
        let x = numbered([c, f, t])
        var middle = x
        middle.cropMiddle(lo..<hi)
        #expect(middle == x.slicingMiddle(lo..<hi))
        let last = numbered([c, t, f])
        var cropped = last
        cropped.cropLast(lo..<hi)
        #expect(cropped == last.slicingLast(lo..<hi))
        // The source is a value: cropping a copy leaves it whole.
        #expect(x == numbered([c, f, t]))
    }
}

/// Uniform values in [-1, 1) from a fixed seed.
func uniform(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed
    return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    })
}

/// The time branch is a single row of up to 2 M positions: its scratch (im2col columns, gate
/// inputs, col2im columns) is split into stretches of that row. Rows long enough to need several
/// stretches, against the definitions in Double.
@Suite("Convolutions over one row longer than the scratch")
struct LongRowConvolutionTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var cin, cout, width, kernel, stride, pad: Int
        var testDescription: String { "\(cin)→\(cout), width \(width), kernel \(kernel), stride \(stride), pad \(pad)" }
    }

    /// `conv1d` of `[Cin, 1, W]` by `[Cout, Cin, 1, K]`, in Double.
    func definition(_ x: Tensor, _ w: Tensor, _ b: Tensor, stride: Int, pad: Int) -> Tensor {
        let (cin, width, cout, k) = (x.shape[0], x.shape[2], w.shape[0], w.shape[3])
        let wo = (width + 2 * pad - k) / stride + 1
        var out = Tensor(zeros: [cout, 1, wo])
        for o in 0..<cout {
            for t in 0..<wo {
                var acc = Double(b.data[o])
                for ci in 0..<cin {
                    for j in 0..<k {
                        let i = t * stride - pad + j
                        if i >= 0 && i < width { acc += Double(w.data[(o * cin + ci) * k + j]) * Double(x.data[ci * width + i]) }
                    }
                }
                out.data[o * wo + t] = Float(acc)
            }
        }
        return out
    }

    @Test("conv2d and conv2dGLU split a long row and equal the definition",
          arguments: [Case(cin: 64, cout: 24, width: 40_000, kernel: 8, stride: 4, pad: 2),
                      Case(cin: 64, cout: 48, width: 30_000, kernel: 3, stride: 1, pad: 1)])
    func convolutions(_ c: Case) {
        let x = uniform([c.cin, 1, c.width], seed: 1)
        let w = uniform([c.cout, c.cin, 1, c.kernel], seed: 2), b = uniform([c.cout], seed: 3)
        let g = ConvGeometry(kernel: (1, c.kernel), stride: (1, c.stride), padding: (0, c.pad))
        let expected = definition(x, w, b, stride: c.stride, pad: c.pad)
        expectClose(conv2d(x, weight: w, bias: b, geometry: g), expected, "conv2d \(c)", minSNR: 120)
        expectClose(conv2dGLU(x, weight: w, bias: b, geometry: g), glu(expected), "conv2dGLU \(c)", minSNR: 120)
    }

    @Test("convTranspose2d splits a long row and equals the definition")
    func transposed() {
        let (cin, cout, width, k, s) = (16, 48, 12_000, 8, 4)
        let x = uniform([cin, 1, width], seed: 4)
        let w = uniform([cin, cout, 1, k], seed: 5), b = uniform([cout], seed: 6)
        let wo = (width - 1) * s + k
        var expected = [Double](repeating: 0, count: cout * wo)
        for o in 0..<cout {
            for t in 0..<wo { expected[o * wo + t] = Double(b.data[o]) }
            for ci in 0..<cin {
                for i in 0..<width {
                    for j in 0..<k { expected[o * wo + i * s + j] += Double(w.data[(ci * cout + o) * k + j]) * Double(x.data[ci * width + i]) }
                }
            }
        }
        expectClose(convTranspose2d(x, weight: w, bias: b, stride: (1, s)),
                    Tensor(shape: [cout, 1, wo], data: expected.map { Float($0) }), "convTranspose2d", minSNR: 120)
    }
}

@Suite("Weights kept at the checkpoint's precision")
struct CompactWeightTests {
    @Test("a large weight of Float16 values is held as Float16 and widens to the same values")
    func float16Values() {
        let n = 1 << 17
        let t = Tensor(shape: [n / 64, 64], data: (0..<n).map { Float(Float16(Float(($0 * 7919) % 4099) / 512 - 4)) })
        let w = CompactWeight(t)
        #expect(w.isCompact)
        #expect(w.tensor == t)
        #expect(w.reshaped([64, n / 64]).tensor == t.reshaped([64, n / 64]))
    }

    @Test("a weight that Float16 would change, or a small one, stays Float32")
    func float32Values() {
        let n = 1 << 17
        var t = Tensor(shape: [n], data: (0..<n).map { Float(Float16(Float($0 % 1000) / 256)) })
        t.data[n / 2] = 0.1  // not a Float16 value
        let w = CompactWeight(t)
        #expect(!w.isCompact)
        #expect(w.tensor == t)
        let small = Tensor(shape: [8], data: [0, 1, 2, 3, 4, 5, 6, 0.5])
        #expect(!CompactWeight(small).isCompact)
        #expect(CompactWeight(small).tensor == small)
    }

    /// diffq's `uniform_unquantize`, written out here from its definition.
    func unquantized(_ levels: [Int16], bits: [UInt8], groupSize: Int, span: Float, low: Float) -> [Float] {
        levels.indices.map { i in Float(levels[i]) * (1 / (Float(1 << Int(bits[i / groupSize])) - 1)) * span + low }
    }

    @Test("DiffQ levels are held as integers and widen to the dequantised values",
          arguments: [255, 16383])
    func diffQLevels(_ largest: Int) {
        let groupSize = 8, groups = 1 << 14
        // Widths 2…14 in turn; levels up to `largest` (above 255 they need two bytes unpacked).
        let bits = (0..<groups).map { UInt8(2 + $0 % 13) }
        let levels = (0..<(groups * groupSize)).map { Int16(($0 * 7919) % (min(largest, (1 << Int(bits[$0 / groupSize])) - 1) + 1)) }
        let (span, low) = (Float(0.731), Float(-0.377))
        let expected = unquantized(levels, bits: bits, groupSize: groupSize, span: span, low: low)
        let w = CompactWeight(levels: DiffQLevels(levels: levels, bits: bits, groupSize: groupSize, span: span, low: low),
                              shape: [groups, groupSize])
        #expect(w.isCompact)
        let same = w.tensor.data == expected && w.reshaped([groupSize, groups]).tensor.data == expected
        #expect(same)
        // Held at the groups' widths: 8 · Σ bits bits, and the 8 bytes every read may reach past.
        let levelsHeld = DiffQLevels(levels: levels, bits: bits, groupSize: groupSize, span: span, low: low)
        #expect(levelsHeld.byteCount == bits.reduce(0) { $0 + Int($1) } * groupSize / 8 + 8)
        // Any run of output channels, along either axis, widens to those values alone.
        for (axis, shape) in [(0, [groups / 4, 4, 1, groupSize]), (1, [4, groups / 4, 1, groupSize])] {
            let all = w.reshaped(shape).tensor
            for part in [0..<1, 3..<700, 1000..<(groups / 4)] {
                let cut = w.reshaped(shape).widened(outputs: part, axis: axis)
                let inner = shape[(axis + 1)...].reduce(1, *), outer = axis == 0 ? 1 : shape[0]
                let expected = (0..<outer).flatMap { o in all.data[(o * shape[axis] + part.lowerBound) * inner..<(o * shape[axis] + part.upperBound) * inner] }
                #expect(cut.data == expected && cut.shape[axis] == part.count, "axis \(axis), outputs \(part)")
            }
        }
        // A small weight is dequantised once, to the same values.
        let small = CompactWeight(levels: DiffQLevels(levels: Array(levels[..<64]), bits: Array(bits[..<8]), groupSize: groupSize,
                                                      span: span, low: low), shape: [64])
        #expect(!small.isCompact && small.tensor.data == Array(expected[..<64]))
    }
}

@Suite("Compact weights widened a group of output channels at a time")
struct GroupedWideningTests {
    /// Float16 values, so that the layer holds its weight compact.
    func halfExact(_ shape: [Int], seed: UInt64) -> Tensor {
        var t = uniform(shape, seed: seed)
        for i in 0..<t.count { t.data[i] = Float(Float16(t.data[i] / 8)) }
        return t
    }

    @Test("a convolution and a transposed one give the same outputs widened in groups of 512 channels",
          arguments: [false, true])
    func grouped(_ transposed: Bool) {
        let (cin, cout, k) = (48, 1300, transposed ? 8 : 3)
        let weight = halfExact(transposed ? [cin, cout, 1, k] : [cout, cin, 1, k], seed: 7)
        let bias = uniform([cout], seed: 8)
        let geometry = transposed ? ConvGeometry(kernel: (1, k), stride: (1, 4)) : ConvGeometry(kernel: (1, k), padding: (0, 1))
        let layer = ConvLayer(weight: weight, bias: bias, geometry: geometry, isTransposed: transposed)
        let x = uniform([cin, 1, 700], seed: 9)
        let whole = layer(x, maxWidenedBytes: .max)
        let grouped = layer(x, maxWidenedBytes: 1)  // three groups: 512, 512, 276 channels
        #expect(grouped.shape == whole.shape)
        let scale = whole.data.map(abs).max()!
        let worst = zip(grouped.data, whole.data).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-6 * scale, "largest difference \(worst) against outputs up to \(scale)")
        // And each channel comes from its own weights: a group's outputs misplaced would differ by far more.
        var shifted = weight
        if !transposed { for i in 0..<(cin * k) { shifted.data[600 * cin * k + i] = 0 } }
        else { for ci in 0..<cin { for j in 0..<k { shifted.data[(ci * cout + 600) * k + j] = 0 } } }
        let broken = ConvLayer(weight: shifted, bias: bias, geometry: geometry, isTransposed: transposed)(x, maxWidenedBytes: 1)
        let plane = whole.count / cout
        #expect(broken.data[(600 * plane)..<(601 * plane)] != whole.data[(600 * plane)..<(601 * plane)])
        #expect(broken.data[(601 * plane)...] == grouped.data[(601 * plane)...])
    }
}

@Suite("3×3 convolutions by Winograd's minimal filtering")
struct WinogradTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var cin, cout, h, w: Int
        var testDescription: String { "\(cin)→\(cout) over \(h)×\(w)" }
    }

    /// `conv2d` with a 3×3 kernel, stride 1, padding 1, in Double.
    func definition(_ x: Tensor, _ k: Tensor, _ b: Tensor) -> Tensor {
        let (cin, h, w, cout) = (x.shape[0], x.shape[1], x.shape[2], k.shape[0])
        var out = Tensor(zeros: [cout, h, w])
        for o in 0..<cout {
            for y in 0..<h {
                for t in 0..<w {
                    var acc = Double(b.data[o])
                    for ci in 0..<cin {
                        for i in 0..<3 where (0..<h).contains(y + i - 1) {
                            for j in 0..<3 where (0..<w).contains(t + j - 1) {
                                acc += Double(k.data[((o * cin + ci) * 3 + i) * 3 + j]) * Double(x.data[(ci * h + y + i - 1) * w + t + j - 1])
                            }
                        }
                    }
                    out.data[(o * h + y) * w + t] = Float(acc)
                }
            }
        }
        return out
    }

    /// Sizes that are not whole tiles leave partial tiles at the bottom and right edges; widths
    /// past eight tiles and short last vectors exercise the tile loop's tail; 64 → 128 over 12
    /// rows runs in several bands, 192 → 384 sums as many channels as a deep decoder, 192 → 768
    /// has kernels too large for 4×4 tiles and runs 2×2 ones; 2 rows is too small for tiles and
    /// goes through im2col. F(4×4, 3×3)'s transforms scale by up to 8,
    /// so it lands at 110–122 dB here where im2col's plain sums reach 129–142 (the error grows
    /// with the channels summed): 105 dB, while a wrong transform entry or a misplaced tile
    /// lands far below parity's 60.
    @Test("conv2d and conv2dGLU equal the definition", arguments: [
        Case(cin: 3, cout: 4, h: 4, w: 4), Case(cin: 5, cout: 6, h: 5, w: 7), Case(cin: 48, cout: 96, h: 9, w: 23),
        Case(cin: 16, cout: 8, h: 4, w: 301), Case(cin: 64, cout: 128, h: 12, w: 70), Case(cin: 4, cout: 6, h: 2, w: 9),
        Case(cin: 192, cout: 384, h: 8, w: 33), Case(cin: 8, cout: 16, h: 7, w: 32), Case(cin: 192, cout: 768, h: 5, w: 19),
    ])
    func convolutions(_ c: Case) {
        let x = uniform([c.cin, c.h, c.w], seed: 7)
        let k = uniform([c.cout, c.cin, 3, 3], seed: 8), b = uniform([c.cout], seed: 9)
        let g = ConvGeometry(kernel: (3, 3), padding: (1, 1))
        let expected = definition(x, k, b)
        expectClose(conv2d(x, weight: k, bias: b, geometry: g), expected, "conv2d \(c)", minSNR: 105)
        expectClose(conv2dGLU(x, weight: k, bias: b, geometry: g), glu(expected), "conv2dGLU \(c)", minSNR: 105)
    }
}

/// OpenBLAS kernels whose columns do not depend on the width of the call.
let widthIndependentProducts: Set = ["SkylakeX", "Cooperlake", "SapphireRapids"]

@Suite("Transposed convolutions summed into a skip")
struct SummedTransposedConvolutionTests {
    /// `convTranspose1d(addingInto:)` against `convTranspose2d`, the activation and `add` on a
    /// crop: to the bit where each output has at most two taps (every Demucs decoder), within
    /// rounding where it has more. Lengths from one output block to several (block edges are
    /// where an output's taps come from two products).
    @Test("equal to the transposed convolution, activation and add", arguments: [
        (8, 64, 8, 4, 20_000), (3, 5, 8, 4, 37), (4, 16, 4, 2, 5001), (2, 48, 8, 4, 9000), (4, 8, 3, 4, 700), (4, 32, 8, 2, 3000),
    ])
    func summed(_ c: (cin: Int, cout: Int, k: Int, stride: Int, length: Int)) throws {
        let x = uniform([c.cin, 1, c.length], seed: 21), w = uniform([c.cin, c.cout, 1, c.k], seed: 22)
        let b = uniform([c.cout], seed: 23)
        let outLength = (c.length - 1) * c.stride + c.k, pad = 7
        let skip = uniform([c.cout, 1, outLength + pad], seed: 24)
        for activation in [OutputActivation.identity, .relu, .gelu] {
            var expected = convTranspose2d(x, weight: w, bias: b, stride: (1, c.stride))
            switch activation {
            case .identity: break
            case .relu: for i in 0..<expected.count where expected.data[i] < 0 { expected.data[i] = 0 }
            case .gelu: gelu(&expected)
            }
            var cropped = skip
            cropped.cropLast(3..<(3 + outLength))
            add(&cropped, expected)
            var summed = skip
            convTranspose1d(x, weight: w, bias: b, stride: c.stride, activation: activation, addingInto: &summed, offset: 3)
            let untouched = (0..<c.cout).allSatisfy { co in
                let row = co * (outLength + pad)
                return (0..<3).allSatisfy { summed.data[row + $0] == skip.data[row + $0] }
                    && (outLength + 3..<outLength + pad).allSatisfy { summed.data[row + $0] == skip.data[row + $0] }
            }
            #expect(untouched, "\(c) \(activation): columns outside the window changed")
            summed.cropLast(3..<(3 + outLength))
            // Two taps sum the same in either order, so the sums are bit-equal wherever the
            // products are. The two functions make products of other widths, which only
            // OpenBLAS's AVX-512 sgemm computes column by column alike; its Haswell one (the
            // AVX2 level, Zen's too) rounds a column by the width of the call it is in.
            if try c.k <= 2 * c.stride && widthIndependentProducts.contains(MatrixKernels.load()) {
                let same = summed.data.map(\.bitPattern) == cropped.data.map(\.bitPattern)
                #expect(same, "\(c) \(activation)")
            } else {
                expectClose(summed, cropped, "\(c) \(activation)", minSNR: 120)
            }
        }
    }
}

@Suite("Products split over threads")
struct ThreadSplitTests {
    /// A chunk's stems must not depend on the width of the lane that ran it (the last chunks of
    /// a run get more threads, a resumed run groups chunks differently). Shapes straddle the
    /// size where products split and OpenBLAS's small-matrix bound.
    @Test("linear and pointwise convolutions give the same bits on 1 to 4 threads")
    func widths() {
        for (rows, cin, cout) in [(64, 48, 700), (300, 512, 2048), (2688, 512, 64), (96, 48, 1031), (5000, 40, 24),
                                  (1344, 24, 96), (700, 96, 48), (3000, 12, 96), (336, 384, 24), (2100, 16, 64)] {
            let x = uniform([rows, cin], seed: 11), w = uniform([cout, cin], seed: 12), b = uniform([cout], seed: 13)
            let planes = uniform([cin, 1, rows], seed: 14), k = uniform([cout, cin, 1, 1], seed: 15)
            func run(_ width: Int) -> ([Float], [Float]) {
                EngineThreads.withWidth(width) {
                    (linear(x, weight: w, bias: b).data, conv2d(planes, weight: k, bias: nil, geometry: ConvGeometry(kernel: (1, 1))).data)
                }
            }
            let one = run(1)
            for width in 2...4 {
                let other = run(width)
                let (sameLinear, samePointwise) = (other.0 == one.0, other.1 == one.1)
                #expect(sameLinear, "linear \(rows)×\(cin) → \(cout) on \(width) threads")
                #expect(samePointwise, "pointwise \(cin) → \(cout) over \(rows) on \(width) threads")
            }
        }
    }
}
