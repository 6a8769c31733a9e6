/// A convolution layer with its weights: `nn.Conv1d`, `nn.Conv2d` or their transposed forms.
///
/// 1-D layers run as 2-D ones over `[C, 1, L]` with a `1×K` kernel, so the whole engine has one
/// convolution path.
public struct ConvLayer: Sendable {
    /// `[Cout, Cin, KH, KW]`, or `[Cin, Cout, KH, KW]` when transposed; widened from
    /// ``CompactWeight`` for each call.
    public var weight: Tensor {
        get { stored.tensor }
        set { stored = CompactWeight(newValue) }
    }
    public var bias: Tensor?
    public var geometry: ConvGeometry
    public var isTransposed: Bool
    private var stored: CompactWeight

    public init(weight: Tensor, bias: Tensor?, geometry: ConvGeometry, isTransposed: Bool) {
        self.init(stored: CompactWeight(weight), bias: bias, geometry: geometry, isTransposed: isTransposed)
    }

    init(stored: CompactWeight, bias: Tensor?, geometry: ConvGeometry, isTransposed: Bool) {
        self.stored = stored
        self.bias = bias
        self.geometry = geometry
        self.isTransposed = isTransposed
    }

    /// Loads `prefix.weight` / `prefix.bias`.
    ///
    /// - Parameters:
    ///   - kernel: `(KH, KW)`; a 1-D layer passes `(1, K)` and sets `oneD`.
    ///   - oneD: the state holds `[Cout, Cin, K]` (Conv1d) instead of 4-D.
    static func load(
        _ r: inout StateReader, _ prefix: String, cin: Int, cout: Int, kernel: (Int, Int),
        stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
        transposed: Bool = false, oneD: Bool
    ) throws -> ConvLayer {
        let (a, b) = transposed ? (cin, cout) : (cout, cin)
        let stored = oneD ? [a, b, kernel.1] : [a, b, kernel.0, kernel.1]
        let w = try r.takeCompact("\(prefix).weight", stored)
        let bias = try r.take("\(prefix).bias", [cout])
        return ConvLayer(
            stored: w.reshaped([a, b, kernel.0, kernel.1]), bias: bias,
            geometry: ConvGeometry(kernel: kernel, stride: stride, padding: padding, dilation: dilation),
            isTransposed: transposed)
    }

    /// `[Cin, H, W] → [Cout, Ho, Wo]`.
    /// `glu(self(x))` over channels, without the doubled tensor (``conv2dGLU(_:weight:bias:geometry:)``).
    func gated(_ x: consuming Tensor) -> Tensor {
        precondition(!isTransposed, "a gated transposed convolution")
        return conv2dGLU(consume x, weight: weight, bias: bias, geometry: geometry)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        callAsFunction(x, maxWidenedBytes: Self.maxWidenedBytes)
    }

    /// A compact weight widens to Float32 for each call. Above this many bytes widened it does
    /// so a group of output channels at a time, each group's outputs computed on their own:
    /// the deepest layers of a waveform mdx network widened 67 and 100 MB while every skip of
    /// the 44 s chunk was alive, and made its peak.
    public static let maxWidenedBytes = 32 << 20

    /// `self(x)`, widening at most `maxWidenedBytes` of weight at a time (at least 512 output
    /// channels, so a group's product still splits into row blocks for the lane's threads).
    public func callAsFunction(_ x: Tensor, maxWidenedBytes: Int) -> Tensor {
        let axis = isTransposed ? 1 : 0
        let outputs = stored.shape[axis]
        // Only compact weights widen (at least `CompactWeight.minimumCompactCount` values).
        let bytesPerOutput = stored.isCompact && outputs > 0 ? stored.shape.reduce(1, *) / outputs * MemoryLayout<Float>.size : 0
        let group = bytesPerOutput > 0 ? max(512, maxWidenedBytes / bytesPerOutput / 512 * 512) : outputs
        guard group < outputs else {
            return isTransposed
                ? convTranspose2d(x, weight: weight, bias: bias, stride: geometry.stride)
                : conv2d(x, weight: weight, bias: bias, geometry: geometry)
        }
        var out: Tensor?
        for lo in Swift.stride(from: 0, to: outputs, by: group) {
            let part = lo..<min(outputs, lo + group)
            let w = stored.widened(outputs: part, axis: axis)
            let b = bias.map { Tensor(shape: [part.count], data: Array($0.data[part])) }
            let y = isTransposed
                ? convTranspose2d(x, weight: w, bias: b, stride: geometry.stride)
                : conv2d(x, weight: w, bias: b, geometry: geometry)
            let plane = y.count / part.count
            if out == nil { out = Tensor(uninitialized: [outputs] + y.shape.dropFirst()) }
            out!.data.withUnsafeMutableBufferPointer { op in
                y.data.withUnsafeBufferPointer { (op.baseAddress! + lo * plane).update(from: $0.baseAddress!, count: y.count) }
            }
        }
        return out!
    }
}

/// `nn.GroupNorm` weights.
public struct GroupNormLayer: Sendable {
    public var groups: Int
    public var weight: Tensor
    public var bias: Tensor

    static func load(_ r: inout StateReader, _ prefix: String, groups: Int, channels: Int) throws -> GroupNormLayer {
        GroupNormLayer(groups: groups, weight: try r.take("\(prefix).weight", [channels]), bias: try r.take("\(prefix).bias", [channels]))
    }

    func callAsFunction(_ x: inout Tensor, perRow: Bool = false) {
        groupNorm(&x, groups: groups, weight: weight, bias: bias, perRow: perRow)
    }
}

/// `nn.LayerNorm` weights.
public struct LayerNormLayer: Sendable {
    public var weight: Tensor
    public var bias: Tensor

    static func load(_ r: inout StateReader, _ prefix: String, channels: Int) throws -> LayerNormLayer {
        LayerNormLayer(weight: try r.take("\(prefix).weight", [channels]), bias: try r.take("\(prefix).bias", [channels]))
    }

    func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias) }
}

/// `nn.Linear` weights.
public struct LinearLayer: Sendable {
    public var weight: Tensor
    public var bias: Tensor

    public init(weight: Tensor, bias: Tensor) {
        self.weight = weight
        self.bias = bias
    }

    static func load(_ r: inout StateReader, _ prefix: String, inFeatures: Int, outFeatures: Int) throws -> LinearLayer {
        LinearLayer(weight: try r.take("\(prefix).weight", [outFeatures, inFeatures]), bias: try r.take("\(prefix).bias", [outFeatures]))
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }
}
