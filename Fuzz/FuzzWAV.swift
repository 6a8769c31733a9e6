// libFuzzer target: the WAV reader of StemifyCore (RIFF chunks, fmt, data, every sample
// encoding), reading the whole file in blocks as the separator does.
import Foundation

private let path = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-fuzz-\(getpid()).wav").path

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWAV(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    guard let source = try? WAVFileSource(path: path) else { return 0 }
    var start = 0
    while start < min(source.frameCount, 1 << 16) {
        _ = try? source.read(from: start, count: 4096)
        start += 4096
    }
    _ = try? source.read(from: max(0, source.frameCount - 10), count: 100)
    return 0
}
