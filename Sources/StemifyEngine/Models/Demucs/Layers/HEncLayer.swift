/// One encoder layer of the frequency or time branch (`demucs/hdemucs.py`, `HEncLayer`).
///
/// conv (stride 4, `K×1` over frequencies or `K` over time) → [+ injected time branch] →
/// [GroupNorm] → GELU → [DConv] → rewrite (1×1 conv to 2C) → [GroupNorm] → GLU.
/// An `empty` layer is the first convolution only: the time branch's last layer before it
/// merges into the frequency branch.
public struct HEncLayer: Sendable {
    public var isFrequency: Bool
    public var stride: Int
    public var isEmpty: Bool
    /// `conv`: Conv2d(Cin, Cout, [K, 1], [S, 1], [K/4, 0]) or Conv1d(Cin, Cout, K, S, K/4)
    public var conv: ConvLayer
    /// `norm1`: GroupNorm(groups, Cout) when the layer index reaches `norm_starts`
    public var norm1: GroupNormLayer?
    /// `dconv`
    public var dconv: DConv?
    /// `rewrite`: Conv(Cout, 2·Cout, 1 + 2·context)
    public var rewrite: ConvLayer?
    /// `norm2`: GroupNorm(groups, 2·Cout)
    public var norm2: GroupNormLayer?

    struct Options {
        var kernel: Int
        var stride: Int
        var isFrequency: Bool
        var pad: Bool
        var norm: Bool
        var normGroups: Int
        var rewrite: Bool
        var context: Int
        var dconv: Bool
        var dconvCompress: Double
        var dconvDepth: Int
        var dconvLSTM = false
        var dconvAttention = false
        var empty: Bool
    }

    static func load(_ r: inout StateReader, _ prefix: String, cin: Int, cout: Int, _ o: Options) throws -> HEncLayer {
        let pad = o.pad ? o.kernel / 4 : 0
        let conv: ConvLayer = o.isFrequency
            ? try .load(&r, "\(prefix).conv", cin: cin, cout: cout, kernel: (o.kernel, 1), stride: (o.stride, 1), padding: (pad, 0), oneD: false)
            : try .load(&r, "\(prefix).conv", cin: cin, cout: cout, kernel: (1, o.kernel), stride: (1, o.stride), padding: (0, pad), oneD: true)
        var layer = HEncLayer(isFrequency: o.isFrequency, stride: o.stride, isEmpty: o.empty, conv: conv)
        if o.empty { return layer }
        if o.norm { layer.norm1 = try .load(&r, "\(prefix).norm1", groups: o.normGroups, channels: cout) }
        if o.rewrite {
            let k = 1 + 2 * o.context
            layer.rewrite = o.isFrequency
                ? try .load(&r, "\(prefix).rewrite", cin: cout, cout: 2 * cout, kernel: (k, k), padding: (o.context, o.context), oneD: false)
                : try .load(&r, "\(prefix).rewrite", cin: cout, cout: 2 * cout, kernel: (1, k), padding: (0, o.context), oneD: true)
            if o.norm { layer.norm2 = try .load(&r, "\(prefix).norm2", groups: o.normGroups, channels: 2 * cout) }
        }
        // Taken after the rewrite: the reference registers `dconv` last, and DiffQ states follow
        // registration order.
        if o.dconv { layer.dconv = try .load(&r, "\(prefix).dconv", channels: cout, compress: o.dconvCompress, depth: o.dconvDepth,
                                        lstm: o.dconvLSTM, attention: o.dconvAttention) }
        return layer
    }

    init(isFrequency: Bool, stride: Int, isEmpty: Bool, conv: ConvLayer) {
        self.isFrequency = isFrequency
        self.stride = stride
        self.isEmpty = isEmpty
        self.conv = conv
    }

    /// `[Cin, F, T] → [Cout, F', T']`; a time layer takes `[C, 1, L]`.
    ///
    /// - Parameter inject: the time branch's output `[Cout, 1, T']`, added before the norm when
    ///   both branches reach the same stride.
    public func callAsFunction(_ x: Tensor, inject: Tensor? = nil) -> Tensor {
        var x = x
        if !isFrequency {
            // Frequencies folded into channels; time padded to a multiple of the stride.
            let t = x.shape[2]
            x = x.reshaped([x.count / t, 1, t])
            if t % stride != 0 { x = x.slicingLast(0..<(t + stride - t % stride)) }
        }
        var y = conv(x)
        if isEmpty { return y }
        if let inject { y.addBroadcastingMiddle(inject) }
        norm1?(&y)
        gelu(&y)
        if let dconv { y = dconv(consume y) }
        guard let rewrite else { return y }
        if norm2 == nil { return rewrite.gated(consume y) }
        var z = rewrite(consume y)
        norm2?(&z)
        return glu(z)
    }
}
