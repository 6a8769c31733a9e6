import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import StemifyCore
import StemifyServer
import StemifyTestSupport
import Testing

private func repositoryRoot() -> URL { fixturesDirectory().deletingLastPathComponent().deletingLastPathComponent() }

@Suite("error boundary")
struct ErrorBoundaryTests {
    /// Raw multipart bodies that are not well-formed; the first is the 100-byte request that
    /// stopped the process under multipart-kit (issue 9).
    static let malformedBodies: [(String, [UInt8])] = [
        ("header name byte above 0x7F", Array("--b\r\n".utf8) + [0xff, 0xfe] + Array(": x\r\n\r\nv\r\n--b--\r\n".utf8)),
        ("no closing delimiter", Array("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nhtdemucs".utf8)),
        ("header without colon", Array("--b\r\nContent-Disposition\r\n\r\nv\r\n--b--\r\n".utf8)),
        ("junk after delimiter", Array("--b!!\r\n\r\nv\r\n--b--\r\n".utf8)),
        ("endless header block", Array("--b\r\nA: ".utf8) + [UInt8](repeating: 0x41, count: 20_000)),
        ("binary noise", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }),
    ]

    @Test("malformed multipart bodies get 400 invalid_request and the server keeps serving")
    func malformedMultipart() async throws {
        try await withServer(testConfiguration()) { client in
            for (name, body) in Self.malformedBodies {
                let response = try await client.execute(
                    uri: "/api/stemify", method: .post, headers: [.contentType: "multipart/form-data; boundary=b"],
                    body: ByteBuffer(bytes: body))
                #expect(response.status == .badRequest, "\(name)")
                #expect(errorCode(response.body) == "invalid_request", "\(name): \(String(buffer: response.body))")
                #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            }
            for contentType in ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=\"a b \"",
                                "multipart/form-data; boundary=\(String(repeating: "x", count: 71))"] {
                let response = try await client.execute(uri: "/api/stemify", method: .post, headers: [.contentType: contentType],
                                                        body: ByteBuffer(string: "--b--"))
                #expect(response.status == .badRequest, "\(contentType)")
            }
        }
    }

    @Test("JSON bodies: not an object, nested values, too deep, too large", arguments: [
        ("[1, 2]", "invalid_request"), ("{\"youtube_url\": {\"a\": 1}}", "invalid_request"), ("not json", "invalid_request"),
        (String(repeating: "[", count: 10_000), "invalid_request"), ("{\"a\": \"" + String(repeating: "x", count: 70_000) + "\"}", "invalid_request"),
        ("{\"model\": \"ht_small\", \"normalize\": 2}", "invalid_option"), ("{\"youtube_url\": null}", "missing_input"),
    ])
    func jsonBodies(_ body: String, _ code: String) async throws {
        try await withServer(testConfiguration()) { client in
            let response = try await client.execute(uri: "/api/stemify", method: .post, headers: [.contentType: "application/json"],
                                                    body: ByteBuffer(string: body))
            #expect(errorCode(response.body) == code, "\(String(buffer: response.body))")
            #expect(response.status == .badRequest)
        }
    }

    @Test("unknown routes answer 404 not_found; a known path with another method 405 with Allow")
    func unknownRoutes() async throws {
        try await withServer(testConfiguration()) { client in
            for (uri, method) in [("/nope", HTTPRequest.Method.get), ("/api/nope", .put), ("/lib/secret.js", .get), ("/api/jobs/a/b/c", .get)] {
                let response = try await client.execute(uri: uri, method: method)
                #expect(response.status == .notFound, "\(method) \(uri)")
                #expect(errorCode(response.body) == "not_found", "\(method) \(uri): \(String(buffer: response.body))")
            }
            for (uri, method, allow) in [("/api/stemify", HTTPRequest.Method.put, "POST"), ("/api/stemify", .get, "POST"),
                                         ("/api/models", .delete, "GET, HEAD"), ("/api/jobs/x", .post, "DELETE, GET, HEAD"),
                                         ("/healthz", .patch, "GET, HEAD"), ("/api/uploads/x", .get, "DELETE, HEAD, PATCH")] {
                let response = try await client.execute(uri: uri, method: method)
                #expect(response.status == .methodNotAllowed, "\(method) \(uri)")
                #expect(response.headers[.allow] == allow, "\(method) \(uri): \(response.headers[.allow] ?? "-")")
                #expect(errorCode(response.body) == "method_not_allowed", "\(method) \(uri)")
            }
        }
    }

    @Test("no client-visible message carries a server path or a tool's output")
    func noLeaks() async throws {
        let models = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-broken-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: models) }
        // A bag whose checkpoint is not one: accepted at submit, fails in the worker.
        try "models: ['deadbeef']\n".write(to: models.appendingPathComponent("broken.yaml"), atomically: true, encoding: .utf8)
        try Data("PK\u{3}\u{4} not really a zip".utf8).write(to: models.appendingPathComponent("deadbeef.th"))
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let mp3 = try Data(contentsOf: try makeAudio(seconds: 1, format: "mp3"))
        let configuration = testConfiguration { $0.modelPath = models.path }

        let collected = Bodies()
        try await withServer(configuration) { client in
            var seen: [String] = []
            for c in try APITests.badInputs() {
                let (headers, body) = multipart(fields: c.fields, file: c.file.map { (name: $0.0, data: $0.1) })
                seen.append(String(buffer: try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).body))
            }
            let (headers, body) = multipart(fields: ["model": "broken"], file: ("a.mp3", mp3))
            let accepted = try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body)
            let id = try #require(json(accepted.body)["job_id"] as? String, "\(String(buffer: accepted.body))")
            var job: [String: Any] = [:]
            for _ in 0..<300 {
                job = json(try await client.execute(uri: "/api/jobs/\(id)", method: .get).body)
                if job["status"] as? String == "failed" { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(job["status"] as? String == "failed")
            #expect((job["error"] as? [String: Any])?["code"] as? String == "separation_failed")
            seen.append(String(buffer: try await client.execute(uri: "/api/jobs/\(id)", method: .get).body))
            seen.append(String(buffer: try await client.execute(uri: "/api/jobs/\(id)/stems/x.wav", method: .get).body))
            seen.append(String(buffer: try await client.execute(uri: "/api/models", method: .get).body))
            await collected.add(seen)
        }
        try await withServer(testConfiguration { $0.modelPath = empty.path }) { client in
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .serviceUnavailable && errorCode(ready.body) == "unavailable")
            let (headers, body) = multipart(fields: ["model": "ht_small"], file: ("a.mp3", mp3))
            await collected.add([String(buffer: ready.body),
                                 String(buffer: try await client.execute(uri: "/api/stemify", method: .post, headers: headers, body: body).body)])
        }
        let forbidden = [configuration.dataDirectory, models.path, empty.path, FileManager.default.temporaryDirectory.path,
                         repositoryRoot().path, "/tmp/", "/work", "ffmpeg", "ffprobe", "yt-dlp", "Error Domain", "Invalid data found"]
        let bodies = await collected.items
        #expect(bodies.count > 15)
        for body in bodies {
            for needle in forbidden { #expect(!body.contains(needle), "'\(needle)' in \(body)") }
        }
    }

    @Test("docs/errors.md, the OpenAPI enum, the TypeScript client and the code list exactly the same codes, with the mapped statuses")
    func documentedCodes() throws {
        let root = repositoryRoot()
        let docs = try String(contentsOf: root.appendingPathComponent("docs/errors.md"), encoding: .utf8)
        // Table rows: | `code` | status | when |
        var documented: [String: String] = [:]
        for line in docs.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            documented[cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))] = cells[1]
        }
        let codes = Set(ErrorCode.allCases.map(\.rawValue))
        #expect(Set(documented.keys) == codes)
        for code in ErrorCode.allCases {
            #expect(documented[code.rawValue] == "\(code.httpStatus.code)", "docs/errors.md gives \(code) status \(documented[code.rawValue] ?? "-")")
        }
        let openapi = try String(contentsOf: root.appendingPathComponent("Sources/StemifyServer/Public/openapi.yaml"), encoding: .utf8)
        let enumText = try #require(openapi.range(of: #"ErrorCode:\s+type: string\s+enum: \[([^\]]*)\]"#, options: .regularExpression))
        let listed = openapi[enumText].split(separator: "[")[1].split(separator: "]")[0]
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(Set(listed) == codes)
        let types = try String(contentsOf: root.appendingPathComponent("clients/typescript/src/types.ts"), encoding: .utf8)
        let union = try #require(types.range(of: #"export type ErrorCode =[^;]*;"#, options: .regularExpression))
        let inTypes = types[union].split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        #expect(Set(inTypes) == codes)
    }
}

private actor Bodies {
    var items: [String] = []
    func add(_ more: [String]) { items += more }
}
