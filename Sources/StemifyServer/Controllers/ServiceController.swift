import Foundation
import Logging
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// Models, health, readiness, metrics, the OpenAPI document and the page.
struct ServiceController: Sendable {
    let queue: any JobQueue
    let models: ModelStore
    let configuration: StemifyConfiguration
    let metrics: ServiceMetrics

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/api/models", use: listModels)
        router.get("/api/limits", use: limits)
        router.get("/healthz") { _, _ in try jsonResponse(["status": "ok"]) }
        router.get("/readyz", use: ready)
        router.get("/metrics", use: renderMetrics)
        router.get("/openapi.yaml") { _, _ in try resource("openapi.yaml", type: "application/yaml") }
        router.get("/") { _, _ in
            var page = try resource("index.html", type: "text/html; charset=utf-8")
            // The page loads only its own files; stems play from here or from the bucket's URLs.
            page.headers[.contentSecurityPolicy] = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: https:; "
                + "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
            page.headers[.referrerPolicy] = "same-origin"
            return page
        }
        router.get("/app.js") { _, _ in try resource("app.js", type: "text/javascript; charset=utf-8") }
        router.get("/mixer.js") { _, _ in try resource("mixer.js", type: "text/javascript; charset=utf-8") }
        router.get("/player.js") { _, _ in try resource("player.js", type: "text/javascript; charset=utf-8") }
        router.get("/player-worklet.js") { _, _ in try resource("player-worklet.js", type: "text/javascript; charset=utf-8") }
        router.get("/style.css") { _, _ in try resource("style.css", type: "text/css; charset=utf-8") }
        router.get("/lib/:file") { _, context in
            // The committed build of clients/typescript (the page imports it as an ES module).
            let file = try context.parameters.require("file")
            guard ["client.js", "types.js"].contains(file) else { throw StemifyError(.notFound, "no such file") }
            return try resource("lib/\(file)", type: "text/javascript; charset=utf-8")
        }
    }

    struct ModelsResponse: Encodable {
        var models: [ModelInfo]
        var defaultModel = "htdemucs"
        enum CodingKeys: String, CodingKey { case models, defaultModel = "default" }
    }

    @Sendable func listModels(_ request: Request, context: AppRequestContext) async throws -> Response {
        try jsonResponse(ModelsResponse(models: models.list()))
    }

    struct Limits: Encodable {
        var maxFileSize: Int
        var maxBatchSize: Int
        var maxDurationSeconds: Double
        /// The caller's: its key's quota, or `rate_limit` per address.
        var rateLimit: Int
        var rateLimitPeriodSeconds: Double
        /// Songs the caller may still submit now (null without a limit).
        var rateLimitRemaining: Int?
        /// Seconds until the oldest counted song leaves the window.
        var rateLimitResetSeconds: Double?
        var outputFormats = FFmpeg.Format.allCases.map(\.rawValue)
        var qualities = QualityPreset.allCases.map(\.rawValue)
        /// File name extensions of the containers ffprobe is allowed to open, for a check in the browser.
        var acceptedExtensions = ["mp3", "wav", "flac", "ogg", "opus", "oga", "m4a", "aac", "mp4", "aif", "aiff", "webm"]
        enum CodingKeys: String, CodingKey {
            case maxFileSize = "max_file_size", maxBatchSize = "max_batch_size", maxDurationSeconds = "max_duration_seconds", rateLimit = "rate_limit",
                 rateLimitPeriodSeconds = "rate_limit_period_seconds", rateLimitRemaining = "rate_limit_remaining",
                 rateLimitResetSeconds = "rate_limit_reset_seconds", outputFormats = "output_formats", qualities,
                 acceptedExtensions = "accepted_extensions"
        }
    }

    /// The service's limits and where the caller stands against its rate limit (also as
    /// `RateLimit-*` headers), so a page can show them before they refuse anything.
    @Sendable func limits(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = context.caller
        let period = configuration.rateLimitPeriodSeconds
        var limits = Limits(maxFileSize: configuration.maxFileSize, maxBatchSize: configuration.maxBatchSize,
                            maxDurationSeconds: configuration.maxDurationSeconds, rateLimit: caller.quota, rateLimitPeriodSeconds: period)
        var headers: HTTPFields = [.cacheControl: "no-store"]
        if caller.quota > 0 {
            let window = try await queue.submissionWindow(client: caller.quotaClient, period: period)
            limits.rateLimitRemaining = window.remaining(limit: caller.quota)
            limits.rateLimitResetSeconds = window.reset(period: period).rounded(.up)
            headers[.rateLimitLimit] = "\(caller.quota)"
            headers[.rateLimitRemaining] = "\(window.remaining(limit: caller.quota))"
            headers[.rateLimitReset] = "\(Int(window.reset(period: period).rounded(.up)))"
        }
        return try jsonResponse(limits, headers: headers)
    }

    /// Ready when the queue answers and at least one model is available.
    @Sendable func ready(_ request: Request, context: AppRequestContext) async throws -> Response {
        do { _ = try await queue.counts() } catch {
            throw StemifyError(.unavailable, "the job queue is not reachable", detail: "\(error)")
        }
        let available = models.list().filter(\.available).map(\.name)
        guard !available.isEmpty else {
            throw StemifyError(.unavailable, "no model is installed", detail: models.repository.directory.path)
        }
        return try jsonResponse(["status": "ready", "models": available.joined(separator: ",")])
    }

    @Sendable func renderMetrics(_ request: Request, context: AppRequestContext) async throws -> Response {
        let text = metrics.render(counts: try await queue.counts())
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// A file shipped in the module's `Public/` resources.
func resource(_ name: String, type: String) throws -> Response {
    guard let url = Bundle.module.url(forResource: "Public/\(name)", withExtension: nil),
          let data = try? Data(contentsOf: url)
    else { throw StemifyError(.internalError, "internal error; see the server log", detail: "missing resource \(name)") }
    return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: [UInt8](data))))
}
