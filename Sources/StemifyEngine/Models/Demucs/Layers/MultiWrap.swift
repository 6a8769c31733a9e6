import Foundation

/// `demucs.hdemucs.MultiWrap`: the outermost frequency layers of some Hybrid Demucs models
/// split the spectrum into bands (`multi_freqs`, e.g. below 10 %, 10–30 %, above 30 % of the
/// bins), each with its own copy of the layer.
///
/// The band edges are placed so that, with identical weights, the result equals the unsplit
/// layer: encoder bands overlap by `kernel − stride` bins and pad only at the spectrum's ends;
/// decoder bands overlap-add `stride` bins (their bias counted once) and crop `stride/2` at the
/// ends.
public struct MultiWrap: Sendable {
    public var ratios: [Double]
    public var kernel: Int
    public var stride: Int
    /// One encoder (convolution padding removed) per band.
    public var encoders: [HEncLayer]
    /// One decoder (no crop, no final GELU) per band.
    public var decoders: [HDecLayer]
    /// Whether the wrapped decoder was the network's last layer (no GELU after the bands).
    public var isLast: Bool

    /// `prefix.layers.{k}` for each band.
    static func loadEncoder(_ r: inout StateReader, _ prefix: String, cin: Int, cout: Int, ratios: [Double],
                            _ o: HEncLayer.Options) throws -> MultiWrap {
        var band = o
        band.pad = false
        var layers: [HEncLayer] = []
        for k in 0...ratios.count { layers.append(try .load(&r, "\(prefix).layers.\(k)", cin: cin, cout: cout, band)) }
        return MultiWrap(ratios: ratios, kernel: o.kernel, stride: o.stride, encoders: layers, decoders: [], isLast: false)
    }

    static func loadDecoder(_ r: inout StateReader, _ prefix: String, cin: Int, cout: Int, ratios: [Double],
                            _ o: HDecLayer.Options) throws -> MultiWrap {
        var band = o
        band.pad = false
        band.last = true
        var layers: [HDecLayer] = []
        for k in 0...ratios.count { layers.append(try .load(&r, "\(prefix).layers.\(k)", cin: cin, cout: cout, band)) }
        return MultiWrap(ratios: ratios, kernel: o.kernel, stride: o.stride, encoders: [], decoders: layers, isLast: o.last)
    }

    /// Python's `int(round(x))`: halves go to the even neighbour.
    private static func pyRound(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }

    /// Encoder: `[Cin, F, T] → [Cout, F/stride, T]`. Each band's output goes straight to its
    /// rows of the result, so the bands are never held next to their concatenation.
    public func encode(_ x: Tensor) -> Tensor {
        let fr = x.shape[1]
        let pad = kernel / 4
        var start = 0
        var bands: [Range<Int>] = []
        for k in encoders.indices {
            let ratio = k < ratios.count ? ratios[k] : 1
            var limit: Int
            if k == ratios.count {
                limit = fr
            } else {
                limit = Self.pyRound(Double(fr) * ratio)
                var le = limit - start
                if start == 0 { le += pad }
                let frames = Self.pyRound(Double(le - kernel) / Double(stride) + 1)
                limit = start + (frames - 1) * stride + kernel
                if start == 0 { limit -= pad }
            }
            // Zero rows above the first band and below the last stand for the unsplit padding.
            bands.append((start == 0 ? -pad : start)..<(k == ratios.count ? limit + pad : limit))
            start = limit - kernel + stride
        }
        let sizes = bands.map { ($0.count - kernel) / stride + 1 }
        var out: Tensor?
        var row = 0
        for (k, layer) in encoders.enumerated() {
            let y = layer(x.slicingMiddle(bands[k]))
            precondition(y.shape[1] == sizes[k], "band \(k) gave \(y.shape), expected \(sizes[k]) rows")
            if out == nil { out = Tensor(uninitialized: [y.shape[0], sizes.reduce(0, +), y.shape[2]]) }
            copyRows(y, 0..<sizes[k], into: &out!, at: row)
            row += sizes[k]
        }
        return out!
    }

    /// Decoder: `[Cin, F, T]` plus the skip → `[Cout, F·stride, T]`.
    /// Input and skip are consumed: their sum, taken once, is what each band's layer slices.
    public func decode(_ x: consuming Tensor, skip: consuming Tensor) -> Tensor {
        let cin = decoders[0].channelsIn
        let t = x.shape[x.shape.count - 1]
        var sum = skip.reshaped([cin, skip.count / (cin * t), t])
        _ = consume skip
        add(&sum, x.reshaped(sum.shape))
        _ = consume x
        let fr = sum.shape[1]
        // Band k takes rows [edges[k], edges[k+1]) and gives (rows − 1)·stride + kernel of its
        // own; next bands overlap by `stride` rows (added, the bias once) and the two ends lose
        // stride/2 each. Each band's rows go straight to the result.
        var edges = [0]
        for ratio in ratios { edges.append(Self.pyRound(Double(fr) * ratio)) }
        edges.append(fr)
        let sizes = decoders.indices.map { (edges[$0 + 1] - edges[$0] - 1) * stride + kernel }
        let total = sizes.reduce(0, +) - (decoders.count - 1) * stride - 2 * (stride / 2)
        var out: Tensor?
        var row = 0
        for (k, layer) in decoders.enumerated() {
            let band = sum.slicingMiddle(edges[k]..<edges[k + 1])
            // The last band is the widest (most of the spectrum): the sum goes before it runs.
            if k == decoders.count - 1 { sum = Tensor(zeros: [0]) }
            let z = layer(summed: consume band, length: 0).out
            let (c, rows, t) = (z.shape[0], z.shape[1], z.shape[2])
            precondition(rows == sizes[k], "band \(k) gave \(z.shape), expected \(sizes[k]) rows")
            if out == nil { out = Tensor(uninitialized: [c, total, t]) }
            var from = stride / 2
            if k > 0 {
                // The overlap with the previous band: added, its bias taken out once.
                let bias = layer.convTranspose.bias
                out!.data.withUnsafeMutableBufferPointer { op in
                    for ch in 0..<c {
                        let b = bias?.data[ch] ?? 0
                        for i in 0..<stride {
                            let dst = (ch * total + row - stride + i) * t, src = (ch * rows + i) * t
                            for j in 0..<t { op[dst + j] += z.data[src + j] - b }
                        }
                    }
                }
                from = stride
            }
            let end = k == decoders.count - 1 ? rows - stride / 2 : rows
            copyRows(z, from..<end, into: &out!, at: row)
            row += end - from
        }
        precondition(row == total, "bands filled \(row) of \(total) rows")
        var result = out!
        if !isLast { gelu(&result) }
        return result
    }
}

/// `dst[:, at ..< at + rows.count, :] = src[:, rows, :]` for `[C, F, T]` tensors.
private func copyRows(_ src: Tensor, _ rows: Range<Int>, into dst: inout Tensor, at row: Int) {
    let (c, fs, fd, t) = (src.shape[0], src.shape[1], dst.shape[1], src.shape[2])
    src.data.withUnsafeBufferPointer { sp in
        dst.data.withUnsafeMutableBufferPointer { dp in
            for ch in 0..<c {
                (dp.baseAddress! + (ch * fd + row) * t).update(from: sp.baseAddress! + (ch * fs + rows.lowerBound) * t, count: rows.count * t)
            }
        }
    }
}
