import CBLAS
import Dispatch
import Foundation

/// `C = alpha · op(A) · op(B) + beta · C` in row-major storage, through OpenBLAS `cblas_sgemm`.
///
/// - Parameters:
///   - m, n, k: `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`.
///   - lda, ldb, ldc: row strides in elements (they let a call work on a column block).
@inline(__always)
func gemm(
    transA: Bool = false, transB: Bool = false,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(
        CblasRowMajor,
        transA ? CblasTrans : CblasNoTrans,
        transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k),
        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Thread settings for the engine: BLAS threads and the width of the engine's own parallel loops.
public enum EngineThreads {
    nonisolated(unsafe) private static var current = ProcessInfo.processInfo.activeProcessorCount

    /// Sets both the OpenBLAS thread count and the engine's parallel loop width.
    /// Call once at start (the CLI's `-j`); the default is the number of active processors.
    public static func set(_ count: Int) {
        let n = max(1, count)
        current = n
        openblas_set_num_threads(Int32(n))
    }

    /// The width of the engine's own parallel loops.
    public static var count: Int { current }
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
