/// Why a checkpoint could not be loaded. Every case names the file part, key or tensor at fault.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read at all.
    case unreadable(path: String, reason: String)
    /// The file is neither a torch zip archive nor a safetensors file.
    case unknownFormat(path: String)
    /// The zip archive is cut short or its directory is inconsistent.
    case corruptArchive(String)
    /// A zip entry is compressed; torch writes entries stored, so this is not a torch checkpoint.
    case compressedEntry(String)
    /// An entry the format requires is absent (`data.pkl`, a tensor storage).
    case missingEntry(String)
    /// The pickle names a global outside the short list a Demucs checkpoint uses. Nothing is run.
    case unsupportedGlobal(module: String, name: String)
    /// The pickle uses an opcode this restricted reader does not implement.
    case unsupportedOpcode(opcode: UInt8, offset: Int)
    /// The pickle is structurally invalid (stack underflow, bad memo index, wrong argument kinds).
    case malformedPickle(String)
    /// The safetensors header is invalid.
    case malformedSafetensors(String)
    /// A tensor has an element type the engine does not read.
    case unsupportedDType(key: String, dtype: String)
    /// The package lacks a field (`klass`, `kwargs`, `state`) or has it in the wrong form.
    case malformedPackage(String)
    /// The model class is not one this engine implements.
    case unsupportedClass(String)
    /// A constructor argument has a value this engine does not implement.
    case unsupportedKwarg(key: String, value: String)
    /// A constructor argument is unknown to the model class.
    case unknownKwarg(key: String, klass: String)
    /// The state lacks a tensor the architecture needs.
    case missingTensor(key: String)
    /// The state has a tensor the architecture does not use (a different architecture or kwargs).
    case unexpectedTensor(key: String)
    /// A tensor's shape differs from the one the kwargs imply.
    case shapeMismatch(key: String, expected: [Int], found: [Int])
    /// A model's YAML configuration is unreadable, or a value in it is out of range.
    case invalidConfig(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read checkpoint '\(path)': \(reason)"
        case let .unknownFormat(path): "'\(path)' is neither a torch zip checkpoint (.th) nor a safetensors file"
        case let .corruptArchive(why): "corrupt checkpoint archive: \(why)"
        case let .compressedEntry(name): "archive entry '\(name)' is compressed; torch checkpoints store entries uncompressed"
        case let .missingEntry(name): "checkpoint archive has no entry '\(name)'"
        case let .unsupportedGlobal(module, name):
            "checkpoint pickle refers to '\(module).\(name)', which a model checkpoint never uses; refusing to load it"
        case let .unsupportedOpcode(op, offset): "checkpoint pickle uses opcode 0x\(String(op, radix: 16)) at byte \(offset), which is not supported"
        case let .malformedPickle(why): "malformed checkpoint pickle: \(why)"
        case let .malformedSafetensors(why): "malformed safetensors file: \(why)"
        case let .unsupportedDType(key, dtype): "tensor '\(key)' has element type \(dtype); expected F16, F32 or BF16"
        case let .malformedPackage(why): "checkpoint package: \(why)"
        case let .unsupportedClass(klass): "model class '\(klass)' is not supported by this engine"
        case let .unsupportedKwarg(key, value): "model argument '\(key)' = \(value) is not supported by this engine"
        case let .unknownKwarg(key, klass): "model argument '\(key)' is unknown to \(klass)"
        case let .missingTensor(key): "checkpoint state has no tensor '\(key)'"
        case let .unexpectedTensor(key): "checkpoint state has an unexpected tensor '\(key)'"
        case let .shapeMismatch(key, expected, found): "tensor '\(key)' has shape \(found), expected \(expected)"
        case let .invalidConfig(path, reason): "model configuration '\(path)': \(reason)"
        }
    }
}

/// The number of elements of a tensor of `shape`, or nil when a dimension is negative or the
/// product is more than any checkpoint holds (2³¹), so the byte arithmetic after it cannot
/// overflow on a forged file.
func elementCount(_ shape: [Int]) -> Int? {
    // Bounded with zero dimensions counted as one, so partial products (strides) are bounded too.
    var bound = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, overflow) = bound.multipliedReportingOverflow(by: max(d, 1))
        guard !overflow, p <= 1 << 31 else { return nil }
        bound = p
    }
    return shape.contains(0) ? 0 : bound
}
