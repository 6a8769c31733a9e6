import Foundation
import StemifyCore
import StemifyServer
import Testing

@Suite("a batch's time left")
struct BatchETATests {
    let now = Date(timeIntervalSince1970: 10_000)

    func job(_ status: JobStatus, eta: Double? = nil, startedAgo: Double? = nil, took: Double? = nil, cacheHit: Bool = false) -> Job {
        Job(id: UUID().uuidString, status: status, progress: 0.5, etaSeconds: eta, options: JobOptions(), input: .youtube(url: "https://youtu.be/x"),
            owner: "t:a", createdAt: now, startedAt: startedAgo.map { now.addingTimeInterval(-$0) }, finishedAt: nil, errorCode: nil,
            errorMessage: nil, stems: [], metrics: took.map { JobMetrics(processingSeconds: $0, audioSeconds: 60, inputFormat: "wav", outputBytes: 0, cacheHit: cacheHit) },
            attempts: 1)
    }

    func eta(_ jobs: [Job]) -> Double? {
        var timing = BatchETA()
        for j in jobs { timing.add(j, now: now) }
        return timing.remaining()
    }

    @Test("a running song's ETA, then the queued ones at the measured time per song, spread over the songs running")
    func estimates() {
        // Running for 10 s with 30 left: 40 s a song; two more queued behind it.
        #expect(eta([job(.separating, eta: 30, startedAgo: 10), job(.queued), job(.queued)]) == 110)
        // Finished songs count with their own time (cache hits took none of the work).
        #expect(eta([job(.done, took: 20), job(.done, took: 1, cacheHit: true), job(.encoding, eta: 5, startedAgo: 15), job(.queued)]) == 25)
        // Two side by side share the queue.
        #expect(eta([job(.separating, eta: 10, startedAgo: 30), job(.separating, eta: 20, startedAgo: 20), job(.queued), job(.queued)]) == 60)
        // Nothing known yet: no number rather than a guess that climbs.
        #expect(eta([job(.decoding), job(.queued)]) == nil)
        #expect(eta([job(.queued), job(.queued)]) == nil)
        #expect(eta([job(.done, took: 5), job(.failed), job(.cancelled)]) == 0)
    }

    @Test("as a running song counts down, the batch counts down with it: it never climbs while nothing else happens")
    func steady() {
        var previous = Double.infinity
        for t in stride(from: 0.0, through: 25, by: 5) {
            // The worker's countdown: 5 s later, 5 s more behind it and 5 s less ahead.
            let left = eta([job(.separating, eta: 30 - t, startedAgo: 10 + t), job(.queued)]) ?? .infinity
            #expect(left < previous)
            previous = left
        }
    }
}
