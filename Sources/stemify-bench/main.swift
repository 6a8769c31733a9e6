import Foundation
import StemifyEngine

// Times the engine's operations at the shapes htdemucs runs for one 7.8 s chunk, single
// threaded unless `-j N` is given; variants of one operation alternate in one process so that a
// machine's drift does not decide the comparison. Prints one row per case: best and median of
// the repetitions, in milliseconds.
//
// The element-wise cases run once per instruction set this CPU runs; the others on the one
// `--isa` (or `STEMIFY_ISA`) names, else the widest.
//
//     swift run -c release stemify-bench [-j N] [--repeat R] [--isa SET] [FILTER]

var threads = 1, repeats = 5, filter = ""
var isa = ProcessInfo.processInfo.environment["STEMIFY_ISA"] ?? "auto"
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "-j": threads = Int(args.popFirst() ?? "") ?? 1
    case "--isa": isa = args.popFirst() ?? "auto"
    case "--repeat": repeats = Int(args.popFirst() ?? "") ?? 5
    default: filter = a
    }
}
EngineThreads.set(threads)
InstructionSet.select(try InstructionSet(setting: isa))
print("kernels: \(InstructionSet.active) (this CPU runs up to \(InstructionSet.best)), OpenBLAS \(try MatrixKernels.load())")

/// Uniform values in `-scale...scale` from a fixed-seed linear congruential generator (the
/// system generator's syscalls took longer than the benchmarks).
nonisolated(unsafe) var state: UInt64 = 0x9E37_79B9_7F4A_7C15
func random(_ shape: [Int], scale: Float = 1) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, data: (0..<n).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    })
}

func time(_ body: () -> Void) -> Double {
    let t = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - t) / 1e6
}

/// Runs every case `repeats` times, round-robin, after one warm-up each.
@MainActor func bench(_ group: String, _ cases: [(String, () -> Void)]) {
    guard filter.isEmpty || group.contains(filter) else { return }
    for (_, body) in cases { body() }
    var times = Array(repeating: [Double](), count: cases.count)
    for _ in 0..<repeats {
        for (i, c) in cases.enumerated() { times[i].append(time(c.1)) }
    }
    for (i, c) in cases.enumerated() {
        let sorted = times[i].sorted()
        print(String(format: "%-28@ %-44@ best %9.1f ms  median %9.1f ms", group as NSString, c.0 as NSString, sorted[0], sorted[sorted.count / 2]))
    }
}

// Cross-transformer attention: 8 freq rows × 336 frames = 2688 tokens of 512 channels, 8 heads.
let tokens = random([2688, 512]), timeTokens = random([1344, 512])
let mha = MultiheadAttentionWeights(
    inProjWeight: random([1536, 512], scale: 0.05), inProjBias: random([1536], scale: 0.01),
    outProjWeight: random([512, 512], scale: 0.05), outProjBias: random([512], scale: 0.01), heads: 8)
bench("attention 2688x2688 d512", [64, 128, 256, 1024].map { rows in
    ("query rows per block \(rows)", { _ = multiheadAttention(tokens, keyValue: nil, weights: mha, blockRows: rows) })
})
bench("attention 2688x1344 d512", [128, 1024].map { rows in
    ("query rows per block \(rows)", { _ = multiheadAttention(tokens, keyValue: timeTokens, weights: mha, blockRows: rows) })
})

// Encoder layer 0 (frequency): k8 s4 over [4, 2048, 336] → [48, 512, 336].
let spec = random([4, 2048, 336])
let enc0 = random([48, 4, 8, 1], scale: 0.2)
bench("conv k8x1 s4 4->48", [("im2col + sgemm", { _ = conv2d(spec, weight: enc0, bias: nil, geometry: ConvGeometry(kernel: (8, 1), stride: (4, 1), padding: (2, 0))) })])

