import Foundation

/// A constructor argument of a model class, as stored in a checkpoint.
public enum KwargValue: Sendable, Equatable, CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case fraction(Int, Int)
    case list([KwargValue])
    case dict([String: KwargValue])

    public var description: String {
        switch self {
        case .none: "None"
        case let .bool(b): b ? "True" : "False"
        case let .int(i): "\(i)"
        case let .double(d): "\(d)"
        case let .string(s): "'\(s)'"
        case let .fraction(n, d): "\(n)/\(d)"
        case let .list(l): "[" + l.map(\.description).joined(separator: ", ") + "]"
        case let .dict(d): "{" + d.keys.sorted().map { "\($0): \(d[$0]!)" }.joined(separator: ", ") + "}"
        }
    }

    /// The value as a number (ints, floats, fractions, bools).
    public var number: Double? {
        switch self {
        case let .int(i): Double(i)
        case let .double(d): d
        case let .fraction(n, d): Double(n) / Double(d)
        case let .bool(b): b ? 1 : 0
        default: nil
        }
    }
}

/// A serialized model: class, constructor arguments and state, whichever file format it came from.
///
/// Mirrors the dict `demucs.states.serialize_model` writes (`klass`, `args`, `kwargs`, `state`)
/// and the safetensors metadata demucs 4.1.0 reads (`klass`, `args`, `kwargs` as JSON).
public struct ModelPackage: Sendable {
    /// Qualified class name, e.g. `demucs.htdemucs.HTDemucs`.
    public var klass: String
    /// Keyword arguments of the constructor.
    public var kwargs: [String: KwargValue]
    /// The state dict; large Float16 tensors stay Float16 (``CompactWeight``).
    public var state: [String: CompactWeight]
    /// State keys in the order the file lists them.
    public var stateOrder: [String]
    /// A DiffQ-quantized state instead of `state`; ``loadModel(_:)`` dequantizes it.
    public var quantized: DiffQState?
    /// Set while a loader lists the parameters it takes (see ``parameterOrder()``).
    var recorder: ParameterRecorder?

    public init(klass: String, kwargs: [String: KwargValue], state: [String: CompactWeight], stateOrder: [String],
                quantized: DiffQState? = nil) {
        self.klass = klass
        self.kwargs = kwargs
        self.state = state
        self.stateOrder = stateOrder
        self.quantized = quantized
    }

    /// Reads a `.th` (torch zip + pickle) or `.safetensors` checkpoint.
    ///
    /// - Throws: ``CheckpointError`` naming the entry, global, key or tensor at fault.
    public static func load(contentsOf url: URL) throws -> ModelPackage {
        let bytes = try readCheckpointFile(url)
        do {
            return try load(bytes: bytes)
        } catch CheckpointError.unknownFormat {
            throw CheckpointError.unknownFormat(path: url.path)
        }
    }

    /// Reads checkpoint bytes in either format (the fuzz target's entry point).
    public static func load(bytes: [UInt8]) throws -> ModelPackage {
        if bytes.count >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B {
            return try loadTorch(bytes)
        }
        if bytes.count >= 9 && bytes[8] == UInt8(ascii: "{") {
            return try SafeTensors.loadPackage(bytes)
        }
        throw CheckpointError.unknownFormat(path: "")
    }

    static func loadTorch(_ bytes: [UInt8]) throws -> ModelPackage {
        let zip = try TorchZip(bytes: bytes)
        guard let pkl = zip.entries.keys.filter({ $0.hasSuffix("data.pkl") }).min() else {
            throw CheckpointError.missingEntry("data.pkl")
        }
        let dir = String(pkl.dropLast("data.pkl".count))
        var unpickler = Unpickler(try zip.data(pkl))
        let root = try unpickler.load()
        guard case let .dict(package) = root else { throw CheckpointError.malformedPackage("top level is not a dict") }
        guard case let .global(module, name)? = package["klass"] else { throw CheckpointError.malformedPackage("no 'klass'") }
        guard case let .dict(kw)? = package["kwargs"] else { throw CheckpointError.malformedPackage("no 'kwargs' dict") }
        if case let .tuple(args)? = package["args"], !args.isEmpty {
            throw CheckpointError.malformedPackage("positional constructor arguments are not supported")
        }
        var kwargs: [String: KwargValue] = [:]
        for (k, v) in kw.items { kwargs[k] = try kwarg(v, key: k) }
        guard case let .dict(stateDict)? = package["state"] else { throw CheckpointError.malformedPackage("no 'state' dict") }
        if stateDict["__quantized"] != nil {
            let tree = try node(.dict(stateDict), zip: zip, dir: dir)
            return ModelPackage(klass: "\(module).\(name)", kwargs: kwargs, state: [:], stateOrder: [], quantized: try DiffQState(tree))
        }
        var state: [String: CompactWeight] = [:]
        var order: [String] = []
        for (key, value) in stateDict.items {
            guard case let .tensor(ref) = value else { throw CheckpointError.malformedPackage("state entry '\(key)' is not a tensor") }
            state[key] = try materialize(ref, key: key, zip: zip, dir: dir)
            order.append(key)
        }
        return ModelPackage(klass: "\(module).\(name)", kwargs: kwargs, state: state, stateOrder: order)
    }

