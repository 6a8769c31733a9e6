/// 3×3 convolutions (stride 1, padding 1) by Winograd's minimal filtering, F(2×2, 3×3)
/// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
///
/// Each 2×2 block of outputs ("tile") is computed from the 4×4 input patch around it with 16
/// multiplications per (input, output) channel pair instead of 36: the patch and the kernel are
/// transformed (`V = Bᵀ d B`, `U = G g Gᵀ`), multiplied point by point and summed over input
/// channels (16 GEMMs of `[Cout × Cin] · [Cin × tiles]`), and transformed back
/// (`Y = Aᵀ M A`). Every Demucs decoder's 3×3 rewrite runs this way: 2.25× fewer
/// multiply-adds, no im2col copy. The transforms only add, subtract and halve, so the result
/// stays within a few float roundings of the direct sum.
///
/// Work is done a band of tile rows at a time, sized so the transformed input and products of
/// a band stay near a megabyte (one tile row at every shape Demucs runs): bands of 8 MB ran the
/// first decoder's rewrite in 147 ms, bands of 1 MB in 102 ms, the transforms' traffic staying
/// in L2.
struct Winograd3x3 {
    let cin: Int, cout: Int, h: Int, w: Int
    /// Transformed kernels, `[16][Cout][Cin]`.
    private let u: [Float]
    /// Tiles in a tile row, rounded up to whole vectors of eight.
    private let tilesPerRow: Int
    /// Tile rows per band.
    private let bandTileRows: Int

    /// Whether a convolution runs this way: 3×3, stride 1, padding 1, no dilation, and an input
    /// of at least 4×4 (smaller planes waste most of each tile).
    static func applies(_ g: ConvGeometry, h: Int, w: Int) -> Bool {
        winogradConvolutions && g.kernel == (3, 3) && g.stride == (1, 1) && g.padding == (1, 1)
            && g.dilation == (1, 1) && h >= 4 && w >= 4
    }

    init(weight: Tensor, h: Int, w: Int) {
        (cout, cin, self.h, self.w) = (weight.shape[0], weight.shape[1], h, w)
        tilesPerRow = ((w + 1) / 2 + 7) / 8 * 8
        let floatsPerTile = 16 * (cin + cout)
        bandTileRows = max(1, min((h + 1) / 2, (1 << 18) / (floatsPerTile * tilesPerRow)))
        let (cout, cin) = (cout, cin)
        u = [Float](unsafeUninitializedCapacity: 16 * cout * cin) { buffer, count in
            let dst = UnsafeMutableSendablePointer(buffer.baseAddress!)
            weight.data.withUnsafeBufferPointer { g in
                let src = UnsafeSendable(g.baseAddress!)
                parallelFor(cout) { outputs in
                    for co in outputs {
                        for ci in 0..<cin {
                            let k = src.pointer + (co * cin + ci) * 9
                            let at = dst.pointer + co * cin + ci
                            // G g Gᵀ; G's rows: (1, 0, 0), ½(1, 1, 1), ½(1, −1, 1), (0, 0, 1).
                            @inline(__always) func g(_ a: Float, _ b: Float, _ c: Float) -> (Float, Float, Float, Float) {
                                (a, (a + b + c) * 0.5, (a - b + c) * 0.5, c)
                            }
                            let c0 = g(k[0], k[3], k[6]), c1 = g(k[1], k[4], k[7]), c2 = g(k[2], k[5], k[8])
                            @inline(__always) func put(_ i: Int, _ t: (Float, Float, Float, Float)) {
                                at[(i * 4) * cout * cin] = t.0
                                at[(i * 4 + 1) * cout * cin] = t.1
                                at[(i * 4 + 2) * cout * cin] = t.2
                                at[(i * 4 + 3) * cout * cin] = t.3
                            }
                            put(0, g(c0.0, c1.0, c2.0))
                            put(1, g(c0.1, c1.1, c2.1))
                            put(2, g(c0.2, c1.2, c2.2))
                            put(3, g(c0.3, c1.3, c2.3))
                        }
                    }
                }
            }
            count = 16 * cout * cin
        }
    }

