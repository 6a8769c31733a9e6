import StemifyEngine
import Foundation
import StemifyTestSupport
import Testing

func repoFile(_ prefix: String) throws -> URL {
    let repo = fixturesDirectory().appendingPathComponent("repo")
    let name = try #require(try FileManager.default.contentsOfDirectory(atPath: repo.path).sorted().first { $0.hasPrefix(prefix) })
    return repo.appendingPathComponent(name)
}

func temporaryFile(_ bytes: [UInt8], suffix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID().uuidString)\(suffix)")
    try Data(bytes).write(to: url)
    return url
}

/// Loads `bytes` as a checkpoint and builds the model on it (an HTDemucs unless told); returns the error.
func loadError(_ bytes: [UInt8], suffix: String = ".th",
               build: (ModelPackage) throws -> Void = { _ = try HTDemucs(package: $0) }) throws -> CheckpointError? {
    let url = try temporaryFile(bytes, suffix: suffix)
    defer { try? FileManager.default.removeItem(at: url) }
    do {
        try build(try ModelPackage.load(contentsOf: url))
        return nil
    } catch let error as CheckpointError {
        return error
    }
}

/// A torch checkpoint whose pickle is `pickle`, in a proper torch zip layout.
func torchArchive(pickle: [UInt8]) -> [UInt8] {
    makeStoredZip([("archive/data.pkl", pickle), ("archive/version", Array("3\n".utf8))])
}

@Suite("Checkpoint loading")
struct CheckpointTests {
    @Test("legacy .th: kwargs, Fraction segment from two ints, fp16 state")
    func legacy() throws {
        let package = try ModelPackage.load(contentsOf: try repoFile("a1c0ffee-"))
        #expect(package.klass == "demucs.htdemucs.HTDemucs")
        #expect(package.kwargs["segment"] == .fraction(1, 2))
        #expect(package.kwargs["bottom_channels"] == .int(32))
        #expect(package.state["encoder.0.conv.weight"]?.shape == [8, 4, 8, 1])
        let model = try HTDemucs(package: package)
        #expect(model.trainingLength == 22050)
        #expect(model.config.sources == ["drums", "bass", "other", "vocals"])
    }

    @Test("legacy .th with the Fraction pickled from the string '1/2'")
    func stringFraction() throws {
        let url = try repoFile("f1c0ffee-")
        let pickle = try #require(readStoredZip([UInt8](try Data(contentsOf: url))).first { $0.name.hasSuffix("data.pkl") })
        #expect(String(decoding: pickle.data, as: UTF8.self).contains("1/2"))
        #expect(try ModelPackage.load(contentsOf: url).kwargs["segment"] == .fraction(1, 2))
    }

    @Test("safetensors with JSON metadata, as demucs 4.1.0 downloads")
    func safetensors() throws {
        let package = try ModelPackage.load(contentsOf: try repoFile("b6c0ffee.safetensors"))
        let model = try HTDemucs(package: package)
        #expect(model.config.sources.count == 6)
        #expect(model.config.bottomChannels == 0)
        #expect(model.weights.channelUpsampler == nil)
    }

    @Test("a pickle naming os.system is refused before anything else happens")
    func refusesOsSystem() throws {
        // PROTO 2; GLOBAL 'os system'; BINUNICODE 'touch /tmp/pwned'; TUPLE1; REDUCE; STOP
        let cmd = Array("touch /tmp/stemify-pwned".utf8)
        var p: [UInt8] = [0x80, 2, 0x63] + Array("os\nsystem\n".utf8) + [0x58]
        p += [UInt8(cmd.count), 0, 0, 0] + cmd + [0x85, 0x52, 0x2E]
        #expect(try loadError(torchArchive(pickle: p)) == .unsupportedGlobal(module: "os", name: "system"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/stemify-pwned"))
    }

    @Test("any other global is refused by name", arguments: ["builtins eval", "subprocess Popen", "torch load", "demucs.htdemucs Evil"])
    func refusesGlobals(_ global: String) throws {
        let parts = global.split(separator: " ").map(String.init)
        let p: [UInt8] = [0x80, 2, 0x63] + Array("\(parts[0])\n\(parts[1])\n".utf8) + [0x2E]
        #expect(try loadError(torchArchive(pickle: p)) == .unsupportedGlobal(module: parts[0], name: parts[1]))
    }

