/// 3×3 convolutions (stride 1, padding 1) by Winograd's minimal filtering (Lavin & Gray, "Fast
/// Algorithms for Convolutional Neural Networks", 2016).
///
/// Each m×m block of outputs ("tile") is computed from the (m+2)×(m+2) input patch around it:
/// the patch and the kernel are transformed (`V = Bᵀ d B`, `U = G g Gᵀ`), multiplied point by
/// point and summed over input channels ((m+2)² GEMMs of `[Cout × Cin] · [Cin × tiles]`), and
/// transformed back (`Y = Aᵀ M A`). Every Demucs decoder's 3×3 rewrite runs this way, a sixth
/// of an htdemucs chunk's arithmetic. Two tile sizes:
///
/// - F(4×4, 3×3): 36 multiplications for 16 outputs, 4× fewer than the direct sum. Its
///   transforms scale values by up to 8 (interpolation points 0, ±1, ±2), so it is a few float
///   roundings further from the direct sum (110–122 dB in the tests, where parity asks 60).
/// - F(2×2, 3×3): 16 for 4, 2.25× fewer; its transformed kernels are 16/36 the size.
///
/// The transformed kernels exist once per call, beside the activations: 42 MB at F(4×4) for
/// htdemucs's first decoder (768 × 384), which put htdemucs's peak over 600 MB. So the larger
/// tile runs where they stay within ``maxLargeTileKernelBytes`` (every rewrite but the deepest,
/// whose plane is only 8 rows tall anyway), the smaller one elsewhere.
///
/// Work is done a band of tile rows at a time, sized so the transformed input and products of
/// a band stay near a megabyte (one tile row at every shape Demucs runs): bands of 8 MB ran the
/// first decoder's rewrite in 147 ms, bands of 1 MB in 102 ms, the transforms' traffic staying
/// in L2.
struct Winograd3x3 {
    /// Whether a convolution runs this way: 3×3, stride 1, padding 1, no dilation, and an input
    /// of at least 4×4 (smaller planes waste most of each tile).
    static func applies(_ g: ConvGeometry, h: Int, w: Int) -> Bool {
        winogradConvolutions && g.kernel == (3, 3) && g.stride == (1, 1) && g.padding == (1, 1)
            && g.dilation == (1, 1) && h >= 4 && w >= 4
    }

    /// The largest transformed kernel F(4×4, 3×3) makes: 16 MB, under the 19 MB F(2×2, 3×3)
    /// makes for htdemucs's deepest rewrite.
    static let maxLargeTileKernelBytes = 16 << 20

    /// A case per size, so that each runs specialised code.
    private enum Tiles { case small(WinogradTiles<SmallTiles>), large(WinogradTiles<LargeTiles>) }
    private let tiles: Tiles

    init(weight: Tensor, h: Int, w: Int) {
        let large = LargeTiles.points * weight.shape[0] * weight.shape[1] * 4 <= Self.maxLargeTileKernelBytes
        tiles = large ? .large(WinogradTiles(weight: weight, h: h, w: w)) : .small(WinogradTiles(weight: weight, h: h, w: w))
    }

    /// The convolution (no bias) of `x` (`[Cin, H, W]`), a band of output rows at a time, in
    /// order: `body(rows, output)` gets each band as `output[co · rows.count · W + (row −
    /// rows.lowerBound) · W + column]`, valid until it returns.
    func forEachBand(_ x: Tensor, _ body: (_ rows: Range<Int>, _ output: UnsafeMutablePointer<Float>) -> Void) {
        switch tiles {
        case .small(let tiles): tiles.forEachBand(x, body)
        case .large(let tiles): tiles.forEachBand(x, body)
        }
    }
}

/// Whether 3×3 convolutions use ``Winograd3x3`` (the default) or im2col + GEMM (`stemify-bench`
/// compares both by setting it; the tests check both against the definition).
nonisolated(unsafe) public var winogradConvolutions = true

/// One tile size: its kernel, patch and output transforms (``WinogradTiles`` does the rest).
private protocol TileTransforms {
    /// Outputs along a tile's side (m).
    static var size: Int { get }
    /// One output row of eight tiles, `8m` values.
    associatedtype Row: SIMD where Row.Scalar == Float
    /// `G g Gᵀ` of the 3×3 kernel `k`, point ξ written to `out[ξ · stride]`.
    static func transformKernel(_ k: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, stride: Int)
    /// `V = Bᵀ d B` for the eight tiles starting at `tx` of one tile row, from its staged input
    /// rows (`rows[i · padded + 1 + column]`), point ξ stored with `put(ξ, value)`.
    static func transformPatches(_ rows: UnsafePointer<Float>, padded: Int, tx: Int, _ put: (Int, SIMD8<Float>) -> Void)
    /// `Y = Aᵀ M A` for eight tiles, point ξ read with `get(ξ)`; `store(dy, row)` gets output
    /// row dy of the eight tiles side by side.
    static func transformBack(_ get: (Int) -> SIMD8<Float>, _ store: (Int, Row) -> Void)
}

