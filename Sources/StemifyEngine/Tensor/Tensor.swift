/// A dense, contiguous, row-major Float32 tensor.
///
/// The engine runs one chunk at a time with batch size 1, so shapes drop the batch axis:
/// a spectrogram is `[C, F, T]`, a waveform `[C, L]` or `[C, 1, L]`, a token sequence `[N, C]`.
/// Storage is a plain `[Float]`; ops read and write it through unsafe buffer pointers.
public struct Tensor: Sendable, Equatable {
    /// Sizes, outermost first.
    public var shape: [Int]
    /// Elements in row-major order; `data.count` is the product of `shape`.
    public var data: [Float]

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// A tensor whose elements the caller overwrites entirely before reading (no zero fill).
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        let n = shape.reduce(1, *)
        self.data = [Float](unsafeUninitializedCapacity: n) { _, count in count = n }
    }

    /// A tensor over existing elements.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) needs \(shape.reduce(1, *)) elements, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// Number of elements.
    @inlinable public var count: Int { data.count }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, data: data)
    }

    /// Copies `[A, B, C]` to `[B, A, C]` (the reference's `permute(1, 0, 2)`).
    public func swappingLeadingAxes() -> Tensor {
        precondition(shape.count == 3, "swappingLeadingAxes needs 3 axes, got \(shape)")
        let (a, b, c) = (shape[0], shape[1], shape[2])
        var out = Tensor(uninitialized: [b, a, c])
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for i in 0..<a {
                    for j in 0..<b {
                        let s = src.baseAddress! + (i * b + j) * c
                        (dst.baseAddress! + (j * a + i) * c).update(from: s, count: c)
                    }
                }
            }
        }
        return out
    }

    /// The axes reordered: axis `i` of the result is axis `order[i]` of this tensor
    /// (`permute(*order)` then `contiguous()`).
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(shape.indices), "permuted: \(order) for shape \(shape)")
        let newShape = order.map { shape[$0] }
        // Leading axes moved behind the others: a matrix transpose, done in cache blocks.
        if let k = order.first, k > 0, order == Array(k..<shape.count) + Array(0..<k) {
            return Tensor(shape: [shape[..<k].reduce(1, *), shape[k...].reduce(1, *)], data: data).transposed2D().reshaped(newShape)
        }
        var strides = [Int](repeating: 1, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        let from = order.map { strides[$0] }
        var out = Tensor(uninitialized: newShape)
        let inner = newShape.last ?? 1, innerStride = from.last ?? 1
        let outer = count / max(inner, 1)
        var index = [Int](repeating: 0, count: max(newShape.count - 1, 0))
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for o in 0..<outer {
                    var base = 0
                    for (d, i) in index.enumerated() { base += i * from[d] }
                    for i in 0..<inner { dst[o * inner + i] = src[base + i * innerStride] }
                    var d = index.count - 1
                    while d >= 0 {
                        index[d] += 1
                        if index[d] < newShape[d] { break }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        return out
    }

    /// Matrix transpose of `[R, C]` (higher axes flattened into the columns).
    public func transposed2D() -> Tensor {
        let rows = shape[0]
        let cols = count / max(rows, 1)
        var out = Tensor(uninitialized: [cols, rows])
        transpose(data, rows: rows, cols: cols, into: &out.data)
        return out
    }
}

/// `dst[c * rows + r] = src[r * cols + c]`, blocked for cache reuse.
func transpose(_ src: [Float], rows: Int, cols: Int, into dst: inout [Float]) {
    precondition(src.count == rows * cols && dst.count == rows * cols)
    let block = 32
    src.withUnsafeBufferPointer { s in
        dst.withUnsafeMutableBufferPointer { d in
            let sp = s.baseAddress!, dp = d.baseAddress!
            var r0 = 0
            while r0 < rows {
                let r1 = min(r0 + block, rows)
                var c0 = 0
                while c0 < cols {
                    let c1 = min(c0 + block, cols)
                    for r in r0..<r1 {
                        for c in c0..<c1 { dp[c * rows + r] = sp[r * cols + c] }
                    }
                    c0 = c1
                }
                r0 = r1
            }
        }
    }
}
