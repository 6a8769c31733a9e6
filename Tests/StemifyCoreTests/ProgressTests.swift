import Foundation
import StemifyCore
import Synchronization
import Testing

/// What a job's status says about the time left: counted down between reports, never 0 while
/// work remains, the encoding after the separation included.
@Suite("honest progress")
struct ProgressTests {
    final class FakeClock: Sendable {
        let now = Mutex(Date(timeIntervalSince1970: 1_000))
        func advance(_ seconds: Double) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
        func read() -> Date { now.withLock { $0 } }
    }

    @Test("between reports the ETA counts down with the clock and stops at 1 s; it never climbs by itself")
    func countdown() {
        let clock = FakeClock()
        let state = RunState(clock: { clock.read() })
        state.set(.separating, 0.3, eta: 60)
        var last = Double.infinity
        for _ in 0..<80 {
            let eta = state.snapshot().eta ?? -1
            #expect(eta <= last && eta >= 1)
            last = eta
            clock.advance(1)
        }
        #expect(state.snapshot().eta == 1, "still working: not 0")
        #expect(state.snapshot().progress == 0.3)
    }

    @Test("encoding moves the progress along its estimate without passing 99 %; progress never goes back")
    func encodingPhase() {
        let clock = FakeClock()
        let state = RunState(clock: { clock.read() })
        state.set(.separating, 0.8, eta: 30)
        state.set(.encoding, 0.9, eta: 20, towards: 0.99)
        #expect(state.snapshot().progress == 0.9)
        clock.advance(10)
        let half = state.snapshot()
        #expect(abs(half.progress - 0.945) < 1e-9 && abs((half.eta ?? 0) - 10) < 1e-9)
        clock.advance(100)
        #expect(state.snapshot().progress == 0.99 && state.snapshot().eta == 1)
        state.set(.encoding, 0.5)
        #expect(state.snapshot().progress >= 0.9)
    }

    @Test("the ETA is the separation's measured rate over what is left, plus the encoding; none before the first chunk")
    func estimate() {
        #expect(JobETA.remaining(fraction: 0, elapsed: 5, encoding: 10) == nil)
        #expect(JobETA.remaining(fraction: 0.25, elapsed: 10, encoding: 8) == 38)
        // A 4-minute song's four mp3 stems: about 20 s on a slow CPU, never 0.
        let mp3 = JobETA.encodingSeconds(audio: 240, stems: 4, format: .mp3)
        #expect(mp3 > 10 && mp3 < 40)
        #expect(JobETA.encodingSeconds(audio: 240, stems: 4, format: .wav) < mp3)
        #expect(JobETA.remaining(fraction: 1 - 1e-9, elapsed: 100, encoding: mp3)! >= mp3)
    }
}
