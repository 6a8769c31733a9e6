// libFuzzer target: the checkpoint readers of DemucsKit (torch zip, restricted unpickler,
// safetensors with its JSON header, DiffQ states) and model construction from what they read.
// Built by scripts/fuzz.sh with all of DemucsKit compiled in.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let package = try? ModelPackage.load(bytes: bytes) else { return 0 }
    _ = try? loadModel(package)
    return 0
}
