import StemifyEngine
import Foundation
import StemifyCore
import StemifyTestSupport
import Testing

/// A local HTTP server with Range support (`python3`), standing in for HuggingFace and the
/// legacy download site; counts the requests that asked for a range.
final class LocalFileServer: @unchecked Sendable {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-files-\(UUID().uuidString)")
    private var server: LocalPythonServer!
    static let script = #"""
import http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404); return None
        size = os.path.getsize(path); start = 0
        r = self.headers.get("Range")
        f = open(path, "rb")
        if r and r.startswith("bytes="):
            start = int(r[6:].split("-")[0]); f.seek(start)
            open(os.path.join(sys.argv[1], ".ranges"), "a").write(self.path + "\n")
            self.send_response(206); self.send_header("Content-Range", f"bytes {start}-{size-1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start)); self.send_header("Accept-Ranges", "bytes"); self.end_headers()
        return f
    def log_message(self, *a): pass
os.chdir(sys.argv[1])
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""#

    init() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        server = try LocalPythonServer(script: Self.script, arguments: [root.path])
    }

    var base: String { "http://127.0.0.1:\(server.port)" }

    func put(_ data: Data, at path: String) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }

    var rangeRequests: [String] {
        ((try? String(contentsOf: root.appendingPathComponent(".ranges"), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(at: root)
    }
}

@Suite("Model download", .serialized)
struct ModelDownloaderTests {
    let fixtureRepo = fixturesDirectory().appendingPathComponent("repo")

    func tempDir() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("stemify-models-\(UUID().uuidString)") }

    @Test("a model comes from its HuggingFace repository, resumes a partial file, and then loads")
    func huggingFace() throws {
        let server = try LocalFileServer()
        defer { server.stop() }
        let checkpoint = try Data(contentsOf: try #require(try ModelRepository(directory: fixtureRepo).checkpoint(for: "a1c0ffee")))
        let base = "adefossez/\(ModelDownloader.huggingFaceRepository("ht_small"))/resolve/main"
        try server.put(Data("models: ['a1c0ffee']\n".utf8), at: "\(base)/ht_small.yaml")
        try server.put(checkpoint, at: "\(base)/a1c0ffee.safetensors")
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A previous, interrupted try left half of the file.
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try checkpoint.prefix(checkpoint.count / 2).write(to: dir.appendingPathComponent("a1c0ffee.safetensors.part"))
        var pulled: [String] = []
        try ModelDownloader(huggingFaceBase: server.base, legacyBase: server.base).pull("ht_small", into: dir) { pulled.append($0) }
        #expect(pulled == ["a1c0ffee.safetensors"])
        #expect(try Data(contentsOf: dir.appendingPathComponent("a1c0ffee.safetensors")) == checkpoint)
        #expect(server.rangeRequests.contains { $0.hasSuffix("a1c0ffee.safetensors") })
        #expect(try ModelRepository(directory: dir).loadBag(named: "ht_small").sources.count == 4)
    }

    @Test("the legacy fallback verifies the checksum in the file name")
    func legacyChecksum() throws {
        let server = try LocalFileServer()
        defer { server.stop() }
        try server.put(Data("not the real model".utf8), at: "hybrid_transformer/955717e8-8726e21a.th")
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let error = #expect(throws: StemifyError.self) {
            try ModelDownloader(huggingFaceBase: server.base, legacyBase: server.base).pull("htdemucs", into: dir)
        }
        #expect(error?.code == .modelUnavailable)
        #expect(error?.message.contains("955717e8-8726e21a.th") == true)
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("955717e8-8726e21a.th").path))
    }

    @Test("a model to download is refused at submission while its source does not answer, taken when it does")
    func reachability() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let offline = ModelStore(directory: dir, downloader: ModelDownloader(huggingFaceBase: "http://127.0.0.1:9", legacyBase: "http://127.0.0.1:9"))
        let error = #expect(throws: StemifyError.self) { try offline.validate("htdemucs_ft") }
        #expect(error?.code == .modelUnavailable && error?.message.contains("cannot be downloaded now") == true)
        let server = try LocalFileServer()
        defer { server.stop() }
        try server.put(Data("models: ['f7e0c4bc']\n".utf8), at: "adefossez/HTDemucs-ft/resolve/main/htdemucs_ft.yaml")
        let online = ModelStore(directory: dir, downloader: ModelDownloader(huggingFaceBase: server.base, legacyBase: "http://127.0.0.1:9"))
        #expect(throws: Never.self) { try online.validate("htdemucs_ft") }
        // Installed models need no source.
        let installed = ModelStore(directory: fixtureRepo, downloader: ModelDownloader(huggingFaceBase: "http://127.0.0.1:9", legacyBase: "http://127.0.0.1:9"))
        #expect(throws: Never.self) { try installed.validate("ht_small") }
    }

    @Test("without network the error says which files to put where")
    func offline() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let error = #expect(throws: StemifyError.self) {
            try ModelDownloader(huggingFaceBase: "http://127.0.0.1:9", legacyBase: "http://127.0.0.1:9").pull("htdemucs_ft", into: dir)
        }
        #expect(error?.message.contains("f7e0c4bc-ba3fe64a.th") == true)
        // The folder is for the operator's log (and the CLI), never for a client's message.
        #expect(error?.message.contains(dir.path) == false)
        #expect(error?.detail?.contains(dir.path) == true)
    }

    @Test("a published RoFormer comes as NAME.ckpt + NAME.yaml, resumed, its checksum recorded, then loads")
    func configured() throws {
        let server = try LocalFileServer()
        defer { server.stop() }
        let published = try #require(PublishedModel.named("mel_roformer_kj"))
        let fixtures = fixturesDirectory().appendingPathComponent("msst")
        let checkpoint = try Data(contentsOf: fixtures.appendingPathComponent("mel_small.ckpt"))
        try server.put(checkpoint, at: URL(string: published.checkpointURL)!.lastPathComponent)
        try server.put(Data(contentsOf: fixtures.appendingPathComponent("mel_small.yaml")), at: URL(string: published.configURL)!.lastPathComponent)
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try checkpoint.prefix(checkpoint.count / 3).write(to: dir.appendingPathComponent("mel_roformer_kj.ckpt.part"))
        var pulled: [String] = []
        try ModelDownloader(mirror: server.base).pull("mel_roformer_kj", into: dir) { pulled.append($0) }
        #expect(pulled == ["mel_roformer_kj.ckpt", "mel_roformer_kj.yaml"])
        #expect(server.rangeRequests.contains { $0.hasSuffix("MelBandRoformer.ckpt") })
        #expect(try Data(contentsOf: dir.appendingPathComponent("mel_roformer_kj.ckpt")) == checkpoint)
        guard case let .configured(model) = try ModelRepository(directory: dir).load(named: "mel_roformer_kj") else {
            Issue.record("not a configured model")
            return
        }
        #expect(model.config.family == .melBandRoformer)
        #expect(try ModelDownloader().verify(directory: dir).isEmpty)
        // A checkpoint changed after its first download no longer verifies.
        try Data("tampered".utf8).write(to: dir.appendingPathComponent("mel_roformer_kj.ckpt"))
        #expect(try ModelDownloader().verify(directory: dir) == ["mel_roformer_kj.ckpt"])
    }

    @Test("a configured model that cannot be fetched names both files and their sources")
    func configuredOffline() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let error = #expect(throws: StemifyError.self) {
            try ModelDownloader(mirror: "http://127.0.0.1:9").pull("bs_roformer_viperx_1297", into: dir)
        }
        #expect(error?.code == .modelUnavailable)
        #expect(error?.message.contains("bs_roformer_viperx_1297.ckpt") == true)
        #expect(error?.message.contains("bs_roformer_viperx_1297.yaml") == true)
        #expect(error?.message.contains(dir.path) == false)
    }

    @Test("verify checks the sha256 prefix of SIG-CHECKSUM.th files")
    func verify() throws {
        let dir = tempDir()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try #require(try ModelRepository(directory: fixtureRepo).checkpoint(for: "a1c0ffee"))
        try FileManager.default.copyItem(at: good, to: dir.appendingPathComponent(good.lastPathComponent))
        #expect(try ModelDownloader().verify(directory: dir).isEmpty)
        try Data("corrupt".utf8).write(to: dir.appendingPathComponent("deadbeef-12345678.th"))
        #expect(try ModelDownloader().verify(directory: dir) == ["deadbeef-12345678.th"])
    }
}