    @Test("a real checkpoint whose class was swapped for another global is refused")
    func swappedClass() throws {
        let bytes = [UInt8](try Data(contentsOf: try repoFile("a1c0ffee-")))
        let entries = readStoredZip(bytes).map { e in
            e.name.hasSuffix("data.pkl") ? (e.name, replacing("demucs.htdemucs\nHTDemucs\n", with: "posix\nsystem\n", in: e.data)) : e
        }
        #expect(try loadError(makeStoredZip(entries)) == .unsupportedGlobal(module: "posix", name: "system"))
    }

    @Test("a truncated archive is reported as corrupt")
    func truncated() throws {
        let bytes = [UInt8](try Data(contentsOf: try repoFile("a1c0ffee-")))
        let error = try loadError(Array(bytes.prefix(bytes.count / 2)))
        guard case .corruptArchive? = error else {
            Issue.record("expected corruptArchive, got \(String(describing: error))")
            return
        }
    }

    @Test("compressed entries and unknown formats are refused")
    func formats() throws {
        #expect(try loadError(makeStoredZip([("archive/data.pkl", [0x80, 2, 0x2E])], compressedMethod: true)) == .compressedEntry("archive/data.pkl"))
        let url = try temporaryFile(Array("not a model".utf8), suffix: ".th")
        #expect(throws: CheckpointError.unknownFormat(path: url.path)) { try ModelPackage.load(contentsOf: url) }
    }

    @Test("a tensor of the wrong shape is reported by key")
    func wrongShape() throws {
        let error = try loadError(try editedSafetensors { header, _ in
            var entry = header["encoder.0.conv.weight"] as! [String: Any]
            entry["shape"] = [8, 8, 4, 1]
            header["encoder.0.conv.weight"] = entry
        }, suffix: ".safetensors")
        #expect(error == .shapeMismatch(key: "encoder.0.conv.weight", expected: [8, 4, 8, 1], found: [8, 8, 4, 1]))
    }

    @Test("missing and unexpected tensors are reported by key")
    func missingAndExtra() throws {
        let missing = try loadError(try editedSafetensors { header, _ in header["decoder.1.rewrite.bias"] = nil }, suffix: ".safetensors")
        #expect(missing == .missingTensor(key: "decoder.1.rewrite.bias"))
        let extra = try loadError(try editedSafetensors { header, _ in
            header["encoder.9.conv.bias"] = header["encoder.0.conv.bias"]
        }, suffix: ".safetensors")
        #expect(extra == .unexpectedTensor(key: "encoder.9.conv.bias"))
    }

    @Test("unknown kwargs, unsupported kwargs and unknown classes are refused by name")
    func kwargs() throws {
        let unknown = try loadError(try editedSafetensors { _, kwargs in kwargs["frobnicate"] = 3 }, suffix: ".safetensors")
        #expect(unknown == .unknownKwarg(key: "frobnicate", klass: "HTDemucs"))
        let wiener = try loadError(try editedSafetensors { _, kwargs in kwargs["cac"] = false }, suffix: ".safetensors")
        #expect(wiener == .unsupportedKwarg(key: "cac", value: "False"))
        let klass = try loadError(try editedSafetensors(klass: "demucs.htdemucs.Other") { _, _ in }, suffix: ".safetensors")
        #expect(klass == .unsupportedClass("demucs.htdemucs.Other"))
    }
}

/// The 6-source fixture with its safetensors header edited.
func editedSafetensors(klass: String? = nil, _ edit: (inout [String: Any], inout [String: Any]) -> Void) throws -> [UInt8] {
    let bytes = [UInt8](try Data(contentsOf: try repoFile("b6c0ffee.safetensors")))
    let n = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
    var header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
    var metadata = header["__metadata__"] as! [String: String]
    var kwargs = try JSONSerialization.jsonObject(with: Data(metadata["kwargs"]!.utf8)) as! [String: Any]
    edit(&header, &kwargs)
    metadata["kwargs"] = String(decoding: try JSONSerialization.data(withJSONObject: kwargs), as: UTF8.self)
    if let klass { metadata["klass"] = klass }
    header["__metadata__"] = metadata
    let json = [UInt8](try JSONSerialization.data(withJSONObject: header))
    var out: [UInt8] = (0..<8).map { UInt8(json.count >> (8 * $0) & 0xFF) }
    out += json
    out += bytes[(8 + n)...]
    return out
}
