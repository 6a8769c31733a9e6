import Foundation
import Logging
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// `/api/batches`: several songs with shared options, one job each; the batch's status, its
/// event stream, cancelling what has not finished, and one ZIP of every finished song's stems.
struct BatchesController: Sendable {
    let intake: SongIntake
    var queue: any JobQueue { intake.queue }
    var storage: any JobStorage { intake.storage }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("/api/batches", use: submit)
        router.get("/api/batches", use: list)
        router.get("/api/batches/:id", use: status)
        router.get("/api/batches/:id/events", use: events)
        router.delete("/api/batches/:id", use: cancel)
        router.get("/api/batches/:id/stems.zip", use: zip)
    }

    /// The batch as the API shows it.
    struct BatchResponse: Encodable, Equatable {
        struct Song: Encodable, Equatable {
            var jobId: String
            var name: String
            /// The job's status, or `deleted` once it was cancelled or expired.
            var status: String
            var job: JobsController.JobResponse?
            enum CodingKeys: String, CodingKey { case jobId = "job_id", name, status, job }
        }
        var batchId: String
        /// `queued` (nothing started) or `running`; once every song finished: `done` (all done),
        /// `partially_done` (some done), `cancelled` (none done, at least one cancelled or
        /// deleted) or `failed` (none done, the others failed).
        var status: String
        var progress: Double
        var etaSeconds: Double?
        var createdAt: String
        var counts: [String: Int]
        var songs: [Song]
        var statusUrl: String
        var eventsUrl: String
        var zipUrl: String
        /// Only in the answer to the request that made the caller's owner token.
        var ownerToken: String?

        enum CodingKeys: String, CodingKey {
            case batchId = "batch_id", status, progress, etaSeconds = "eta_seconds", createdAt = "created_at", counts, songs,
                 statusUrl = "status_url", eventsUrl = "events_url", zipUrl = "zip_url", ownerToken = "owner_token"
        }

        var isFinished: Bool { Self.finishedStatuses.contains(status) }
        static let finishedStatuses: Set<String> = ["done", "partially_done", "cancelled", "failed"]
    }

    func response(_ batch: Batch) async throws -> BatchResponse {
        var songs: [BatchResponse.Song] = []
        var done = 0.0
        var counts: [String: Int] = [:]
        var timing = BatchETA()
        for song in batch.songs {
            let job = try await queue.job(id: song.jobID)
            var view: JobsController.JobResponse?
            if let job { view = JobsController.JobResponse(job, position: try await queue.position(id: job.id), storage: storage,
                                                                 resultTTL: intake.configuration.resultTTLSeconds) }
            let status = job?.status.rawValue ?? "deleted"
            counts[status, default: 0] += 1
            if let job, !job.status.isTerminal {
                done += job.progress
            } else {
                done += 1
            }
            if let job { timing.add(job) }
            songs.append(.init(jobId: song.jobID, name: song.name, status: status, job: view))
        }
        let progress = batch.songs.isEmpty ? 1 : done / Double(batch.songs.count)
        let open = songs.filter { !["done", "failed", "cancelled", "deleted"].contains($0.status) }
        let status: String
        if open.isEmpty {
            let done = counts["done", default: 0]
            status = done == songs.count ? "done" : done > 0 ? "partially_done"
                : counts["cancelled", default: 0] + counts["deleted", default: 0] > 0 ? "cancelled" : "failed"
        } else {
            status = open.count == songs.count && open.allSatisfy { $0.status == "queued" } ? "queued" : "running"
        }
        let finished = open.isEmpty
        let eta: Double? = finished ? 0 : timing.remaining().map { $0.rounded() }
        let id = batch.id
        return BatchResponse(
            batchId: id, status: status, progress: (progress * 1000).rounded() / 1000, etaSeconds: eta,
            createdAt: ISO8601DateFormatter().string(from: batch.createdAt), counts: counts, songs: songs,
            statusUrl: "/api/batches/\(id)", eventsUrl: "/api/batches/\(id)/events", zipUrl: "/api/batches/\(id)/stems.zip")
    }

    /// The batch, when the caller owns it; anyone else gets the same 404 as for no batch.
    func load(_ context: AppRequestContext) async throws -> Batch {
        let id = try context.parameters.require("id")
        guard let batch = try await queue.batch(id: id), context.caller.owns(batch.owner) else {
            throw StemifyError(.batchNotFound, "no batch '\(id.prefix(64))' (it may have expired)")
        }
        return batch
    }

    /// Multipart with repeated `file` parts, `upload_id` and `youtube_url` fields, or JSON whose
    /// `upload_id` / `youtube_url` are arrays; the options apply to every song. All songs are
    /// checked before any is queued: one bad song refuses the batch and names it.
    @Sendable func submit(_ request: Request, context: AppRequestContext) async throws -> Response {
        let limit = intake.configuration.maxBatchSize
        let tooMany = StemifyError(.invalidBatch, "a batch holds at most \(limit) songs")
        do {
            let idempotencyKey = try Idempotency.key(request)
            let form = try await intake.readForm(request, maxSongs: limit, tooMany: tooMany)
            var accepted = false
            defer { if !accepted { intake.discard(form.songs) } }
            let options = try intake.parseOptions(form.fields)
            guard !form.songs.isEmpty else {
                throw StemifyError(.invalidBatch, "send at least one song: 'file' parts, 'upload_id' or 'youtube_url' fields")
            }
            let caller = context.caller
            return try await Idempotency(queue: queue).run(
                key: idempotencyKey, owner: caller.owner ?? "address:\(caller.quotaClient)",
                fingerprint: try Idempotency.fingerprint(path: request.uri.path, form: form, storage: storage)
            ) {
                let (owner, newToken) = caller.ownerForCreation()
                let songs = try await intake.check(form.songs, options: options, owner: owner)
                if let refusal = try await intake.admit(songs, caller: caller) { return .other(refusal) }
                let batch = Batch(id: intake.newJobID(), owner: owner, createdAt: Date(),
                                  songs: songs.map { Batch.Song(jobID: $0.jobID, name: $0.name) })
                do {
                    let jobs = try await intake.accept(songs, options: options, owner: owner)
                    try await intake.enqueue(jobs)
                    do {
                        try await queue.addBatch(batch)
                    } catch {
                        for job in jobs {
                            _ = try? await queue.cancel(id: job.id)
                            await storage.removeAll(job)
                        }
                        throw error
                    }
                } catch {
                    await intake.refund(songs, caller: caller)
                    throw error
                }
                accepted = true
                context.logger.info("batch queued", metadata: ["batch.id": "\(batch.id)", "batch.songs": "\(batch.songs.count)", "client": "\(caller.quotaClient)"])
                var answer = try await response(batch)
                answer.ownerToken = newToken
                var headers: HTTPFields = [.location: "/api/batches/\(batch.id)"]
                headers.append(contentsOf: (try? await intake.rateLimitHeaders(caller)) ?? [:])
                if let newToken { headers.append(contentsOf: OwnerToken.headers(newToken)) }
                return .created(status: .accepted, body: try jsonBytes(answer), headers: headers)
            }
        } catch let error as StemifyError {
            intake.metrics.recordRejection(code: error.code)
            throw error
        }
    }

    /// The caller's batches (an admin key's: everyone's), newest first: `limit` (1–50, each
    /// batch carries its songs' jobs), `cursor` from the page before.
    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let (limit, cursor) = try ListingCursor.page(request.uri.queryParameters, maxLimit: 50)
        let caller = context.caller
        guard caller.isAdmin || caller.owner != nil else { return try jsonResponse(ListingPage<BatchResponse>(name: "batches", items: [], nextCursor: nil), headers: [.cacheControl: "no-store"]) }
        let batches = try await queue.batches(owner: caller.isAdmin ? nil : caller.owner, after: cursor, limit: limit + 1)
        var views: [BatchResponse] = []
        for batch in batches.prefix(limit) { views.append(try await response(batch)) }
        let next = batches.count > limit
            ? batches.prefix(limit).last.map { ListingCursor.encode(ListCursor(createdAt: $0.createdAt.timeIntervalSince1970, id: $0.id)) } : nil
        return try jsonResponse(ListingPage(name: "batches", items: views, nextCursor: next), headers: [.cacheControl: "no-store"])
    }

    @Sendable func status(_ request: Request, context: AppRequestContext) async throws -> Response {
        try jsonResponse(try await response(try await load(context)), headers: [.cacheControl: "no-store"])
    }

    /// Server-Sent Events: the batch whenever any of its songs changes, until all are finished.
    @Sendable func events(_ request: Request, context: AppRequestContext) async throws -> Response {
        let batch = try await load(context)
        let controller = self
        let resumeFrom = request.headers[.lastEventID]
        let body = ResponseBody { writer in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var last: BatchResponse?
            var lastWrite = ContinuousClock.now
            try await writer.write(ByteBuffer(string: EventStream.preamble))
            while true {
                var current = try await controller.response(batch)
                // The ETA moves every second; a change of it alone is not news.
                current.etaSeconds = current.etaSeconds.map { ($0 / 5).rounded() * 5 }
                if current != last {
                    let json = String(decoding: try encoder.encode(current), as: UTF8.self)
                    let tag = EventStream.id(json)
                    // A client resuming with the state it already has is not sent it again.
                    if last != nil || tag != resumeFrom {
                        try await writer.write(ByteBuffer(string: "id: \(tag)\nevent: status\ndata: \(json)\n\n"))
                        lastWrite = .now
                    }
                    last = current
                } else if ContinuousClock.now - lastWrite > .seconds(10) {
                    // As the job stream: a comment after 10 s of silence.
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    lastWrite = .now
                }
                if current.isFinished { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }

    /// Cancels every song that has not finished (and removes its files); finished songs and the
    /// batch stay, so their stems can still be fetched.
    @Sendable func cancel(_ request: Request, context: AppRequestContext) async throws -> Response {
        let batch = try await load(context)
        for song in batch.songs {
            guard let job = try await queue.job(id: song.jobID), !job.status.isTerminal,
                  let cancelled = try await queue.markCancelled(id: job.id) else { continue }
            await storage.removeAll(cancelled)
            intake.metrics.recordCancelled()
            if let delivery = WebhookDelivery(for: cancelled) { try? await queue.addDelivery(delivery) }
        }
        return try jsonResponse(try await response(batch))
    }

    /// Every stem of every finished song, `NN name/stem.ext`, streamed as it is read.
    @Sendable func zip(_ request: Request, context: AppRequestContext) async throws -> Response {
        let batch = try await load(context)
        var entries: [StemArchive.Entry] = []
        var folders = Set<String>()
        for (index, song) in batch.songs.enumerated() {
            guard let job = try await queue.job(id: song.jobID), job.status == .done else { continue }
            var folder = String(format: "%02d ", index + 1) + zipFolderName(song.name)
            while !folders.insert(folder).inserted { folder += "_" }
            for stem in job.stems { entries.append(.init(name: "\(folder)/\(stemFileName(zipFolderName(song.name), stem))", stem: stem)) }
        }
        guard !entries.isEmpty else {
            let answer = try await response(batch)
            throw StemifyError(.stemNotFound, answer.isFinished
                ? "no song of batch '\(batch.id)' was separated (every one \(answer.status == "failed" ? "failed" : "was cancelled or failed"))"
                : "no song of batch '\(batch.id)' has finished yet")
        }
        return StemArchive(storage: storage).response(entries, filename: "stemify-\(batch.id.prefix(8)).zip", logger: context.logger)
    }
}

/// A batch's time left from its songs' own measurements: a running song's ETA, a queued one
/// the average time the batch's songs have taken (finished ones, or running ones so far plus
/// their ETA), spread over the songs running side by side. It moves only when a song reports,
/// and counts down with them; before any song has an estimate there is none.
package struct BatchETA {
    package init() {}
    private var running: [Double] = []
    private var queued = 0
    private var durations: [Double] = []

    package mutating func add(_ job: Job, now: Date = Date()) {
        switch job.status {
        case .done:
            if let seconds = job.metrics?.processingSeconds, job.metrics?.cacheHit == false { durations.append(seconds) }
        case .queued:
            queued += 1
        case .failed, .cancelled:
            break
        default:
            guard let eta = job.etaSeconds else {
                running.append(.nan)
                return
            }
            running.append(eta)
            if let started = job.startedAt { durations.append(now.timeIntervalSince(started) + eta) }
        }
    }

    package func remaining() -> Double? {
        let known = running.filter { !$0.isNaN }
        if queued == 0 && running.isEmpty { return 0 }
        guard known.count == running.count, !(queued > 0 && durations.isEmpty) else { return nil }
        let perSong = durations.isEmpty ? 0 : durations.reduce(0, +) / Double(durations.count)
        let lanes = Double(max(1, running.count))
        return (known.max() ?? 0) + Double(queued) * perSong / lanes
    }
}
