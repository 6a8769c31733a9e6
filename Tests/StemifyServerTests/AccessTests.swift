import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import StemifyCore
import StemifyServer
import Testing

/// Ownership and API keys: only the owner (or an admin key) sees a job, batch or upload;
/// everyone else gets the 404 of an id that never existed.
@Suite("owners and API keys")
struct AccessTests {
    static let song = Data(UploadTests().wav(seconds: 1))

    static func submit(_ client: any TestClientProtocol, headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var (headers, body) = multipart(fields: ["model": "ht_small", "quality": "fast", "output_format": "wav"], file: ("a.wav", song))
        headers.append(contentsOf: extra)
        return try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
    }

    @Test("keys off: a submission without a token gets one; only it (header, cookie or access_token) reads, cancels and lists the job")
    func ownerTokens() async throws {
        try await withServer(testConfiguration()) { owned in
            let owner = try #require(owned as? OwnedClient)
            let anonymous = owner.other(nil)
            let accepted = try await Self.submit(anonymous)
            #expect(accepted.status == .accepted)
            let body = json(accepted.body)
            let id = try #require(body["job_id"] as? String)
            let token = try #require(body["owner_token"] as? String)
            #expect(token.hasPrefix("sto_") && token.count >= 36)
            #expect(accepted.headers[HTTPField.Name("Stemify-Owner-Token")!] == token)
            let cookie = try #require(accepted.headers[.setCookie])
            #expect(cookie.hasPrefix("stemify_owner=\(token);") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))

            // Nobody else: no token, another token, a malformed one.
            for (who, client) in [("no token", anonymous), ("another token", owner.other()), ("malformed", owner.other("sto_short"))] {
                for (uri, method) in [("/api/jobs/\(id)", HTTPRequest.Method.get), ("/api/jobs/\(id)/events", .get), ("/api/jobs/\(id)/stems.zip", .get),
                                      ("/api/jobs/\(id)/stems/vocals.wav", .get), ("/api/jobs/\(id)", .head)] {
                    let r = try await client.execute(uri: uri, method: method)
                    #expect(r.status == .notFound, "\(who): \(method) \(uri)")
                    if method == .get { #expect(errorCode(r.body) == "job_not_found", "\(who): \(uri)") }
                }
                let mix = try await client.execute(uri: "/api/jobs/\(id)/mix", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{}"))
                #expect(errorCode(mix.body) == "job_not_found", "\(who)")
                let delete = try await client.execute(uri: "/api/jobs/\(id)", method: .delete)
                #expect(delete.status == .notFound, "\(who) cannot delete")
            }
            // The owner, however the token travels.
            let holder = owner.other(token)
            #expect(try await holder.execute(uri: "/api/jobs/\(id)", method: .get).status == .ok)
            #expect(try await anonymous.execute(uri: "/api/jobs/\(id)", method: .get, headers: [.cookie: "theme=dark; stemify_owner=\(token)"]).status == .ok)
            #expect(try await anonymous.execute(uri: "/api/jobs/\(id)?access_token=\(token)", method: .get).status == .ok)
            // A second submission with the token is not given a new one.
            let again = try await Self.submit(holder)
            #expect(json(again.body)["owner_token"] == nil && again.headers[.setCookie] == nil)
            let done = try await holder.execute(uri: "/api/jobs/\(id)/events", method: .get)
            #expect(String(buffer: done.body).contains("\"status\":\"done\""))
            #expect(try await holder.execute(uri: "/api/jobs/\(id)/stems/vocals.wav", method: .get).status == .ok)
            // The job echoes what was asked and when things happened.
            let document = json(try await holder.execute(uri: "/api/jobs/\(id)", method: .get).body)
            let options = try #require(document["options"] as? [String: Any])
            #expect(options["model"] as? String == "ht_small" && options["output_format"] as? String == "wav" && options["shifts"] as? Int == 0)
            #expect(document["input_name"] as? String == "a.wav")
            let format = ISO8601DateFormatter()
            let started = try #require((document["started_at"] as? String).flatMap(format.date(from:)))
            let finished = try #require((document["finished_at"] as? String).flatMap(format.date(from:)))
            let expires = try #require((document["expires_at"] as? String).flatMap(format.date(from:)))
            #expect(started <= finished && abs(expires.timeIntervalSince(finished) - StemifyConfiguration().resultTTLSeconds) < 1)
            #expect(try await holder.execute(uri: "/api/jobs/\(id)", method: .delete).status == .ok)
        }
    }

    @Test("keys off: batches and uploads belong to their token; a tus upload resumes from another address")
    func batchesAndUploads() async throws {
        try await withServer(testConfiguration { $0.trustedProxies = ["127.0.0.1"] }) { owned in
            let owner = try #require(owned as? OwnedClient)
            let stranger = owner.other()
            let (headers, body) = multipartParts(BatchTests.options + [("file", "one.wav", Self.song), ("file", "two.wav", Self.song)])
            let batch = try await owner.execute(uri: "/api/batches", method: .post, headers: headers, body: body)
            let batchID = try #require(json(batch.body)["batch_id"] as? String)
            for method in [HTTPRequest.Method.get, .delete] {
                let r = try await stranger.execute(uri: "/api/batches/\(batchID)", method: method)
                #expect(r.status == .notFound && errorCode(r.body) == "batch_not_found", "\(method)")
            }
            #expect(try await stranger.execute(uri: "/api/batches/\(batchID)/stems.zip", method: .get).status == .notFound)
            #expect(try await owner.execute(uri: "/api/batches/\(batchID)", method: .get).status == .ok)

            let tus: HTTPFields = [HTTPField.Name("Tus-Resumable")!: "1.0.0", HTTPField.Name("Upload-Length")!: "\(Self.song.count)",
                                   HTTPField.Name("X-Forwarded-For")!: "203.0.113.1"]
            let created = try await owner.execute(uri: "/api/uploads", method: .post, headers: tus)
            let location = try #require(created.headers[.location])
            var head: HTTPFields = [HTTPField.Name("Tus-Resumable")!: "1.0.0", HTTPField.Name("X-Forwarded-For")!: "198.51.100.7"]
            #expect(try await owner.execute(uri: location, method: .head, headers: head).status == .ok, "the owner, from a new address")
            #expect(try await stranger.execute(uri: location, method: .head, headers: head).status == .notFound)
            head[HTTPField.Name("X-Forwarded-For")!] = "203.0.113.1"
            #expect(try await stranger.execute(uri: location, method: .head, headers: head).status == .notFound, "the same address is not the owner")
            #expect(try await stranger.execute(uri: location, method: .delete, headers: head).status == .notFound)
            // An upload id is no use to someone else's submission.
            let id = String(location.split(separator: "/").last ?? "")
            let taken = try await stranger.execute(uri: "/api/stemify", method: .post, headers: [.contentType: "application/json"],
                                                   body: ByteBuffer(string: "{\"upload_id\": \"\(id)\"}"))
            #expect(errorCode(taken.body) == "upload_not_found")
        }
    }

    @Test("keys on: no key 401, unknown or revoked 401, missing scope 403, another key 404, admin sees all, quotas per key")
    func apiKeys() async throws {
        var configuration = testConfiguration { $0.apiKeys = true; $0.rateLimit = 100 }
        let store = APIKeyStore(path: configuration.resolvedKeysFile)
        let (_, first) = try store.create(name: "first", scopes: [.submit, .read], quota: 1)
        let (_, second) = try store.create(name: "second", scopes: [.submit, .read], quota: nil)
        let (_, reader) = try store.create(name: "reader", scopes: [.read], quota: nil)
        let (_, admin) = try store.create(name: "ops", scopes: [.admin], quota: nil)
        let (revokedKey, revoked) = try store.create(name: "old", scopes: [.submit, .read], quota: nil)
        _ = try store.revoke(id: revokedKey.id)
        configuration.keysFile = store.path
        try await withServer(configuration) { owned in
            let owner = try #require(owned as? OwnedClient)
            let as_ = { (key: String) in owner.other(key) }
            // Health, readiness and the page need no key; every /api/ route does.
            for path in ["/healthz", "/", "/openapi.yaml"] {
                #expect(try await owner.other(nil).execute(uri: path, method: .get).status == .ok, "\(path)")
            }
            for (who, client) in [("no key", owner.other(nil)), ("owner token", owner as any TestClientProtocol), ("revoked", as_(revoked)), ("made up", as_("sk_madeup"))] {
                for path in ["/api/models", "/api/limits", "/api/jobs/x"] {
                    let r = try await client.execute(uri: path, method: .get)
                    #expect(r.status == .unauthorized && errorCode(r.body) == "unauthorized", "\(who) \(path)")
                    #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                }
            }
            // The page keeps the key in its cookie (for <audio>, downloads and event streams).
            #expect(try await owner.other(nil).execute(uri: "/api/models", method: .get, headers: [.cookie: "stemify_owner=\(reader)"]).status == .ok)
            let refused = try await Self.submit(as_(reader))
            #expect(refused.status == .forbidden && errorCode(refused.body) == "forbidden")

            let accepted = try await Self.submit(as_(first))
            #expect(accepted.status == .accepted && json(accepted.body)["owner_token"] == nil)
            let id = try #require(json(accepted.body)["job_id"] as? String)
            #expect(try await as_(first).execute(uri: "/api/jobs/\(id)", method: .get).status == .ok)
            #expect(try await as_(admin).execute(uri: "/api/jobs/\(id)", method: .get).status == .ok)
            for key in [second, reader] {
                let r = try await as_(key).execute(uri: "/api/jobs/\(id)", method: .get)
                #expect(r.status == .notFound && errorCode(r.body) == "job_not_found")
            }
            #expect(try await as_(second).execute(uri: "/api/jobs/\(id)", method: .delete).status == .notFound)
            #expect(accepted.headers[HTTPField.Name("RateLimit-Limit")!] == "1" && accepted.headers[HTTPField.Name("RateLimit-Remaining")!] == "0",
                    "the key's quota, not rate_limit")
            // A batch and an upload of the second key: the first key does not see them.
            let (bh, bb) = multipartParts(BatchTests.options + [("file", "one.wav", Self.song)])
            let batch = try #require(json(try await as_(second).execute(uri: "/api/batches", method: .post, headers: bh, body: bb).body)["batch_id"] as? String)
            #expect(errorCode(try await as_(first).execute(uri: "/api/batches/\(batch)", method: .get).body) == "batch_not_found")
            #expect(try await as_(second).execute(uri: "/api/batches/\(batch)", method: .get).status == .ok)
            let tus: HTTPFields = [HTTPField.Name("Tus-Resumable")!: "1.0.0", HTTPField.Name("Upload-Length")!: "10"]
            let location = try #require(try await as_(second).execute(uri: "/api/uploads", method: .post, headers: tus).headers[.location])
            let head: HTTPFields = [HTTPField.Name("Tus-Resumable")!: "1.0.0"]
            #expect(try await as_(first).execute(uri: location, method: .head, headers: head).status == .notFound)
            #expect(try await as_(second).execute(uri: location, method: .head, headers: head).status == .ok)
            // The first key's quota is one song; the second key is not held to it.
            let over = try await Self.submit(as_(first))
            #expect(over.status == .tooManyRequests && errorCode(over.body) == "rate_limited")
            #expect(try await Self.submit(as_(second)).status == .accepted)
            #expect(try await Self.submit(as_(second)).status == .accepted)
        }
    }

    @Test("GET /api/jobs: the caller's jobs only, newest first, in pages by cursor, filtered by status; bad parameters 400")
    func listing() async throws {
        try await withServer(testConfiguration { $0.workers = 0 }) { owned in
            let owner = try #require(owned as? OwnedClient)
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try #require(json(try await Self.submit(owner).body)["job_id"] as? String)) }
            let stranger = owner.other()
            let theirs = try #require(json(try await Self.submit(stranger).body)["job_id"] as? String)
            var listed: [String] = []
            var cursor: String?
            repeat {
                let page = try await owner.execute(uri: "/api/jobs?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""), method: .get)
                #expect(page.status == .ok)
                let body = json(page.body)
                listed += (body["jobs"] as? [[String: Any]] ?? []).compactMap { $0["job_id"] as? String }
                cursor = body["next_cursor"] as? String
            } while cursor != nil && listed.count < 20
            #expect(listed == ids.reversed(), "newest first, every job once")
            #expect(!listed.contains(theirs))
            let strangers = json(try await stranger.execute(uri: "/api/jobs", method: .get).body)["jobs"] as? [[String: Any]]
            #expect(strangers?.compactMap { $0["job_id"] as? String } == [theirs])
            #expect((json(try await owner.other(nil).execute(uri: "/api/jobs", method: .get).body)["jobs"] as? [Any])?.isEmpty == true)
            let all = json(try await owner.execute(uri: "/api/jobs?status=&limit=100", method: .get).body)
            #expect((all["jobs"] as? [Any])?.count == 5 && all["next_cursor"] is NSNull, "an empty status filters nothing; the last page says null")
            let done = json(try await owner.execute(uri: "/api/jobs?status=done,failed", method: .get).body)["jobs"] as? [Any]
            #expect(done?.isEmpty == true, "no workers: nothing finished")
            let queued = json(try await owner.execute(uri: "/api/jobs?status=queued", method: .get).body)["jobs"] as? [[String: Any]]
            #expect(queued?.count == 5 && queued?.first?["queue_position"] != nil)
            // Batches: the caller's, newest first, in pages.
            var batches: [String] = []
            for name in ["one.wav", "two.wav", "three.wav"] {
                let (bh, bb) = multipartParts(BatchTests.options + [("file", name, Self.song)])
                batches.append(try #require(json(try await owner.execute(uri: "/api/batches", method: .post, headers: bh, body: bb).body)["batch_id"] as? String))
            }
            let (sh, sb) = multipartParts(BatchTests.options + [("file", "theirs.wav", Self.song)])
            _ = try await stranger.execute(uri: "/api/batches", method: .post, headers: sh, body: sb)
            let firstPage = json(try await owner.execute(uri: "/api/batches?limit=2", method: .get).body)
            let secondPage = json(try await owner.execute(uri: "/api/batches?limit=2&cursor=\(try #require(firstPage["next_cursor"] as? String))", method: .get).body)
            let pages = [firstPage, secondPage].flatMap { ($0["batches"] as? [[String: Any]] ?? []).compactMap { $0["batch_id"] as? String } }
            #expect(pages == batches.reversed() && secondPage["next_cursor"] is NSNull)
            #expect(errorCode(try await owner.execute(uri: "/api/batches?limit=51", method: .get).body) == "invalid_option")
            for bad in ["limit=0", "limit=101", "limit=x", "status=finished", "cursor=%%%", "cursor=bm90IGEgY3Vyc29y"] {
                let r = try await owner.execute(uri: "/api/jobs?\(bad)", method: .get)
                #expect(r.status == .badRequest && errorCode(r.body) == "invalid_option", "\(bad)")
            }
        }
    }

    @Test("event streams: every event has an id; resuming with Last-Event-ID of the current state sends nothing again")
    func eventIDs() async throws {
        try await withServer(testConfiguration()) { client in
            let id = try #require(json(try await Self.submit(client).body)["job_id"] as? String)
            let first = String(buffer: try await client.execute(uri: "/api/jobs/\(id)/events", method: .get).body)
            #expect(first.hasPrefix("retry: "))
            let events = first.components(separatedBy: "\n\n").filter { $0.contains("event: status") }
            #expect(!events.isEmpty && events.allSatisfy { $0.hasPrefix("id: ") }, "\(first)")
            let ids = events.compactMap { $0.split(separator: "\n").first.map { String($0.dropFirst(4)) } }
            #expect(Set(ids).count == ids.count, "ids differ per state")
            let last = try #require(ids.last)
            // Finished: resuming from the last state gets no event; from an older one, the current state.
            let resumed = String(buffer: try await client.execute(uri: "/api/jobs/\(id)/events", method: .get, headers: [HTTPField.Name("Last-Event-ID")!: last]).body)
            #expect(!resumed.contains("event: status"), "\(resumed)")
            let behind = String(buffer: try await client.execute(uri: "/api/jobs/\(id)/events", method: .get, headers: [HTTPField.Name("Last-Event-ID")!: ids[0]]).body)
            #expect(behind.contains("id: \(last)\nevent: status"))
        }
    }

    @Test("rate limit: only accepted songs count; RateLimit headers and GET /api/limits say what is left")
    func rateLimitHeaders() async throws {
        try await withServer(testConfiguration { $0.workers = 0; $0.rateLimit = 3 }) { client in
            func limits() async throws -> (Int?, TestResponse) {
                let r = try await client.execute(uri: "/api/limits", method: .get)
                return (json(r.body)["rate_limit_remaining"] as? Int, r)
            }
            let (fresh, first) = try await limits()
            #expect(fresh == 3 && first.headers[HTTPField.Name("RateLimit-Limit")!] == "3" && first.headers[HTTPField.Name("RateLimit-Remaining")!] == "3")
            // Five files that are not audio: refused, and none of them counted.
            for _ in 0..<5 {
                let (h, b) = multipart(fields: ["model": "ht_small"], file: ("noise.mp3", Data(repeating: 7, count: 4000)))
                let r = try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b)
                #expect(errorCode(r.body) == "unsupported_format")
            }
            #expect(try await limits().0 == 3)
            // A batch refused for one bad song counts nothing either.
            let (bh, bb) = multipartParts(BatchTests.options + [("file", "ok.wav", Self.song), ("file", "bad.mp3", Data(repeating: 7, count: 4000))])
            #expect(try await client.execute(uri: "/api/batches", method: .post, headers: bh, body: bb).status == .unsupportedMediaType)
            #expect(try await limits().0 == 3)
            let accepted = try await Self.submit(client)
            #expect(accepted.status == .accepted && accepted.headers[HTTPField.Name("RateLimit-Remaining")!] == "2")
            #expect(Int(accepted.headers[HTTPField.Name("RateLimit-Reset")!] ?? "") ?? 0 > 3500)
            for _ in 0..<2 { #expect(try await Self.submit(client).status == .accepted) }
            let refused = try await Self.submit(client)
            #expect(refused.status == .tooManyRequests && refused.headers[HTTPField.Name("RateLimit-Remaining")!] == "0")
            #expect(refused.headers[.retryAfter] != nil)
            #expect(try await limits().0 == 0)
        }
    }

    @Test("Idempotency-Key: a retry gets the first answer (no second job, no second count), another request with the key 422, a failed one can be retried")
    func idempotencyKeys() async throws {
        try await withServer(testConfiguration { $0.workers = 0; $0.rateLimit = 10 }) { owned in
            let client = try #require(owned as? OwnedClient)
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "order-42"]
            let first = try await Self.submit(client, headers: key)
            #expect(first.status == .accepted && first.headers[HTTPField.Name("RateLimit-Remaining")!] == "9")
            let id = try #require(json(first.body)["job_id"] as? String)
            // The same song and options, in a new multipart body (another boundary).
            let retry = try await Self.submit(client, headers: key)
            #expect(retry.status == .accepted && json(retry.body)["job_id"] as? String == id)
            #expect(retry.headers[HTTPField.Name("Idempotent-Replayed")!] == "true" && retry.headers[.location] == "/api/jobs/\(id)")
            let listed = json(try await client.execute(uri: "/api/jobs", method: .get).body)["jobs"] as? [Any]
            #expect(listed?.count == 1, "one job")
            #expect(json(try await client.execute(uri: "/api/limits", method: .get).body)["rate_limit_remaining"] as? Int == 9, "counted once")
            // Another request with the key: refused, nothing made.
            var (h, b) = multipart(fields: ["model": "ht_small", "quality": "best", "output_format": "wav"], file: ("a.wav", Self.song))
            h.append(contentsOf: key)
            let other = try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b)
            #expect(other.status == .unprocessableContent && errorCode(other.body) == "idempotency_key_reused")
            // Keys are per owner: someone else's "order-42" is theirs.
            let theirs = try await Self.submit(client.other(), headers: key)
            #expect(theirs.status == .accepted && json(theirs.body)["job_id"] as? String != id)
            // A request that failed (not audio) lets go of its key: the corrected retry runs.
            let retryKey: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "upload-7"]
            var (bh, bb) = multipart(fields: ["model": "ht_small"], file: ("noise.mp3", Data(repeating: 7, count: 4000)))
            bh.append(contentsOf: retryKey)
            #expect(errorCode(try await client.execute(uri: "/api/stemify", method: .post, headers: bh, body: bb).body) == "unsupported_format")
            #expect(try await Self.submit(client, headers: retryKey).status == .accepted)
            // Batches too.
            var (ph, pb) = multipartParts(BatchTests.options + [("file", "one.wav", Self.song)])
            ph[HTTPField.Name("Idempotency-Key")!] = "batch-1"
            let batch = json(try await client.execute(uri: "/api/batches", method: .post, headers: ph, body: pb).body)["batch_id"] as? String
            (ph, pb) = multipartParts(BatchTests.options + [("file", "one.wav", Self.song)])
            ph[HTTPField.Name("Idempotency-Key")!] = "batch-1"
            let again = try await client.execute(uri: "/api/batches", method: .post, headers: ph, body: pb)
            #expect(batch != nil && json(again.body)["batch_id"] as? String == batch)
            // Keys are short visible text.
            let bad = try await Self.submit(client, headers: [HTTPField.Name("Idempotency-Key")!: String(repeating: "k", count: 300)])
            #expect(bad.status == .badRequest && errorCode(bad.body) == "invalid_request")
        }
    }

    @Test("model_unavailable is answered at submission (503) when the model is neither installed nor downloadable now; nothing is queued")
    func modelUnavailableAtSubmission() async throws {
        let configuration = testConfiguration {
            $0.modelDownload = true
            $0.modelHuggingFaceURL = "http://127.0.0.1:9"
            $0.modelLegacyURL = "http://127.0.0.1:9"
        }
        try await withServer(configuration) { client in
            for fields in [["quality": "best"], ["model": "htdemucs_ft"], ["model": "mel_roformer_kj"]] {
                var all = fields
                all["output_format"] = "wav"
                let (h, b) = multipart(fields: all, file: ("a.wav", Self.song))
                let r = try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b)
                #expect(r.status == .serviceUnavailable && errorCode(r.body) == "model_unavailable", "\(fields): \(String(buffer: r.body))")
            }
            #expect((json(try await client.execute(uri: "/api/jobs", method: .get).body)["jobs"] as? [Any])?.isEmpty == true)
            #expect(try await Self.submit(client).status == .accepted, "an installed model still runs")
        }
    }

    @Test("the key file keeps hashes only; a new or revoked key counts at once")
    func keyStore() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-keys-\(UUID().uuidString)/keys.json").path
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        let store = APIKeyStore(path: path)
        #expect(try store.key(secret: "sk_nothing") == nil)
        let (key, secret) = try store.create(name: "ci", scopes: [.read, .submit, .read], quota: 3)
        #expect(key.scopes == [.read, .submit])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!text.contains(secret) && text.contains(key.hash))
        #expect(try store.key(secret: secret)?.id == key.id)
        #expect(try store.key(secret: secret + "x") == nil)
        _ = try store.revoke(id: key.id)
        #expect(try store.key(secret: secret) == nil)
        #expect(throws: StemifyError.self) { try store.revoke(id: "key_none") }
        #expect(throws: StemifyError.self) { try store.create(name: "", scopes: [.read], quota: nil) }
        #expect(throws: StemifyError.self) { try store.create(name: "x", scopes: [], quota: nil) }
    }
}
