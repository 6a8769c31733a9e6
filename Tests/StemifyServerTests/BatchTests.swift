import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import StemifyCore
import StemifyServer
import StemifyTestSupport
import Testing

/// A multipart body with repeated parts, in order: `("file", name, bytes)` or `(field, nil, value)`.
func multipartParts(_ parts: [(name: String, filename: String?, data: Data)]) -> (HTTPFields, ByteBuffer) {
    let boundary = "stemify-\(UUID().uuidString)"
    var body = Data()
    for part in parts {
        if let filename = part.filename {
            // A quoted string: backslashes and quotes escaped, as browsers send them.
            let quoted = filename.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\"; filename=\"\(quoted)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        } else {
            body += Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\"\r\n\r\n".utf8)
        }
        body += part.data
        body += Data("\r\n".utf8)
    }
    body += Data("--\(boundary)--\r\n".utf8)
    return ([.contentType: "multipart/form-data; boundary=\(boundary)"], ByteBuffer(bytes: [UInt8](body)))
}

struct ZipRefused: Error, CustomStringConvertible {
    var description: String { "python's zipfile refused the archive" }
}

/// `POST /api/batches` and what follows, against a live server with real workers.
@Suite("Batches", .serialized)
struct BatchTests {
    static let options: [(name: String, filename: String?, data: Data)] = [
        ("model", nil, Data("ht_small".utf8)), ("quality", nil, Data("fast".utf8)), ("output_format", nil, Data("wav".utf8)),
    ]

    /// A resumable upload of `bytes`, finished, from `address`.
    func upload(_ client: any TestClientProtocol, _ bytes: [UInt8], filename: String, from address: String? = nil) async throws -> String {
        let uploads = UploadTests()
        let id = try await uploads.create(client, length: bytes.count, filename: filename, from: address)
        let r = try await uploads.patch(client, id, offset: 0, bytes, from: address)
        #expect(r.status == .noContent, "\(String(buffer: r.body))")
        return id
    }

    /// Follows the batch's event stream to its end; returns the statuses it sent.
    func follow(_ client: any TestClientProtocol, _ batch: String) async throws -> [[String: Any]] {
        let events = try await client.execute(uri: "/api/batches/\(batch)/events", method: .get)
        #expect(events.headers[.contentType] == "text/event-stream")
        return String(buffer: events.body).components(separatedBy: "\n").filter { $0.hasPrefix("data: ") }
            .map { json(ByteBuffer(string: String($0.dropFirst(6)))) }
    }

    /// The entries of a ZIP as Python's zipfile reads them (an implementation not ours), after
    /// its CRC check of every entry: name → bytes.
    func unzip(_ archive: [UInt8]) async throws -> [String: Data] {
        // A subprocess wait blocks its thread: not one of the server's.
        try await onThread { try Self.unzipBlocking(archive) }
    }

