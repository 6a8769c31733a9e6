import Foundation

/// One direction of one `nn.LSTM` layer.
///
/// Gates in PyTorch's order `i, f, g, o`: `W_ih [4H, I]`, `W_hh [4H, H]`; the two biases are
/// summed once at load time (they are only ever added together).
public struct LSTMDirection: Sendable {
    public var inputWeight: Tensor
    public var hiddenWeight: Tensor
    public var bias: Tensor

    public init(inputWeight: Tensor, hiddenWeight: Tensor, bias: Tensor) {
        self.inputWeight = inputWeight
        self.hiddenWeight = hiddenWeight
        self.bias = bias
    }

    var hidden: Int { hiddenWeight.shape[1] }

    /// Runs the recurrence over `gates [T, N, gateStride]`, whose columns `0..<4H` already hold
    /// this direction's input contributions and bias, and writes `h_t` for each step into
    /// columns `offset..<offset+H` of `out [T, N, stride]`. The gates are overwritten.
    ///
    func run(gates g: UnsafeMutablePointer<Float>, gateStride: Int, steps: Int, batch: Int, reverse: Bool,
             into out: UnsafeMutablePointer<Float>, stride: Int, offset: Int) {
        let h = hidden, g4 = gateStride
        var state = [Float](repeating: 0, count: batch * h)
        var cell = [Float](repeating: 0, count: batch * h)
        hiddenWeight.data.withUnsafeBufferPointer { wh in
            state.withUnsafeMutableBufferPointer { hp in
                cell.withUnsafeMutableBufferPointer { cp in
                    for s in 0..<steps {
                        let t = reverse ? steps - 1 - s : s
                        let gt = g + t * batch * g4
                        if s > 0 {
                            gemm(transB: true, m: batch, n: 4 * h, k: h, a: hp.baseAddress!, lda: h,
                                 b: wh.baseAddress!, ldb: h, beta: 1, c: gt, ldc: g4)
                        }
                        for n in 0..<batch {
                            let row = UnsafeRawPointer(gt + n * g4)
                            let o = UnsafeMutableRawPointer(out + (t * batch + n) * stride + offset)
                            let (cell, hidden) = (UnsafeMutableRawPointer(cp.baseAddress! + n * h), UnsafeMutableRawPointer(hp.baseAddress! + n * h))
                            // Eight units at a time: the gates' exponentials were a third of
                            // SCNet's run as scalar libm calls.
                            var j = 0
                            while j < h {
                                let lanes = min(8, h - j)
                                func load(_ p: UnsafeRawPointer, _ at: Int) -> SIMD8<Float> {
                                    if lanes == 8 { return p.loadUnaligned(fromByteOffset: at * 4, as: SIMD8<Float>.self) }
                                    var v = SIMD8<Float>()
                                    for l in 0..<lanes { v[l] = p.load(fromByteOffset: (at + l) * 4, as: Float.self) }
                                    return v
                                }
                                func store(_ v: SIMD8<Float>, _ p: UnsafeMutableRawPointer, _ at: Int) {
                                    if lanes == 8 { p.storeBytes(of: v, toByteOffset: at * 4, as: SIMD8<Float>.self); return }
                                    for l in 0..<lanes { p.storeBytes(of: v[l], toByteOffset: (at + l) * 4, as: Float.self) }
                                }
                                let i = sigmoid(load(row, j)), f = sigmoid(load(row, h + j))
                                let gg = tanh(load(row, 2 * h + j)), og = sigmoid(load(row, 3 * h + j))
                                let c = f * load(UnsafeRawPointer(cell), j) + i * gg
                                store(c, cell, j)
                                let hv = og * tanh(c)
                                store(hv, hidden, j)
                                store(hv, o, j)
                                j += 8
                            }
                        }
                    }
                }
            }
        }
    }
}

@inline(__always)
private func sigmoid(_ x: SIMD8<Float>) -> SIMD8<Float> { 1 / (1 + fastExp(-x)) }

/// `2σ(2x) − 1`, through the same vector exp (absolute error ~1e-7).
@inline(__always)
private func tanh(_ x: SIMD8<Float>) -> SIMD8<Float> { 2 / (1 + fastExp(-2 * x)) - 1 }

/// A stack of bidirectional `nn.LSTM` layers (`bidirectional=True`, `num_layers = layers.count`).
public struct BidirectionalLSTM: Sendable {
    public var layers: [(forward: LSTMDirection, backward: LSTMDirection)]

    public init(layers: [(forward: LSTMDirection, backward: LSTMDirection)]) { self.layers = layers }

