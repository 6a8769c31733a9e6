import AsyncHTTPClient
import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import StemifyCore

/// Sends the webhooks the queue holds: each job's terminal state, POSTed to its `callback_url`
/// as `{"event", "delivery_id", "job"}` (the job document of `GET /api/jobs/{id}`), signed with
/// `Stemify-Signature: t=UNIX,v1=HEX`, HMAC-SHA256 over `UNIX.BODY` with the webhook secret.
/// A 2xx ends it; anything else (a status, a timeout, no connection) is retried, tripling the
/// wait, for a day; each attempt is on the job (`webhook.deliveries`). Every API process runs
/// one; a claimed delivery is put off for a minute so two do not send it at once.
struct WebhookDispatcher: Service {
    let queue: any JobQueue
    let storage: any JobStorage
    let configuration: StemifyConfiguration
    let secret: String
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    for delivery in try await queue.claimDueDeliveries(limit: 16, lease: 60 + configuration.webhookTimeoutSeconds) {
                        await send(delivery)
                    }
                } catch {
                    logger.warning("webhook claim failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    struct Payload: Encodable {
        var event: String
        var deliveryId: String
        var job: JobsController.JobResponse
        enum CodingKeys: String, CodingKey { case event, deliveryId = "delivery_id", job }
    }

    func send(_ original: WebhookDelivery) async {
        var delivery = original
        let now = { Date().timeIntervalSince1970 }
        do {
            // Checked again: the name may point elsewhere now.
            let (url, allowed) = (delivery.url, configuration.webhookAllowHosts)
            try await onThread { try CallbackURL.check(url, allowedHosts: allowed) }
        } catch {
            delivery.record(.init(at: now(), status: nil, error: "refused: the address is private or does not resolve"),
                            base: configuration.webhookRetryBaseSeconds, final: true)
            try? await queue.updateDelivery(delivery)
            return
        }
        guard let job = try? await queue.job(id: delivery.jobID) else {
            delivery.record(.init(at: now(), status: nil, error: "the job no longer exists"), base: configuration.webhookRetryBaseSeconds, final: true)
            try? await queue.updateDelivery(delivery)
            return
        }
        let document = JobsController.JobResponse(job, position: nil, storage: storage, resultTTL: configuration.resultTTLSeconds)
        let attempt: WebhookDelivery.Attempt
        do {
            let body = try jsonBytes(Payload(event: delivery.event, deliveryId: delivery.id, job: document))
            let timestamp = Int(now())
            var request = HTTPClientRequest(url: delivery.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "Stemify-Webhook/1")
            request.headers.add(name: "Stemify-Event", value: delivery.event)
            request.headers.add(name: "Stemify-Delivery", value: delivery.id)
            request.headers.add(name: "Stemify-Signature", value: "t=\(timestamp),v1=\(WebhookDelivery.signature(secret: secret, timestamp: timestamp, body: body))")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await S3Client.sharedHTTP.execute(request, timeout: .milliseconds(Int64(configuration.webhookTimeoutSeconds * 1000)))
            // The answer is not read beyond a little: a receiver cannot make the server hold much.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            attempt = .init(at: now(), status: status, error: (200..<300).contains(status) ? nil : "answered \(status)")
        } catch {
            attempt = .init(at: now(), status: nil, error: error is HTTPClientError ? "no answer (\(Self.reason(error)))" : "no answer")
        }
        delivery.record(attempt, base: configuration.webhookRetryBaseSeconds)
        logger.info("webhook attempt", metadata: ["job.id": "\(delivery.jobID)", "webhook.event": "\(delivery.event)",
                                                  "webhook.status": "\(attempt.status.map(String.init) ?? "-")", "webhook.state": "\(delivery.state.rawValue)"])
        try? await queue.updateDelivery(delivery)
    }

    private static func reason(_ error: any Error) -> String {
        let text = "\(error)"
        return text.contains("eadTimeout") || text.contains("deadline") ? "timeout" : text.contains("onnect") ? "connection refused" : "network error"
    }

    /// The secret: the setting, or one made once and kept in the data folder.
    static func secret(_ configuration: StemifyConfiguration) throws -> String {
        if let secret = configuration.webhookSecret { return secret }
        let path = URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("webhook_secret")
        if let kept = try? String(contentsOf: path, encoding: .utf8), kept.count >= 16 { return kept }
        let made = APIKeyStore.randomToken()
        do {
            try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
            try made.write(to: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path.path)
        } catch {
            throw StemifyError(.internalError, "cannot keep the webhook secret", detail: "\(path.path): \(error)")
        }
        return made
    }
}
