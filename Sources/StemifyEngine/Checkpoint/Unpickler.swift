/// A restricted pickle reader for model checkpoints (Demucs packages, PyTorch state dicts).
///
/// It builds plain values; it never imports or calls anything. A `GLOBAL` is accepted only
/// from the short list of names a Demucs checkpoint uses (model classes, `Fraction`,
/// `OrderedDict`, torch's tensor rebuild function and storage types); any other name stops
/// the load with ``CheckpointError/unsupportedGlobal(module:name:)`` before the next opcode.
/// `REDUCE` is interpreted only for the callables that have a meaning here.
///
/// Reference: Python's `Lib/pickle.py` (opcodes of protocols 0–4), torch's `_rebuild_tensor_v2`.
struct Unpickler {
    /// Globals a supported checkpoint may name.
    static let allowedGlobals: Set<String> = [
        "demucs.htdemucs HTDemucs", "demucs.hdemucs HDemucs", "demucs.demucs Demucs",
        "fractions Fraction", "collections OrderedDict",
        "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
        "torch HalfStorage", "torch FloatStorage", "torch BFloat16Storage", "torch LongStorage",
        "torch IntStorage", "torch ByteStorage", "torch CharStorage", "torch ShortStorage",
        "torch DoubleStorage", "torch BoolStorage",
        "_codecs encode", "diffq.diffq DiffQuantizer",
    ]

