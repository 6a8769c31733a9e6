/// The residual branch of every encoder and decoder layer (`demucs/demucs.py`, `DConv`).
///
/// Each of `depth` layers: dilated conv (kernel 3, dilation 2^d) to `C/compress` channels →
/// GroupNorm(1) → GELU → [BLSTM] → [LocalState] → 1×1 conv to `2C` → GroupNorm(1) → GLU →
/// LayerScale, added to the input. The BLSTM and LocalState appear in the deepest layers of
/// Demucs v2/v3 (`dconv_lstm`, `dconv_attn`); HTDemucs has neither.
/// On a frequency layer the reference folds frequencies into the batch (`[B·F, C, T]`), so the
/// convolutions run along time only and each GroupNorm normalises each frequency row on its own.
public struct DConv: Sendable {
    public struct Layer: Sendable {
        /// `layers.{d}.0`: Conv1d(C, C/compress, 3, dilation 2^d, padding 2^d)
        public var conv: ConvLayer
        /// `layers.{d}.1`: GroupNorm(1, C/compress)
        public var norm1: GroupNormLayer
        /// `layers.{d}.3`: BLSTM(C/compress, layers 2, max_steps 200, skip)
        public var lstm: BLSTM?
        /// `layers.{d}.3` or `.4` after the LSTM: LocalState(C/compress, heads 4, ndecay 4)
        public var attention: LocalState?
        /// `layers.{d}.3`, shifted by one per inserted module: Conv1d(C/compress, 2C, 1)
        public var pointwise: ConvLayer
        /// next: GroupNorm(1, 2C)
        public var norm2: GroupNormLayer
        /// last: LayerScale `scale [C]`
        public var scale: Tensor
    }

    public var layers: [Layer]

    static func load(_ r: inout StateReader, _ prefix: String, channels: Int, compress: Double, depth: Int,
                     lstm: Bool = false, attention: Bool = false) throws -> DConv {
        let hidden = Int(Double(channels) / compress)
        var layers: [Layer] = []
        for d in 0..<depth {
            let dilation = 1 << d
            let p = "\(prefix).layers.\(d)"
            let conv: ConvLayer = try .load(&r, "\(p).0", cin: channels, cout: hidden, kernel: (1, 3), padding: (0, dilation),
                                            dilation: (1, dilation), oneD: true)
            let norm1: GroupNormLayer = try .load(&r, "\(p).1", groups: 1, channels: hidden)
            var next = 3
            var blstm: BLSTM?
            if lstm {
                blstm = try .load(&r, "\(p).3", channels: hidden, layers: 2, maxSteps: 200, skip: true)
                next += 1
            }
            var local: LocalState?
            if attention {
                guard hidden % 4 == 0 else { throw CheckpointError.unsupportedKwarg(key: "dconv_attn", value: "LocalState over \(hidden) channels in 4 heads") }
                local = try .load(&r, "\(p).\(next)", channels: hidden, heads: 4, ndecay: 4)
                next += 1
            }
            layers.append(Layer(
                conv: conv, norm1: norm1, lstm: blstm, attention: local,
                pointwise: try .load(&r, "\(p).\(next)", cin: hidden, cout: 2 * channels, kernel: (1, 1), oneD: true),
                norm2: try .load(&r, "\(p).\(next + 1)", groups: 1, channels: 2 * channels),
                scale: try r.take("\(p).\(next + 3).scale", [channels])))
        }
        return DConv(layers: layers)
    }

    /// `[C, F, T] → [C, F, T]`; `F` is 1 on the time branch.
    /// Working set of one block of frequency rows, in floats (the `[2C, rows, T]` pointwise
    /// output is the largest): about half a typical L2.
    static let blockFloats = 1 << 17

