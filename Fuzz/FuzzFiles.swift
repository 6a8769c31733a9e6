// libFuzzer targets over the engine's and the core's file readers, in one binary (StemifyEngine
// compiles once): STEMIFY_FUZZ_TARGET=checkpoint (torch zip, restricted unpickler, safetensors
// and its JSON header, DiffQ states, then model construction from what they read), config (a
// RoFormer YAML configuration and state dict, then the network built on them) or wav (the
// WAV reader, reading the whole file in blocks as the separator does). Built by scripts/fuzz.sh.
import Foundation

private let target = ProcessInfo.processInfo.environment["STEMIFY_FUZZ_TARGET"] ?? "checkpoint"
private let path = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-fuzz-\(getpid()).wav").path

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFiles(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if target == "wav" {
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        guard let source = try? WAVFileSource(path: path) else { return 0 }
        var start = 0
        while start < min(source.frameCount, 1 << 16) {
            _ = try? source.read(from: start, count: 4096)
            start += 4096
        }
        _ = try? source.read(from: max(0, source.frameCount - 10), count: 100)
    } else if target == "config" {
        // A YAML configuration, then a NUL byte, then a state dict: both parsed, then the
        // network built from the two (the shapes the config implies checked against the state).
        let split = bytes.firstIndex(of: 0) ?? bytes.count
        guard let config = try? TrainingConfig(yaml: String(decoding: bytes[..<split], as: UTF8.self)) else { return 0 }
        let state = split < bytes.count ? (try? ModelPackage.loadStateDict(bytes: Array(bytes[(split + 1)...]))) ?? [:] : [:]
        _ = try? RoFormer(config: config, state: state)
    } else {
        guard let package = try? ModelPackage.load(bytes: bytes) else { return 0 }
        _ = try? loadModel(package)
    }
    return 0
}
