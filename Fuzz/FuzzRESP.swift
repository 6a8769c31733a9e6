// libFuzzer target: the RESP2 reply parser of the Redis client (StemifyCore), the bytes a Redis
// server, or anything listening on its port, sends back. Built by scripts/fuzz.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRESP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // The first byte picks where the stream is cut in two, so partial replies get fuzzed too.
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var parser = RESPParser(maxBulk: 4096, maxElements: 256, maxDepth: 4)
    parser.feed(bytes[..<cut])
    do {
        while try parser.next() != nil {}
        parser.feed(bytes[cut...])
        while let value = try parser.next() { _ = value.string; _ = value.int; _ = value.elements }
    } catch {}
    return 0
}
