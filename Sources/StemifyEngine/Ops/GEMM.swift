import CStemifySystem
import Dispatch
import Foundation

/// `C = alpha · op(A) · op(B) + beta · C` in row-major storage, through OpenBLAS `cblas_sgemm`
/// (``MatrixKernels``).
///
/// Large products are split into column (or row) blocks, computed by single-threaded sgemm
/// calls on the engine's threads. OpenBLAS's own threads spun in `sched_yield` between calls
/// and fought the engine's other parallel loops for the cores (a quarter of all cycles in a
/// profile).
///
/// The blocks depend on the product's shape only, never on how many threads run them: a chunk's
/// stems must not depend on the width of its lane (the last chunks of a run get more threads, a
/// resumed run groups chunks differently), and OpenBLAS's kernels block a call by its own size,
/// so the same columns computed in a call of another width can differ in their last bits
/// (OpenBLAS's Haswell sgemm does; its SkylakeX one does not, except below its small-matrix
/// bound).
///
/// - Parameters:
///   - m, n, k: `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`.
///   - lda, ldb, ldc: row strides in elements (they let a call work on a column block).
///   - parallel: false inside a caller's own parallel loop (one product per attention head):
///     one call.
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
    MatrixKernels.ensureLoaded()
    let byColumns = n >= m
    let total = byColumns ? n : m
    let blocks = parallel ? productBlocks(m: m, n: n, k: k) : 1
    guard blocks > 1 else {
        sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    let (pa, pb) = (UnsafeSendable(a), UnsafeSendable(b))
    let pc = UnsafeMutableSendablePointer(c)
    let units = (total + productBlockUnit - 1) / productBlockUnit
    let block = { @Sendable (part: Int) in
        let lo = units * part / blocks * productBlockUnit
        let hi = min(total, units * (part + 1) / blocks * productBlockUnit)
        if byColumns {
            sgemm(transA, transB, m, hi - lo, k, alpha, pa.pointer, lda,
                  pb.pointer + (transB ? lo * ldb : lo), ldb, beta, pc.pointer + lo, ldc)
        } else {
            sgemm(transA, transB, hi - lo, n, k, alpha, pa.pointer + (transA ? lo : lo * lda), lda,
                  pb.pointer, ldb, beta, pc.pointer + lo * ldc, ldc)
        }
    }
    // At most the lane's width of threads, each taking every `workers`-th block.
    let workers = min(blocks, EngineThreads.count)
    if workers > 1 {
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for part in Swift.stride(from: worker, to: blocks, by: workers) { block(part) }
        }
    } else {
        for part in 0..<blocks { block(part) }
    }
}

/// Blocks start at multiples of this, where OpenBLAS's register tiles do.
private let productBlockUnit = 64

/// How many blocks ``gemm`` splits a product into: a function of the shape alone. Each block
/// is above OpenBLAS's small-matrix bound (10⁶ multiply-adds) and spans at least 512 rows or
/// columns, so re-packing the other operand once per block stays small: on one thread eight
/// blocks took −15 to +9 % of one call's time (`2688 × 512 · 512 × 2048` and `48 × 384 · 384 ×
/// 43008`, OpenBLAS SkylakeX and Haswell), and they keep up to eight threads busy.
func productBlocks(m: Int, n: Int, k: Int) -> Int {
    let total = max(m, n), work = m * n * k
    guard work >= 1 << 21 else { return 1 }
    let perBlock = max(512, (smallMatrixBound / max(work / total, 1) + 2 * productBlockUnit) / productBlockUnit * productBlockUnit)
    return max(1, min(8, total / perBlock))
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
    stemify_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k),
                  alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The matrix kernels: OpenBLAS, loaded by the engine before its first product with the kernels
/// of the engine's instruction set (``InstructionSet/active``), so that `STEMIFY_ISA=avx2`
/// measures and tests an AVX2 machine's products too, and an `OPENBLAS_CORETYPE` left in the
/// environment cannot halve them. The choice is fixed for the process once loaded.
public enum MatrixKernels {
    /// Loads OpenBLAS if it is not loaded yet and returns the kernels it runs ("SkylakeX",
    /// "Haswell", ...). Programs call it when they start, so that a missing library is an error
    /// there rather than at the first product.
    @discardableResult
    public static func load() throws(InstructionSetError) -> String {
        try loaded.get()
    }

    /// OpenBLAS's name for the level the engine's instruction set asks for; nil leaves the choice
    /// to `OPENBLAS_CORETYPE` or OpenBLAS's CPU table (an AVX2 set that is this CPU's best, where
    /// its table knows AMD's Zen from Intel's Haswell; the portable set; arm64).
    public static func coretype(for isa: InstructionSet) -> String? {
        #if arch(x86_64)
        switch isa {
        // SkylakeX's sgemm is also what Cooperlake and Sapphire Rapids run.
        case .avx512: return "SkylakeX"
        case .avx2 where isa < InstructionSet.best: return "Haswell"
        default: return nil
        }
        #else
        return nil
        #endif
    }

    private static let loaded: Result<String, InstructionSetError> = {
        guard stemify_blas_open(coretype(for: InstructionSet.active)) == 0 else {
            return .failure(InstructionSetError(message:
                "OpenBLAS could not be loaded (\(String(cString: stemify_blas_error()))); install libopenblas0 or name the library in STEMIFY_OPENBLAS"))
        }
        return .success(String(cString: stemify_blas_corename()))
    }()

    /// Called before every product; after the first, a load that cannot fail.
    @inline(__always)
    static func ensureLoaded() {
        if case .failure(let error) = loaded { fatalError(error.message) }
    }
}

struct UnsafeSendable: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    init(_ pointer: UnsafePointer<Float>) { self.pointer = pointer }
}

/// Thread settings for the engine: BLAS threads and the width of the engine's own parallel loops.
public enum EngineThreads {
    nonisolated(unsafe) private static var current = ProcessInfo.processInfo.activeProcessorCount

    /// Sets the engine's parallel width (the CLI's `-j`); the default is the number of active
    /// processors. OpenBLAS itself runs single-threaded inside the engine's blocks (blas.c).
    public static func set(_ count: Int) {
        current = max(1, count)
    }

    /// The width of the engine's own parallel loops on the calling thread: a lane's share while
    /// it runs a chunk (``withWidth(_:_:)``), else the process-wide setting.
    public static var count: Int {
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
