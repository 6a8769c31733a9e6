import Foundation

extension Tensor {
    /// `x[:, range, :]` of a `[C, F, T]` tensor; rows outside `0..<F` read as zeros.
    public func slicingMiddle(_ range: Range<Int>) -> Tensor {
        precondition(shape.count == 3, "slicingMiddle \(range) of \(shape)")
        let (c, f, t) = (shape[0], shape[1], shape[2])
        var out = Tensor(zeros: [c, range.count, t])
        let lo = max(range.lowerBound, 0), hi = min(range.upperBound, f)
        guard hi > lo else { return out }
        for ci in 0..<c {
            let src = (ci * f + lo) * t
            let dst = (ci * range.count + lo - range.lowerBound) * t
            out.data[dst..<(dst + (hi - lo) * t)] = data[src..<(src + (hi - lo) * t)]
        }
        return out
    }

    /// ``slicingMiddle(_:)`` within bounds, in place: the kept rows move down in the same
    /// buffer, so a large layer output is not held twice while it is cropped.
    public mutating func cropMiddle(_ range: Range<Int>) {
        precondition(shape.count == 3 && range.lowerBound >= 0 && range.upperBound <= shape[1], "cropMiddle \(range) of \(shape)")
        let (c, f, t) = (shape[0], shape[1], shape[2])
        let kept = range.count * t
        data.withUnsafeMutableBufferPointer { p in
            for ci in 0..<c {
                // Each destination lies at or before its source: moved in order, nothing is overwritten early.
                memmove(p.baseAddress! + ci * kept, p.baseAddress! + (ci * f + range.lowerBound) * t, kept * MemoryLayout<Float>.stride)
            }
        }
        data.removeLast(data.count - c * kept)
        shape = [c, range.count, t]
    }

    /// ``slicingLast(_:)`` within bounds, in place.
    public mutating func cropLast(_ range: Range<Int>) {
        let t = shape[shape.count - 1]
        precondition(range.lowerBound >= 0 && range.upperBound <= t, "cropLast \(range) of \(shape)")
        let rows = count / max(t, 1)
        data.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows {
                memmove(p.baseAddress! + r * range.count, p.baseAddress! + r * t + range.lowerBound, range.count * MemoryLayout<Float>.stride)
            }
        }
        data.removeLast(data.count - rows * range.count)
        shape[shape.count - 1] = range.count
    }

    /// `torch.cat(parts, dim=1)` of `[C, F_i, T]` tensors.
    public static func concatenatingMiddle(_ parts: [Tensor]) -> Tensor {
        let c = parts[0].shape[0], t = parts[0].shape[2]
        let f = parts.reduce(0) { $0 + $1.shape[1] }
        var out = Tensor(uninitialized: [c, f, t])
        for ci in 0..<c {
            var dst = ci * f * t
            for p in parts {
                let n = p.shape[1] * t
                out.data[dst..<(dst + n)] = p.data[(ci * n)..<((ci + 1) * n)]
                dst += n
            }
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
