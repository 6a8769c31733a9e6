/// Pieces the two hybrid families (``HDemucs``, ``HTDemucs``) share.

/// `(x - mean) / (1e-5 + std)` in place (the reference's normalisation of both branches).
func normalize(_ x: inout Tensor, mean: Float, std: Float) {
    let inv = 1 / (1e-5 + std)
    x.data.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = (p[i] - mean) * inv } }
}

/// `x · std + mean` in place.
func denormalize(_ x: inout Tensor, mean: Float, std: Float) {
    x.data.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = p[i] * std + mean } }
}

/// `x += scale · emb(f)ᵀ` broadcast over time; `emb [F, Ch]` is `freq_emb.embedding.weight`
/// (the `ScaledEmbedding` scale is folded into `scale`).
func addFrequencyEmbedding(_ x: inout Tensor, _ emb: Tensor, scale: Float) {
    let (ch, f, t) = (x.shape[0], x.shape[1], x.shape[2])
    precondition(emb.shape == [f, ch], "frequency embedding \(emb.shape) does not fit \(x.shape)")
    for c in 0..<ch {
        for fi in 0..<f {
            let v = scale * emb.data[fi * ch + c]
            let base = (c * f + fi) * t
            for i in 0..<t { x.data[base + i] += v }
        }
    }
}

/// Complex as channels (`_magnitude` with `cac`): `[C, F, T]` pairs → `[2C, F, T]`, channel
/// `2c` real and `2c+1` imaginary.
func complexAsChannels(re: Tensor, im: Tensor) -> Tensor {
    let (c, f, t) = (re.shape[0], re.shape[1], re.shape[2])
    let plane = f * t
    var x = Tensor(uninitialized: [2 * c, f, t])
    for ch in 0..<c {
        x.data[(2 * ch) * plane..<(2 * ch + 1) * plane] = re.data[ch * plane..<(ch + 1) * plane]
        x.data[(2 * ch + 1) * plane..<(2 * ch + 2) * plane] = im.data[ch * plane..<(ch + 1) * plane]
    }
    return x
}

/// The inverse of ``complexAsChannels(re:im:)`` (`_mask` with `cac`).
func channelsAsComplex(_ x: Tensor) -> (re: Tensor, im: Tensor) {
    let (c2, f, t) = (x.shape[0], x.shape[1], x.shape[2])
    let plane = f * t
    var re = Tensor(uninitialized: [c2 / 2, f, t]), im = Tensor(uninitialized: [c2 / 2, f, t])
    for ch in 0..<(c2 / 2) {
        re.data[ch * plane..<(ch + 1) * plane] = x.data[(2 * ch) * plane..<(2 * ch + 1) * plane]
        im.data[ch * plane..<(ch + 1) * plane] = x.data[(2 * ch + 1) * plane..<(2 * ch + 2) * plane]
    }
    return (re, im)
}