    /// `[T, N, I] → [T, N, 2H]`, forward states in the first half of each row.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var x = x
        let steps = x.shape[0], batch = x.shape[1]
        for layer in layers {
            let h = layer.forward.hidden
            var out = Tensor(uninitialized: [steps, batch, 2 * h])
            x.data.withUnsafeBufferPointer { xp in
                out.data.withUnsafeMutableBufferPointer { op in
                    let (xs, os) = (UnsafeSendable(xp.baseAddress!), UnsafeMutableSendablePointer(op.baseAddress!))
                    // The two directions are independent: one per engine thread when there are two.
                    // Both directions' input contributions in one product (`[T·N, 8H]`): a
                    // larger GEMM, split across all threads, before the recurrences.
                    var gates = [Float](unsafeUninitializedCapacity: steps * batch * 8 * h) { _, n in n = steps * batch * 8 * h }
                    let inF = layer.forward.inputWeight.shape[1]
                    let weight = layer.forward.inputWeight.data + layer.backward.inputWeight.data
                    let bias = layer.forward.bias.data + layer.backward.bias.data
                    gates.withUnsafeMutableBufferPointer { gp in
                        weight.withUnsafeBufferPointer { wp in
                            bias.withUnsafeBufferPointer { bp in
                                linear(xs.pointer, rows: steps * batch, inFeatures: inF, weight: wp.baseAddress!, outFeatures: 8 * h,
                                       bias: bp.baseAddress!, into: gp.baseAddress!)
                            }
                        }
                        let gs = UnsafeMutableSendablePointer(gp.baseAddress!)
                        // The two directions are independent: one per engine thread when there are two.
                        parallelFor(2) { range in
                            for d in range {
                                let dir = d == 0 ? layer.forward : layer.backward
                                dir.run(gates: gs.pointer + d * 4 * h, gateStride: 8 * h, steps: steps, batch: batch, reverse: d == 1,
                                        into: os.pointer, stride: 2 * h, offset: d * h)
                            }
                        }
                    }
                }
            }
            x = out
        }
        return x
    }
}

/// `demucs.demucs.BLSTM`: a bidirectional LSTM with as many hidden units as channels, a linear
/// map back to the channels, optionally a residual, over `[C, T]`.
///
/// Long inputs are cut in windows of `maxSteps` with half-window hops, run as one batch and
/// stitched from the middles of the windows (the first and last keep their outer edges), as
/// the reference does to bound the recurrence length.
public struct BLSTM: Sendable {
    public var lstm: BidirectionalLSTM
    /// `linear`: Linear(2C, C)
    public var linear: LinearLayer
    public var maxSteps: Int?
    public var skip: Bool

    public init(lstm: BidirectionalLSTM, linear: LinearLayer, maxSteps: Int?, skip: Bool) {
        self.lstm = lstm
        self.linear = linear
        self.maxSteps = maxSteps
        self.skip = skip
    }

    /// `[C, T] → [C, T]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let c = x.shape[0], t = x.shape[x.shape.count - 1]
        let framed = maxSteps.map { t > $0 } ?? false
        let width = framed ? maxSteps! : t
        let hop = width / 2
        let frames = framed ? (t + hop - 1) / hop : 1
        // seq[step, frame, channel]; past the end of the input the windows read zeros (`unfold`).
        var seq = Tensor(zeros: [width, frames, c])
        for f in 0..<frames {
            let start = framed ? f * hop : 0
            for ch in 0..<c {
                let row = ch * t
                for s in 0..<width where start + s < t {
                    seq.data[(s * frames + f) * c + ch] = x.data[row + start + s]
                }
            }
        }
        let y = linear(lstm(seq))  // [width·frames, C]
        var out = Tensor(zeros: [c, t])
        let limit = hop / 2
        for f in 0..<frames {
            let lo = !framed || f == 0 ? 0 : limit
            let hi = !framed || f == frames - 1 ? width : width - limit
            let start = framed ? f * hop : 0
            for s in lo..<hi where start + s < t {
                for ch in 0..<c { out.data[ch * t + start + s] = y.data[(s * frames + f) * c + ch] }
            }
        }
        if skip { add(&out, x.reshaped([c, t])) }
        return out
    }
}

extension LSTMDirection {
    /// `PREFIX.{weight,bias}_{ih,hh}_lK[SUFFIX]` of an `nn.LSTM`, the two biases summed.
    static func load(_ r: inout StateReader, _ prefix: String, layer k: Int, suffix: String, input: Int, hidden: Int) throws -> LSTMDirection {
        let wi = try r.take("\(prefix).weight_ih_l\(k)\(suffix)", [4 * hidden, input])
        let wh = try r.take("\(prefix).weight_hh_l\(k)\(suffix)", [4 * hidden, hidden])
        var b = try r.take("\(prefix).bias_ih_l\(k)\(suffix)", [4 * hidden])
        add(&b, try r.take("\(prefix).bias_hh_l\(k)\(suffix)", [4 * hidden]))
        return LSTMDirection(inputWeight: wi, hiddenWeight: wh, bias: b)
    }
}

extension BLSTM {
    /// `prefix.lstm.{weight,bias}_{ih,hh}_l{k}[_reverse]` and `prefix.linear`, in the order the
    /// reference registers them.
    static func load(_ r: inout StateReader, _ prefix: String, channels: Int, layers: Int, maxSteps: Int?, skip: Bool) throws -> BLSTM {
        var stack: [(forward: LSTMDirection, backward: LSTMDirection)] = []
        for k in 0..<layers {
            let inF = k == 0 ? channels : 2 * channels
            let f = try LSTMDirection.load(&r, "\(prefix).lstm", layer: k, suffix: "", input: inF, hidden: channels)
            stack.append((f, try LSTMDirection.load(&r, "\(prefix).lstm", layer: k, suffix: "_reverse", input: inF, hidden: channels)))
        }
        return BLSTM(lstm: BidirectionalLSTM(layers: stack),
                     linear: try .load(&r, "\(prefix).linear", inFeatures: 2 * channels, outFeatures: channels),
                     maxSteps: maxSteps, skip: skip)
    }
}