extension TileTransforms {
    static var points: Int { (size + 2) * (size + 2) }
}

/// A convolution's transformed kernels at one tile size, and the bands, the staging of input
/// rows and the products every size shares.
private struct WinogradTiles<T: TileTransforms>: Sendable {
    let cin: Int, cout: Int, h: Int, w: Int
    /// Transformed kernels, `[points][Cout][Cin]`.
    let u: [Float]
    /// Tiles in a tile row, rounded up to whole vectors of eight.
    var tilesPerRow: Int { ((w + T.size - 1) / T.size + 7) / 8 * 8 }
    /// Tile rows per band.
    var bandTileRows: Int {
        max(1, min((h + T.size - 1) / T.size, (1 << 18) / (T.points * (cin + cout) * tilesPerRow)))
    }

    init(weight: Tensor, h: Int, w: Int) {
        (cout, cin, self.h, self.w) = (weight.shape[0], weight.shape[1], h, w)
        u = Self.transformKernels(weight)
    }

    /// `U[ξ][co][ci]`. One output channel's points for every input channel are made in a small
    /// buffer, then copied out as one run a point: stored straight, a pair's points lie a
    /// multiple of 4 KB apart and thrash one cache set (110 ms for 768 × 384 at F(4×4), 18 ms
    /// this way).
    static func transformKernels(_ weight: Tensor) -> [Float] {
        let (cout, cin, points) = (weight.shape[0], weight.shape[1], T.points)
        return [Float](unsafeUninitializedCapacity: points * cout * cin) { buffer, count in
            let dst = UnsafeMutableSendablePointer(buffer.baseAddress!)
            weight.data.withUnsafeBufferPointer { g in
                let src = UnsafeSendable(g.baseAddress!)
                parallelFor(cout) { outputs in
                    var local = [Float](repeating: 0, count: points * cin)
                    local.withUnsafeMutableBufferPointer { lb in
                        for co in outputs {
                            for ci in 0..<cin { T.transformKernel(src.pointer + (co * cin + ci) * 9, into: lb.baseAddress! + ci, stride: cin) }
                            for xi in 0..<points {
                                (dst.pointer + (xi * cout + co) * cin).update(from: lb.baseAddress! + xi * cin, count: cin)
                            }
                        }
                    }
                }
            }
            count = points * cout * cin
        }
    }

    func forEachBand(_ x: Tensor, _ body: (_ rows: Range<Int>, _ output: UnsafeMutablePointer<Float>) -> Void) {
        precondition(x.shape == [cin, h, w], "Winograd3x3: input \(x.shape), expected \([cin, h, w])")
        let m = T.size, tiles = bandTileRows * tilesPerRow
        let scratchCount = T.points * (cin + cout) * tiles, outputCount = cout * m * bandTileRows * w
        var scratch = [Float](unsafeUninitializedCapacity: scratchCount + outputCount) { _, k in k = scratchCount + outputCount }
        x.data.withUnsafeBufferPointer { xp in
            scratch.withUnsafeMutableBufferPointer { sp in
                let output = sp.baseAddress! + scratchCount
                let tileRows = (h + m - 1) / m
                for first in stride(from: 0, to: tileRows, by: bandTileRows) {
                    let band = first..<min(tileRows, first + bandTileRows)
                    let rows = (m * band.lowerBound)..<min(h, m * band.upperBound)
                    run(xp.baseAddress!, band: band, scratch: sp.baseAddress!, into: output, channelStride: rows.count * w)
                    body(rows, output)
                }
            }
        }
    }

