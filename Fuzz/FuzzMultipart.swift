// libFuzzer target: the request parsers of StemifyServer (multipart bodies, header parameters,
// Range, X-Forwarded-For, the tus headers). Built by scripts/fuzz.sh with the parser files compiled in as they are.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMultipart(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)
    // The first byte picks where the body is cut in two, so splits get fuzzed too.
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    if var reader = try? MultipartReader(boundary: "b", maxHeaderBytes: 64) {
        var events = 0
        try? reader.feed(bytes[..<cut]) { _ in events += 1 }
        try? reader.feed(bytes[cut...]) { _ in events += 1 }
        try? reader.finish()
    }
    if let line = text.split(separator: "\n", maxSplits: 1).first {
        _ = try? MultipartReader(boundary: String(line))
    }
    _ = HeaderParameters(text)
    _ = parseRange(text, size: Int(bytes.first ?? 0) * 1000)
    _ = forwardedClient(peer: "p", header: text, trusted: ["10.0.0.1"])
    _ = parseByteCount(text)
    _ = parseUploadMetadata(text)
    _ = parseUploadChecksum(text)
    return 0
}
