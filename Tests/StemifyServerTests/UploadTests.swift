import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import StemifyCore
import StemifyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Resumable uploads (tus 1.0.0) at `/api/uploads`, against a live server.
@Suite("Resumable uploads", .serialized)
struct UploadTests {
    static let tus: HTTPFields = [HTTPField.Name("Tus-Resumable")!: "1.0.0"]

    func headers(_ extra: [String: String] = [:], from client: String? = nil) -> HTTPFields {
        var h = Self.tus
        for (k, v) in extra { h[HTTPField.Name(k)!] = v }
        if let client { h[HTTPField.Name("X-Forwarded-For")!] = client }
        return h
    }

    func create(_ client: any TestClientProtocol, length: Int, filename: String = "song.wav", from address: String? = nil) async throws -> String {
        let meta = "filename \(Data(filename.utf8).base64EncodedString())"
        let r = try await client.execute(uri: "/api/uploads", method: .post,
                                         headers: headers(["Upload-Length": "\(length)", "Upload-Metadata": meta], from: address))
        #expect(r.status == .created, "\(String(buffer: r.body))")
        let location = try #require(r.headers[.location])
        #expect(location.hasPrefix("/api/uploads/"))
        #expect(r.headers[HTTPField.Name("Upload-Expires")!] != nil)
        return String(location.dropFirst("/api/uploads/".count))
    }

    func patch(_ client: any TestClientProtocol, _ id: String, offset: Int, _ bytes: some Collection<UInt8>,
               extra: [String: String] = [:], from address: String? = nil) async throws -> TestResponse {
        var h = headers(["Upload-Offset": "\(offset)", "Content-Type": "application/offset+octet-stream"].merging(extra) { $1 }, from: address)
        h[.contentLength] = "\(bytes.count)"
        return try await client.execute(uri: "/api/uploads/\(id)", method: .patch, headers: h, body: ByteBuffer(bytes: Array(bytes)))
    }

    func offset(_ client: any TestClientProtocol, _ id: String, from address: String? = nil) async throws -> (HTTPResponse.Status, Int?) {
        let r = try await client.execute(uri: "/api/uploads/\(id)", method: .head, headers: headers(from: address))
        return (r.status, r.headers[HTTPField.Name("Upload-Offset")!].flatMap(Int.init))
    }

