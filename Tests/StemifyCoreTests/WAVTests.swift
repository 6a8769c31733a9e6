import StemifyEngine
import Foundation
import StemifyCore
import StemifyTestSupport
import Testing

@Suite("WAV reading and writing")
struct WAVTests {
    func temp(_ suffix: String = ".wav") -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("stemify-wav-\(UUID().uuidString)\(suffix)").path
    }

    @Test("write then read back", arguments: WAVEncoding.allCases)
    func roundTrip(_ encoding: WAVEncoding) throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let x = Tensor(shape: [2, 5], data: [0, 0.5, -0.5, 0.25, 1, -1, 0.1, 0.2, 0.3, 0.4])
        let w = try WAVWriter(path: path, channels: 2, sampleRate: 22050, encoding: encoding)
        try w.write(x)
        try w.write(x)
        try w.finish()
        let r = try WAVFileSource(path: path)
        #expect(r.sampleRate == 22050 && r.channelCount == 2 && r.frameCount == 10)
        let y = try r.read(from: 5, count: 5)
        let step: Float = encoding == .float32 ? 0 : encoding == .int16 ? 2 / 32768 : 2 / 8_388_608
        for i in 0..<10 { #expect(abs(y.data[i] - x.data[i]) <= step) }
        // Outside the file reads as zeros.
        #expect(try r.read(from: 9, count: 3).data == [y.data[4], 0, 0, y.data[9], 0, 0])
    }

    /// Stems can peak over full scale before a clip mode (`--clip-mode none`): a float file keeps
    /// them, integers saturate. Clamping float output made every SCNet with default-initialised
    /// weights look 12–38 dB off its reference (issue 35).
    @Test("float output keeps samples beyond full scale; integer output saturates; NaN is written as 0", arguments: WAVEncoding.allCases)
    func beyondFullScale(_ encoding: WAVEncoding) throws {
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let x = Tensor(shape: [1, 5], data: [1.75, -3.5, 0.5, .nan, -1.0000001])
        let w = try WAVWriter(path: path, channels: 1, sampleRate: 44100, encoding: encoding)
        try w.write(x)
        try w.finish()
        let y = try WAVFileSource(path: path).read(from: 0, count: 5).data
        let expected: [Float] = encoding == .float32 ? [1.75, -3.5, 0.5, 0, -1.0000001] : [1, -1, 0.5, 0, -1]
        let step: Float = encoding == .float32 ? 0 : encoding == .int16 ? 2 / 32768 : 2 / 8_388_608
        for i in 0..<5 { #expect(abs(y[i] - expected[i]) <= step, "sample \(i): \(y[i]) for \(x.data[i])") }
    }

    @Test("hostile or unsupported files give a clear error")
    func hostile() throws {
        let cases: [(String, [UInt8])] = [
            ("text", Array("hello world, not audio".utf8)),
            ("riff without fmt", Array("RIFF".utf8) + [36, 0, 0, 0] + Array("WAVEdata".utf8) + [0, 0, 0, 0]),
            ("truncated header", Array("RIFF".utf8)),
            ("adpcm", wavBytes(format: 2, bits: 4, frames: 4)),
            ("no frames", wavBytes(format: 1, bits: 16, frames: 0)),
        ]
        for (name, bytes) in cases {
            let path = temp()
            defer { try? FileManager.default.removeItem(atPath: path) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(throws: AudioError.self, "\(name)") { try WAVFileSource(path: path) }
        }
        #expect(throws: AudioError.self) { try WAVFileSource(path: "/nonexistent/stemify.wav") }
    }

    func wavBytes(format: Int, bits: Int, frames: Int) -> [UInt8] {
        var b: [UInt8] = Array("RIFF".utf8)
        func u32(_ v: Int) { for k in 0..<4 { b.append(UInt8(v >> (8 * k) & 0xFF)) } }
        func u16(_ v: Int) { b += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        let dataSize = frames * 2 * max(bits, 8) / 8
        u32(36 + dataSize)
        b += Array("WAVEfmt ".utf8)
        u32(16); u16(format); u16(2); u32(44100); u32(44100 * 4); u16(4); u16(bits)
        b += Array("data".utf8)
        u32(dataSize)
        b += [UInt8](repeating: 0, count: dataSize)
        return b
    }
}

@Suite("Model folder")
struct ModelRepositoryTests {
    @Test("bag files, single signatures and the listing")
    func resolve() throws {
        let spec = try fixtureRepo.bagSpec(named: "htft_small")
        #expect(spec.models == ["f0c0ffee", "f1c0ffee", "f1c0ffee", "f0c0ffee"])
        #expect(spec.weights?[3] == [0, 0, 0, 1])
        #expect(try fixtureRepo.bagSpec(named: "a1c0ffee").models == ["a1c0ffee"])
        let listing = fixtureRepo.list()
        #expect(listing.bags == ["demucs31_small", "demucs_small", "hd_small", "hdmag2_small", "hdmag_small", "hdmulti_small",
                                 "ht6s_small", "ht_small", "htft_small", "mdx_small", "mdxq_small", "qdemucs_small", "qhdmag_small"])
        #expect(listing.singles == ["a1c0ffee", "b6c0ffee", "c0ffee20", "c0ffee21", "c0ffee22", "c0ffee23", "c0ffee30", "c0ffee31",
                                    "c0ffee40", "c0ffee42", "f0c0ffee", "f1c0ffee"])
    }

    @Test("a bag's segment replaces its members' (0.4 s here), except a transformer model's shorter one")
    func bagSegment() throws {
        let mdx = try fixtureRepo.loadBag(named: "mdx_small")
        #expect(mdx.models.map(\.segmentLength) == [17640, 17640, 17640, 17640])
        #expect(mdx.weights[1] == [0, 1, 0, 0])
        let ht = try fixtureRepo.loadBag(named: "ht_small").models[0]
        #expect(ht.segmentLength == 22050)
        #expect(ht.withBagSegment(44).segmentLength == 22050)
        #expect(ht.withBagSegment(0.4).segmentLength == 17640)
    }

    @Test("a missing model says which files to put where")
    func notFound() throws {
        let error = #expect(throws: ModelRepositoryError.self) { try fixtureRepo.loadBag(named: "htdemucs") }
        #expect(error?.description.contains("htdemucs.yaml") == true)
    }

    @Test("a bag listing a missing member, or a broken bag file, is refused")
    func brokenBags() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-repo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "models: ['deadbeef']\n".write(to: dir.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try "models: [\n".write(to: dir.appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
        try "weights: [[1]]\n".write(to: dir.appendingPathComponent("c.yaml"), atomically: true, encoding: .utf8)
        let repo = ModelRepository(directory: dir)
        #expect(throws: ModelRepositoryError.missingMember(bag: "a", signature: "deadbeef", directory: dir.path)) { try repo.loadBag(named: "a") }
        #expect(throws: ModelRepositoryError.self) { try repo.loadBag(named: "b") }
        #expect(throws: ModelRepositoryError.self) { try repo.loadBag(named: "c") }
    }
}
