// libFuzzer targets over the engine's and the core's file readers, in one binary (StemifyEngine
// compiles once): STEMIFY_FUZZ_TARGET=checkpoint (torch zip, restricted unpickler, safetensors
// and its JSON header, DiffQ states, then model construction from what they read) or wav (the
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
    } else {
        guard let package = try? ModelPackage.load(bytes: bytes) else { return 0 }
        _ = try? loadModel(package)
    }
    return 0
}
