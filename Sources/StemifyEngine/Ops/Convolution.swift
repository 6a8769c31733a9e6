/// Convolutions over `[C, H, W]` tensors as GEMMs on contiguous buffers.
///
/// The model's convolutions are all special cases of one 2-D convolution: frequency layers use
/// `K×1` kernels with stride `4×1` over `[C, F, T]`, time layers a `1×K` kernel over
/// `[C, 1, L]`, DConv a dilated `1×3` kernel applied to every frequency row, rewrites `1×1` or `3×3`.
/// A `1×1` convolution is a single GEMM; anything else goes through im2col in column blocks, so
/// the scratch stays near `maxColumnsBytes` however long the input.

/// Upper bound on one im2col / col2im block, in bytes.
let maxColumnsBytes = 16 << 20

/// Parameters of a 2-D convolution: kernel, stride, padding and dilation as (height, width).
public struct ConvGeometry: Sendable, Equatable {
    public var kernel: (Int, Int)
    public var stride: (Int, Int)
    public var padding: (Int, Int)
    public var dilation: (Int, Int)

    public init(kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) {
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
    }

    public static func == (a: ConvGeometry, b: ConvGeometry) -> Bool {
        a.kernel == b.kernel && a.stride == b.stride && a.padding == b.padding && a.dilation == b.dilation
    }

    func outputSize(_ h: Int, _ w: Int) -> (Int, Int) {
        let ho = (h + 2 * padding.0 - dilation.0 * (kernel.0 - 1) - 1) / stride.0 + 1
        let wo = (w + 2 * padding.1 - dilation.1 * (kernel.1 - 1) - 1) / stride.1 + 1
        return (ho, wo)
    }
}

/// 2-D convolution, `torch.nn.functional.conv2d` semantics (zero padding, no groups).
///
/// - Parameters:
///   - x: `[Cin, H, W]`.
///   - weight: `[Cout, Cin, KH, KW]`.
///   - bias: `[Cout]` or nil.
/// - Returns: `[Cout, Ho, Wo]`.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, geometry g: ConvGeometry) -> Tensor {
    precondition(x.shape.count == 3 && weight.shape.count == 4, "conv2d: input \(x.shape), weight \(weight.shape)")
    let (cin, h, w) = (x.shape[0], x.shape[1], x.shape[2])
    let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    precondition(weight.shape[1] == cin && (kh, kw) == g.kernel, "conv2d: input \(x.shape) does not fit weight \(weight.shape)")
    let (ho, wo) = g.outputSize(h, w)
    precondition(ho > 0 && wo > 0, "conv2d: input \(x.shape) too small for kernel \(g.kernel)")
    // Every element is written by a GEMM with beta 0.
    var out = Tensor(uninitialized: [cout, ho, wo])
    let n = ho * wo
    let rows = cin * kh * kw
    let pointwise = kh == 1 && kw == 1 && g.stride == (1, 1) && g.padding == (0, 0)

    if kh == 1 && g.stride == (1, 1) && g.padding.0 == 0 && cout <= maxDirectOutputs && !pointwise {
        // Few output channels (DConv's 48 → 6 … 384 → 48): a GEMM would spend more on packing
        // the input than on arithmetic, so the taps are applied directly, row by row.
        directRowConvolution(x, weight: weight, geometry: g, wo: wo, into: &out)
        if let bias { addChannelBias(&out, bias) }
        return out
    }
    if Winograd3x3.applies(g, h: h, w: w) {
        Winograd3x3(weight: weight, h: h, w: w).forEachBand(x) { rows, band in
            out.data.withUnsafeMutableBufferPointer { op in
                for co in 0..<cout {
                    (op.baseAddress! + co * n + rows.lowerBound * wo).update(from: band + co * rows.count * wo, count: rows.count * wo)
                }
            }
        }
        if let bias { addChannelBias(&out, bias) }
        return out
    }
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.data.withUnsafeMutableBufferPointer { op in
                if pointwise {
                    gemm(m: cout, n: n, k: cin, a: wp.baseAddress!, lda: cin, b: xp.baseAddress!, ldb: n, c: op.baseAddress!, ldc: n)
                    return
                }
                let blocks = positionBlocks(rows: ho, columns: wo, floatsPerPosition: rows)
                var cols = [Float](unsafeUninitializedCapacity: rows * blocks.largest) { _, n in n = rows * blocks.largest }
                cols.withUnsafeMutableBufferPointer { cp in
                    for block in blocks.list {
                        let bn = block.rows.count * block.columns.count
                        im2col(xp.baseAddress!, cin: cin, h: h, w: w, g: g, rows: block.rows, columns: block.columns, into: cp.baseAddress!)
                        gemm(m: cout, n: bn, k: rows, a: wp.baseAddress!, lda: rows,
                             b: cp.baseAddress!, ldb: bn, c: op.baseAddress! + block.start(wo), ldc: n)
                    }
                }
            }
        }
    }
    if let bias { addChannelBias(&out, bias) }
    return out
}

