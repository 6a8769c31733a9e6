import Foundation

/// Runs blocking work (subprocesses, the engine) on a thread of its own and awaits its result.
///
/// Swift's cooperative pool has one thread per core; a subprocess wait or a minutes-long
/// separation there would stall every request and, with ``blocking(_:)`` waiting on a task,
/// could deadlock. A dedicated thread costs little next to that work.
public func onThread<T: Sendable>(_ body: @Sendable @escaping () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
