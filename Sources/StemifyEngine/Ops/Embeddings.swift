import Foundation

/// The time branch's 1-D sinusoidal embedding, `create_sin_embedding` in `demucs/transformer.py`.
///
/// `[T, C]`: channel `i < C/2` is `cos(t / P^(i / (C/2 - 1)))`, channel `C/2 + i` the sine.
/// Parity: computed in Float32 like the reference, whose phases reach `T` radians.
public func sinEmbedding(length: Int, dim: Int, maxPeriod: Float = 10000) -> Tensor {
    precondition(dim % 2 == 0, "sinEmbedding needs an even dim, got \(dim)")
    let half = dim / 2
    var out = Tensor(zeros: [length, dim])
    for i in 0..<half {
        let div = powf(maxPeriod, Float(i) / Float(half - 1))
        for t in 0..<length {
            let phase = Float(t) / div
            out.data[t * dim + i] = cosf(phase)
            out.data[t * dim + half + i] = sinf(phase)
        }
    }
    return out
}

/// The frequency branch's 2-D sinusoidal embedding, `create_2d_sin_embedding`, as `[C, F, T]`.
///
/// Unlike the 1-D one it interleaves: with `D = C/2` and `div_j = exp(-2j · ln(P) / D)`,
/// channels `2j, 2j+1` carry `sin, cos(t · div_j)` and `D + 2j, D + 2j + 1` carry
/// `sin, cos(f · div_j)`.
public func sin2DEmbedding(dim: Int, height: Int, width: Int, maxPeriod: Float = 10000) -> Tensor {
    precondition(dim % 4 == 0, "sin2DEmbedding needs dim divisible by 4, got \(dim)")
    let d = dim / 2
    var out = Tensor(zeros: [dim, height, width])
    let plane = height * width
    for j in 0..<(d / 2) {
        let div = expf(Float(2 * j) * -(logf(maxPeriod) / Float(d)))
        for f in 0..<height {
            let ph = Float(f) * div
            let (sh, ch) = (sinf(ph), cosf(ph))
            for t in 0..<width {
                let pw = Float(t) * div
                out.data[(2 * j) * plane + f * width + t] = sinf(pw)
                out.data[(2 * j + 1) * plane + f * width + t] = cosf(pw)
                out.data[(d + 2 * j) * plane + f * width + t] = sh
                out.data[(d + 2 * j + 1) * plane + f * width + t] = ch
            }
        }
    }
    return out
}
