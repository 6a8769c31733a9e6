/// Hands out a state dict's tensors by key, checking each shape, and reports leftovers.
///
/// Every model family loads through one of these, so a missing, misshapen or unexpected tensor
/// is always reported by its state-dict key.
struct StateReader {
    private var state: [String: Tensor]

    init(_ state: [String: Tensor]) { self.state = state }

    /// Takes `key`, which must have exactly `shape`.
    mutating func take(_ key: String, _ shape: [Int]) throws -> Tensor {
        guard let t = state.removeValue(forKey: key) else { throw CheckpointError.missingTensor(key: key) }
        guard t.shape == shape else { throw CheckpointError.shapeMismatch(key: key, expected: shape, found: t.shape) }
        return t
    }

    /// Throws for the first (sorted) key nobody took.
    func finish() throws {
        if let key = state.keys.sorted().first { throw CheckpointError.unexpectedTensor(key: key) }
    }
}