// DConv at level 0: 48 → 6, 1×3 dilated, then 6 → 96 pointwise, on [48, 512, 336].
let x48 = random([48, 512, 336])
let dconvIn = random([6, 48, 1, 3], scale: 0.1), dconvOut = random([96, 6, 1, 1], scale: 0.3)
let h6 = random([6, 512, 336])
let x96l1 = random([96, 128, 336]), dconvIn1 = random([12, 96, 1, 3], scale: 0.1)
let x192 = random([192, 32, 336]), dconvIn2 = random([24, 192, 1, 3], scale: 0.05)
let x384 = random([384, 8, 336]), dconvIn3 = random([48, 384, 1, 3], scale: 0.05)
let xTime = random([48, 1, 85995]), dconvTime = random([6, 48, 1, 3], scale: 0.1)
for (name, input, w) in [("dconv 48->6 k1x3 d2", x48, dconvIn), ("dconv 96->12 k1x3 d2", x96l1, dconvIn1),
                         ("dconv 192->24 k1x3 d2", x192, dconvIn2), ("dconv 384->48 k1x3 d2", x384, dconvIn3), ("dconv time 48->6 k1x3 d2", xTime, dconvTime)] {
    bench(name, [("direct", 1 << 20), ("im2col + sgemm", 0)].map { label, limit in
        (label, {
            maxDirectOutputs = limit
            _ = conv2d(input, weight: w, bias: nil, geometry: ConvGeometry(kernel: (1, 3), padding: (0, 2), dilation: (1, 2)))
        })
    })
}
maxDirectOutputs = 16
bench("dconv 6->96 pointwise", [("sgemm", { _ = conv2d(h6, weight: dconvOut, bias: nil, geometry: ConvGeometry(kernel: (1, 1))) })])

// Decoder rewrite at level 0: 3×3, 48 → 96 on [48, 512, 336]; then the transposed conv 48 → 16.
let rewrite = random([96, 48, 3, 3], scale: 0.05)
let rewrite384 = random([768, 384, 3, 3], scale: 0.01)
for (name, input, weight) in [("rewrite 3x3 48->96", x48, rewrite), ("rewrite 3x3 384->768", x384, rewrite384)] {
    bench(name, [("Winograd", true), ("im2col + sgemm", false)].map { label, winograd in
        (label, {
            winogradConvolutions = winograd
            _ = conv2d(input, weight: weight, bias: nil, geometry: ConvGeometry(kernel: (3, 3), padding: (1, 1)))
            winogradConvolutions = true
        })
    })
}
let up = random([48, 16, 8, 1], scale: 0.1)
bench("convtranspose k8 s4 48->16", [("sgemm + col2im", { _ = convTranspose2d(x48, weight: up, bias: nil, stride: (4, 1)) })])

// Element-wise passes over the largest activation.
let x96 = random([96, 512, 336])
for set in InstructionSet.allCases.reversed() where set.isSupported {
    InstructionSet.select(set)
    bench("elementwise [48,512,336], \(set)", [
        ("gelu", { var y = x48; gelu(&y) }),
        ("glu of [96,...]", { _ = glu(x96) }),
    ])
}
InstructionSet.select(try InstructionSet(setting: isa))

// The spectrogram pairs: htdemucs's 7.8 s stereo segment (`_spec` / `_ispec`) and an 11 s SCNet
// chunk (centred STFT, no window). Transforms run in Double (issue 30).
let segment = random([2, 343_980], scale: 0.5)
let spectrogram = Spectrogram(nfft: 4096)
let (segRe, segIm) = spectrogram.forward(segment)
bench("spectrogram 7.8 s stereo", [
    ("_spec", { _ = spectrogram.forward(segment) }),
    ("_ispec", { _ = spectrogram.inverse(re: segRe, im: segIm, length: 343_980) }),
])
let chunk = random([2, 486_400], scale: 0.5)
let centred = CenteredSTFT(nfft: 4096, hop: 1024, normalized: true, hann: false)
let chunkSpec = centred.forward(chunk)
bench("centred STFT 11 s stereo", [
    ("stft", { _ = centred.forward(chunk) }),
    ("istft", { _ = centred.inverse(chunkSpec, length: 486_400) }),
])
