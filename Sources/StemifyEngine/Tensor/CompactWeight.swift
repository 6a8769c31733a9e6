/// A weight held at the precision its checkpoint stored it in.
///
/// The published Demucs checkpoints store every weight as Float16 and the reference widens them
/// to Float32 as it loads them. Held as Float32, a v3 model's convolutions take twice the memory
/// they need (hdemucs_mmi: 334 MB instead of 167) for no accuracy, since every value is a
/// Float16. So a large weight whose every value survives the round trip stays Float16 and is
/// widened for the one operation that uses it: the same Float32 values, so the same results.
/// DiffQ's quantised weights (mdx_q, mdx_extra_q) likewise keep their integer levels (bit-packed,
/// as stored) and are dequantised per call by the same expression as at load. Weights that
/// do neither (Float32 checkpoints) stay as they are.
public struct CompactWeight: Sendable {
    public let shape: [Int]
    private let full: [Float]
    private let half: [Float16]
    private let levels: DiffQLevels?

    /// Below this many elements a weight stays Float32: widening it on every call (DConv's small
    /// convolutions run once per block of frequency rows) would cost more than it saves.
    static let minimumCompactCount = 1 << 16

    public init(_ t: Tensor) {
        shape = t.shape
        let narrowed: [Float16]? = t.count < Self.minimumCompactCount ? nil : t.data.withUnsafeBufferPointer { p in
            var exact = true
            let h = [Float16](unsafeUninitializedCapacity: p.count) { out, n in
                for i in 0..<p.count {
                    let v = Float16(p[i])
                    out[i] = v
                    // NaN never compares equal; such a weight stays Float32 as it is.
                    if Float(v) != p[i] { exact = false }
                }
                n = p.count
            }
            return exact ? h : nil
        }
        if let narrowed {
            (full, half) = ([], narrowed)
        } else {
            (full, half) = (t.data, [])
        }
        levels = nil
    }

