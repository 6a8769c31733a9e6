import Foundation
import Logging
import Hummingbird
import NIOCore
import AsyncHTTPClient
import NIOHTTP1
import HTTPTypes
import StemifyCore

/// `GET /api/jobs/{id}`, its event stream, cancellation and stem downloads.
struct JobsController: Sendable {
    let queue: any JobQueue
    let storage: any JobStorage
    /// `result_ttl`: how long a finished job is kept (its `expires_at`).
    let resultTTL: Double
    let metrics: ServiceMetrics

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/api/jobs", use: list)
        router.get("/api/jobs/:id", use: status)
        router.get("/api/jobs/:id/events", use: events)
        router.delete("/api/jobs/:id", use: cancel)
        router.get("/api/jobs/:id/stems.zip", use: zip)
        router.get("/api/jobs/:id/stems/:file", use: stem)
        router.head("/api/jobs/:id/stems/:file", use: stem)
        router.get("/api/jobs/:id/peaks/:name", use: peaks)
        router.get("/api/jobs/:id/playback/:name", use: playback)
        router.head("/api/jobs/:id/playback/:name", use: playback)
    }

    /// The job as the API shows it.
    struct JobResponse: Encodable, Equatable {
        struct ErrorBody: Encodable, Equatable {
            var code: String
            var message: String
        }
        struct Stem: Encodable, Equatable {
            var name: String
            var url: String
            var format: String
            var bytes: Int
            var duration: Double
            var peaksUrl: String?
            var playbackUrl: String?

            enum CodingKeys: String, CodingKey {
                case name, url, format, bytes, duration, peaksUrl = "peaks_url", playbackUrl = "playback_url"
            }
        }
        var jobId: String
        var status: String
        var stage: String?
        var progress: Double
        var etaSeconds: Double?
        var queuePosition: Int?
        var model: String
        var createdAt: String
        var error: ErrorBody?
        var stems: [Stem]
        var metrics: JobMetrics?
        var statusUrl: String
        var eventsUrl: String
        var zipUrl: String
        /// What was asked for, as the job runs it (the quality preset resolved).
        var options: JobOptions
        /// The uploaded file's name or the link.
        var inputName: String
        var startedAt: String?
        /// When it finished: done, failed or cancelled.
        var finishedAt: String?
        /// When a finished job and its stems are removed (`result_ttl` after it finished).
        var expiresAt: String?
        /// Its `callback_url` and every delivery so far (in `GET /api/jobs/{id}`).
        var webhook: Webhook?

        struct Webhook: Encodable, Equatable {
            var url: String
            var deliveries: [WebhookDelivery]
        }

        enum CodingKeys: String, CodingKey {
            case jobId = "job_id", status, stage, progress, etaSeconds = "eta_seconds", queuePosition = "queue_position", model,
                 createdAt = "created_at", error, stems, metrics, statusUrl = "status_url", eventsUrl = "events_url",
                 zipUrl = "zip_url", options, inputName = "input_name", startedAt = "started_at", finishedAt = "finished_at",
                 expiresAt = "expires_at", webhook
        }

        /// - Parameters:
        ///   - storage: gives each stem's direct URL (presigned or CDN) when it has one; otherwise the API serves it.
        ///   - resultTTL: seconds a finished job is kept.
        init(_ job: Job, position: Int?, storage: any JobStorage, resultTTL: Double) {
            jobId = job.id
            status = job.status.rawValue
            stage = job.status.isTerminal || job.status == .queued ? nil : job.status.rawValue
            progress = (job.progress * 1000).rounded() / 1000
            etaSeconds = job.etaSeconds.map { $0.rounded() }
            queuePosition = position
            model = job.options.model
            createdAt = ISO8601DateFormatter().string(from: job.createdAt)
            error = job.errorCode.map { ErrorBody(code: $0.rawValue, message: job.errorMessage ?? "") }
            stems = job.stems.map { stem in
                let url = storage.directURL(stem.file) ?? "/api/jobs/\(job.id)/stems/\(stem.name).\(stem.format)"
                return Stem(name: stem.name, url: url, format: stem.format, bytes: stem.bytes, duration: stem.duration,
                            peaksUrl: stem.peaks == nil ? nil : "/api/jobs/\(job.id)/peaks/\(stem.name)",
                            playbackUrl: stem.playbackFile == nil ? nil : "/api/jobs/\(job.id)/playback/\(stem.name)")
            }
            metrics = job.metrics
            statusUrl = "/api/jobs/\(job.id)"
            eventsUrl = "/api/jobs/\(job.id)/events"
            zipUrl = "/api/jobs/\(job.id)/stems.zip"
            options = job.options
            inputName = switch job.input {
            case let .upload(_, filename): filename
            case let .youtube(url): url
            }
            let format = ISO8601DateFormatter()
            startedAt = job.startedAt.map(format.string(from:))
            finishedAt = job.finishedAt.map(format.string(from:))
            expiresAt = job.status.isTerminal ? job.finishedAt.map { format.string(from: $0.addingTimeInterval(resultTTL)) } : nil
        }
    }

    /// The job, when the caller owns it; anyone else gets the same 404 as for no job.
    func load(_ context: AppRequestContext) async throws -> (Job, JobResponse) {
        let id = try context.parameters.require("id")
        guard let job = try await queue.job(id: id), context.caller.owns(job.owner) else {
            throw StemifyError(.jobNotFound, "no job '\(id)' (it may have expired or been deleted)")
        }
        return (job, JobResponse(job, position: try await queue.position(id: id), storage: storage, resultTTL: resultTTL))
    }

    /// The caller's jobs (an admin key's: everyone's), newest first: `limit` (1–100, default
    /// 20), `cursor` from the page before, `status` (comma-separated statuses).
    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let (limit, cursor) = try ListingCursor.page(query, maxLimit: 100)
        var statuses: [JobStatus]?
        if let text = query["status"], !text.isEmpty {
            statuses = try text.split(separator: ",").map { word in
                guard let status = JobStatus(rawValue: String(word)) else {
                    throw StemifyError(.invalidOption, "status takes \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")), comma-separated")
                }
                return status
            }
        }
        let caller = context.caller
        // Without a token nothing is the caller's yet.
        guard caller.isAdmin || caller.owner != nil else { return try jsonResponse(ListingPage<JobResponse>(name: "jobs", items: [], nextCursor: nil), headers: [.cacheControl: "no-store"]) }
        let jobs = try await queue.jobs(owner: caller.isAdmin ? nil : caller.owner, statuses: statuses, after: cursor, limit: limit + 1)
        var views: [JobResponse] = []
        for job in jobs.prefix(limit) {
            views.append(JobResponse(job, position: job.status == .queued ? try await queue.position(id: job.id) : nil, storage: storage, resultTTL: resultTTL))
        }
        let next = jobs.count > limit ? jobs.prefix(limit).last.map { ListingCursor.encode(ListCursor(after: $0)) } : nil
        return try jsonResponse(ListingPage(name: "jobs", items: views, nextCursor: next), headers: [.cacheControl: "no-store"])
    }

    @Sendable func status(_ request: Request, context: AppRequestContext) async throws -> Response {
        var (job, document) = try await load(context)
        if let url = job.options.callbackURL {
            document.webhook = .init(url: url, deliveries: try await queue.deliveries(jobID: job.id))
        }
        return try jsonResponse(document, headers: [.cacheControl: "no-store"])
    }

    /// Server-Sent Events: the job's status whenever it changes, until it is done, failed or gone.
    @Sendable func events(_ request: Request, context: AppRequestContext) async throws -> Response {
        let (_, first) = try await load(context)
        let id = first.jobId
        let (queue, storage, resultTTL) = (self.queue, self.storage, self.resultTTL)
        let resumeFrom = request.headers[.lastEventID]
        let body = ResponseBody { writer in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var last: JobResponse?
            var lastWrite = ContinuousClock.now
            try await writer.write(ByteBuffer(string: EventStream.preamble))
            while true {
                guard let job = try await queue.job(id: id) else {
                    try await writer.write(ByteBuffer(string: "event: deleted\ndata: {\"job_id\":\"\(id)\"}\n\n"))
                    break
                }
                let current = JobResponse(job, position: try await queue.position(id: id), storage: storage, resultTTL: resultTTL)
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
                    // A comment line after 10 s of silence keeps proxies (and clients' read
                    // timeouts) from closing the stream, however slow each round is.
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    lastWrite = .now
                }
                if job.status.isTerminal { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }

    /// A job that has not finished is cancelled (a running separation stops within one segment):
    /// its files go, and it stays as `cancelled` until it expires. A finished one (done, failed,
    /// cancelled) is deleted with its files.
    @Sendable func cancel(_ request: Request, context: AppRequestContext) async throws -> Response {
        let (job, _) = try await load(context)
        if !job.status.isTerminal, let cancelled = try await queue.markCancelled(id: job.id) {
            // A running worker notices at its next heartbeat and removes what it writes meanwhile.
            await storage.removeAll(cancelled)
            metrics.recordCancelled()
            if let delivery = WebhookDelivery(for: cancelled) { try? await queue.addDelivery(delivery) }
            return try jsonResponse(JobResponse(cancelled, position: nil, storage: storage, resultTTL: resultTTL))
        }
        guard let removed = try await queue.cancel(id: job.id) else {
            throw StemifyError(.jobNotFound, "no job '\(job.id)'")
        }
        await storage.removeAll(removed)
        return try jsonResponse(["job_id": job.id, "status": "deleted"])
    }

    /// Every stem of a finished job as one ZIP (`name/stem.ext`), streamed as it is read.
    @Sendable func zip(_ request: Request, context: AppRequestContext) async throws -> Response {
        let (job, _) = try await load(context)
        guard job.status == .done, !job.stems.isEmpty else {
            throw StemifyError(.stemNotFound, "job '\(job.id)' has no stems yet")
        }
        let folder = zipFolderName(job)
        let entries = job.stems.map { StemArchive.Entry(name: "\(folder)/\(stemFileName(folder, $0))", stem: $0) }
        return StemArchive(storage: storage).response(entries, filename: "stemify-\(job.id.prefix(8)).zip", logger: context.logger)
    }

    /// A stem file, with ETag, Range, Cache-Control and Content-Disposition for CDNs and players.
    @Sendable func stem(_ request: Request, context: AppRequestContext) async throws -> Response {
        let (job, _) = try await load(context)
        let file = try context.parameters.require("file")
        let missing = StemifyError(.stemNotFound, "job '\(job.id)' has no stem '\(file)'")
        guard let stem = job.stems.first(where: { "\($0.name).\($0.format)" == file }) else { throw missing }
        return try await serve(stem.file, request: request, context: context, missing: missing, headers: [
            .acceptRanges: "bytes", .contentType: StemHeaders.contentType(stem.format),
            .cacheControl: StemHeaders.cacheControl, .contentDisposition: StemHeaders.disposition(stemFileName(zipFolderName(job), stem)),
        ])
    }

    /// A stem's ``WaveformPeaks`` (JSON), written with the stem.
    @Sendable func peaks(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await companion(\.peaks, "peaks", request: request, context: context, headers: [
            .contentType: "application/json", .cacheControl: StemHeaders.cacheControl,
        ])
    }

    /// A stem as 16-bit WAV for the page's player, which reads windows of every stem by Range:
    /// always through the API (same origin), so Web Audio may read the samples.
    @Sendable func playback(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await companion(\.playbackFile, "playback copy", request: request, context: context, headers: [
            .acceptRanges: "bytes", .contentType: StemHeaders.contentType("wav"), .cacheControl: StemHeaders.cacheControl,
        ])
    }

    /// A file kept beside the stem named in the path (`:name`), found by `file`.
    private func companion(_ file: KeyPath<StemFile, String?>, _ what: String, request: Request, context: AppRequestContext,
                           headers: HTTPFields) async throws -> Response {
        let (job, _) = try await load(context)
        let name = try context.parameters.require("name")
        let missing = StemifyError(.stemNotFound, "job '\(job.id)' has no \(what) for '\(name)'")
        guard let location = job.stems.first(where: { $0.name == name })?[keyPath: file] else { throw missing }
        return try await serve(location, request: request, context: context, missing: missing, headers: headers)
    }

    /// A kept file from the folder or the bucket, with ETag and Range.
    func serve(_ location: String, request: Request, context: AppRequestContext, missing: StemifyError, headers: HTTPFields) async throws -> Response {
        var headers = headers
        if let objects = storage as? ObjectStorage, let key = objects.key(location) {
            return try await proxy(objects.client, key: key, request: request, headers: headers, missing: missing)
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: location), let size = attributes[.size] as? Int
        else { throw missing }
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let etag = "\"\(String(size, radix: 16))-\(String(Int(modified * 1000), radix: 16))\""
        headers[.eTag] = etag
        if let match = request.headers[.ifNoneMatch], EntityTags.noneMatchFails(match, etag: etag) {
            return Response(status: .notModified, headers: headers)
        }
        let io = FileIO()
        if let range = request.headers[.range], EntityTags.rangeApplies(ifRange: request.headers[.ifRange], etag: etag),
           let r = parseRange(range, size: size) {
            guard let r else {
                headers[.contentRange] = "bytes */\(size)"
                return Response(status: .rangeNotSatisfiable, headers: headers)
            }
            headers[.contentRange] = "bytes \(r.lowerBound)-\(r.upperBound)/\(size)"
            headers[.contentLength] = "\(r.count)"
            return Response(status: .partialContent, headers: headers,
                            body: try await io.loadFile(path: location, range: r, context: context))
        }
        headers[.contentLength] = "\(size)"
        if request.method == .head { return Response(status: .ok, headers: headers) }
        return Response(status: .ok, headers: headers, body: try await io.loadFile(path: location, context: context))
    }

    /// A stem in the bucket, streamed through: Range goes to the store, whose status, ETag,
    /// Content-Range and Content-Length come back with the stem's own headers. The conditionals
    /// are decided here against the object's current tag (one HEAD), as stores differ in how
    /// they honour weak tags, tag lists and If-Range.
    func proxy(_ client: S3Client, key: String, request: Request, headers: HTTPFields, missing: StemifyError) async throws -> Response {
        let ifNoneMatch = request.headers[.ifNoneMatch]
        let range = request.headers[.range]
        var current: String?
        if ifNoneMatch != nil || (range != nil && request.headers[.ifRange] != nil) {
            current = try? await client.get(key, headers: [], method: .HEAD).headers.first(name: "etag")
        }
        if let ifNoneMatch, let current, EntityTags.noneMatchFails(ifNoneMatch, etag: current) {
            var headers = headers
            headers[.eTag] = current
            return Response(status: .notModified, headers: headers)
        }
        var forwarded: [(String, String)] = []
        if let range, EntityTags.rangeApplies(ifRange: request.headers[.ifRange], etag: current) { forwarded.append(("range", range)) }
        let answer: HTTPClientResponse
        do {
            answer = try await client.get(key, headers: forwarded, method: request.method == .head ? .HEAD : .GET)
        } catch {
            throw StemifyError(.unavailable, "the stem storage is unavailable; try again shortly", detail: "\(error)")
        }
        if answer.status == .notFound { throw missing }
        var headers = headers
        for (name, field) in [("etag", HTTPField.Name.eTag), ("content-range", .contentRange), ("content-length", .contentLength)] {
            if let value = answer.headers.first(name: name) { headers[field] = value }
        }
        let status = HTTPResponse.Status(code: Int(answer.status.code))
        if request.method == .head || status == .notModified || status == .rangeNotSatisfiable {
            return Response(status: status, headers: headers)
        }
        return Response(status: status, headers: headers, body: ResponseBody(asyncSequence: answer.body))
    }
}

/// A page of a listing: `{NAME: [...], "next_cursor": …}`, the cursor null on the last page.
struct ListingPage<Item: Encodable>: Encodable {
    var name: String
    var items: [Item]
    /// Pass as `cursor` for the next page.
    var nextCursor: String?

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.init(stringValue) }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(items, forKey: Key(name))
        try container.encode(nextCursor, forKey: Key("next_cursor"))
    }
}

