import Synchronization

/// Hands out a state dict's tensors by key, checking each shape, and reports leftovers.
///
/// Every model family loads through one of these, so a missing, misshapen or unexpected tensor
/// is always reported by its state-dict key. Loaders take tensors in the reference's module
/// registration order, which a recording reader turns into the parameter list DiffQ states need.
struct StateReader {
    private var state: [String: CompactWeight]
    private let recorder: ParameterRecorder?

    init(_ package: ModelPackage) {
        state = package.state
        recorder = package.recorder
    }

    init(state: [String: Tensor]) {
        self.state = state.mapValues { CompactWeight(full: $0) }
        recorder = nil
    }

    /// Takes `key`, which must have exactly `shape`.
    mutating func take(_ key: String, _ shape: [Int]) throws -> Tensor {
        try takeCompact(key, shape).tensor
    }

    /// Takes `key` as it is stored, for weights kept at the checkpoint's precision (``ConvLayer``).
    mutating func takeCompact(_ key: String, _ shape: [Int]) throws -> CompactWeight {
        if let recorder {
            recorder.record(key, shape)
            return CompactWeight(full: Tensor(zeros: shape))
        }
        guard let t = state.removeValue(forKey: key) else { throw CheckpointError.missingTensor(key: key) }
        guard t.shape == shape else { throw CheckpointError.shapeMismatch(key: key, expected: shape, found: t.shape) }
        return t
    }

    /// Throws for the first (sorted) key nobody took.
    func finish() throws {
        if recorder != nil { return }
        if let key = state.keys.sorted().first { throw CheckpointError.unexpectedTensor(key: key) }
    }
}

/// The parameters a loader takes, in order.
final class ParameterRecorder: Sendable {
    private let entries = Mutex<[(key: String, shape: [Int])]>([])
    func record(_ key: String, _ shape: [Int]) { entries.withLock { $0.append((key, shape)) } }
    var recorded: [(key: String, shape: [Int])] { entries.withLock { $0 } }
}

extension ModelPackage {
    /// The model's parameters (name and shape) in the order its loader takes them, which is
    /// the reference's state-dict and `named_modules()` order.
    public func parameterOrder() throws -> [(key: String, shape: [Int])] {
        var probe = self
        probe.quantized = nil
        probe.state = [:]
        let recorder = ParameterRecorder()
        probe.recorder = recorder
        _ = try loadModel(probe)
        return recorder.recorded
    }

    /// The package with its DiffQ state turned into a plain state dict (a no-op otherwise).
    public func dequantized() throws -> ModelPackage {
        guard let q = quantized else { return self }
        let order = try parameterOrder()
        var plain = self
        plain.state = try q.dequantized(order: order)
        plain.stateOrder = order.map(\.key)
        plain.quantized = nil
        return plain
    }
}
