import Foundation
import Synchronization

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

/// Awaits `operation`, but stops waiting as soon as the calling task is cancelled; the
/// operation then runs to its end unobserved.
///
/// For the calls a graceful stop must not wait on: a database client does not cancel a query
/// it has sent, so one that never got its answer (a connection left half-open by a server
/// restart) would keep a worker past its SIGTERM. Whatever such a call did still completes on
/// the server, so it must be one the queue recovers from anyway (a claim: its lease runs out).
func abandoningOnCancel<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = Outcome<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            outcome.wait(continuation)
            Task {
                do { outcome.finish(.success(try await operation())) } catch { outcome.finish(.failure(error)) }
            }
        }
    } onCancel: {
        outcome.finish(.failure(CancellationError()))
    }
}

/// The first of a result and a cancellation, handed to one waiting continuation.
private final class Outcome<T: Sendable>: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<T, any Error>)
        case finished(Result<T, any Error>)
        case delivered
    }
    private let state = Mutex<State>(.idle)

    func wait(_ continuation: CheckedContinuation<T, any Error>) {
        let ready: Result<T, any Error>? = state.withLock { s in
            if case let .finished(result) = s { s = .delivered; return result }
            s = .waiting(continuation)
            return nil
        }
        if let ready { continuation.resume(with: ready) }
    }

    func finish(_ result: Result<T, any Error>) {
        let waiting: CheckedContinuation<T, any Error>? = state.withLock { s in
            switch s {
            case .idle: s = .finished(result); return nil
            case let .waiting(c): s = .delivered; return c
            case .finished, .delivered: return nil
            }
        }
        waiting?.resume(with: result)
    }
}
