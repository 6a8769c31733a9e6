import Foundation

/// The safetensors files demucs 4.1.0 downloads from HuggingFace: an 8-byte little-endian header
/// length, a JSON header (`dtype`, `shape`, `data_offsets` per tensor, string `__metadata__`),
/// then the raw tensor bytes. Metadata `klass`, `args` and `kwargs` hold the constructor call as
/// JSON, with fractions written `{"_type": "fraction", "numerator": n, "denominator": d}`.
///
/// Reference: `demucs/hf.py`, `load_safetensors_model`.
enum SafeTensors {
    static func loadPackage(_ bytes: [UInt8]) throws -> ModelPackage {
        guard bytes.count >= 8 else { throw CheckpointError.malformedSafetensors("file too short") }
        let declared = bytes.u64(0)
        guard declared > 0, declared <= UInt64(bytes.count - 8) else {
            throw CheckpointError.malformedSafetensors("header length \(declared) exceeds the file size \(bytes.count)")
        }
        let headerLength = Int(declared)
        let header: [String: JSONValue]
        do {
            header = try JSONDecoder().decode([String: JSONValue].self, from: Data(bytes[8..<(8 + headerLength)]))
        } catch {
            throw CheckpointError.malformedSafetensors("header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        if case let .object(m)? = header["__metadata__"] {
            for (k, v) in m { if case let .string(s) = v { metadata[k] = s } }
        }
        guard let klass = metadata["klass"] else { throw CheckpointError.malformedPackage("safetensors metadata has no 'klass'") }
        if let args = metadata["args"], case let .array(a)? = try? JSONDecoder().decode(JSONValue.self, from: Data(args.utf8)), !a.isEmpty {
            throw CheckpointError.malformedPackage("positional constructor arguments are not supported")
        }
        guard let kwText = metadata["kwargs"],
              case let .object(kwJSON)? = try? JSONDecoder().decode(JSONValue.self, from: Data(kwText.utf8))
        else { throw CheckpointError.malformedPackage("safetensors metadata has no 'kwargs' object") }
        var kwargs: [String: KwargValue] = [:]
        for (k, v) in kwJSON { kwargs[k] = v.kwarg }

        let dataStart = 8 + headerLength
        var raw: [String: RawTensor] = [:]
        var entries: [(String, Int)] = []
        for (key, value) in header where key != "__metadata__" {
            guard case let .object(info) = value, case let .string(name)? = info["dtype"],
                  let shape = info["shape"]?.ints, let offsets = info["data_offsets"]?.ints, offsets.count == 2
            else { throw CheckpointError.malformedSafetensors("bad entry for tensor '\(key)'") }
            guard let count = elementCount(shape) else {
                throw CheckpointError.malformedSafetensors("tensor '\(key)' has an impossible shape \(shape)")
            }
            let (dtype, size): (RawTensor.DType, Int) = switch name {
            case "F16": (.float16, 2)
            case "BF16": (.bfloat16, 2)
            case "F32": (.float32, 4)
            case "I64": (.int64, 8)
            default: throw CheckpointError.unsupportedDType(key: key, dtype: name)
            }
            let available = bytes.count - dataStart
            guard (0...available).contains(offsets[0]), (0...available).contains(offsets[1]),
                  offsets[1] - offsets[0] == count * size
            else {
                throw CheckpointError.malformedSafetensors("tensor '\(key)' data [\(offsets[0]), \(offsets[1])) does not fit its shape \(shape) or the file")
            }
            raw[key] = RawTensor(dtype: dtype, shape: shape, bytes: Array(bytes[(dataStart + offsets[0])..<(dataStart + offsets[1])]))
            entries.append((key, offsets[0]))
        }
        // DiffQ states are nested; `structure` (JSON) says where each tensor goes (`demucs/hf.py`).
        if let structure = metadata["structure"] {
            guard let tree = try? JSONDecoder().decode(JSONValue.self, from: Data(structure.utf8)) else {
                throw CheckpointError.malformedSafetensors("metadata 'structure' is not JSON")
            }
            return ModelPackage(klass: klass, kwargs: kwargs, state: [:], stateOrder: [],
                                quantized: try DiffQState(try unflatten(tree, raw)))
        }
        var state: [String: CompactWeight] = [:]
        for (key, t) in raw {
            guard t.dtype != .int64 else { throw CheckpointError.unsupportedDType(key: key, dtype: "I64") }
            state[key] = try t.weight()
        }
        let order = entries.sorted { $0.1 < $1.1 }.map(\.0)
        return ModelPackage(klass: klass, kwargs: kwargs, state: state, stateOrder: order)
    }

    /// `_unflatten_state`: `{"_tensor": key}`, `{"_dict": [[k, v], …]}`, `{"_list": […]}`,
    /// `{"_tuple": […]}`, `{"_class": "module.Name"}`, or a plain JSON value.
    private static func unflatten(_ node: JSONValue, _ tensors: [String: RawTensor]) throws -> StateNode {
        switch node {
        case .null: return .none
        case let .bool(b): return .bool(b)
        case let .int(i): return .number(Double(i))
        case let .double(d): return .number(d)
        case let .string(s): return .string(s)
        case let .array(a): return .list(try a.map { try unflatten($0, tensors) })
        case let .object(o):
            if case let .string(key)? = o["_tensor"] {
                guard let t = tensors[key] else { throw CheckpointError.missingTensor(key: key) }
                return .tensor(t)
            }
            if case let .string(name)? = o["_class"] { return .string(name) }
            if case let .array(items)? = o["_list"] ?? o["_tuple"] { return .list(try items.map { try unflatten($0, tensors) }) }
            if case let .array(pairs)? = o["_dict"] {
                var out: [String: StateNode] = [:]
                for pair in pairs {
                    guard case let .array(kv) = pair, kv.count == 2, case let .string(k) = kv[0] else {
                        throw CheckpointError.malformedSafetensors("structure has a malformed _dict entry")
                    }
                    out[k] = try unflatten(kv[1], tensors)
                }
                return .dict(out)
            }
            throw CheckpointError.malformedSafetensors("structure has an unknown node with keys \(o.keys.sorted())")
        }
    }
}

/// A JSON value, decoded strictly (a number stays a number, a bool a bool).
enum JSONValue: Decodable {
    case null, bool(Bool), int(Int), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    var ints: [Int]? {
        guard case let .array(a) = self else { return nil }
        var out: [Int] = []
        for v in a {
            guard case let .int(i) = v else { return nil }
            out.append(i)
        }
        return out
    }

    /// demucs `_decode_json`: fractions are objects tagged `"_type": "fraction"`.
    var kwarg: KwargValue {
        switch self {
        case .null: .none
        case let .bool(b): .bool(b)
        case let .int(i): .int(i)
        case let .double(d): .double(d)
        case let .string(s): .string(s)
        case let .array(a): .list(a.map(\.kwarg))
        case let .object(o):
            if case .string("fraction")? = o["_type"], case let .int(n)? = o["numerator"], case let .int(d)? = o["denominator"] {
                .fraction(n, d)
            } else {
                .dict(o.mapValues(\.kwarg))
            }
        }
    }
}
