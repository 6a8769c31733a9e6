import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import StemifyCore
import StemifyServer
import StemifyTestSupport
import Synchronization
import Testing

/// Webhooks against a real receiver on loopback: signed, retried after a 500 and a timeout,
/// recorded on the job; private addresses refused unless allowed.
@Suite("webhooks")
struct WebhookTests {
    /// What the receiver got, and how it answers the next one.
    final class Receiver: Sendable {
        struct Call: Sendable { var headers: HTTPFields; var body: [UInt8] }
        let calls = Mutex<[Call]>([])
        /// Answers in turn: a status, or nil to stay silent past the sender's timeout; then 200.
        let script = Mutex<[Int?]>([500, nil])

        func app() -> some ApplicationProtocol {
            let router = Router()
            router.post("/hook") { request, _ -> Response in
                let body = try await request.body.collect(upTo: 1 << 20)
                self.calls.withLock { $0.append(Call(headers: request.headers, body: [UInt8](body.readableBytesView))) }
                let next = self.script.withLock { $0.isEmpty ? 200 : $0.removeFirst() }
                guard let status = next else {
                    try await Task.sleep(for: .seconds(3))
                    return Response(status: .ok)
                }
                return Response(status: HTTPResponse.Status(code: status))
            }
            return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        }
    }

    static let secret = "test-webhook-secret-0123456789"