/// A listing's cursor as clients see it: opaque base64url of the last job's time and id.
enum ListingCursor {
    /// `limit` (1–`maxLimit`, default 20) and `cursor` of a listing's query.
    static func page(_ query: Hummingbird.Parameters, maxLimit: Int) throws -> (limit: Int, cursor: ListCursor?) {
        var limit = 20
        if let text = query["limit"] {
            guard let n = Int(text), (1...maxLimit).contains(n) else { throw StemifyError(.invalidOption, "limit is 1–\(maxLimit)") }
            limit = n
        }
        let cursor = try query["cursor"].map { text in
            guard let cursor = decode(String(text)) else { throw StemifyError(.invalidOption, "the cursor is not one this server gave") }
            return cursor
        }
        return (limit, cursor)
    }

    static func encode(_ cursor: ListCursor) -> String {
        Data("\(cursor.createdAt)|\(cursor.id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> ListCursor? {
        guard text.count <= 200 else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let plain = String(data: data, encoding: .utf8) else { return nil }
        let parts = plain.split(separator: "|", maxSplits: 1)
        guard parts.count == 2, let time = Double(parts[0]), time.isFinite else { return nil }
        return ListCursor(createdAt: time, id: String(parts[1]))
    }
}

/// What both event streams share.
enum EventStream {
    /// Sent first: how long a client waits before reconnecting (ms).
    static let preamble = "retry: 2000\n\n"

    /// An event's id: a digest of the state it carries, so a client reconnecting with
    /// `Last-Event-ID` is sent the state only when it changed meanwhile.
    static func id(_ data: String) -> String { String(Digest.hex(data).prefix(16)) }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
}
