import Foundation

extension SCNet {
    /// The `model:` keys of `msst.models.scnet.SCNet` (the official implementation's names).
    static let knownKeys: Set<String> = [
        "sources", "audio_channels", "dims", "nfft", "hop_size", "win_size", "normalized", "band_SR",
        "band_stride", "band_kernel", "conv_depths", "compress", "conv_kernel", "num_dplayer", "expand",
    ]

    /// Builds the network from its configuration and state dict (keys as `state_dict()` names them).
    public init(config: TrainingConfig, state: [String: Tensor]) throws {
        let kw = config.model
        if let unknown = kw.keys.sorted().first(where: { !Self.knownKeys.contains($0) }) {
            throw CheckpointError.unknownKwarg(key: unknown, klass: "scnet")
        }
        func int(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int { try kw.int(key, fallback, range) }
        func ints(_ key: String, _ fallback: [Int], count: ClosedRange<Int>, _ range: ClosedRange<Int>) throws -> [Int] {
            guard let v = kw[key] else { return fallback }
            guard case let .list(items) = v, count.contains(items.count) else { throw CheckpointError.unsupportedKwarg(key: key, value: "\(v)") }
            return try items.map { item in
                guard let i = item.int(in: range) else { throw CheckpointError.unsupportedKwarg(key: key, value: "\(v)") }
                return i
            }
        }
        let sources: [String]
        switch kw["sources"] {
        case nil: sources = ["drums", "bass", "other", "vocals"]
        case let .list(items)?:
            sources = try items.map { v in
                guard case let .string(s) = v else { throw CheckpointError.unsupportedKwarg(key: "sources", value: "\(v)") }
                return s
            }
        case let v?: throw CheckpointError.unsupportedKwarg(key: "sources", value: "\(v)")
        }
        guard (1...64).contains(sources.count) else { throw CheckpointError.unsupportedKwarg(key: "sources", value: "\(sources)") }
        let channels = try int("audio_channels", 2, 2...2)
        let dims = try ints("dims", [4, 32, 64, 128], count: 2...8, 1...4096)
        guard dims[0] == 2 * channels else {
            throw CheckpointError.unsupportedKwarg(key: "dims", value: "\(dims) (the first must be 2 × audio_channels)")
        }
        let (nfft, hop) = try kw.stft(size: "nfft", 4096, hop: "hop_size", 1024, window: "win_size")
        let normalized = try kw.bool("normalized", true)
        let shares: [Double]
        switch kw["band_SR"] {
        case nil: shares = [0.175, 0.392, 0.433]
        case let .list(items)? where items.count == 3:
            shares = try items.map { v in
                guard let d = v.number, d > 0, d <= 1 else { throw CheckpointError.unsupportedKwarg(key: "band_SR", value: "\(v)") }
                return d
            }
        case let v?: throw CheckpointError.unsupportedKwarg(key: "band_SR", value: "\(v)")
        }
        let strides = try ints("band_stride", [1, 4, 16], count: 3...3, 1...64)
        let kernels = try ints("band_kernel", [3, 4, 16], count: 3...3, 1...64)
        for b in 0..<3 where strides[b] == 1 && kernels[b] % 2 == 0 {
            throw CheckpointError.unsupportedKwarg(key: "band_kernel", value: "\(kernels) (a stride-1 band needs an odd kernel)")
        }
        let depths = try ints("conv_depths", [3, 2, 1], count: 3...3, 0...16)
        let compress = try int("compress", 4, 1...1024)
        let convKernel = try int("conv_kernel", 3, 1...31)
        guard convKernel % 2 == 1 else { throw CheckpointError.unsupportedKwarg(key: "conv_kernel", value: "\(convKernel) (must be odd)") }
        let layers = try int("num_dplayer", 6, 0...32)
        guard layers % 2 == 0 else {
            throw CheckpointError.unsupportedKwarg(key: "num_dplayer", value: "\(layers) (an odd count leaves the time axis in the frequency domain)")
        }
        let expand = try int("expand", 1, 1...16)
        guard sources.count == config.instruments.count else {
            throw CheckpointError.invalidConfig(path: "config", reason: "model.sources \(sources) and training.instruments \(config.instruments) differ in length")
        }

        var r = StateReader(state: state)
        func pair(_ key: String, _ shape: [Int], bias: Int) throws -> (weight: Tensor, bias: Tensor) {
            (try r.take("\(key).weight", shape), try r.take("\(key).bias", [bias]))
        }
        var encoders: [Encoder] = []
        for i in 0..<(dims.count - 1) {
            let (cin, cout) = (dims[i], dims[i + 1])
            let p = "encoder.\(i)"
            let bandConvs = try (0..<3).map { b in try pair("\(p).SDlayer.convs.\(b)", [cout, cin, kernels[b], 1], bias: cout) }
            let hidden = Int(Double(cout) / Double(compress))
            guard hidden >= 1 else { throw CheckpointError.unsupportedKwarg(key: "compress", value: "\(compress) (leaves no channels of \(cout))") }
            let modules = try (0..<3).map { b in
                try (0..<depths[b]).map { d -> ConvolutionLayer in
                    let q = "\(p).conv_modules.\(b).layers.\(d)"
                    let expandConv = try pair("\(q).1", [2 * hidden, cout, convKernel], bias: 2 * hidden)
                    let depthwise = try pair("\(q).3", [hidden, 1, convKernel], bias: hidden)
                    let project = try pair("\(q).6", [cout, hidden, 1], bias: cout)
                    return ConvolutionLayer(
                        norm1: try pair("\(q).0", [cout], bias: cout),
                        expand: (expandConv.weight.reshaped([2 * hidden, cout, 1, convKernel]), expandConv.bias),
                        depthwise: (depthwise.weight.reshaped([hidden, convKernel]), depthwise.bias),
                        norm2: try pair("\(q).4", [hidden], bias: hidden),
                        project: (project.weight.reshaped([cout, hidden, 1, 1]), project.bias))
                }
            }
            encoders.append(Encoder(bandConvs: bandConvs, bandModules: modules, global: try pair("\(p).globalconv", [cout, cout, 3, 3], bias: cout)))
        }
        var dualPaths: [DualPath] = []
        for i in 0..<layers {
            let c = dims[dims.count - 1] * (i % 2 == 1 ? 2 : 1)
            let h = c * expand
            let p = "separation_net.dp_modules.\(i)"
            var lstms: [BidirectionalLSTM] = []
            var linears: [(weight: Tensor, bias: Tensor)] = []
            var norms: [(weight: Tensor, bias: Tensor)] = []
            for path in 0..<2 {
                let q = "\(p).lstm_layers.\(path)"
                lstms.append(BidirectionalLSTM(layers: [
                    (try LSTMDirection.load(&r, q, layer: 0, suffix: "", input: c, hidden: h),
                     try LSTMDirection.load(&r, q, layer: 0, suffix: "_reverse", input: c, hidden: h))]))
                linears.append(try pair("\(p).linear_layers.\(path)", [c, 2 * h], bias: c))
                norms.append(try pair("\(p).norm_layers.\(path)", [c], bias: c))
            }
            dualPaths.append(DualPath(norms: norms, lstms: lstms, linears: linears))
        }
        var decoders: [Decoder] = []
        for j in 0..<(dims.count - 1) {
            let index = dims.count - 2 - j
            let cin = dims[index + 1]
            let cout = index == 0 ? dims[0] * sources.count : dims[index]
            let p = "decoder.\(j)"
            decoders.append(Decoder(
                fusion: try foldRepeatedInput(pair("\(p).0.conv", [2 * cin, 2 * cin, 3, 3], bias: 2 * cin)),
                bandConvs: try (0..<3).map { b in try pair("\(p).1.convtrs.\(b)", [cin, cout, kernels[b], 1], bias: cout) }))
        }
        try r.finish()

        audioChannels = channels
        stems = sources.count
        stft = CenteredSTFT(nfft: nfft, hop: hop, normalized: normalized, hann: false)
        bands = (0..<3).map { Band(share: shares[$0], stride: strides[$0], kernel: kernels[$0]) }
        self.convKernel = convKernel
        self.encoders = encoders
        self.decoders = decoders
        self.dualPaths = dualPaths
    }
}

/// The fusion layer convolves `x.repeat(1, 2, 1, 1)`: both input halves see the same `x`, so
/// `W[:, :C] + W[:, C:]` on `x` is the same convolution at half the work (a seventh of SCNet
/// large's arithmetic is these 3×3 convolutions).
private func foldRepeatedInput(_ conv: (weight: Tensor, bias: Tensor)) -> (weight: Tensor, bias: Tensor) {
    let (cout, cin2, kh, kw) = (conv.weight.shape[0], conv.weight.shape[1], conv.weight.shape[2], conv.weight.shape[3])
    let c = cin2 / 2, k = kh * kw
    var folded = Tensor(uninitialized: [cout, c, kh, kw])
    for o in 0..<cout {
        for i in 0..<c {
            for j in 0..<k {
                folded.data[(o * c + i) * k + j] = conv.weight.data[(o * cin2 + i) * k + j] + conv.weight.data[(o * cin2 + c + i) * k + j]
            }
        }
    }
    return (folded, conv.bias)
}
