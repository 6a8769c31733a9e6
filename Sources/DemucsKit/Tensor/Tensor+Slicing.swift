extension Tensor {
    /// `x[:, range, :]` of a `[C, F, T]` tensor.
    public func slicingMiddle(_ range: Range<Int>) -> Tensor {
        precondition(shape.count == 3 && range.lowerBound >= 0 && range.upperBound <= shape[1], "slicingMiddle \(range) of \(shape)")
        let (c, f, t) = (shape[0], shape[1], shape[2])
        var out = Tensor(uninitialized: [c, range.count, t])
        for ci in 0..<c {
            let src = (ci * f + range.lowerBound) * t
            let dst = ci * range.count * t
            out.data[dst..<(dst + range.count * t)] = data[src..<(src + range.count * t)]
        }
        return out
    }

    /// `x[..., range]`: the last axis sliced, positions past the end read as zeros.
    public func slicingLast(_ range: Range<Int>) -> Tensor {
        let t = shape[shape.count - 1]
        let rows = count / max(t, 1)
        var newShape = shape
        newShape[newShape.count - 1] = range.count
        var out = Tensor(zeros: newShape)
        let lo = max(range.lowerBound, 0), hi = min(range.upperBound, t)
        guard hi > lo else { return out }
        for r in 0..<rows {
            let dst = r * range.count + (lo - range.lowerBound)
            out.data[dst..<(dst + hi - lo)] = data[(r * t + lo)..<(r * t + hi)]
        }
        return out
    }

    /// `x + y` where `y` is `[C, 1, T]` and `x` is `[C, F, T]` (broadcast over F).
    public mutating func addBroadcastingMiddle(_ y: Tensor) {
        precondition(shape.count == 3 && y.count == shape[0] * shape[2], "addBroadcastingMiddle \(y.shape) to \(shape)")
        let (c, f, t) = (shape[0], shape[1], shape[2])
        for ci in 0..<c {
            for fi in 0..<f {
                let base = (ci * f + fi) * t
                for i in 0..<t { data[base + i] += y.data[ci * t + i] }
            }
        }
    }
}