    /// Float16 values as a checkpoint stores them (little-endian bit patterns); small weights
    /// are widened at once.
    init(float16Bits bits: UnsafeRawBufferPointer, shape: [Int]) {
        self.shape = shape
        let count = shape.reduce(1, *)
        let values = [Float16](unsafeUninitializedCapacity: count) { out, n in
            for i in 0..<count { out[i] = Float16(bitPattern: UInt16(littleEndian: bits.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            n = count
        }
        if count < Self.minimumCompactCount {
            (full, half) = (values.map { Float($0) }, [])
        } else {
            (full, half) = ([], values)
        }
        levels = nil
    }

    /// Float32 values kept as they are.
    init(full t: Tensor) {
        shape = t.shape
        (full, half, levels) = (t.data, [], nil)
    }

    /// DiffQ levels; small weights are dequantised at once.
    public init(levels: DiffQLevels, shape: [Int]) {
        self.shape = shape
        if levels.count < Self.minimumCompactCount {
            (full, half, self.levels) = (levels.values(), [], nil)
        } else {
            (full, half, self.levels) = ([], [], levels)
        }
    }

    private init(shape: [Int], full: [Float], half: [Float16], levels: DiffQLevels?) {
        (self.shape, self.full, self.half, self.levels) = (shape, full, half, levels)
    }

    /// The same values under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> CompactWeight {
        precondition(newShape.reduce(1, *) == shape.reduce(1, *), "reshaped: \(shape) to \(newShape)")
        return CompactWeight(shape: newShape, full: full, half: half, levels: levels)
    }

    /// Whether the values are held as Float16 or DiffQ levels.
    public var isCompact: Bool { !half.isEmpty || levels != nil }

    /// Output channels `outputs` along `axis` (0 for `[Cout, Cin, …]`, 1 for a transposed
    /// convolution's `[Cin, Cout, …]`), as a Float32 tensor with that axis cut to them.
    public func widened(outputs: Range<Int>, axis: Int) -> Tensor {
        precondition((0...1).contains(axis) && axis < shape.count && outputs.lowerBound >= 0 && outputs.upperBound <= shape[axis],
                     "widened: outputs \(outputs) along axis \(axis) of \(shape)")
        let inner = shape[(axis + 1)...].reduce(1, *)
        let (outer, outerStride) = axis == 0 ? (1, 0) : (shape[0], shape[1] * inner)
        let ranges = (0..<outer).map { o in (o * outerStride + outputs.lowerBound * inner)..<(o * outerStride + outputs.upperBound * inner) }
        var cut = shape
        cut[axis] = outputs.count
        let count = outer * outputs.count * inner
        let data = [Float](unsafeUninitializedCapacity: count) { out, n in
            widen(ranges, into: out.baseAddress!)
            n = count
        }
        return Tensor(shape: cut, data: data)
    }

    /// The Float32 tensor (a fresh copy when compact).
    public var tensor: Tensor {
        guard isCompact else { return Tensor(shape: shape, data: full) }
        let count = shape.reduce(1, *)
        let data = [Float](unsafeUninitializedCapacity: count) { out, n in
            widen([0..<count], into: out.baseAddress!)
            n = count
        }
        return Tensor(shape: shape, data: data)
    }

    /// The Float32 values of the flat index `ranges` (ascending, disjoint), one after another.
    private func widen(_ ranges: [Range<Int>], into out: UnsafeMutablePointer<Float>) {
        if let levels { return levels.decode(ranges, into: out) }
        var o = out
        if !half.isEmpty {
            half.withUnsafeBufferPointer { h in
                for r in ranges {
                    for i in r { o[i - r.lowerBound] = Float(h[i]) }
                    o += r.count
                }
            }
        } else {
            full.withUnsafeBufferPointer { f in
                for r in ranges {
                    o.update(from: f.baseAddress! + r.lowerBound, count: r.count)
                    o += r.count
                }
            }
        }
    }
}

/// One DiffQ-quantised weight as its integer levels: value `i` of group `g` (`groupSize` values
/// each, `bits[g]` bits) is `uniform_unquantize`'s `level · 1/(2^bits − 1) · (max − min) + min`
/// in Float32, the expression `DiffQState` dequantised with at load.
///
/// The levels are held bit-packed at their group's width, as the checkpoint stores them: the
/// mdx_q members' groups run 2 to 13 bits, so a byte or two per value held 211 MB of levels for
/// a waveform member whose packed levels take 110 MB.
public struct DiffQLevels: Sendable {
    /// Every level in its group's width, group after group, least significant bit first, then
    /// eight zero bytes so that any value is one unaligned 64-bit load away.
    private let packed: [UInt8]
    private let bits: [UInt8]
    private let groupSize: Int
    private let span: Float, low: Float

    /// `levels` holds every value's level, each below `2^bits` of its group; `bits` each
    /// group's width (1…14); `span` is `max − min` and `low` is `min`, both rounded to Float32.
    public init(levels: [Int16], bits: [UInt8], groupSize: Int, span: Float, low: Float) {
        precondition(levels.count == bits.count * groupSize, "DiffQLevels: \(levels.count) levels for \(bits.count) groups of \(groupSize)")
        precondition(bits.allSatisfy { (1...14).contains($0) }, "DiffQLevels: a width outside 1…14")
        let width = bits.reduce(0) { $0 + Int($1) } * groupSize
        var packed = [UInt8](repeating: 0, count: (width + 7) / 8 + 8)
        packed.withUnsafeMutableBytes { p in
            var offset = 0
            for g in 0..<bits.count {
                let b = Int(bits[g])
                for j in (g * groupSize)..<((g + 1) * groupSize) {
                    let level = Int(levels[j])
                    precondition(level >= 0 && level < 1 << b, "DiffQLevels: level \(level) does not fit \(b) bits")
                    let word = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset >> 3, as: UInt64.self))
                    p.storeBytes(of: (word | UInt64(level) << UInt64(offset & 7)).littleEndian, toByteOffset: offset >> 3, as: UInt64.self)
                    offset += b
                }
            }
        }
        (self.packed, self.bits, self.groupSize, self.span, self.low) = (packed, bits, groupSize, span, low)
    }

    var count: Int { bits.count * groupSize }

    /// Bytes the levels take.
    public var byteCount: Int { packed.count }

    func values() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { out, n in
            decode([0..<count], into: out.baseAddress!)
            n = count
        }
    }

    /// The values of `ranges` (ascending, disjoint) one after another into `out`, in one pass
    /// that skips the groups between them without reading their levels.
    func decode(_ ranges: [Range<Int>], into out: UnsafeMutablePointer<Float>) {
        packed.withUnsafeBytes { p in
            var o = out
            // Group `g` starts at bit `start`.
            var g = 0, start = 0
            for r in ranges {
                precondition(r.lowerBound >= g * groupSize && r.upperBound <= count, "DiffQLevels.decode: ranges out of order")
                var j = r.lowerBound
                while j < r.upperBound {
                    while (g + 1) * groupSize <= j {
                        start += Int(bits[g]) * groupSize
                        g += 1
                    }
                    let b = Int(bits[g])
                    let mask = UInt64(1) << UInt64(b) - 1
                    let unit = 1 / (Float(1 << b) - 1)
                    var bit = start + (j - g * groupSize) * b
                    let end = min(r.upperBound, (g + 1) * groupSize)
                    while j < end {
                        let word = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: bit >> 3, as: UInt64.self))
                        o.pointee = Float(word >> UInt64(bit & 7) & mask) * unit * span + low
                        o += 1
                        j += 1
                        bit += b
                    }
                }
            }
        }
    }
}
