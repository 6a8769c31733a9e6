import Foundation

/// A DiffQ-quantized state (`mdx_q`, `mdx_extra_q`), as `diffq` 0.2.4's
/// `BaseQuantizer.get_quantized_state(packed=True)` writes it:
///
/// - `quantized`: one entry per large parameter, `(levels, (min, max), bits)`: the per-group bit
///   widths (minus `min_bits`) and, for each width 1…14, the levels of the groups with that
///   width, all bit-packed (`diffq/bitpack.pyx`);
/// - `others` (or `float16`): the small parameters as they are;
/// - `meta`: the quantizer's constructor arguments (`min_size` decides which parameters are large).
///
/// Parameters carry no names: they follow the model's `named_modules()` traversal, which for
/// these models is the state-dict order, so dequantizing needs the model's parameter list.
public struct DiffQState: Sendable {
    /// One large parameter: packed levels per width (index 0 is 1 bit), its range, packed widths.
    struct Quantized: Sendable {
        var levels: [PackedInts?]
        var minimum: Double
        var maximum: Double
        var bits: PackedInts
    }

    var quantized: [Quantized]
    /// Small parameters in traversal order (`others`, or `float16` when the quantizer kept them in half).
    var small: [Tensor]
    /// `min_size · 2²⁰ // 4`: parameters with at most this many elements are small.
    var minParameters: Int
    var groupSize: Int
    var minBits: Int

    /// Reads the state from its decoded tree (pickle or safetensors `structure`).
    init(_ root: StateNode) throws {
        func fail(_ why: String) -> CheckpointError { .malformedPackage("DiffQ state: \(why)") }
        guard case let .dict(state) = root else { throw fail("not a dict") }
        guard case let .dict(meta)? = state["meta"], case let .dict(kwargs)? = meta["init_kwargs"] else { throw fail("no meta.init_kwargs") }
        if case let .string(klass)? = meta["klass"], klass != "diffq.diffq.DiffQuantizer" {
            throw CheckpointError.unsupportedKwarg(key: "meta.klass", value: klass)
        }
        guard case .bool(true)? = meta["packed"] else { throw CheckpointError.unsupportedKwarg(key: "meta.packed", value: "False") }
        if case .bool(true)? = meta["torch_pack"] { throw CheckpointError.unsupportedKwarg(key: "meta.torch_pack", value: "True") }
        func integer(_ key: String, _ fallback: Double, _ range: ClosedRange<Double>) throws -> Int {
            let v = kwargs[key]?.number ?? fallback
            guard range.contains(v) else { throw CheckpointError.unsupportedKwarg(key: key, value: "\(v)") }
            return Int(v)
        }
        groupSize = try integer("group_size", 1, 1...4096)
        minBits = try integer("min_bits", 2, 0...14)
        // `min_size` is in MB; parameters of at most min_size·2²⁰/4 elements are kept as they are.
        let minSize = kwargs["min_size"]?.number ?? 0.01
        guard (0...1e6).contains(minSize) else { throw CheckpointError.unsupportedKwarg(key: "min_size", value: "\(minSize)") }
        minParameters = Int((minSize * 1_048_576 / 4).rounded(.down))
        if case let .list(patterns)? = kwargs["exclude"], !patterns.isEmpty {
            throw CheckpointError.unsupportedKwarg(key: "exclude", value: "\(patterns.count) patterns")
        }
        let halfSmall = kwargs["float16"]?.number == 1
        guard case let .list(others)? = state[halfSmall ? "float16" : "others"] else { throw fail("no list of small parameters") }
        small = try others.map {
            guard case let .tensor(t) = $0 else { throw fail("a small parameter is not a tensor") }
            return try t.floats()
        }
        guard case let .list(entries)? = state["quantized"] else { throw fail("no 'quantized' list") }
        quantized = try entries.map { entry in
            guard case let .list(parts) = entry, parts.count == 3,
                  case let .list(levels) = parts[0], levels.count == 14,
                  case let .list(range) = parts[1], range.count == 2,
                  let lo = range[0].number, let hi = range[1].number,
                  case let .tensor(bits) = parts[2]
            else { throw fail("a quantized entry is not (levels[14], (min, max), bits)") }
            return Quantized(
                levels: try levels.map { node -> PackedInts? in
                    switch node {
                    case .none: return nil
                    case let .tensor(t): return try PackedInts(t)
                    default: throw fail("packed levels are neither None nor a tensor")
                    }
                },
                minimum: lo, maximum: hi, bits: try PackedInts(bits))
        }
    }

    /// The state dict for parameters `order` (name and shape, in traversal order); large
    /// weights keep their levels and are dequantised where they are used.
    func dequantized(order: [(key: String, shape: [Int])]) throws -> [String: CompactWeight] {
        var state: [String: CompactWeight] = [:]
        var nextSmall = 0, nextQuantized = 0
        for (key, shape) in order {
            guard let count = elementCount(shape) else { throw CheckpointError.shapeMismatch(key: key, expected: shape, found: []) }
            if count <= minParameters {
                guard nextSmall < small.count else { throw CheckpointError.missingTensor(key: key) }
                let t = small[nextSmall]
                guard t.count == count else { throw CheckpointError.shapeMismatch(key: key, expected: shape, found: t.shape) }
                state[key] = CompactWeight(full: t.reshaped(shape))
                nextSmall += 1
                continue
            }
            guard nextQuantized < quantized.count else { throw CheckpointError.missingTensor(key: key) }
            guard count % groupSize == 0 else { throw CheckpointError.shapeMismatch(key: key, expected: shape, found: [count]) }
            state[key] = CompactWeight(levels: try levels(quantized[nextQuantized], count: count, key: key), shape: shape)
            nextQuantized += 1
        }
        guard nextSmall == small.count, nextQuantized == quantized.count else {
            throw CheckpointError.malformedPackage(
                "DiffQ state holds \(small.count) small and \(quantized.count) quantized parameters; the model has \(nextSmall) and \(nextQuantized)")
        }
        return state
    }

