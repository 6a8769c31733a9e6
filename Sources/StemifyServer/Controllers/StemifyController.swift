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
        /// Only when this request made the caller's owner token: the one thing that reads the job.
        var ownerToken: String?
        enum CodingKeys: String, CodingKey {
            case jobId = "job_id", status, statusUrl = "status_url", eventsUrl = "events_url", ownerToken = "owner_token"
        }
    }

    @Sendable func submit(_ request: Request, context: AppRequestContext) async throws -> Response {
        let missing = StemifyError(.missingInput, "send exactly one of a multipart 'file' part, a 'youtube_url' or an 'upload_id'")
        do {
            let idempotencyKey = try Idempotency.key(request)
            let form = try await intake.readForm(request, maxSongs: 1, tooMany: missing)
            var accepted = false
            defer { if !accepted { intake.discard(form.songs) } }
            let options = try intake.parseOptions(form.fields)
            guard form.songs.count == 1 else { throw missing }
            let caller = context.caller
            let storage = intake.storage
            return try await Idempotency(queue: intake.queue).run(
                key: idempotencyKey, owner: caller.owner ?? "address:\(caller.quotaClient)",
                fingerprint: try Idempotency.fingerprint(path: request.uri.path, form: form, storage: storage)
            ) {
                let (owner, newToken) = caller.ownerForCreation()
                let songs = try await intake.check(form.songs, options: options, owner: owner)
                // The rate limit comes before any decoding or network work: that is what it protects.
                if let refusal = try await intake.admit(songs, caller: caller) { return .other(refusal) }
                let jobs: [Job]
                do {
                    jobs = try await intake.accept(songs, options: options, owner: owner)
                    try await intake.enqueue(jobs)
                } catch {
                    await intake.refund(songs, caller: caller)
                    throw error
                }
                accepted = true
                let id = jobs[0].id
                context.logger.info("job queued", metadata: ["job.id": "\(id)", "job.model": "\(options.model)", "client": "\(caller.quotaClient)"])
                var headers: HTTPFields = [.location: "/api/jobs/\(id)"]
                headers.append(contentsOf: (try? await intake.rateLimitHeaders(caller)) ?? [:])
                if let newToken { headers.append(contentsOf: OwnerToken.headers(newToken)) }
                let body = try jsonBytes(Accepted(jobId: id, status: "queued", statusUrl: "/api/jobs/\(id)", eventsUrl: "/api/jobs/\(id)/events",
                                                  ownerToken: newToken))
                return .created(status: .accepted, body: body, headers: headers)
            }
        } catch let error as StemifyError {
            intake.metrics.recordRejection(code: error.code)
            throw error
        }
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}
