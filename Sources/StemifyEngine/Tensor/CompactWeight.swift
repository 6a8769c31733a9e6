/// A weight held at the precision its checkpoint stored it in.
///
/// The published Demucs checkpoints store every weight as Float16 and the reference widens them
/// to Float32 as it loads them. Held as Float32, a v3 model's convolutions take twice the memory
/// they need (hdemucs_mmi: 334 MB instead of 167) for no accuracy, since every value is a
/// Float16. So a large weight whose every value survives the round trip stays Float16 and is
/// widened for the one operation that uses it: the same Float32 values, so the same results.
/// Weights that do not round-trip (Float32 checkpoints, DiffQ's dequantised levels) stay as they are.
public struct CompactWeight: Sendable {
    public let shape: [Int]
    private let full: [Float]
    private let half: [Float16]

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
    }

    /// Float32 values kept as they are.
    init(full t: Tensor) {
        shape = t.shape
        (full, half) = (t.data, [])
    }

    private init(shape: [Int], full: [Float], half: [Float16]) {
        (self.shape, self.full, self.half) = (shape, full, half)
    }

    /// The same values under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> CompactWeight {
        precondition(newShape.reduce(1, *) == shape.reduce(1, *), "reshaped: \(shape) to \(newShape)")
        return CompactWeight(shape: newShape, full: full, half: half)
    }

    /// Whether the values are held as Float16.
    public var isCompact: Bool { !half.isEmpty }

    /// The Float32 tensor (a fresh copy when compact).
    public var tensor: Tensor {
        guard isCompact else { return Tensor(shape: shape, data: full) }
        let data = half.withUnsafeBufferPointer { h in
            [Float](unsafeUninitializedCapacity: h.count) { out, n in
                for i in 0..<h.count { out[i] = Float(h[i]) }
                n = h.count
            }
        }
        return Tensor(shape: shape, data: data)
    }
}