/// Output channels up to which a `1×K` convolution runs as a direct kernel instead of a GEMM
/// (measured: direct 2.5× faster at 6 outputs, 1.2–2× at 12, slower from 24 on)
/// (`stemify-bench` compares both by setting it).
nonisolated(unsafe) public var maxDirectOutputs = 16

/// `1×K` convolution, stride 1, along each row of `[Cin, H, W]`: every output row is a sum of
/// `Cin · K` shifted input rows scaled by one weight each, eight positions at a time, six
/// output channels per pass over the input (their accumulators stay in registers). Work is
/// split in (row, stretch of `segment` positions), so a single long row (the time branch)
/// still spreads over the threads.
private func directRowConvolution(_ x: Tensor, weight: Tensor, geometry g: ConvGeometry, wo: Int, into out: inout Tensor) {
    let (cin, h, w) = (x.shape[0], x.shape[1], x.shape[2])
    let (cout, kw) = (weight.shape[0], weight.shape[3])
    let (pad, dilation) = (g.padding.1, g.dilation.1)
    let segment = 2048
    let segments = (wo + segment - 1) / segment
    // One stretch of every input channel with its zero padding, and room for the last
    // vector's overrun.
    let span = min(segment, wo) + (kw - 1) * dilation + 8
    let taps = cin * kw
    x.data.withUnsafeBufferPointer { xb in
        weight.data.withUnsafeBufferPointer { wb in
            out.data.withUnsafeMutableBufferPointer { ob in
                let (xs, ws, os) = (UnsafeSendable(xb.baseAddress!), UnsafeSendable(wb.baseAddress!), UnsafeMutableSendablePointer(ob.baseAddress!))
                parallelFor(h * segments) { jobs in
                    var stretch = [Float](repeating: 0, count: cin * span)
                    stretch.withUnsafeMutableBufferPointer { sb in
                        let buffer = sb.baseAddress!
                        let raw = UnsafeRawPointer(buffer)
                        for job in jobs {
                            let (y, t0) = (job / segments, (job % segments) * segment)
                            let t1 = min(wo, t0 + segment)
                            // Input positions t0 − pad ..< t0 − pad + span, zero outside the row.
                            let first = t0 - pad
                            let lo = max(0, -first), hi = max(lo, min(span, w - first))
                            for c in 0..<cin {
                                let dst = buffer + c * span
                                if lo > 0 { dst.update(repeating: 0, count: lo) }
                                if hi > lo { (dst + lo).update(from: xs.pointer + (c * h + y) * w + first + lo, count: hi - lo) }
                                if hi < span { (dst + hi).update(repeating: 0, count: span - hi) }
                            }
                            var o0 = 0
                            while o0 < cout {
                                // Six channels a pass; a short last group repeats its last channel.
                                let w0 = ws.pointer + min(o0, cout - 1) * taps, w1 = ws.pointer + min(o0 + 1, cout - 1) * taps
                                let w2 = ws.pointer + min(o0 + 2, cout - 1) * taps, w3 = ws.pointer + min(o0 + 3, cout - 1) * taps
                                let w4 = ws.pointer + min(o0 + 4, cout - 1) * taps, w5 = ws.pointer + min(o0 + 5, cout - 1) * taps
                                var t = t0
                                while t < t1 {
                                    var a0 = SIMD8<Float>(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0
                                    for c in 0..<cin {
                                        for j in 0..<kw {
                                            let v = raw.loadUnaligned(fromByteOffset: (c * span + t - t0 + j * dilation) * 4, as: SIMD8<Float>.self)
                                            let k = c * kw + j
                                            a0 = fused(v, w0[k], a0)
                                            a1 = fused(v, w1[k], a1)
                                            a2 = fused(v, w2[k], a2)
                                            a3 = fused(v, w3[k], a3)
                                            a4 = fused(v, w4[k], a4)
                                            a5 = fused(v, w5[k], a5)
                                        }
                                    }
                                    let n = min(8, t1 - t)
                                    @inline(__always) func store(_ acc: SIMD8<Float>, _ i: Int) {
                                        guard o0 + i < cout else { return }
                                        let dst = os.pointer + ((o0 + i) * h + y) * wo + t
                                        if n == 8 {
                                            UnsafeMutableRawPointer(dst).storeBytes(of: acc, as: SIMD8<Float>.self)
                                        } else {
                                            for l in 0..<n { dst[l] = acc[l] }
                                        }
                                    }
                                    store(a0, 0); store(a1, 1); store(a2, 2); store(a3, 3); store(a4, 4); store(a5, 5)
                                    t += 8
                                }
                                o0 += 6
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `glu(conv2d(x, weight, bias), dim: 0)`: the convolution's `2C` output channels are produced
/// a block of output rows at a time and gated there, so the `[2C, Ho, Wo]` tensor (twice the
/// result) never exists. The rewrite layers of every Demucs encoder and decoder end this way.
///
/// A pointwise rewrite that keeps the channel count (`C → 2C`, gated back to `C`) writes each
/// block over the input it was computed from, so a caller that hands over its only reference
/// (`consume`) gets no second tensor either (250 MB at the first level of a 44 s time-domain
/// chunk).
public func conv2dGLU(_ x: consuming Tensor, weight: Tensor, bias: Tensor?, geometry g: ConvGeometry) -> Tensor {
    precondition(x.shape.count == 3 && weight.shape.count == 4 && weight.shape[0] % 2 == 0,
                 "conv2dGLU: input \(x.shape), weight \(weight.shape)")
    let (cin, h, w) = (x.shape[0], x.shape[1], x.shape[2])
    let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    precondition(weight.shape[1] == cin && (kh, kw) == g.kernel, "conv2dGLU: input \(x.shape) does not fit weight \(weight.shape)")
    let (ho, wo) = g.outputSize(h, w)
    precondition(ho > 0 && wo > 0, "conv2dGLU: input \(x.shape) too small for kernel \(g.kernel)")
    let half = cout / 2, n = ho * wo
    let rows = cin * kh * kw
    let pointwise = kh == 1 && kw == 1 && g.stride == (1, 1) && g.padding == (0, 0)
    if pointwise && half == cin {
        var y = consume x
        let blocks = positionBlocks(rows: h, columns: w, floatsPerPosition: cout)
        var gates = [Float](unsafeUninitializedCapacity: cout * blocks.largest) { _, k in k = cout * blocks.largest }
        weight.data.withUnsafeBufferPointer { wp in
            y.data.withUnsafeMutableBufferPointer { yp in
                gates.withUnsafeMutableBufferPointer { tp in
                    for block in blocks.list {
                        // The product reads all of the block's inputs before its gates overwrite them.
                        let bn = block.rows.count * block.columns.count, start = block.start(w)
                        gemm(m: cout, n: bn, k: cin, a: wp.baseAddress!, lda: cin,
                             b: yp.baseAddress! + start, ldb: n, c: tp.baseAddress!, ldc: bn)
                        gateBlock(tp.baseAddress!, positions: bn, channels: half, bias: bias, into: yp.baseAddress! + start, channelStride: n)
                    }
                }
            }
        }
        return y
    }
    var out = Tensor(uninitialized: [half, ho, wo])
    if Winograd3x3.applies(g, h: h, w: w) {
        Winograd3x3(weight: weight, h: h, w: w).forEachBand(x) { rows, band in
            out.data.withUnsafeMutableBufferPointer { op in
                gateBlock(band, positions: rows.count * wo, channels: half, bias: bias,
                          into: op.baseAddress! + rows.lowerBound * wo, channelStride: n)
            }
        }
        return out
    }
    // The columns (unless pointwise) and the gate input stay bounded.
    let blocks = positionBlocks(rows: ho, columns: wo, floatsPerPosition: (pointwise ? 0 : rows) + cout)
    var cols = [Float](unsafeUninitializedCapacity: pointwise ? 0 : rows * blocks.largest) { _, k in k = pointwise ? 0 : rows * blocks.largest }
    var gates = [Float](unsafeUninitializedCapacity: cout * blocks.largest) { _, k in k = cout * blocks.largest }
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.data.withUnsafeMutableBufferPointer { op in
                cols.withUnsafeMutableBufferPointer { cp in
                    gates.withUnsafeMutableBufferPointer { tp in
                        let (gp, dst) = (UnsafeMutableSendablePointer(tp.baseAddress!), UnsafeMutableSendablePointer(op.baseAddress!))
                        for block in blocks.list {
                            let bn = block.rows.count * block.columns.count, start = block.start(wo)
                            if pointwise {
                                gemm(m: cout, n: bn, k: cin, a: wp.baseAddress!, lda: cin,
                                     b: xp.baseAddress! + start, ldb: n, c: gp.pointer, ldc: bn)
                            } else {
                                im2col(xp.baseAddress!, cin: cin, h: h, w: w, g: g, rows: block.rows, columns: block.columns, into: cp.baseAddress!)
                                gemm(m: cout, n: bn, k: rows, a: wp.baseAddress!, lda: rows,
                                     b: cp.baseAddress!, ldb: bn, c: gp.pointer, ldc: bn)
                            }
                            gateBlock(gp.pointer, positions: bn, channels: half, bias: bias, into: dst.pointer + start, channelStride: n)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// GLU over a block of `positions` output positions whose `2 · channels` gate inputs lie at
/// `gates[c · positions]`: channel `c` of the result goes to `out[c · channelStride]`.
private func gateBlock(_ gates: UnsafeMutablePointer<Float>, positions: Int, channels: Int, bias: Tensor?,
                       into out: UnsafeMutablePointer<Float>, channelStride: Int) {
    let kernels = VectorKernels.active
    let (gp, dst) = (UnsafeSendable(gates), UnsafeMutableSendablePointer(out))
    parallelFor(channels) { range in
        for ci in range {
            kernels.glu(gp.pointer + ci * positions, gp.pointer + (channels + ci) * positions,
                        bias?.data[ci] ?? 0, bias?.data[channels + ci] ?? 0, dst.pointer + ci * channelStride, positions)
        }
    }
}

/// Blocks of output positions (row-major over `rows × columns`) whose scratch of
/// `floatsPerPosition` floats each stays near `maxColumnsBytes`: whole rows where one fits, else
/// stretches of one row (the time branch is a single row of up to 2 M positions).
struct PositionBlocks {
    struct Block {
        var rows: Range<Int>
        var columns: Range<Int>
        /// Offset of the first position in the row-major output plane.
        func start(_ width: Int) -> Int { rows.lowerBound * width + columns.lowerBound }
    }
    var list: [Block]
    /// Positions in the largest block.
    var largest: Int
}

func positionBlocks(rows: Int, columns: Int, floatsPerPosition: Int) -> PositionBlocks {
    let budget = max(1, maxColumnsBytes / 4 / max(floatsPerPosition, 1))
    if budget >= columns {
        let per = max(1, min(rows, budget / max(columns, 1)))
        let list = stride(from: 0, to: rows, by: per).map { PositionBlocks.Block(rows: $0..<min(rows, $0 + per), columns: 0..<columns) }
        return PositionBlocks(list: list, largest: per * columns)
    }
    let list = (0..<rows).flatMap { r in
        stride(from: 0, to: columns, by: budget).map { PositionBlocks.Block(rows: r..<(r + 1), columns: $0..<min(columns, $0 + budget)) }
    }
    return PositionBlocks(list: list, largest: budget)
}

/// Columns for the output positions `rows × columns`: `cols[(ci, i, j), (oh, ow)]`, both
/// relative to the block.
private func im2col(
    _ x: UnsafePointer<Float>, cin: Int, h: Int, w: Int, g: ConvGeometry,
    rows: Range<Int>, columns: Range<Int>, into cols: UnsafeMutablePointer<Float>
) {
    let (kh, kw) = g.kernel
    let bw = columns.count
    let n = rows.count * bw
    let cp = UnsafeMutableSendablePointer(cols)
    parallelFor(cin * kh * kw, minPerTask: 4) { range in
        for r in range {
            let ci = r / (kh * kw), i = (r / kw) % kh, j = r % kw
            let dst = cp.pointer + r * n
            for (bi, oh) in rows.enumerated() {
                let ih = oh * g.stride.0 - g.padding.0 + i * g.dilation.0
                let row = dst + bi * bw
                guard ih >= 0 && ih < h else {
                    row.update(repeating: 0, count: bw)
                    continue
                }
                let src = x + (ci * h + ih) * w
                let offset = j * g.dilation.1 - g.padding.1
                if g.stride.1 == 1 {
                    // Valid output columns: 0 <= ow + offset < w.
                    let lo = min(max(columns.lowerBound, -offset), columns.upperBound)
                    let hi = max(lo, min(columns.upperBound, w - offset))
                    let (l, u) = (lo - columns.lowerBound, hi - columns.lowerBound)
                    if l > 0 { row.update(repeating: 0, count: l) }
                    if u > l { (row + l).update(from: src + lo + offset, count: u - l) }
                    if u < bw { (row + u).update(repeating: 0, count: bw - u) }
                } else {
                    for (k, ow) in columns.enumerated() {
                        let iw = ow * g.stride.1 + offset
                        row[k] = (iw >= 0 && iw < w) ? src[iw] : 0
                    }
                }
            }
        }
    }
}

/// 2-D transposed convolution, `conv_transpose2d` semantics with no padding and no groups.
///
/// - Parameters:
///   - x: `[Cin, H, W]`.
///   - weight: `[Cin, Cout, KH, KW]` (PyTorch's layout for transposed convolutions).
/// - Returns: `[Cout, (H-1)·SH + KH, (W-1)·SW + KW]`.
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int)) -> Tensor {
    precondition(x.shape.count == 3 && weight.shape.count == 4 && weight.shape[0] == x.shape[0],
                 "convTranspose2d: input \(x.shape) does not fit weight \(weight.shape)")
    let (cin, h, w) = (x.shape[0], x.shape[1], x.shape[2])
    let (cout, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
    let (sh, sw) = stride
    let (ho, wo) = ((h - 1) * sh + kh, (w - 1) * sw + kw)
    var out = Tensor(zeros: [cout, ho, wo])
    let rows = cout * kh * kw
    let blocks = positionBlocks(rows: h, columns: w, floatsPerPosition: rows)
    var cols = [Float](unsafeUninitializedCapacity: rows * blocks.largest) { _, n in n = rows * blocks.largest }
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            out.data.withUnsafeMutableBufferPointer { op in
                cols.withUnsafeMutableBufferPointer { cp in
                    for block in blocks.list {
                        let bn = block.rows.count * block.columns.count
                        // cols[(co, i, j), (ih, iw)] = Σ_ci W[ci, (co, i, j)] · x[ci, (ih, iw)]
                        gemm(transA: true, m: rows, n: bn, k: cin, a: wp.baseAddress!, lda: rows,
                             b: xp.baseAddress! + block.start(w), ldb: h * w, c: cp.baseAddress!, ldc: bn)
                        col2im(cp.baseAddress!, cout: cout, kh: kh, kw: kw, inRows: block.rows, inColumns: block.columns,
                               stride: stride, ho: ho, wo: wo, into: op.baseAddress!)
                    }
                }
            }
        }
    }
    if let bias { addChannelBias(&out, bias) }
    return out
}

/// What ``convTranspose1d(_:weight:bias:stride:activation:addingInto:offset:)`` applies to each
/// output before adding it.
public enum OutputActivation: Sendable { case identity, relu, gelu }

/// `y[:, offset ..< offset + Lo] += act(conv_transpose1d(x) + bias)` over `[C, 1, L]` tensors:
/// a decoder's transposed convolution summed straight into the
/// skip the next decoder adds it to, so its output (250 MB at the last level of a 44 s
/// time-domain chunk) never exists. Output columns are produced a block at a time from the
/// inputs that reach them. Where a kernel is at most twice its stride (every Demucs decoder)
/// each output sums at most two taps, whose sum does not depend on their order, so the result
/// equals ``convTranspose2d`` followed by the activation and the add to the bit wherever
/// OpenBLAS's products do not depend on their call's width (its AVX-512 level; at AVX2 they
/// differ in the last bits).
///
/// - Parameters:
///   - x: `[Cin, 1, L]`.
///   - weight: `[Cin, Cout, 1, K]`.
///   - y: `[Cout, 1, Ly]` with `offset + (L - 1) · stride + K ≤ Ly`.
public func convTranspose1d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, activation: OutputActivation,
                            addingInto y: inout Tensor, offset: Int) {
    precondition(x.shape.count == 3 && x.shape[1] == 1 && weight.shape.count == 4 && weight.shape[0] == x.shape[0]
                 && weight.shape[2] == 1, "convTranspose1d: input \(x.shape) does not fit weight \(weight.shape)")
    let (cin, length) = (x.shape[0], x.shape[2])
    let (cout, k) = (weight.shape[1], weight.shape[3])
    let outLength = (length - 1) * stride + k
    precondition(y.shape.count == 3 && y.shape[0] == cout && y.shape[1] == 1 && offset >= 0 && offset + outLength <= y.shape[2],
                 "convTranspose1d: \(outLength) outputs at \(offset) do not fit \(y.shape)")
    let (rows, ly) = (cout * k, y.shape[2])
    let kernels = VectorKernels.active
    // Output blocks a whole number of strides long, sized like the other convolutions' scratch.
    let block = max(stride, positionBlocks(rows: 1, columns: outLength, floatsPerPosition: rows / stride + cout).largest / stride * stride)
    let inputsPerBlock = block / stride + k / stride + 2
    var cols = [Float](unsafeUninitializedCapacity: rows * inputsPerBlock) { _, n in n = rows * inputsPerBlock }
    var sums = [Float](unsafeUninitializedCapacity: cout * block) { _, n in n = cout * block }
    x.data.withUnsafeBufferPointer { xp in
        weight.data.withUnsafeBufferPointer { wp in
            y.data.withUnsafeMutableBufferPointer { yp in
                cols.withUnsafeMutableBufferPointer { cp in
                    sums.withUnsafeMutableBufferPointer { sp in
                        let (cs, ss, ys) = (UnsafeSendable(cp.baseAddress!), UnsafeMutableSendablePointer(sp.baseAddress!),
                                            UnsafeMutableSendablePointer(yp.baseAddress!))
                        for o0 in Swift.stride(from: 0, to: outLength, by: block) {
                            let o1 = min(outLength, o0 + block), width = o1 - o0
                            // Inputs t reach outputs t·stride ..< t·stride + k.
                            let t0 = o0 >= k ? (o0 - k) / stride + 1 : 0, t1 = min(length, (o1 - 1) / stride + 1)
                            let n = t1 - t0
                            // cols[(co, j), t] = Σ_ci W[ci, (co, j)] · x[ci, t]
                            gemm(transA: true, m: rows, n: n, k: cin, a: wp.baseAddress!, lda: rows,
                                 b: xp.baseAddress! + t0, ldb: length, c: cp.baseAddress!, ldc: n)
                            parallelFor(cout) { range in
                                for co in range {
                                    let sum = ss.pointer + co * width
                                    sum.update(repeating: 0, count: width)
                                    for j in 0..<k {
                                        let src = cs.pointer + (co * k + j) * n
                                        for t in t0..<t1 {
                                            let o = t * stride + j - o0
                                            if o >= 0 && o < width { sum[o] += src[t - t0] }
                                        }
                                    }
                                    if let b = bias?.data[co] { for o in 0..<width { sum[o] += b } }
                                    switch activation {
                                    case .identity: break
                                    case .relu: for o in 0..<width where sum[o] < 0 { sum[o] = 0 }
                                    case .gelu: kernels.gelu(sum, width)
                                    }
                                    let dst = ys.pointer + co * ly + offset + o0
                                    for o in 0..<width { dst[o] += sum[o] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

private func col2im(
    _ cols: UnsafePointer<Float>, cout: Int, kh: Int, kw: Int, inRows: Range<Int>, inColumns: Range<Int>,
    stride: (Int, Int), ho: Int, wo: Int, into out: UnsafeMutablePointer<Float>
) {
    let bw = inColumns.count
    let n = inRows.count * bw
    let op = UnsafeMutableSendablePointer(out)
    // Parallel over output channels: each task owns whole output planes, so no write races.
    parallelFor(cout) { range in
        for co in range {
            for i in 0..<kh {
                for j in 0..<kw {
                    let src = cols + ((co * kh + i) * kw + j) * n
                    for (bi, ih) in inRows.enumerated() {
                        let oh = ih * stride.0 + i
                        let dst = op.pointer + (co * ho + oh) * wo + inColumns.lowerBound * stride.1 + j
                        let s = src + bi * bw
                        if stride.1 == 1 {
                            for iw in 0..<bw { dst[iw] += s[iw] }
                        } else {
                            for iw in 0..<bw { dst[iw * stride.1] += s[iw] }
                        }
                    }
                }
            }
        }
    }
}

/// `x[c, ...] += bias[c]`.
func addChannelBias(_ x: inout Tensor, _ bias: Tensor) {
    let c = x.shape[0]
    precondition(bias.count == c, "bias \(bias.shape) does not fit \(x.shape)")
    let inner = x.count / c
    x.data.withUnsafeMutableBufferPointer { p in
        bias.data.withUnsafeBufferPointer { b in
            for ci in 0..<c {
                let v = b[ci]
                let row = p.baseAddress! + ci * inner
                for t in 0..<inner { row[t] += v }
            }
        }
    }
}

/// A raw pointer that may cross into `concurrentPerform` tasks writing disjoint ranges.
struct UnsafeMutableSendablePointer<Element>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Element>
    init(_ pointer: UnsafeMutablePointer<Element>) { self.pointer = pointer }
}