    /// The convolution (no bias) of `x` (`[Cin, H, W]`), a band of output rows at a time, in
    /// order: `body(rows, output)` gets each band as `output[co · rows.count · W + (row −
    /// rows.lowerBound) · W + column]`, valid until it returns.
    func forEachBand(_ x: Tensor, _ body: (_ rows: Range<Int>, _ output: UnsafeMutablePointer<Float>) -> Void) {
        precondition(x.shape == [cin, h, w], "Winograd3x3: input \(x.shape), expected \([cin, h, w])")
        let tiles = bandTileRows * tilesPerRow
        let scratchCount = 16 * (cin + cout) * tiles, outputCount = cout * 2 * bandTileRows * w
        var scratch = [Float](unsafeUninitializedCapacity: scratchCount + outputCount) { _, k in k = scratchCount + outputCount }
        x.data.withUnsafeBufferPointer { xp in
            scratch.withUnsafeMutableBufferPointer { sp in
                let output = sp.baseAddress! + scratchCount
                let tileRows = (h + 1) / 2
                for first in stride(from: 0, to: tileRows, by: bandTileRows) {
                    let band = first..<min(tileRows, first + bandTileRows)
                    let rows = (2 * band.lowerBound)..<min(h, 2 * band.upperBound)
                    run(xp.baseAddress!, band: band, scratch: sp.baseAddress!, into: output, channelStride: rows.count * w)
                    body(rows, output)
                }
            }
        }
    }

