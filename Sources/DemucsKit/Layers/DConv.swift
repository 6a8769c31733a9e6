/// The residual branch of every encoder and decoder layer (`demucs/demucs.py`, `DConv`).
///
/// Each of `depth` layers: dilated conv (kernel 3, dilation 2^d) to `C/compress` channels →
/// GroupNorm(1) → GELU → 1×1 conv to `2C` → GroupNorm(1) → GLU → LayerScale, added to the input.
/// On a frequency layer the reference folds frequencies into the batch (`[B·F, C, T]`), so the
/// convolutions run along time only and each GroupNorm normalises each frequency row on its own.
public struct DConv: Sendable {
    public struct Layer: Sendable {
        /// `layers.{d}.0`: Conv1d(C, C/compress, 3, dilation 2^d, padding 2^d)
        public var conv: ConvLayer
        /// `layers.{d}.1`: GroupNorm(1, C/compress)
        public var norm1: GroupNormLayer
        /// `layers.{d}.3`: Conv1d(C/compress, 2C, 1)
        public var pointwise: ConvLayer
        /// `layers.{d}.4`: GroupNorm(1, 2C)
        public var norm2: GroupNormLayer
        /// `layers.{d}.6.scale [C]`: LayerScale
        public var scale: Tensor
    }

    public var layers: [Layer]

    static func load(_ r: inout StateReader, _ prefix: String, channels: Int, compress: Double, depth: Int) throws -> DConv {
        let hidden = Int(Double(channels) / compress)
        var layers: [Layer] = []
        for d in 0..<depth {
            let dilation = 1 << d
            let p = "\(prefix).layers.\(d)"
            layers.append(Layer(
                conv: try .load(&r, "\(p).0", cin: channels, cout: hidden, kernel: (1, 3), padding: (0, dilation), dilation: (1, dilation), oneD: true),
                norm1: try .load(&r, "\(p).1", groups: 1, channels: hidden),
                pointwise: try .load(&r, "\(p).3", cin: hidden, cout: 2 * channels, kernel: (1, 1), oneD: true),
                norm2: try .load(&r, "\(p).4", groups: 1, channels: 2 * channels),
                scale: try r.take("\(p).6.scale", [channels])))
        }
        return DConv(layers: layers)
    }

    /// `[C, F, T] → [C, F, T]`; `F` is 1 on the time branch.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var x = x
        for layer in layers {
            var y = layer.conv(x)
            layer.norm1(&y, perRow: true)
            gelu(&y)
            y = layer.pointwise(y)
            layer.norm2(&y, perRow: true)
            y = glu(y)
            scaleChannels(&y, layer.scale)
            add(&x, y)
        }
        return x
    }
}