    private let bytes: ArraySlice<UInt8>
    private var pos: Int
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.pos = bytes.startIndex
    }

    mutating func load() throws -> PickleValue {
        while true {
            let at = pos
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()  // PROTO
            case 0x95: pos += 8  // FRAME
            case 0x2E:  // STOP
                return try pop()
            case 0x28: marks.append(stack.count)  // MARK
            case 0x7D: stack.append(.dict(PickleDict()))  // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList()))  // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popMark()))  // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))  // TUPLE1
            case 0x86:  // TUPLE2
                let b = try pop(), a = try pop()
                stack.append(.tuple([a, b]))
            case 0x87:  // TUPLE3
                let c = try pop(), b = try pop(), a = try pop()
                stack.append(.tuple([a, b, c]))
            case 0x4E: stack.append(.none)  // NONE
            case 0x88: stack.append(.bool(true))  // NEWTRUE
            case 0x89: stack.append(.bool(false))  // NEWFALSE
            case 0x4B: stack.append(.int(Int(try byte())))  // BININT1
            case 0x4D: stack.append(.int(Int(try uint(2))))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
            case 0x8A:  // LONG1
                let n = Int(try byte())
                stack.append(.int(try littleEndianSigned(n)))
            case 0x47:  // BINFLOAT, big-endian double
                var v: UInt64 = 0
                for _ in 0..<8 { v = v << 8 | UInt64(try byte()) }
                stack.append(.float(Double(bitPattern: v)))
            case 0x58: stack.append(.string(try string(Int(try uint(4)))))  // BINUNICODE
            case 0x8C: stack.append(.string(try string(Int(try byte()))))  // SHORT_BINUNICODE
            case 0x55: stack.append(.string(try string(Int(try byte()))))  // SHORT_BINSTRING
            case 0x54: stack.append(.string(try string(Int(try uint(4)))))  // BINSTRING
            case 0x43: stack.append(.bytes(Array(try take(Int(try byte())))))  // SHORT_BINBYTES
            case 0x42: stack.append(.bytes(Array(try take(Int(try uint(4))))))  // BINBYTES
            case 0x71: memo[Int(try byte())] = try top()  // BINPUT
            case 0x72: memo[Int(try uint(4))] = try top()  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x68: stack.append(try memoGet(Int(try byte())))  // BINGET
            case 0x6A: stack.append(try memoGet(Int(try uint(4))))  // LONG_BINGET
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                try stack.append(global(module, name))
            case 0x93:  // STACK_GLOBAL
                guard case let .string(name) = try pop(), case let .string(module) = try pop() else {
                    throw CheckpointError.malformedPickle("STACK_GLOBAL needs two strings")
                }
                try stack.append(global(module, name))
            case 0x61:  // APPEND
                let v = try pop()
                guard case let .list(list) = try top() else { throw CheckpointError.malformedPickle("APPEND to a non-list") }
                list.items.append(v)
            case 0x65:  // APPENDS
                let items = try popMark()
                guard case let .list(list) = try top() else { throw CheckpointError.malformedPickle("APPENDS to a non-list") }
                list.items.append(contentsOf: items)
            case 0x73:  // SETITEM
                let v = try pop(), k = try pop()
                guard case let .dict(dict) = try top() else { throw CheckpointError.malformedPickle("SETITEM on a non-dict") }
                try dict.set(k, v)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0, case let .dict(dict) = try top() else { throw CheckpointError.malformedPickle("SETITEMS on a non-dict") }
                for i in stride(from: 0, to: items.count, by: 2) { try dict.set(items[i], items[i + 1]) }
            case 0x51:  // BINPERSID: torch's storage reference
                stack.append(try persistentLoad(try pop()))
            case 0x52:  // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x81:  // NEWOBJ
                let args = try pop(), cls = try pop()
                stack.append(try reduce(cls, args))
            case 0x62:  // BUILD: state for an object we model as a value; only empty state is meaningful
                _ = try pop()
            default:
                throw CheckpointError.unsupportedOpcode(opcode: op, offset: at - bytes.startIndex)
            }
        }
    }

    // MARK: - Interpretation

    private func global(_ module: String, _ name: String) throws -> PickleValue {
        guard Self.allowedGlobals.contains("\(module) \(name)") else {
            throw CheckpointError.unsupportedGlobal(module: module, name: name)
        }
        return .global(module: module, name: name)
    }

    private func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        // ('storage', torch.HalfStorage, key, location, numel)
        guard case let .tuple(t) = pid, t.count == 5, case .string("storage") = t[0],
              case let .global(_, typeName) = t[1], case let .string(key) = t[2], case let .int(numel) = t[4]
        else { throw CheckpointError.malformedPickle("unexpected persistent id \(pid)") }
        return .storage(key: key, dtype: typeName, count: numel)
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case let .global(module, name) = callable, case let .tuple(a) = args else {
            throw CheckpointError.malformedPickle("REDUCE of \(callable)")
        }
        switch (module, name) {
        case ("collections", "OrderedDict"):
            return .dict(PickleDict())
        case ("fractions", "Fraction"):
            if a.count == 2, case let .int(n) = a[0], case let .int(d) = a[1] { return .fraction(n, d) }
            if a.count == 1, case let .string(s) = a[0] {
                let parts = s.split(separator: "/")
                if parts.count == 2, let n = Int(parts[0]), let d = Int(parts[1]) { return .fraction(n, d) }
                if parts.count == 1, let n = Int(parts[0]) { return .fraction(n, 1) }
            }
            if a.count == 1, case let .int(n) = a[0] { return .fraction(n, 1) }
            throw CheckpointError.malformedPickle("Fraction\(args)")
        case ("torch._utils", "_rebuild_tensor_v2"):
            guard a.count >= 4, case let .storage(key, dtype, _) = a[0], case let .int(offset) = a[1],
                  case let .tuple(size) = a[2], case let .tuple(stride) = a[3]
            else { throw CheckpointError.malformedPickle("_rebuild_tensor_v2\(args)") }
            let shape = try size.map { v -> Int in
                guard case let .int(i) = v else { throw CheckpointError.malformedPickle("tensor size \(size)") }
                return i
            }
            let strides = try stride.map { v -> Int in
                guard case let .int(i) = v else { throw CheckpointError.malformedPickle("tensor stride \(stride)") }
                return i
            }
            // Bounded here so the readers' index arithmetic cannot overflow on a forged file.
            guard shape.count == strides.count, shape.count <= 8, elementCount(shape) != nil,
                  let last = lastIndex(offset: offset, shape: shape, strides: strides), last < 1 << 40
            else { throw CheckpointError.malformedPickle("tensor of size \(shape), stride \(strides), offset \(offset)") }
            return .tensor(TensorReference(storageKey: key, dtype: dtype, offset: offset, shape: shape, strides: strides))
        case ("torch._utils", "_rebuild_parameter"):
            // (tensor, requires_grad, backward_hooks): a parameter is its tensor here.
            guard case .tensor? = a.first else { throw CheckpointError.malformedPickle("_rebuild_parameter\(args)") }
            return a[0]
        case ("_codecs", "encode"):
            guard case let .string(s) = a.first else { throw CheckpointError.malformedPickle("_codecs.encode\(args)") }
            return .bytes(Array(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }))
        default:
            // Classes may be stored (the model class in `klass`), never constructed.
            throw CheckpointError.malformedPickle("checkpoint pickle calls \(module).\(name), which is not allowed")
        }
    }

    // MARK: - Reading

    private mutating func byte() throws -> UInt8 {
        guard pos < bytes.endIndex else { throw CheckpointError.malformedPickle("unexpected end of pickle") }
        defer { pos += 1 }
        return bytes[pos]
    }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(try byte()) << (8 * UInt64(i)) }
        return v
    }

    private mutating func littleEndianSigned(_ n: Int) throws -> Int {
        guard n <= 8 else { throw CheckpointError.malformedPickle("integer of \(n) bytes") }
        if n == 0 { return 0 }
        let v = try uint(n)
        let shift = UInt64(64 - 8 * n)
        return Int(Int64(bitPattern: v << shift) >> Int64(shift))
    }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, pos + n <= bytes.endIndex else { throw CheckpointError.malformedPickle("unexpected end of pickle") }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    private mutating func string(_ n: Int) throws -> String {
        String(decoding: try take(n), as: UTF8.self)
    }

    private mutating func line() throws -> String {
        var out: [UInt8] = []
        while true {
            let b = try byte()
            if b == 0x0A { break }
            out.append(b)
            if out.count > 256 { throw CheckpointError.malformedPickle("GLOBAL name too long") }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw CheckpointError.malformedPickle("stack underflow") }
        if let m = marks.last, stack.count < m { throw CheckpointError.malformedPickle("stack underflow past a mark") }
        return v
    }

    private func top() throws -> PickleValue {
        guard let v = stack.last else { throw CheckpointError.malformedPickle("stack underflow") }
        return v
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast(), m <= stack.count else { throw CheckpointError.malformedPickle("no mark") }
        defer { stack.removeSubrange(m...) }
        return Array(stack[m...])
    }

    private func memoGet(_ i: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw CheckpointError.malformedPickle("memo index \(i) unset") }
        return v
    }
}

