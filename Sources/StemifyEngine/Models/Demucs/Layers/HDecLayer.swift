/// One decoder layer of the frequency or time branch (`demucs/hdemucs.py`, `HDecLayer`).
///
/// + skip → rewrite (3×3 on frequencies, 3 on time) → [GroupNorm] → GLU → [DConv] →
/// transposed conv (stride 4) → [GroupNorm] → crop the padding → GELU (not on the last layer).
/// It also returns its input to the transposed convolution, which the time branch takes over
/// where the two branches split.
public struct HDecLayer: Sendable {
    public var isFrequency: Bool
    public var isEmpty: Bool
    public var isLast: Bool
    public var pad: Int
    public var channelsIn: Int
    /// `conv_tr`: ConvTranspose2d(Cin, Cout, [K, 1], [S, 1]) or ConvTranspose1d(Cin, Cout, K, S)
    public var convTranspose: ConvLayer
    /// `norm2`: GroupNorm(groups, Cout)
    public var norm2: GroupNormLayer?
    /// `rewrite`: Conv(Cin, 2·Cin, 1 + 2·context)
    public var rewrite: ConvLayer?
    /// `norm1`: GroupNorm(groups, 2·Cin)
    public var norm1: GroupNormLayer?
    /// `dconv`
    public var dconv: DConv?

    struct Options {
        var kernel: Int
        var stride: Int
        var isFrequency: Bool
        var pad: Bool
        var norm: Bool
        var normGroups: Int
        var rewrite: Bool
        var context: Int
        var contextFrequency: Bool
        var dconv: Bool
        var dconvCompress: Double
        var dconvDepth: Int
        var dconvLSTM = false
        var dconvAttention = false
        var empty: Bool
        var last: Bool
    }

    static func load(_ r: inout StateReader, _ prefix: String, cin: Int, cout: Int, _ o: Options) throws -> HDecLayer {
        let convTranspose: ConvLayer = o.isFrequency
            ? try .load(&r, "\(prefix).conv_tr", cin: cin, cout: cout, kernel: (o.kernel, 1), stride: (o.stride, 1), transposed: true, oneD: false)
            : try .load(&r, "\(prefix).conv_tr", cin: cin, cout: cout, kernel: (1, o.kernel), stride: (1, o.stride), transposed: true, oneD: true)
        var layer = HDecLayer(isFrequency: o.isFrequency, isEmpty: o.empty, isLast: o.last, pad: o.pad ? o.kernel / 4 : 0,
                              channelsIn: cin, convTranspose: convTranspose)
        if o.norm { layer.norm2 = try .load(&r, "\(prefix).norm2", groups: o.normGroups, channels: cout) }
        if o.empty { return layer }
        if o.rewrite {
            let k = 1 + 2 * o.context
            if !o.isFrequency {
                layer.rewrite = try .load(&r, "\(prefix).rewrite", cin: cin, cout: 2 * cin, kernel: (1, k), padding: (0, o.context), oneD: true)
            } else if o.contextFrequency {
                layer.rewrite = try .load(&r, "\(prefix).rewrite", cin: cin, cout: 2 * cin, kernel: (k, k), padding: (o.context, o.context), oneD: false)
            } else {
                layer.rewrite = try .load(&r, "\(prefix).rewrite", cin: cin, cout: 2 * cin, kernel: (1, k), padding: (0, o.context), oneD: false)
            }
            if o.norm { layer.norm1 = try .load(&r, "\(prefix).norm1", groups: o.normGroups, channels: 2 * cin) }
        }
        if o.dconv { layer.dconv = try .load(&r, "\(prefix).dconv", channels: cin, compress: o.dconvCompress, depth: o.dconvDepth,
                                        lstm: o.dconvLSTM, attention: o.dconvAttention) }
        return layer
    }

    init(isFrequency: Bool, isEmpty: Bool, isLast: Bool, pad: Int, channelsIn: Int, convTranspose: ConvLayer) {
        self.isFrequency = isFrequency
        self.isEmpty = isEmpty
        self.isLast = isLast
        self.pad = pad
        self.channelsIn = channelsIn
        self.convTranspose = convTranspose
    }

    /// - Parameters:
    ///   - x: `[Cin, F, T]` (time layers: `[Cin, 1, T]`). Consumed, like `skip`: on the first
    ///     level of a 44 s Hybrid Demucs chunk each is 187 MB, and neither outlives the sum.
    ///   - skip: the matching encoder output, nil for an empty layer. The sum is written into it
    ///     (addition commutes exactly).
    ///   - length: the time layer's output length (its encoder's input length).
    /// - Returns: the output and the input of the transposed convolution.
    public func callAsFunction(_ x: consuming Tensor, skip: consuming Tensor?, length: Int) -> (out: Tensor, pre: Tensor) {
        if isFrequency {
            let t = x.shape[2]
            x = x.reshaped([channelsIn, x.count / (channelsIn * t), t])
        }
        if isEmpty {
            precondition(skip == nil, "an empty decoder layer takes no skip connection")
            return upsample(x, length: length)
        }
        guard var sum = consume skip else { preconditionFailure("a decoder layer needs its skip connection") }
        add(&sum, x)
        _ = consume x
        return self(summed: consume sum, length: length)
    }

    /// The layer after the skip connection: `sum` is its input plus the skip, `[Cin, F, T]`.
    public func callAsFunction(summed sum: consuming Tensor, length: Int) -> (out: Tensor, pre: Tensor) {
        var y: Tensor
        if let rewrite, norm1 == nil {
            y = rewrite.gated(consume sum)
        } else if let rewrite {
            var r = rewrite(consume sum)
            norm1?(&r)
            y = glu(consume r)
        } else {
            y = sum
        }
        if let dconv { y = dconv(consume y) }
        return upsample(y, length: length)
    }

    private func upsample(_ y: Tensor, length: Int) -> (out: Tensor, pre: Tensor) {
        var z = convTranspose(y)
        norm2?(&z)
        if isFrequency {
            if pad > 0 { z.cropMiddle(pad..<(z.shape[1] - pad)) }
        } else {
            z.cropLast(pad..<(pad + length))
        }
        if !isLast { gelu(&z) }
        return (z, y)
    }
}
