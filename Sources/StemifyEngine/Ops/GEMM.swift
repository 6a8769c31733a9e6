import CBLAS
import CStemifySystem
import Dispatch
import Foundation

/// `C = alpha · op(A) · op(B) + beta · C` in row-major storage, through OpenBLAS `cblas_sgemm`.
///
/// Large products are split into column (or row) blocks, one per engine thread, each computed by
/// a single-threaded sgemm. OpenBLAS's own threads spin in `sched_yield` between calls and fought
/// the engine's other parallel loops for the two cores (a quarter of all cycles in a profile).
///
/// - Parameters:
///   - m, n, k: `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`.
///   - lda, ldb, ldc: row strides in elements (they let a call work on a column block).
///   - parallel: false inside a caller's own parallel loop (one product per attention head).
@inline(__always)
func gemm(
    transA: Bool = false, transB: Bool = false,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    parallel: Bool = true
) {
    guard m > 0, n > 0 else { return }
    let threads = EngineThreads.count
    let work = m * n * k
    if parallel && threads > 1 && work >= 1 << 21 {
        let byColumns = n >= m
        let total = byColumns ? n : m
        // Each block must compute its elements exactly as one call would, so that a chunk's
        // result does not depend on its lane's width: blocks start at multiples of 64 (where
        // OpenBLAS's register tiles do) and each stays above OpenBLAS's small-matrix bound
        // (10⁶ multiply-adds), below which it switches kernels (a lane of three, splitting at
        // thirds, changed the stems).
        let unit = 64
        let minimum = (smallMatrixBound / max(work / total, 1) + 2 * unit) / unit * unit
        let parts = min(threads, total / minimum)
        guard parts > 1 else {
            sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let (pa, pb) = (UnsafeSendable(a), UnsafeSendable(b))
        let pc = UnsafeMutableSendablePointer(c)
        let units = (total + unit - 1) / unit
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lo = units * part / parts * unit, hi = min(total, units * (part + 1) / parts * unit)
            let count = hi - lo
            if byColumns {
                sgemm(transA, transB, m, count, k, alpha, pa.pointer, lda,
                      pb.pointer + (transB ? lo * ldb : lo), ldb, beta, pc.pointer + lo, ldc)
            } else {
                sgemm(transA, transB, count, n, k, alpha, pa.pointer + (transA ? lo : lo * lda), lda,
                      pb.pointer, ldb, beta, pc.pointer + lo * ldc, ldc)
            }
        }
        return
    }
    sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// OpenBLAS (0.3.17 and later, x86-64) computes products of at most this many multiply-adds
/// with separate "small matrix" kernels.
let smallMatrixBound = 1_000_000

@inline(__always)
private func sgemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor,
        transA ? CblasTrans : CblasNoTrans,
        transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k),
        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

struct UnsafeSendable: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    init(_ pointer: UnsafePointer<Float>) { self.pointer = pointer }
}

/// Thread settings for the engine: BLAS threads and the width of the engine's own parallel loops.
public enum EngineThreads {
    nonisolated(unsafe) private static var current = ProcessInfo.processInfo.activeProcessorCount

    /// Sets the engine's parallel width (the CLI's `-j`); the default is the number of active
    /// processors. OpenBLAS itself runs single-threaded inside the engine's blocks.
    public static func set(_ count: Int) {
        current = max(1, count)
        openblas_set_num_threads(1)
    }

    /// The width of the engine's own parallel loops on the calling thread: a lane's share while
    /// it runs a chunk (``withWidth(_:_:)``), else the process-wide setting.
    public static var count: Int {
        _ = blasSingleThreaded
        let lane = Int(stemify_thread_width())
        return lane > 0 ? lane : current
    }

    nonisolated(unsafe) private static var lanesLimit: Int?

    /// The most chunks one separation runs at once (see `Lanes`), each holding its own
    /// activations; nil (the default) lets the separation choose: one per thread, up to 24 s of
    /// audio in flight.
    public static var maxLanes: Int? { lanesLimit }

    /// Sets ``maxLanes``; 0 restores the automatic choice.
    public static func setMaxLanes(_ count: Int) { lanesLimit = count > 0 ? count : nil }

    /// Runs `body` with this thread's parallel width set to `width` (a separation started inside
    /// runs `width` chunks at once; tests use it to compare lane counts without touching the
    /// process-wide setting).
    public static func withWidth<T>(_ width: Int, _ body: () throws -> T) rethrows -> T {
        let saved = stemify_thread_width()
        stemify_set_thread_width(Int32(max(1, width)))
        defer { stemify_set_thread_width(saved) }
        return try body()
    }

    /// Runs once, before the first product, whether or not `set` was called.
    private static let blasSingleThreaded: Void = {
        // The allocator is tuned when the binary loads (CStemifySystem.c).
        openblas_set_num_threads(1)
    }()
}

/// Runs `body(range)` over `0..<total` split into about `EngineThreads.count` contiguous ranges.
/// Small totals run inline: thread hand-off costs more than it saves below `minPerTask` items.
@inline(__always)
func parallelFor(_ total: Int, minPerTask: Int = 1, _ body: (Range<Int>) -> Void) {
    let tasks = min(EngineThreads.count, max(1, total / max(minPerTask, 1)))
    if tasks <= 1 {
        body(0..<total)
        return
    }
    withoutActuallyEscaping(body) { body in
        // The tasks write disjoint ranges; the closure itself is only called, never stored.
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: tasks) { t in
            let lo = total * t / tasks
            let hi = total * (t + 1) / tasks
            if lo < hi { shared.value(lo..<hi) }
        }
    }
}

private struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