    public func callAsFunction(_ x: consuming Tensor) -> Tensor {
        let (c, f, t) = (x.shape[0], x.shape[1], x.shape[2])
        // On a frequency layer every row is its own sequence (the reference folds F into the
        // batch), so the branch runs on blocks of rows whose intermediates stay in cache instead
        // of tensors of 2C × F × T going through memory, and the next block reuses the buffers.
        let plain = layers.allSatisfy { $0.lstm == nil && $0.attention == nil }
        if f == 1 && plain && t > Self.stretch(channels: c) { return longRow(x) }
        guard f > 1, plain else { return whole(x) }
        let rowsPerBlock = max(1, min(f, Self.blockFloats / max(2 * c * t, 1)))
        let blocks = (f + rowsPerBlock - 1) / rowsPerBlock
        // In place: a block reads and writes only its own rows, so the output needs no second
        // `[C, F, T]` buffer (187 MB at the first level of a 44 s Hybrid Demucs chunk).
        var out = x
        out.data.withUnsafeMutableBufferPointer { op in
            let rows = UnsafeMutableSendablePointer(op.baseAddress!)
            parallelFor(blocks) { range in
                // One block per thread; its operations run single-threaded.
                EngineThreads.withWidth(1) {
                    for b in range {
                        let block = (b * rowsPerBlock)..<min(f, (b + 1) * rowsPerBlock)
                        let n = block.count * t
                        var y = Tensor(uninitialized: [c, block.count, t])
                        y.data.withUnsafeMutableBufferPointer { yp in
                            for ci in 0..<c {
                                (yp.baseAddress! + ci * n).update(from: rows.pointer + (ci * f + block.lowerBound) * t, count: n)
                            }
                        }
                        y = whole(y)
                        y.data.withUnsafeBufferPointer { yp in
                            for ci in 0..<c {
                                (rows.pointer + (ci * f + block.lowerBound) * t).update(from: yp.baseAddress! + ci * n, count: n)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Positions of one stretch of a long row: its `[2C, n]` pointwise output stays near
    /// `maxColumnsBytes`, like the convolutions' scratch.
    static func stretch(channels: Int) -> Int { max(1024, maxColumnsBytes / 4 / (2 * channels)) }

    /// The branch on one long row `[C, 1, T]` (waveform Demucs, the time branch). Its `[2C, T]`
    /// pointwise output (497 MB at the first level of a 44 s waveform Demucs chunk) never
    /// exists whole: it is produced a stretch of time at a time, three times over, since its
    /// GroupNorm(1) needs the mean, then the deviations from it, of the whole row before the
    /// first value can be normalised, gated, scaled and added.
    private func longRow(_ x: consuming Tensor) -> Tensor {
        let (c, t) = (x.shape[0], x.shape[2])
        let n = Self.stretch(channels: c)
        let stretches = stride(from: 0, to: t, by: n).map { $0..<min(t, $0 + n) }
        for layer in layers {
            var y = layer.conv(x)
            layer.norm1(&y, perRow: true)
            gelu(&y)
            let pointwise = layer.pointwise
            func produce(_ r: Range<Int>) -> Tensor { pointwise(y.slicingLast(r)) }
            var total = 0.0
            for r in stretches {
                total += produce(r).data.withUnsafeBufferPointer { sum($0.baseAddress!, $0.count) }
            }
            let count = Double(2 * c * t)
            let mean = Float(total / count)
            var deviations = 0.0
            for r in stretches {
                deviations += produce(r).data.withUnsafeBufferPointer { sumOfSquaredDeviations($0.baseAddress!, $0.count, mean: mean) }
            }
            let inv = Float(1 / (deviations / count + Double(Float(1e-5))).squareRoot())
            let (gamma, beta) = (layer.norm2.weight, layer.norm2.bias)
            for r in stretches {
                var p = produce(r)
                p.data.withUnsafeMutableBufferPointer { pp in
                    for ci in 0..<(2 * c) {
                        let scale = inv * gamma.data[ci], shift = beta.data[ci] - mean * scale
                        let row = pp.baseAddress! + ci * r.count
                        for i in 0..<r.count { row[i] = row[i] * scale + shift }
                    }
                }
                var g = glu(p)
                scaleChannels(&g, layer.scale)
                x.data.withUnsafeMutableBufferPointer { xp in
                    g.data.withUnsafeBufferPointer { gp in
                        for ci in 0..<c {
                            let dst = xp.baseAddress! + ci * t + r.lowerBound, src = gp.baseAddress! + ci * r.count
                            for i in 0..<r.count { dst[i] += src[i] }
                        }
                    }
                }
            }
        }
        return x
    }

    /// The branch on a whole `[C, F, T]` tensor.
    private func whole(_ x: consuming Tensor) -> Tensor {
        for layer in layers {
            var y = layer.conv(x)
            layer.norm1(&y, perRow: true)
            gelu(&y)
            if let lstm = layer.lstm { y = eachRow(y) { lstm($0) } }
            if let attention = layer.attention { y = eachRow(y) { attention($0) } }
            y = layer.pointwise(y)
            layer.norm2(&y, perRow: true)
            y = glu(y)
            scaleChannels(&y, layer.scale)
            add(&x, y)
        }
        return x
    }
}

/// Applies a `[C, T]` module to every frequency row of `[C, F, T]`: the reference folds the
/// rows into the batch, so the recurrent and attention parts see each row on its own.
private func eachRow(_ x: Tensor, _ body: (Tensor) -> Tensor) -> Tensor {
    let c = x.shape[0], f = x.shape[1], t = x.shape[2]
    if f == 1 { return body(x.reshaped([c, t])).reshaped([c, 1, t]) }
    var out = Tensor(uninitialized: [c, f, t])
    var row = Tensor(uninitialized: [c, t])
    for fi in 0..<f {
        for ch in 0..<c { row.data[ch * t..<(ch + 1) * t] = x.data[(ch * f + fi) * t..<(ch * f + fi + 1) * t] }
        let y = body(row)
        for ch in 0..<c { out.data[(ch * f + fi) * t..<(ch * f + fi + 1) * t] = y.data[ch * t..<(ch + 1) * t] }
    }
    return out
}