/// A value read from a checkpoint pickle.
indirect enum PickleValue: CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(module: String, name: String)
    case fraction(Int, Int)
    case storage(key: String, dtype: String, count: Int)
    case tensor(TensorReference)

    var description: String {
        switch self {
        case .none: "None"
        case let .bool(b): b ? "True" : "False"
        case let .int(i): "\(i)"
        case let .float(d): "\(d)"
        case let .string(s): "'\(s)'"
        case let .bytes(b): "<\(b.count) bytes>"
        case let .tuple(t): "(" + t.map(\.description).joined(separator: ", ") + ")"
        case let .list(l): "[" + l.items.map(\.description).joined(separator: ", ") + "]"
        case let .dict(d): "{" + d.items.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
        case let .global(m, n): "\(m).\(n)"
        case let .fraction(n, d): "Fraction(\(n), \(d))"
        case let .storage(k, t, n): "storage(\(k), \(t), \(n))"
        case let .tensor(t): "tensor\(t.shape)"
        }
    }
}

/// A list is mutable while the pickle is read (`APPEND` after `BINPUT`), hence a class.
final class PickleList {
    var items: [PickleValue] = []
}

/// Insertion-ordered dict with string or int keys.
final class PickleDict {
    var items: [(String, PickleValue)] = []

    func set(_ key: PickleValue, _ value: PickleValue) throws {
        switch key {
        case let .string(s): items.append((s, value))
        case let .int(i): items.append(("\(i)", value))
        default: throw CheckpointError.malformedPickle("dict key \(key)")
        }
    }

    subscript(key: String) -> PickleValue? {
        items.last(where: { $0.0 == key })?.1
    }
}

/// Where a tensor's elements live in a torch archive (`_rebuild_tensor_v2` arguments).
struct TensorReference {
    var storageKey: String
    var dtype: String
    var offset: Int
    var shape: [Int]
    var strides: [Int]
}

/// The largest storage index a strided view reaches, or nil on a negative offset or stride or
/// on overflow.
func lastIndex(offset: Int, shape: [Int], strides: [Int]) -> Int? {
    guard offset >= 0 else { return nil }
    var last = offset
    for (size, stride) in zip(shape, strides) where size > 0 {
        guard stride >= 0 else { return nil }
        let (step, o1) = (size - 1).multipliedReportingOverflow(by: stride)
        let (sum, o2) = last.addingReportingOverflow(step)
        guard !o1, !o2 else { return nil }
        last = sum
    }
    return last
}