    /// The levels of `q` by value (`uniform_unquantize` then turns each into
    /// `level · 1/(2^bits − 1) · (max − min) + min`, in float32 like torch: ``DiffQLevels``).
    private func levels(_ q: Quantized, count: Int, key: String) throws -> DiffQLevels {
        let groups = count / groupSize
        let widths = try q.bits.unpack(groups).map { Int($0) + minBits }
        if let bad = widths.first(where: { $0 < 1 || $0 > 14 }) {
            throw CheckpointError.malformedPackage("DiffQ state: '\(key)' has a group of \(bad) bits")
        }
        var all = [Int16](repeating: 0, count: count)
        for bit in 1...14 {
            let members = widths.indices.filter { widths[$0] == bit }
            if members.isEmpty { continue }
            guard let packed = q.levels[bit - 1] else {
                throw CheckpointError.malformedPackage("DiffQ state: '\(key)' has \(bit)-bit groups but no levels for them")
            }
            let levels = try packed.unpack(members.count * groupSize)
            // A packed tensor with more bit planes than its width (a crafted file) would give
            // levels `DiffQLevels` cannot hold.
            if let bad = levels.first(where: { $0 < 0 || Int($0) >= 1 << bit }) {
                throw CheckpointError.malformedPackage("DiffQ state: '\(key)' has a level \(bad) beyond its \(bit)-bit width")
            }
            for (n, g) in members.enumerated() {
                for j in 0..<groupSize { all[g * groupSize + j] = levels[n * groupSize + j] }
            }
        }
        return DiffQLevels(levels: all, bits: widths.map { UInt8($0) }, groupSize: groupSize,
                           span: Float(q.maximum - q.minimum), low: Float(q.minimum))
    }
}

/// `diffq.bitpack.pack` output: int64 words `[lines, nbits, 32]`; value `line·2048 + b·32 + i`
/// has its bit `k` at bit `b` of word `[line, k, i]`.
struct PackedInts: Sendable {
    var words: [UInt64]
    var lines: Int
    var bits: Int
    var block: Int

    init(_ t: RawTensor) throws {
        guard t.dtype == .int64, t.shape.count == 3 else {
            throw CheckpointError.malformedPackage("DiffQ packed tensor has shape \(t.shape) and type \(t.dtype)")
        }
        (lines, bits, block) = (t.shape[0], t.shape[1], t.shape[2])
        words = t.int64Words()
    }

    func unpack(_ count: Int) throws -> [Int16] {
        let capacity = lines * block * 64
        guard count <= capacity else { throw CheckpointError.malformedPackage("DiffQ packed tensor holds \(capacity) values, \(count) needed") }
        var out = [Int16](repeating: 0, count: count)
        for line in 0..<lines {
            for bitIn in 0..<64 {
                for index in 0..<block {
                    let v = line * block * 64 + bitIn * block + index
                    if v >= count { continue }
                    var x: UInt16 = 0
                    for bitOut in 0..<bits {
                        x |= UInt16((words[(line * bits + bitOut) * block + index] >> UInt64(bitIn)) & 1) << UInt16(bitOut)
                    }
                    out[v] = Int16(bitPattern: x)
                }
            }
        }
        return out
    }
}

/// A tensor's raw little-endian bytes, before conversion.
struct RawTensor: Sendable {
    enum DType: Sendable { case float16, bfloat16, float32, int64 }
    var dtype: DType
    var shape: [Int]
    var bytes: [UInt8]

    func floats() throws -> Tensor {
        var t = Tensor(uninitialized: shape)
        bytes.withUnsafeBytes { p in
            for i in 0..<t.count {
                switch dtype {
                case .float16: t.data[i] = Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                case .bfloat16: t.data[i] = Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
                case .float32: t.data[i] = Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                case .int64: t.data[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                }
            }
        }
        return t
    }

    /// As a state-dict weight: Float16 stays Float16 (``CompactWeight``).
    func weight() throws -> CompactWeight {
        guard dtype == .float16 else { return CompactWeight(full: try floats()) }
        return bytes.withUnsafeBytes { CompactWeight(float16Bits: $0, shape: shape) }
    }

    func int64Words() -> [UInt64] {
        bytes.withUnsafeBytes { p in (0..<(bytes.count / 8)).map { p.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self) } }
    }
}

/// A decoded state tree: what a pickle or a safetensors `structure` describes.
indirect enum StateNode: Sendable {
    case none
    case bool(Bool)
    case number(Double)
    case string(String)
    case list([StateNode])
    case dict([String: StateNode])
    case tensor(RawTensor)

    var number: Double? {
        switch self {
        case let .number(n): n
        case let .bool(b): b ? 1 : 0
        default: nil
        }
    }

    subscript(key: String) -> StateNode? {
        if case let .dict(d) = self { return d[key] }
        return nil
    }
}