    /// The output rows of `band`, written to `out[co · channelStride + (row − 2·band.lowerBound) · W + column]`.
    private func run(_ x: UnsafePointer<Float>, band: Range<Int>, scratch: UnsafeMutablePointer<Float>,
                     into out: UnsafeMutablePointer<Float>, channelStride: Int) {
        let tiles = band.count * tilesPerRow
        let v = UnsafeMutableSendablePointer(scratch)
        let m = UnsafeMutableSendablePointer(scratch + 16 * cin * tiles)
        let xs = UnsafeSendable(x)
        let (cin, cout, h, w, tilesPerRow) = (cin, cout, h, w, tilesPerRow)
        // V[ξ][ci][tile]: every input channel's patches, eight tiles of a row at a time. The
        // four input rows of a tile row are first copied beside zeros (the padding, and room for
        // the last vector's overrun), so the loads need no bounds.
        let padded = 2 * tilesPerRow + 18
        parallelFor(cin) { channels in
            var rows = [Float](repeating: 0, count: 4 * padded)
            rows.withUnsafeMutableBufferPointer { rb in
                let r = rb.baseAddress!
                for ci in channels {
                    for (bt, ty) in band.enumerated() {
                        for i in 0..<4 {
                            let ih = 2 * ty - 1 + i
                            let dst = r + i * padded
                            if ih >= 0 && ih < h {
                                (dst + 1).update(from: xs.pointer + (ci * h + ih) * w, count: w)
                                (dst + 1 + w).update(repeating: 0, count: padded - 1 - w)
                            } else {
                                dst.update(repeating: 0, count: padded)
                            }
                        }
                        for tx in stride(from: 0, to: tilesPerRow, by: 8) {
                            // Columns 2·tx + 2l + j − 1 of each row, j = 0…3, for tiles tx + l.
                            let base = v.pointer + ci * tiles + bt * tilesPerRow + tx
                            @inline(__always) func row(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
                                let raw = UnsafeRawPointer(r + i * padded + 2 * tx)
                                let a = raw.loadUnaligned(as: SIMD16<Float>.self)
                                let b = raw.loadUnaligned(fromByteOffset: 8, as: SIMD16<Float>.self)
                                let (d0, d1, d2, d3) = (a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf)
                                return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)  // d B
                            }
                            @inline(__always) func put(_ xi: Int, _ value: SIMD8<Float>) {
                                UnsafeMutableRawPointer(base + xi * cin * tiles).storeBytes(of: value, as: SIMD8<Float>.self)
                            }
                            let (e0, e1, e2, e3) = (row(0), row(1), row(2), row(3))
                            // Bᵀ (d B) down the columns.
                            put(0, e0.0 - e2.0); put(1, e0.1 - e2.1); put(2, e0.2 - e2.2); put(3, e0.3 - e2.3)
                            put(4, e1.0 + e2.0); put(5, e1.1 + e2.1); put(6, e1.2 + e2.2); put(7, e1.3 + e2.3)
                            put(8, e2.0 - e1.0); put(9, e2.1 - e1.1); put(10, e2.2 - e1.2); put(11, e2.3 - e1.3)
                            put(12, e1.0 - e3.0); put(13, e1.1 - e3.1); put(14, e1.2 - e3.2); put(15, e1.3 - e3.3)
                        }
                    }
                }
            }
        }
        u.withUnsafeBufferPointer { ub in
            let us = UnsafeSendable(ub.baseAddress!)
            parallelFor(16) { points in
                for xi in points {
                    gemm(m: cout, n: tiles, k: cin, a: us.pointer + xi * cout * cin, lda: cin,
                         b: v.pointer + xi * cin * tiles, ldb: tiles, c: m.pointer + xi * cout * tiles, ldc: tiles,
                         parallel: false)
                }
            }
        }
        // Y = Aᵀ M A: rows m0 + m1 + m2 and m1 − m2 − m3, the same along the columns.
        let rowBase = 2 * band.lowerBound
        let o = UnsafeMutableSendablePointer(out)
        parallelFor(cout) { outputs in
            for co in outputs {
                for (bt, ty) in band.enumerated() {
                    for tx in stride(from: 0, to: tilesPerRow, by: 8) {
                        let base = m.pointer + co * tiles + bt * tilesPerRow + tx
                        @inline(__always) func get(_ xi: Int) -> SIMD8<Float> {
                            UnsafeRawPointer(base + xi * cout * tiles).loadUnaligned(as: SIMD8<Float>.self)
                        }
                        @inline(__always) func row(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>) {
                            let (m0, m1, m2, m3) = (get(i * 4), get(i * 4 + 1), get(i * 4 + 2), get(i * 4 + 3))
                            return (m0 + m1 + m2, m1 - m2 - m3)  // M A
                        }
                        let (p0, p1, p2, p3) = (row(0), row(1), row(2), row(3))
                        // Aᵀ (M A): output rows 2·ty and 2·ty + 1, even and odd columns.
                        let top = (p0.0 + p1.0 + p2.0, p0.1 + p1.1 + p2.1)
                        let bottom = (p1.0 - p2.0 - p3.0, p1.1 - p2.1 - p3.1)
                        let columns = min(8, (w + 1) / 2 - tx)
                        guard columns > 0 else { continue }
                        @inline(__always) func store(_ dy: Int, _ even: SIMD8<Float>, _ odd: SIMD8<Float>) {
                            let oh = 2 * ty + dy
                            guard oh < h else { return }
                            let dst = o.pointer + co * channelStride + (oh - rowBase) * w + 2 * tx
                            for l in 0..<columns {
                                dst[2 * l] = even[l]
                                if 2 * (tx + l) + 1 < w { dst[2 * l + 1] = odd[l] }
                            }
                        }
                        store(0, top.0, top.1)
                        store(1, bottom.0, bottom.1)
                    }
                }
            }
        }
    }
}

/// Whether 3×3 convolutions use ``Winograd3x3`` (the default) or im2col + GEMM (`stemify-bench`
/// compares both by setting it; the tests check both against the definition).
nonisolated(unsafe) public var winogradConvolutions = true