    @Test("every terminal state is POSTed, signed; a 500 and a timeout are retried; the deliveries are on the job")
    func deliveries() async throws {
        let receiver = Receiver()
        // The fixture models, and one whose checkpoint is not one: accepted, failed by the worker.
        let models = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-hooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: models) }
        let fixtures = fixturesDirectory().appendingPathComponent("repo")
        for file in try FileManager.default.contentsOfDirectory(atPath: fixtures.path) {
            try FileManager.default.createSymbolicLink(at: models.appendingPathComponent(file), withDestinationURL: fixtures.appendingPathComponent(file))
        }
        try "models: ['deadbeef']\n".write(to: models.appendingPathComponent("broken.yaml"), atomically: true, encoding: .utf8)
        try Data("PK\u{3}\u{4} not really a zip".utf8).write(to: models.appendingPathComponent("deadbeef.th"))
        try await receiver.app().test(.live) { hook in
            let port = try #require(hook.port)
            let configuration = testConfiguration {
                $0.modelPath = models.path
                $0.webhookAllowHosts = ["127.0.0.1"]
                $0.webhookSecret = Self.secret
                $0.webhookTimeoutSeconds = 1
                $0.webhookRetryBaseSeconds = 0.5
            }
            try await withServer(configuration) { client in
                let url = "http://127.0.0.1:\(port)/hook"
                var (h, b) = multipart(fields: ["model": "ht_small", "quality": "fast", "output_format": "wav", "callback_url": url],
                                       file: ("a.wav", AccessTests.song))
                let id = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b).body)["job_id"] as? String)
                _ = try await client.execute(uri: "/api/jobs/\(id)/events", method: .get)
                var job: [String: Any] = [:]
                for _ in 0..<100 {
                    job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
                    let state = ((job["webhook"] as? [String: Any])?["deliveries"] as? [[String: Any]])?.first?["state"] as? String
                    if state == "delivered" { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                let webhook = try #require(job["webhook"] as? [String: Any])
                #expect(webhook["url"] as? String == url)
                let delivery = try #require((webhook["deliveries"] as? [[String: Any]])?.first)
                #expect(delivery["state"] as? String == "delivered" && delivery["event"] as? String == "job.done")
                let attempts = try #require(delivery["attempts"] as? [[String: Any]])
                #expect(attempts.map { $0["status"] as? Int } == [500, nil, 200], "\(attempts)")
                #expect((attempts[1]["error"] as? String)?.contains("no answer") == true)

                // What arrived: the job document, signed over the time and the body.
                let calls = receiver.calls.withLock { $0 }
                #expect(calls.count == 3)
                let last = try #require(calls.last)
                let signature = try #require(last.headers[HTTPField.Name("Stemify-Signature")!])
                let parts = Dictionary(uniqueKeysWithValues: signature.split(separator: ",").map { p in
                    let kv = p.split(separator: "=", maxSplits: 1)
                    return (String(kv[0]), String(kv[1]))
                })
                let timestamp = try #require(parts["t"].flatMap { Int($0) })
                #expect(abs(Double(timestamp) - Date().timeIntervalSince1970) < 120)
                #expect(parts["v1"] == WebhookDelivery.signature(secret: Self.secret, timestamp: timestamp, body: last.body))
                #expect(parts["v1"] != WebhookDelivery.signature(secret: "another secret entirely", timestamp: timestamp, body: last.body))
                let payload = try #require(try JSONSerialization.jsonObject(with: Data(last.body)) as? [String: Any])
                #expect(payload["event"] as? String == "job.done" && payload["delivery_id"] as? String == "\(id):done")
                let document = try #require(payload["job"] as? [String: Any])
                #expect(document["job_id"] as? String == id && document["status"] as? String == "done")
                #expect((document["stems"] as? [Any])?.count == 4)
                #expect(last.headers[HTTPField.Name("Stemify-Event")!] == "job.done")

                // A cancelled job is announced too.
                (h, b) = multipart(fields: ["model": "ht_small", "quality": "best", "callback_url": url],
                                   file: ("long.mp3", try Data(contentsOf: try makeAudio(seconds: 120, format: "mp3"))))
                let cancelled = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b).body)["job_id"] as? String)
                _ = try await client.execute(uri: "/api/jobs/\(cancelled)", method: .delete)
                var events: [String] = []
                for _ in 0..<50 where !events.contains("job.cancelled") {
                    try await Task.sleep(for: .milliseconds(200))
                    events = receiver.calls.withLock { $0.compactMap { $0.headers[HTTPField.Name("Stemify-Event")!] } }
                }
                #expect(events.contains("job.cancelled"))

                // And a failed one.
                (h, b) = multipart(fields: ["model": "broken", "callback_url": url], file: ("a.wav", AccessTests.song))
                let failed = try #require(json(try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b).body)["job_id"] as? String)
                _ = try await client.execute(uri: "/api/jobs/\(failed)/events", method: .get)
                for _ in 0..<50 where !events.contains("job.failed") {
                    try await Task.sleep(for: .milliseconds(200))
                    events = receiver.calls.withLock { $0.compactMap { $0.headers[HTTPField.Name("Stemify-Event")!] } }
                }
                #expect(events.contains("job.failed"))
                let failedCall = receiver.calls.withLock { $0.last { $0.headers[HTTPField.Name("Stemify-Event")!] == "job.failed" } }
                let failedBody = try #require(failedCall.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body)) as? [String: Any] })
                #expect(((failedBody["job"] as? [String: Any])?["error"] as? [String: Any])?["code"] as? String == "separation_failed")
            }
        }
    }

    @Test("callback URLs: loopback, private, link-local and unresolvable hosts refused unless allowed; schemes and credentials checked")
    func refused() async throws {
        try await withServer(testConfiguration { $0.workers = 0 }) { client in
            for url in ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]/x",
                        "http://192.168.1.1/", "http://100.64.0.1/", "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
                        "ftp://example.com/", "http://user:pw@example.com/", "http://no-such-host.invalid/", "not a url"] {
                let (h, b) = multipart(fields: ["model": "ht_small", "callback_url": url], file: ("a.wav", AccessTests.song))
                let r = try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b)
                #expect(r.status == .badRequest && errorCode(r.body) == "invalid_option", "\(url): \(String(buffer: r.body))")
            }
            // A public address literal is taken (no lookup needed).
            let (h, b) = multipart(fields: ["model": "ht_small", "callback_url": "https://93.184.216.34/hook"], file: ("a.wav", AccessTests.song))
            #expect(try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b).status == .accepted)
        }
        #expect(throws: Never.self) { try CallbackURL.check("http://127.0.0.1:8080/x", allowedHosts: ["127.0.0.1"]) }
        #expect(CallbackURL.isPublic("8.8.8.8") && CallbackURL.isPublic("2606:4700::1111"))
        for address in ["127.0.0.1", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.0.1", "169.254.1.1", "100.127.0.1", "224.0.0.1",
                        "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:10.0.0.1"] {
            #expect(!CallbackURL.isPublic(address), "\(address)")
        }
        #expect(CallbackURL.isPublic("172.32.0.1") && CallbackURL.isPublic("100.128.0.1"))
    }

    @Test("retries triple the wait up to an hour and stop after a day; a 2xx delivers")
    func schedule() throws {
        let job = Job(id: "j", status: .done, progress: 1, etaSeconds: nil, options: JobOptions(callbackURL: "https://example.com/h"),
                      input: .youtube(url: "https://youtu.be/x"), owner: "t:a", createdAt: Date(), startedAt: nil, finishedAt: Date(),
                      errorCode: nil, errorMessage: nil, stems: [], metrics: nil, attempts: 1)
        var d = try #require(WebhookDelivery(for: job, now: 0))
        #expect(d.id == "j:done" && d.event == "job.done" && d.state == .pending)
        var waits: [Double] = []
        var t = 0.0
        while d.state == .pending {
            d.record(.init(at: t, status: 503, error: "answered 503"), base: 10)
            if d.state == .pending { waits.append(d.nextAttemptAt - t) }
            t = d.nextAttemptAt
        }
        #expect(Array(waits.prefix(5)) == [10, 30, 90, 270, 810] && waits.allSatisfy { $0 <= 3600 })
        #expect(d.state == .failed && t <= WebhookDelivery.retryWindow + 3600)
        var ok = try #require(WebhookDelivery(for: job, now: 0))
        ok.record(.init(at: 1, status: 204, error: nil), base: 10)
        #expect(ok.state == .delivered)
        var queued = job
        queued.status = .queued
        #expect(WebhookDelivery(for: queued) == nil)
    }
}