    static func unzipBlocking(_ archive: [UInt8]) throws -> [String: Data] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-zip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("a.zip")
        try Data(archive).write(to: file)
        let script = """
            import json, sys, zipfile, os
            z = zipfile.ZipFile(sys.argv[1])
            bad = z.testzip()
            assert bad is None, bad
            out = {}
            for i, info in enumerate(z.infolist()):
                path = os.path.join(sys.argv[2], str(i))
                open(path, 'wb').write(z.read(info))
                out[info.filename] = path
            print(json.dumps(out))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, file.path, dir.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let paths = try JSONSerialization.jsonObject(with: output) as? [String: String] else {
            throw ZipRefused()
        }
        return try paths.mapValues { try Data(contentsOf: URL(fileURLWithPath: $0)) }
    }

    @Test("a batch of 10 songs (files and resumable uploads) finishes; the ZIP holds every stem of every song, byte for byte",
          arguments: ["folder", "S3"])
    func tenSongs(_ storage: String) async throws {
        let plain = testConfiguration { $0.workers = 1; $0.threads = 1 }
        let configuration = storage == "S3" ? try inFreshBucket(plain) : plain
        let uploads = UploadTests()
        try await withServer(configuration) { client in
            var parts = Self.options
            // Different lengths: different audio, so none is served from another's stems.
            for i in 0..<8 {
                parts.append(("file", "song \(i) ü.wav", Data(uploads.wav(seconds: 0.5 + 0.1 * Double(i)))))
            }
            for i in 8..<10 {
                let id = try await upload(client, uploads.wav(seconds: 0.5 + 0.1 * Double(i)), filename: "upload \(i).wav")
                parts.append(("upload_id", nil, Data(id.utf8)))
            }
            let (headers, body) = multipartParts(parts)
            let accepted = try await client.execute(uri: "/api/batches", method: .post, headers: headers, body: body)
            #expect(accepted.status == .accepted, "\(String(buffer: accepted.body))")
            let created = json(accepted.body)
            let batch = try #require(created["batch_id"] as? String)
            #expect(accepted.headers[.location] == "/api/batches/\(batch)")
            let names = (created["songs"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names == (0..<8).map { "song \($0) ü.wav" } + ["upload 8.wav", "upload 9.wav"])

            let statuses = try await follow(client, batch)
            let progress = statuses.compactMap { $0["progress"] as? Double }
            #expect(progress == progress.sorted(), "batch progress went backwards: \(progress)")
            let final = json(try await client.execute(uri: "/api/batches/\(batch)", method: .get).body)
            #expect(final["status"] as? String == "done")
            #expect(final["progress"] as? Double == 1)
            #expect((final["counts"] as? [String: Int]) == ["done": 10])
            let songs = try #require(final["songs"] as? [[String: Any]])

            let zip = try await client.execute(uri: "/api/batches/\(batch)/stems.zip", method: .get)
            #expect(zip.status == .ok)
            #expect(zip.headers[.contentType] == "application/zip")
            let entries = try await unzip([UInt8](zip.body.readableBytesView))
            #expect(entries.count == 40)
            for (index, song) in songs.enumerated() {
                let job = try #require(song["job"] as? [String: Any])
                let title = ((song["name"] as? String) ?? "").replacingOccurrences(of: ".wav", with: "")
                let folder = String(format: "%02d ", index + 1) + title
                for stem in try #require(job["stems"] as? [[String: Any]]) {
                    let name = try #require(stem["name"] as? String)
                    let url = try #require(stem["url"] as? String)
                    // Presigned URLs point at the bucket; the API serves every stem too.
                    let served = try await client.execute(uri: "/api/jobs/\(song["job_id"] as? String ?? "")/stems/\(name).wav", method: .get)
                    #expect(served.status == .ok, "\(url)")
                    let entry = entries["\(folder)/\(title) (\(name)).wav"]
                    #expect(entry == Data(served.body.readableBytesView), "\(folder)/\(title) (\(name)).wav")
                }
            }
        }
    }

    @Test("hostile batches get 4xx with documented codes, and a refused batch keeps the client's uploads")
    func hostile() async throws {
        let uploads = UploadTests()
        let good = Data(uploads.wav(seconds: 0.5))
        try await withServer(testConfiguration { $0.workers = 0; $0.maxBatchSize = 3; $0.rateLimit = 5; $0.trustedProxies = ["127.0.0.1"] }) { client in
            func post(_ parts: [(name: String, filename: String?, data: Data)], from address: String? = nil) async throws -> TestResponse {
                var (headers, body) = multipartParts(Self.options + parts)
                if let address { headers[HTTPField.Name("X-Forwarded-For")!] = address }
                return try await client.execute(uri: "/api/batches", method: .post, headers: headers, body: body)
            }
            func expectCode(_ r: TestResponse, _ status: Int, _ code: String, _ what: String) {
                #expect(r.status.code == status && errorCode(r.body) == code, "\(what): \(r.status) \(String(buffer: r.body))")
            }
            expectCode(try await post([]), 400, "invalid_batch", "no song")
            expectCode(try await post(Array(repeating: ("file", "a.wav", good), count: 4)), 400, "invalid_batch", "over max_batch_size")
            let jsonTooMany = try await client.execute(
                uri: "/api/batches", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"model": "ht_small", "youtube_url": ["a", "b", "c", "d"]}"#))
            expectCode(jsonTooMany, 400, "invalid_batch", "JSON over max_batch_size")
            // Names that would be paths in the ZIP, here and in the other two ways in.
            for name in ["../../evil.wav", "a/b.wav", #"C:\x.wav"#, "..", "x\u{1}.wav"] {
                expectCode(try await post([("file", name, good)]), 400, "invalid_filename", "batch file named \(name)")
                let (h, b) = multipartParts([("model", nil, Data("ht_small".utf8)), ("file", name, good)])
                expectCode(try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b), 400, "invalid_filename", "job file named \(name)")
                let meta = "filename \(Data(name.utf8).base64EncodedString())"
                let r = try await client.execute(uri: "/api/uploads", method: .post,
                                                 headers: uploads.headers(["Upload-Length": "10", "Upload-Metadata": meta]))
                expectCode(r, 400, "invalid_filename", "upload named \(name)")
            }
            // Another client's upload, an unknown one, an unfinished one.
            let theirs = try await upload(try #require(client as? OwnedClient).other(), [UInt8](good), filename: "theirs.wav", from: "203.0.113.9")
            expectCode(try await post([("upload_id", nil, Data(theirs.utf8))]), 404, "upload_not_found", "another client's upload")
            expectCode(try await post([("upload_id", nil, Data(UUID().uuidString.lowercased().utf8))]), 404, "upload_not_found", "unknown upload")
            let twice = try await upload(client, [UInt8](good), filename: "twice.wav", from: "203.0.113.9")
            var (th, tb) = multipartParts(Self.options + [("upload_id", nil, Data(twice.utf8)), ("upload_id", nil, Data(twice.utf8))])
            th[HTTPField.Name("X-Forwarded-For")!] = "203.0.113.10"
            expectCode(try await client.execute(uri: "/api/batches", method: .post, headers: th, body: tb), 400, "invalid_batch", "one upload twice")
            let unfinished = try await uploads.create(client, length: 100)
            expectCode(try await post([("upload_id", nil, Data(unfinished.utf8))]), 409, "upload_incomplete", "unfinished upload")
            // One bad song refuses the batch, named by position; the good upload is put back.
            let mine = try await upload(client, [UInt8](good), filename: "mine.wav")
            let refused = try await post([("upload_id", nil, Data(mine.utf8)), ("file", "noise.mp3", Data(repeating: 7, count: 5000))])
            #expect(refused.status.code == 415 && errorCode(refused.body) == "unsupported_format", "\(String(buffer: refused.body))")
            #expect(String(buffer: refused.body).contains("song 2 ('noise.mp3')"), "\(String(buffer: refused.body))")
            let (status, at) = try await uploads.offset(client, mine)
            #expect(status == .ok && at == good.count, "the refused batch's upload was not put back")
            // Rate limit (5 songs): 2 counted so far (2 uploads of mine; the refused batch's file
            // was given back, theirs is another client's). One more, then two more pass the limit:
            // refused, nothing counted.
            #expect(try await post([("file", "a.wav", good)]).status == .accepted)
            let limited = try await post([("file", "a.wav", good), ("file", "b.wav", good), ("file", "c.wav", good)])
            expectCode(limited, 429, "rate_limited", "songs over the rate limit")
            #expect(limited.headers[.retryAfter] != nil)
            // The put-back upload still makes a batch (already counted), with two new songs.
            let ok = try await post([("upload_id", nil, Data(mine.utf8)), ("file", "a.wav", good), ("file", "b.wav", good)])
            #expect(ok.status == .accepted, "\(String(buffer: ok.body))")
            let batch = try #require(json(ok.body)["batch_id"] as? String)
            #expect(json(ok.body)["status"] as? String == "queued")
            // Nothing finished yet (no workers): no archive.
            expectCode(try await client.execute(uri: "/api/batches/\(batch)/stems.zip", method: .get), 404, "stem_not_found", "empty ZIP")
            // Every song cancelled: the batch says so, and so does its archive.
            let cancelled = json(try await client.execute(uri: "/api/batches/\(batch)", method: .delete).body)
            #expect(cancelled["status"] as? String == "cancelled" && (cancelled["counts"] as? [String: Int]) == ["cancelled": 3])
            let none = try await client.execute(uri: "/api/batches/\(batch)/stems.zip", method: .get)
            #expect(errorCode(none.body) == "stem_not_found" && String(buffer: none.body).contains("cancelled"), "\(String(buffer: none.body))")
            // Unknown batch ids, for every route.
            for path in ["", "/events", "/stems.zip"] {
                expectCode(try await client.execute(uri: "/api/batches/\(UUID().uuidString)\(path)", method: .get), 404, "batch_not_found", "GET \(path)")
            }
            expectCode(try await client.execute(uri: "/api/batches/%2E%2E", method: .delete), 404, "batch_not_found", "DELETE")
        }
    }

    @Test("DELETE cancels the songs not finished; finished ones stay and the batch still answers")
    func cancel() async throws {
        let uploads = UploadTests()
        let long = try Data(contentsOf: try makeAudio(seconds: 240, format: "mp3"))
        try await withServer(testConfiguration { $0.workers = 1 }) { client in
            let (headers, body) = multipartParts([
                ("model", nil, Data("ht_small".utf8)), ("output_format", nil, Data("wav".utf8)),
                ("file", "short.wav", Data(uploads.wav(seconds: 0.5))), ("file", "long.mp3", long),
                ("file", "queued.wav", Data(uploads.wav(seconds: 0.7))),
            ])
            let accepted = try await client.execute(uri: "/api/batches", method: .post, headers: headers, body: body)
            #expect(accepted.status == .accepted, "\(String(buffer: accepted.body))")
            let batch = try #require(json(accepted.body)["batch_id"] as? String)
            let ids = try #require((json(accepted.body)["songs"] as? [[String: Any]])?.compactMap { $0["job_id"] as? String })
            // Wait until the first song is done and the long one separates.
            var statuses: [String] = []
            for _ in 0..<300 where statuses.first != "done" || statuses[1] != "separating" {
                try await Task.sleep(for: .milliseconds(100))
                let songs = json(try await client.execute(uri: "/api/batches/\(batch)", method: .get).body)["songs"] as? [[String: Any]] ?? []
                statuses = songs.compactMap { $0["status"] as? String }
            }
            #expect(statuses == ["done", "separating", "queued"])
            let deleted = try await client.execute(uri: "/api/batches/\(batch)", method: .delete)
            #expect(deleted.status == .ok)
            let after = json(deleted.body)
            #expect((after["songs"] as? [[String: Any]])?.compactMap { $0["status"] as? String } == ["done", "cancelled", "cancelled"])
            #expect(after["status"] as? String == "partially_done")
            #expect(try await client.execute(uri: "/api/jobs/\(ids[0])", method: .get).status == .ok)
            for id in ids.dropFirst() {
                #expect(json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)["status"] as? String == "cancelled")
            }
            // The finished song's stems are still in the archive.
            let zip = try await client.execute(uri: "/api/batches/\(batch)/stems.zip", method: .get)
            #expect(try await unzip([UInt8](zip.body.readableBytesView)).keys.sorted() == ["bass", "drums", "other", "vocals"].map { "01 short/short (\($0)).wav" })
            // The finished song on its own: its stems as one ZIP; a cancelled one has none.
            let songZip = try await client.execute(uri: "/api/jobs/\(ids[0])/stems.zip", method: .get)
            #expect(songZip.status == .ok && songZip.headers[.contentType] == "application/zip")
            #expect(try await unzip([UInt8](songZip.body.readableBytesView)).keys.sorted() == ["bass", "drums", "other", "vocals"].map { "short/short (\($0)).wav" })
            #expect(try await client.execute(uri: "/api/jobs/\(ids[1])/stems.zip", method: .get).status == .notFound)
            // Nothing left to run: the worker is idle.
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("stemify_queue_depth 0"), "\(metrics)")
        }
    }

    @Test("a song's name becomes a folder name with nothing a path or a device could be made of")
    func folderNames() {
        #expect(zipFolderName("Song.mp3") == "Song")
        #expect(zipFolderName("a:b*c?d\"e<f>g|h.flac") == "a_b_c_d_e_f_g_h")
        #expect(zipFolderName("...") == "song")
        #expect(zipFolderName(".hidden") == "hidden")
        #expect(zipFolderName("https://youtu.be/abc?x=1") == "https___youtu.be_abc_x=1")
        #expect(!zipFolderName("x\u{0}y/..\\z").contains { "/\\\u{0}".contains($0) })
    }
}
