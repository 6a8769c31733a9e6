import Foundation
import Logging
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// `POST /api/stemify`: one song (multipart `file`, an `upload_id` or a `youtube_url`) plus
/// options; answers 202 with the job id at once, after the song passed its checks.
struct StemifyController: Sendable {
    let intake: SongIntake

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("/api/stemify", use: submit)
    }

    struct Accepted: Encodable {
        var jobId: String
        var status: String
        var statusUrl: String
        var eventsUrl: String
        enum CodingKeys: String, CodingKey { case jobId = "job_id", status, statusUrl = "status_url", eventsUrl = "events_url" }
    }

    @Sendable func submit(_ request: Request, context: AppRequestContext) async throws -> Response {
        let missing = StemifyError(.missingInput, "send exactly one of a multipart 'file' part, a 'youtube_url' or an 'upload_id'")
        do {
            let form = try await intake.readForm(request, maxSongs: 1, tooMany: missing)
            var accepted = false
            defer { if !accepted { intake.discard(form.songs) } }
            let options = try intake.parseOptions(form.fields)
            guard form.songs.count == 1 else { throw missing }
            let client = clientAddress(request, context, trustedProxies: intake.configuration.trustedProxies)
            let songs = try await intake.check(form.songs, options: options, client: client)
            // The rate limit comes before any decoding or network work: that is what it protects.
            if let refusal = try await intake.admit(songs, client: client) { return refusal }
            let jobs = try await intake.accept(songs, options: options, client: client)
            try await intake.enqueue(jobs)
            accepted = true
            let id = jobs[0].id
            context.logger.info("job queued", metadata: ["job.id": "\(id)", "job.model": "\(options.model)", "client": "\(client)"])
            return try jsonResponse(
                Accepted(jobId: id, status: "queued", statusUrl: "/api/jobs/\(id)", eventsUrl: "/api/jobs/\(id)/events"),
                status: .accepted, headers: [.location: "/api/jobs/\(id)"])
        } catch let error as StemifyError {
            intake.metrics.recordRejection(code: error.code)
            throw error
        }
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}