    /// A PCM16 stereo WAV of `seconds` of a chord with noise (valid audio of a known size).
    func wav(seconds: Double) -> [UInt8] {
        let frames = Int(seconds * 44100)
        var out: [UInt8] = []
        out.reserveCapacity(44 + frames * 4)
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out += $0 } }
        func u16(_ v: Int) { withUnsafeBytes(of: UInt16(v).littleEndian) { out += $0 } }
        out += Array("RIFF".utf8); u32(36 + frames * 4); out += Array("WAVEfmt ".utf8)
        u32(16); u16(1); u16(2); u32(44100); u32(44100 * 4); u16(4); u16(16)
        out += Array("data".utf8); u32(frames * 4)
        var g: UInt32 = 1
        for i in 0..<frames {
            g = g &* 1_664_525 &+ 1_013_904_223
            let t = Double(i) / 44100
            let v = 0.3 * sin(2 * .pi * 220 * t) + 0.2 * sin(2 * .pi * 277 * t) + 0.05 * (Double(g >> 8) / Double(1 << 24) - 0.5)
            let s = Int16(max(-1, min(1, v)) * 32000)
            withUnsafeBytes(of: s.littleEndian) { out += $0 }
            withUnsafeBytes(of: (s / 2).littleEndian) { out += $0 }
        }
        return out
    }

    /// Sends a PATCH whose body stops after `send` of its declared bytes, then closes the
    /// connection: a network drop in the middle of a chunk.
    func cutPatch(port: Int, token: String?, id: String, offset: Int, declared: ArraySlice<UInt8>, sending count: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        let head = "PATCH /api/uploads/\(id) HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
            + (token.map { "Authorization: Bearer \($0)\r\n" } ?? "")
            + "Content-Type: application/offset+octet-stream\r\nUpload-Offset: \(offset)\r\nContent-Length: \(declared.count)\r\n\r\n"
        var bytes = Array(head.utf8) + declared.prefix(count)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeMutableBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            #expect(n > 0)
            if n <= 0 { return }
            sent += n
        }
        bytes.removeAll()
    }

    @Test("a 40 MB upload cut at 50 % resumes from its offset: the bytes sent after the cut are < 60 % of the file, the file arrives whole")
    func resume() async throws {
        let file = wav(seconds: 238)  // 41.99 MB
        #expect(file.count > 40_000_000)
        let configuration = testConfiguration { $0.workers = 0; $0.maxFileSize = 64 << 20 }
        try await withServer(configuration) { client in
            let id = try await create(client, length: file.count)
            try cutPatch(port: try #require(client.port), token: (client as? OwnedClient)?.token, id: id, offset: 0, declared: file[...], sending: file.count / 2)
            // The server may not have seen the drop yet: until then the upload is busy (409).
            var sentAfterCut = 0
            var done = false
            for _ in 0..<100 where !done {
                let (status, at) = try await offset(client, id)
                #expect(status == .ok)
                let start = try #require(at)
                let r = try await patch(client, id, offset: start, file[start...])
                if r.status == .conflict {
                    try await Task.sleep(for: .milliseconds(100))
                    continue
                }
                #expect(r.status == .noContent, "\(String(buffer: r.body))")
                #expect(r.headers[HTTPField.Name("Upload-Offset")!] == "\(file.count)")
                sentAfterCut = file.count - start
                done = true
            }
            #expect(done)
            #expect(Double(sentAfterCut) < 0.6 * Double(file.count), "resent \(sentAfterCut) of \(file.count) bytes")
            let stored = try Data(contentsOf: URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("resumable/\(id)"))
            #expect(stored == Data(file), "the stored upload differs from the file sent")
            // The finished upload becomes a job like a posted file (validated, queued).
            let (h, b) = multipart(fields: ["model": "ht_small", "upload_id": id])
            let job = try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b)
            #expect(job.status == .accepted, "\(String(buffer: job.body))")
        }
    }

    @Test("chunks with checksums, then a job from the upload id: separated and served; the id is used up")
    func endToEnd() async throws {
        let file = [UInt8](try Data(contentsOf: try makeAudio(seconds: 2, format: "mp3")))
        try await withServer(testConfiguration()) { client in
            let options = try await client.execute(uri: "/api/uploads", method: .options)
            #expect(options.status == .noContent)
            #expect(options.headers[HTTPField.Name("Tus-Version")!] == "1.0.0")
            #expect(options.headers[HTTPField.Name("Tus-Extension")!]?.contains("checksum") == true)
            #expect(options.headers[HTTPField.Name("Tus-Max-Size")!] == "\(testConfiguration().maxFileSize)")

            let id = try await create(client, length: file.count, filename: "chörd.mp3")
            var at = 0
            for end in [file.count / 3, 2 * file.count / 3, file.count] {
                let chunk = file[at..<end]
                let sum = "sha1 " + Data(Insecure.SHA1.hash(data: Array(chunk))).base64EncodedString()
                let r = try await patch(client, id, offset: at, chunk, extra: ["Upload-Checksum": sum])
                #expect(r.status == .noContent)
                at = end
                #expect(r.headers[HTTPField.Name("Upload-Offset")!] == "\(at)")
            }
            let body = ByteBuffer(string: #"{"upload_id": "\#(id)", "model": "ht_small", "output_format": "wav", "quality": "fast"}"#)
            let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: [.contentType: "application/json"], body: body)
            #expect(accepted.status == .accepted, "\(String(buffer: accepted.body))")
            let jobID = try #require(json(accepted.body)["job_id"] as? String)
            _ = try await client.execute(uri: "/api/jobs/\(jobID)/events", method: .get)
            let job = json(try await client.execute(uri: "/api/jobs/\(jobID)", method: .get).body)
            #expect(job["status"] as? String == "done")
            #expect((job["stems"] as? [[String: Any]])?.count == 4)
            // Taken by the job: no longer an upload, and not a second job.
            #expect(try await offset(client, id).0 == .notFound)
            let again = try await client.execute(uri: "/api/stemify", method: .post, headers: [.contentType: "application/json"], body: body)
            #expect(errorCode(again.body) == "upload_not_found")
        }
    }

    @Test("hostile and broken requests get their documented codes, and nothing of them is kept")
    func hostile() async throws {
        let limit = 1 << 20
        try await withServer(testConfiguration { $0.workers = 0; $0.maxFileSize = limit; $0.trustedProxies = ["127.0.0.1"] }) { client in
            func expectCode(_ r: TestResponse, _ status: Int, _ code: String, _ what: String) {
                #expect(r.status.code == status, "\(what): \(r.status)")
                #expect(errorCode(r.body) == code, "\(what): \(String(buffer: r.body))")
            }
            // No version, a length over the limit, a negative or missing length, bad metadata.
            let noVersion = try await client.execute(uri: "/api/uploads", method: .post, headers: [HTTPField.Name("Upload-Length")!: "10"])
            expectCode(noVersion, 412, "tus_version_unsupported", "no Tus-Resumable")
            // tus wants its header on every response, errors too.
            #expect(noVersion.headers[HTTPField.Name("Tus-Resumable")!] == "1.0.0")
            #expect(noVersion.headers[HTTPField.Name("Tus-Version")!] == "1.0.0", "a 412 names the versions spoken")
            let unknown = try await client.execute(uri: "/api/uploads/\(UUID().uuidString)", method: .head, headers: Self.tus)
            #expect(unknown.status == .notFound && unknown.headers[HTTPField.Name("Tus-Resumable")!] == "1.0.0")
            expectCode(try await client.execute(uri: "/api/uploads", method: .post, headers: headers(["Upload-Length": "\(limit + 1)"])),
                       413, "file_too_large", "length above the limit")
            for bad in ["-5", "", "1e3", "99999999999999999999", "0x10"] {
                expectCode(try await client.execute(uri: "/api/uploads", method: .post, headers: headers(["Upload-Length": bad])),
                           400, "invalid_request", "Upload-Length '\(bad)'")
            }
            expectCode(try await client.execute(uri: "/api/uploads", method: .post, headers: headers(["Upload-Length": "10", "Upload-Metadata": "filename ***"])),
                       400, "invalid_request", "metadata not base64")

            let id = try await create(client, length: 1000)
            let bytes = [UInt8](repeating: 7, count: 1000)
            // Offsets: ahead of the data, negative, not a number, wrong content type.
            expectCode(try await patch(client, id, offset: 10, bytes[0..<10]), 409, "upload_offset_mismatch", "offset ahead")
            expectCode(try await patch(client, id, offset: 0, bytes[0..<10], extra: ["Upload-Offset": "-1"]), 400, "invalid_request", "negative offset")
            expectCode(try await patch(client, id, offset: 0, bytes[0..<10], extra: ["Content-Type": "application/octet-stream"]),
                       415, "invalid_content_type", "content type")
            #expect(try await patch(client, id, offset: 0, bytes[0..<100]).status == .noContent)
            // Overlapping an earlier chunk.
            expectCode(try await patch(client, id, offset: 50, bytes[0..<100]), 409, "upload_offset_mismatch", "overlapping offset")
            // A wrong checksum: refused, and its bytes not kept; an unknown algorithm.
            let wrong = "sha1 " + Data(Insecure.SHA1.hash(data: [1, 2, 3])).base64EncodedString()
            expectCode(try await patch(client, id, offset: 100, bytes[0..<100], extra: ["Upload-Checksum": wrong]),
                       460, "checksum_mismatch", "checksum")
            #expect(try await offset(client, id).1 == 100)
            expectCode(try await patch(client, id, offset: 100, bytes[0..<100], extra: ["Upload-Checksum": "crc32 AAAA"]),
                       400, "invalid_request", "unknown checksum algorithm")
            // Past the declared length.
            expectCode(try await patch(client, id, offset: 100, [UInt8](repeating: 1, count: 1000)), 413, "upload_length_exceeded", "past the length")
            #expect(try await offset(client, id).1 == 100)
            // A job from an unfinished upload.
            let (h, b) = multipart(fields: ["model": "ht_small", "upload_id": id])
            expectCode(try await client.execute(uri: "/api/stemify", method: .post, headers: h, body: b), 409, "upload_incomplete", "incomplete")
            // Unknown ids, path tricks, and another client's upload: all "not found".
            for other in [UUID().uuidString.lowercased(), UUID().uuidString, "..", "%2E%2E%2Fjobs.sqlite", "x.json"] {
                let r = try await client.execute(uri: "/api/uploads/\(other)", method: .head, headers: Self.tus)
                #expect(r.status == .notFound, "\(other)")
            }
            // Another owner's upload, from the same address: its owner token, not the address, decides.
            let them = try #require(client as? OwnedClient).other()
            let theirs = try await create(them, length: 10, from: "203.0.113.7")
            #expect(try await offset(them, theirs, from: "203.0.113.8").0 == .ok)
            #expect(try await offset(client, theirs, from: "203.0.113.7").0 == .notFound)
            expectCode(try await patch(client, theirs, offset: 0, bytes[0..<10], from: "203.0.113.7"), 404, "upload_not_found", "another client's")
            let (h2, b2) = multipart(fields: ["model": "ht_small", "upload_id": theirs])
            expectCode(try await client.execute(uri: "/api/stemify", method: .post, headers: h2, body: b2), 404, "upload_not_found", "another client's job")
            // A file and an upload id at once.
            let (h3, b3) = multipart(fields: ["model": "ht_small", "upload_id": id], file: ("a.wav", Data(bytes)))
            expectCode(try await client.execute(uri: "/api/stemify", method: .post, headers: h3, body: b3), 400, "missing_input", "file and upload id")
            // Termination.
            #expect(try await client.execute(uri: "/api/uploads/\(id)", method: .delete, headers: Self.tus).status == .noContent)
            #expect(try await offset(client, id).0 == .notFound)
            #expect(try await client.execute(uri: "/api/uploads/\(id)", method: .delete, headers: Self.tus).status == .notFound)
        }
    }

    @Test("an upload with no bytes for upload_expiry seconds is gone (410), and a creation counts against the rate limit")
    func expiryAndRateLimit() async throws {
        try await withServer(testConfiguration { $0.workers = 0; $0.uploadExpirySeconds = 1; $0.rateLimit = 2 }) { client in
            let id = try await create(client, length: 10)
            try await Task.sleep(for: .milliseconds(1600))
            let r = try await client.execute(uri: "/api/uploads/\(id)", method: .head, headers: Self.tus)
            #expect(r.status == .gone)
            #expect(try await offset(client, id).0 == .notFound)
            _ = try await create(client, length: 10)
            let third = try await client.execute(uri: "/api/uploads", method: .post, headers: headers(["Upload-Length": "10"]))
            #expect(third.status == .tooManyRequests)
            #expect(third.headers[.retryAfter] != nil)
        }
    }
}