    /// The output rows of `band`, written to `out[co · channelStride + (row − m·band.lowerBound) · W + column]`.
    private func run(_ x: UnsafePointer<Float>, band: Range<Int>, scratch: UnsafeMutablePointer<Float>,
                     into out: UnsafeMutablePointer<Float>, channelStride: Int) {
        let (size, points) = (T.size, T.points)
        let tiles = band.count * tilesPerRow
        let v = UnsafeMutableSendablePointer(scratch)
        let products = UnsafeMutableSendablePointer(scratch + points * cin * tiles)
        let xs = UnsafeSendable(x)
        let (cin, cout, h, w, tilesPerRow) = (cin, cout, h, w, tilesPerRow)
        // V[ξ][ci][tile]: every input channel's patches, eight tiles of a row at a time. The
        // m + 2 input rows of a tile row are first copied beside zeros (the padding, and room
        // for the last vectors' overrun), so the loads need no bounds.
        let padded = size * tilesPerRow + 40
        parallelFor(cin) { channels in
            var staged = [Float](repeating: 0, count: (size + 2) * padded)
            staged.withUnsafeMutableBufferPointer { sb in
                let r = sb.baseAddress!
                for ci in channels {
                    for (bt, ty) in band.enumerated() {
                        for i in 0..<(size + 2) {
                            let ih = size * ty - 1 + i
                            let dst = r + i * padded
                            if ih >= 0 && ih < h {
                                (dst + 1).update(from: xs.pointer + (ci * h + ih) * w, count: w)
                                (dst + 1 + w).update(repeating: 0, count: padded - 1 - w)
                            } else {
                                dst.update(repeating: 0, count: padded)
                            }
                        }
                        for tx in stride(from: 0, to: tilesPerRow, by: 8) {
                            let base = v.pointer + ci * tiles + bt * tilesPerRow + tx
                            T.transformPatches(r, padded: padded, tx: tx) { xi, value in
                                UnsafeMutableRawPointer(base + xi * cin * tiles).storeBytes(of: value, as: SIMD8<Float>.self)
                            }
                        }
                    }
                }
            }
        }
        u.withUnsafeBufferPointer { ub in
            let us = UnsafeSendable(ub.baseAddress!)
            parallelFor(points) { range in
                for xi in range {
                    gemm(m: cout, n: tiles, k: cin, a: us.pointer + xi * cout * cin, lda: cin,
                         b: v.pointer + xi * cin * tiles, ldb: tiles, c: products.pointer + xi * cout * tiles, ldc: tiles,
                         parallel: false)
                }
            }
        }
        let rowBase = size * band.lowerBound
        let o = UnsafeMutableSendablePointer(out)
        parallelFor(cout) { outputs in
            for co in outputs {
                for (bt, ty) in band.enumerated() {
                    for tx in stride(from: 0, to: tilesPerRow, by: 8) {
                        // Output columns of these eight tiles inside the plane.
                        let valid = min(8 * size, w - size * tx)
                        guard valid > 0 else { continue }
                        let base = products.pointer + co * tiles + bt * tilesPerRow + tx
                        T.transformBack({ xi in UnsafeRawPointer(base + xi * cout * tiles).loadUnaligned(as: SIMD8<Float>.self) }) { dy, row in
                            let oh = size * ty + dy
                            guard oh < h else { return }
                            let dst = o.pointer + co * channelStride + (oh - rowBase) * w + size * tx
                            if valid == T.Row.scalarCount {
                                UnsafeMutableRawPointer(dst).storeBytes(of: row, as: T.Row.self)
                            } else {
                                for column in 0..<valid { dst[column] = row[column] }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// F(2×2, 3×3).
private enum SmallTiles: TileTransforms {
    static let size = 2
    typealias Row = SIMD16<Float>

    /// G's rows: (1, 0, 0), ½(1, 1, 1), ½(1, −1, 1), (0, 0, 1).
    @inline(__always)
    static func transformKernel(_ k: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, stride: Int) {
        @inline(__always) func g(_ a: Float, _ b: Float, _ c: Float) -> (Float, Float, Float, Float) {
            (a, (a + b + c) * 0.5, (a - b + c) * 0.5, c)
        }
        let c0 = g(k[0], k[3], k[6]), c1 = g(k[1], k[4], k[7]), c2 = g(k[2], k[5], k[8])
        @inline(__always) func put(_ i: Int, _ t: (Float, Float, Float, Float)) {
            out[(i * 4) * stride] = t.0; out[(i * 4 + 1) * stride] = t.1
            out[(i * 4 + 2) * stride] = t.2; out[(i * 4 + 3) * stride] = t.3
        }
        put(0, g(c0.0, c1.0, c2.0)); put(1, g(c0.1, c1.1, c2.1)); put(2, g(c0.2, c1.2, c2.2)); put(3, g(c0.3, c1.3, c2.3))
    }

    @inline(__always)
    static func transformPatches(_ rows: UnsafePointer<Float>, padded: Int, tx: Int, _ put: (Int, SIMD8<Float>) -> Void) {
        // Columns 2·(tx + l) + j − 1 of each row, j = 0…3, for tiles tx + l.
        @inline(__always) func row(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
            let raw = UnsafeRawPointer(rows + i * padded + 2 * tx)
            let a = raw.loadUnaligned(as: SIMD16<Float>.self)
            let b = raw.loadUnaligned(fromByteOffset: 8, as: SIMD16<Float>.self)
            let (d0, d1, d2, d3) = (a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf)
            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)  // d B
        }
        let (e0, e1, e2, e3) = (row(0), row(1), row(2), row(3))
        // Bᵀ (d B) down the columns.
        put(0, e0.0 - e2.0); put(1, e0.1 - e2.1); put(2, e0.2 - e2.2); put(3, e0.3 - e2.3)
        put(4, e1.0 + e2.0); put(5, e1.1 + e2.1); put(6, e1.2 + e2.2); put(7, e1.3 + e2.3)
        put(8, e2.0 - e1.0); put(9, e2.1 - e1.1); put(10, e2.2 - e1.2); put(11, e2.3 - e1.3)
        put(12, e1.0 - e3.0); put(13, e1.1 - e3.1); put(14, e1.2 - e3.2); put(15, e1.3 - e3.3)
    }

    /// Rows m0 + m1 + m2 and m1 − m2 − m3, the same along the columns.
    @inline(__always)
    static func transformBack(_ get: (Int) -> SIMD8<Float>, _ store: (Int, Row) -> Void) {
        @inline(__always) func row(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>) {
            let (m0, m1, m2, m3) = (get(i * 4), get(i * 4 + 1), get(i * 4 + 2), get(i * 4 + 3))
            return (m0 + m1 + m2, m1 - m2 - m3)  // M A
        }
        let (p0, p1, p2, p3) = (row(0), row(1), row(2), row(3))
        // Aᵀ (M A): even and odd columns, interleaved.
        @inline(__always) func interleaved(_ even: SIMD8<Float>, _ odd: SIMD8<Float>) -> SIMD16<Float> {
            var row = SIMD16<Float>()
            for l in 0..<8 { row[2 * l] = even[l]; row[2 * l + 1] = odd[l] }
            return row
        }
        store(0, interleaved(p0.0 + p1.0 + p2.0, p0.1 + p1.1 + p2.1))
        store(1, interleaved(p1.0 - p2.0 - p3.0, p1.1 - p2.1 - p3.1))
    }
}

/// F(4×4, 3×3).
private enum LargeTiles: TileTransforms {
    static let size = 4
    typealias Row = SIMD32<Float>

    /// G's rows: (¼, 0, 0), −⅙(1, 1, 1), −⅙(1, −1, 1), (1/24, 1/12, ⅙), (1/24, −1/12, ⅙), (0, 0, 1).
    @inline(__always)
    static func transformKernel(_ k: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, stride: Int) {
        typealias Six = (Float, Float, Float, Float, Float, Float)
        @inline(__always) func g(_ a: Float, _ b: Float, _ c: Float) -> Six {
            let (sixth, twelfth, twentyFourth): (Float, Float, Float) = (1.0 / 6, 1.0 / 12, 1.0 / 24)
            let (even, odd) = (twentyFourth * a + sixth * c, twelfth * b)
            return (0.25 * a, -sixth * (a + b + c), -sixth * (a - b + c), even + odd, even - odd, c)
        }
        let (c0, c1, c2) = (g(k[0], k[3], k[6]), g(k[1], k[4], k[7]), g(k[2], k[5], k[8]))
        @inline(__always) func put(_ r: Int, _ t: Six) {
            out[(6 * r) * stride] = t.0; out[(6 * r + 1) * stride] = t.1; out[(6 * r + 2) * stride] = t.2
            out[(6 * r + 3) * stride] = t.3; out[(6 * r + 4) * stride] = t.4; out[(6 * r + 5) * stride] = t.5
        }
        put(0, g(c0.0, c1.0, c2.0)); put(1, g(c0.1, c1.1, c2.1)); put(2, g(c0.2, c1.2, c2.2))
        put(3, g(c0.3, c1.3, c2.3)); put(4, g(c0.4, c1.4, c2.4)); put(5, g(c0.5, c1.5, c2.5))
    }

    typealias SixVectors = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

    /// `d ↦ Bᵀ d` for six vectors: Bᵀ's rows (4, 0, −5, 0, 1, 0), (0, −4, −4, 1, 1, 0),
    /// (0, 4, −4, −1, 1, 0), (0, −2, −1, 2, 1, 0), (0, 2, −1, −2, 1, 0), (0, 4, 0, −5, 0, 1).
    @inline(__always)
    static func inputTransform(_ d: SixVectors) -> SixVectors {
        let a = d.4 - 4 * d.2, b = d.3 - 4 * d.1  // rows 1 and 2: a ± b
        let c = d.4 - d.2, e = 2 * (d.3 - d.1)  // rows 3 and 4: c ± e
        return (4 * d.0 - 5 * d.2 + d.4, a + b, a - b, c + e, c - e, 4 * d.1 - 5 * d.3 + d.5)
    }

    @inline(__always)
    static func transformPatches(_ rows: UnsafePointer<Float>, padded: Int, tx: Int, _ put: (Int, SIMD8<Float>) -> Void) {
        // Columns 4·(tx + l) + j − 1 of each row, j = 0…5, for tiles tx + l: every fourth value
        // from two overlapping loads.
        @inline(__always) func row(_ i: Int) -> SixVectors {
            let raw = UnsafeRawPointer(rows + i * padded + 4 * tx)
            let a = raw.loadUnaligned(as: SIMD32<Float>.self)
            let b = raw.loadUnaligned(fromByteOffset: 16, as: SIMD32<Float>.self)
            return inputTransform((a.evenHalf.evenHalf, a.oddHalf.evenHalf, a.evenHalf.oddHalf,
                                   a.oddHalf.oddHalf, b.evenHalf.evenHalf, b.oddHalf.evenHalf))  // d B
        }
        let (e0, e1, e2, e3, e4, e5) = (row(0), row(1), row(2), row(3), row(4), row(5))
        // Bᵀ (d B) down the columns.
        @inline(__always) func column(_ c: Int, _ p: SixVectors) {
            let t = inputTransform(p)
            put(c, t.0); put(6 + c, t.1); put(12 + c, t.2); put(18 + c, t.3); put(24 + c, t.4); put(30 + c, t.5)
        }
        column(0, (e0.0, e1.0, e2.0, e3.0, e4.0, e5.0))
        column(1, (e0.1, e1.1, e2.1, e3.1, e4.1, e5.1))
        column(2, (e0.2, e1.2, e2.2, e3.2, e4.2, e5.2))
        column(3, (e0.3, e1.3, e2.3, e3.3, e4.3, e5.3))
        column(4, (e0.4, e1.4, e2.4, e3.4, e4.4, e5.4))
        column(5, (e0.5, e1.5, e2.5, e3.5, e4.5, e5.5))
    }

    /// `m ↦ Aᵀ m` for six vectors: Aᵀ's rows (1, 1, 1, 1, 1, 0), (0, 1, −1, 2, −2, 0),
    /// (0, 1, 1, 4, 4, 0), (0, 1, −1, 8, −8, 1).
    @inline(__always)
    static func outputTransform(_ m: SixVectors) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let (sum12, diff12, sum34, diff34) = (m.1 + m.2, m.1 - m.2, m.3 + m.4, m.3 - m.4)
        return (m.0 + sum12 + sum34, diff12 + 2 * diff34, sum12 + 4 * sum34, diff12 + 8 * diff34 + m.5)
    }

    @inline(__always)
    static func transformBack(_ get: (Int) -> SIMD8<Float>, _ store: (Int, Row) -> Void) {
        @inline(__always) func row(_ i: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {  // M A
            outputTransform((get(6 * i), get(6 * i + 1), get(6 * i + 2), get(6 * i + 3), get(6 * i + 4), get(6 * i + 5)))
        }
        let (p0, p1, p2, p3, p4, p5) = (row(0), row(1), row(2), row(3), row(4), row(5))
        // Aᵀ (M A): column dx of every tile in y_dx, output row dy in its component dy.
        let y0 = outputTransform((p0.0, p1.0, p2.0, p3.0, p4.0, p5.0))
        let y1 = outputTransform((p0.1, p1.1, p2.1, p3.1, p4.1, p5.1))
        let y2 = outputTransform((p0.2, p1.2, p2.2, p3.2, p4.2, p5.2))
        let y3 = outputTransform((p0.3, p1.3, p2.3, p3.3, p4.3, p5.3))
        @inline(__always) func interleaved(_ c0: SIMD8<Float>, _ c1: SIMD8<Float>, _ c2: SIMD8<Float>, _ c3: SIMD8<Float>) -> SIMD32<Float> {
            var row = SIMD32<Float>()
            for l in 0..<8 { row[4 * l] = c0[l]; row[4 * l + 1] = c1[l]; row[4 * l + 2] = c2[l]; row[4 * l + 3] = c3[l] }
            return row
        }
        store(0, interleaved(y0.0, y1.0, y2.0, y3.0))
        store(1, interleaved(y0.1, y1.1, y2.1, y3.1))
        store(2, interleaved(y0.2, y1.2, y2.2, y3.2))
        store(3, interleaved(y0.3, y1.3, y2.3, y3.3))
    }
}