    /// The whole file in one buffer. Not `[UInt8](Data(contentsOf:))`: that holds the file twice,
    /// 1.8 GB at the peak of loading a 900 MB RoFormer checkpoint.
    static func readCheckpointFile(_ url: URL) throws -> [UInt8] {
        guard let file = fopen(url.path, "rb") else {
            throw CheckpointError.unreadable(path: url.path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        guard fseeko(file, 0, SEEK_END) == 0 else { throw CheckpointError.unreadable(path: url.path, reason: "cannot seek") }
        let size = Int(ftello(file))
        guard size >= 0, fseeko(file, 0, SEEK_SET) == 0 else { throw CheckpointError.unreadable(path: url.path, reason: "cannot seek") }
        var read = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            read = size == 0 ? 0 : fread(buffer.baseAddress!, 1, size, file)
            count = read
        }
        guard read == size else { throw CheckpointError.unreadable(path: url.path, reason: "short read") }
        return bytes
    }

    /// The tensors of a PyTorch state dict saved with `torch.save` (`.ckpt`, `.pth`), as the
    /// Music-Source-Separation-Training checkpoints are: the root dict, or the dict under
    /// `state_dict`, `state` or `model` (Lightning and training-loop checkpoints); a `module.`
    /// prefix (DataParallel) is removed from every key.
    public static func loadStateDict(bytes: [UInt8]) throws -> [String: Tensor] {
        guard bytes.count >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B else { throw CheckpointError.unknownFormat(path: "") }
        let zip = try TorchZip(bytes: bytes)
        guard let pkl = zip.entries.keys.filter({ $0.hasSuffix("data.pkl") }).min() else {
            throw CheckpointError.missingEntry("data.pkl")
        }
        let dir = String(pkl.dropLast("data.pkl".count))
        var unpickler = Unpickler(try zip.data(pkl))
        guard case var .dict(dict) = try unpickler.load() else { throw CheckpointError.malformedPackage("top level is not a dict") }
        for nested in ["state_dict", "state", "model"] {
            if case let .dict(inner)? = dict[nested] { dict = inner; break }
        }
        var state: [String: Tensor] = [:]
        for (key, value) in dict.items {
            guard case let .tensor(ref) = value else { throw CheckpointError.malformedPackage("state entry '\(key)' is not a tensor") }
            let name = key.hasPrefix("module.") ? String(key.dropFirst("module.".count)) : key
            guard state[name] == nil else { throw CheckpointError.malformedPackage("state has '\(name)' twice") }
            state[name] = try materialize(ref, key: key, zip: zip, dir: dir).tensor
        }
        guard !state.isEmpty else { throw CheckpointError.malformedPackage("the state dict holds no tensors") }
        return state
    }

    private static func kwarg(_ v: PickleValue, key: String) throws -> KwargValue {
        switch v {
        case .none: return .none
        case let .bool(b): return .bool(b)
        case let .int(i): return .int(i)
        case let .float(d): return .double(d)
        case let .string(s): return .string(s)
        case let .fraction(n, d): return .fraction(n, d)
        case let .tuple(t): return .list(try t.map { try kwarg($0, key: key) })
        case let .list(l): return .list(try l.items.map { try kwarg($0, key: key) })
        case let .dict(d):
            var out: [String: KwargValue] = [:]
            for (k, item) in d.items { out[k] = try kwarg(item, key: "\(key).\(k)") }
            return .dict(out)
        default: throw CheckpointError.malformedPackage("kwarg '\(key)' has an unsupported value \(v)")
        }
    }

    /// A pickle subtree as a ``StateNode``, tensors read raw (DiffQ states mix int64 and float).
    private static func node(_ v: PickleValue, zip: TorchZip, dir: String) throws -> StateNode {
        switch v {
        case .none: return .none
        case let .bool(b): return .bool(b)
        case let .int(i): return .number(Double(i))
        case let .float(d): return .number(d)
        case let .string(s): return .string(s)
        case let .global(m, n): return .string("\(m).\(n)")
        case let .tuple(t): return .list(try t.map { try node($0, zip: zip, dir: dir) })
        case let .list(l): return .list(try l.items.map { try node($0, zip: zip, dir: dir) })
        case let .dict(d):
            var out: [String: StateNode] = [:]
            for (k, item) in d.items { out[k] = try node(item, zip: zip, dir: dir) }
            return .dict(out)
        case let .tensor(ref):
            let (dtype, size): (RawTensor.DType, Int) = switch ref.dtype {
            case "HalfStorage": (.float16, 2)
            case "BFloat16Storage": (.bfloat16, 2)
            case "FloatStorage": (.float32, 4)
            case "LongStorage": (.int64, 8)
            default: throw CheckpointError.unsupportedDType(key: "DiffQ state", dtype: ref.dtype)
            }
            let count = ref.shape.reduce(1, *)
            var contiguous = [Int](repeating: 1, count: ref.shape.count)
            for d in stride(from: ref.shape.count - 2, through: 0, by: -1) { contiguous[d] = contiguous[d + 1] * ref.shape[d + 1] }
            guard ref.strides == contiguous || count <= 1 else { throw CheckpointError.malformedPackage("DiffQ state holds a strided tensor") }
            let raw = try zip.data("\(dir)data/\(ref.storageKey)")
            let start = raw.startIndex + ref.offset * size
            guard ref.offset >= 0, start + count * size <= raw.endIndex else {
                throw CheckpointError.corruptArchive("storage \(ref.storageKey) is shorter than its tensor \(ref.shape)")
            }
            return .tensor(RawTensor(dtype: dtype, shape: ref.shape, bytes: Array(raw[start..<(start + count * size)])))
        default:
            throw CheckpointError.malformedPackage("DiffQ state holds an unexpected value \(v)")
        }
    }

    private static func materialize(_ ref: TensorReference, key: String, zip: TorchZip, dir: String) throws -> CompactWeight {
        let raw = try zip.data("\(dir)data/\(ref.storageKey)")
        let elementSize: Int
        let convert: (ArraySlice<UInt8>, Int) -> Float
        switch ref.dtype {
        case "HalfStorage":
            elementSize = 2
            convert = { b, i in Float(Float16(bitPattern: UInt16(b[b.startIndex + i]) | UInt16(b[b.startIndex + i + 1]) << 8)) }
        case "BFloat16Storage":
            elementSize = 2
            convert = { b, i in Float(bitPattern: (UInt32(b[b.startIndex + i]) | UInt32(b[b.startIndex + i + 1]) << 8) << 16) }
        case "FloatStorage":
            elementSize = 4
            convert = { b, i in
                let s = b.startIndex + i
                return Float(bitPattern: UInt32(b[s]) | UInt32(b[s + 1]) << 8 | UInt32(b[s + 2]) << 16 | UInt32(b[s + 3]) << 24)
            }
        default:
            throw CheckpointError.unsupportedDType(key: key, dtype: ref.dtype)
        }
        let count = ref.shape.reduce(1, *)
        var out = Tensor(zeros: ref.shape)
        // Contiguous tensors (all of a saved state dict in practice): one linear conversion.
        var contiguous = [Int](repeating: 1, count: ref.shape.count)
        for d in stride(from: ref.shape.count - 2, through: 0, by: -1) { contiguous[d] = contiguous[d + 1] * ref.shape[d + 1] }
        if ref.strides == contiguous || count <= 1 {
            let start = ref.offset * elementSize
            guard start + count * elementSize <= raw.count else {
                throw CheckpointError.corruptArchive("storage of '\(key)' is shorter than its shape \(ref.shape)")
            }
            if ref.dtype == "HalfStorage" {
                return raw.withUnsafeBytes { CompactWeight(float16Bits: UnsafeRawBufferPointer(rebasing: $0[start..<(start + count * 2)]), shape: ref.shape) }
            }
            raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
                out.data.withUnsafeMutableBufferPointer { o in
                    for i in 0..<count {
                        let at = start + i * elementSize
                        switch elementSize {
                        case 4: o[i] = Float(bitPattern: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
                        default:
                            let bits = p.loadUnaligned(fromByteOffset: at, as: UInt16.self)
                            o[i] = ref.dtype == "BFloat16Storage" ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
                        }
                    }
                }
            }
            return CompactWeight(full: out)
        }
        // Element index -> storage index through the strides (tensors are usually contiguous).
        var index = [Int](repeating: 0, count: ref.shape.count)
        for e in 0..<count {
            var s = ref.offset
            for (d, i) in index.enumerated() { s += i * ref.strides[d] }
            guard (s + 1) * elementSize <= raw.count else {
                throw CheckpointError.corruptArchive("storage of '\(key)' is shorter than its shape \(ref.shape)")
            }
            out.data[e] = convert(raw, s * elementSize)
            var d = ref.shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < ref.shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return CompactWeight(full: out)
    }
}
