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

    /// Encoder: `[Cin, F, T] → [Cout, F/stride, T]`.
    public func encode(_ x: Tensor) -> Tensor {
        let fr = x.shape[1]
        let pad = kernel / 4
        var start = 0
        var outs: [Tensor] = []
        for (k, layer) in encoders.enumerated() {
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
            let lo = start == 0 ? -pad : start
            let hi = k == ratios.count ? limit + pad : limit
            outs.append(layer(x.slicingMiddle(lo..<hi)))
            start = limit - kernel + stride
        }
        return Tensor.concatenatingMiddle(outs)
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
        var start = 0
        var outs: [Tensor] = []
        for (k, layer) in decoders.enumerated() {
            let limit = k == ratios.count ? fr : Self.pyRound(Double(fr) * (ratios[k]))
            var out = layer(summed: sum.slicingMiddle(start..<limit), length: 0).out
            if var previous = outs.popLast() {
                // The bands' transposed convolutions overlap by `stride` rows: add them, bias once.
                let bias = layer.convTranspose.bias
                let (c, pf, ot) = (previous.shape[0], previous.shape[1], out.shape[2])
                for ch in 0..<c {
                    let b = bias?.data[ch] ?? 0
                    for i in 0..<stride {
                        let dst = (ch * pf + pf - stride + i) * ot
                        let src = (ch * out.shape[1] + i) * ot
                        for j in 0..<ot { previous.data[dst + j] += out.data[src + j] - b }
                    }
                }
                outs.append(previous)
                out = out.slicingMiddle(stride..<out.shape[1])
            }
            if k == ratios.count { out = out.slicingMiddle(0..<(out.shape[1] - stride / 2)) }
            if start == 0 { out = out.slicingMiddle((stride / 2)..<out.shape[1]) }
            outs.append(out)
            start = limit
        }
        var out = Tensor.concatenatingMiddle(outs)
        if !isLast { gelu(&out) }
        return out
    }
}
