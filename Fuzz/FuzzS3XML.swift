// libFuzzer target: the scanner that reads S3's XML answers (object keys, upload ids, error
// codes) in the object-storage client (StemifyCore), the bytes an object store, or anything
// at its endpoint, sends back. Built by scripts/fuzz.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzS3XML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for name in ["Key", "UploadId", "Code", "NextContinuationToken", "IsTruncated"] {
        _ = S3XML.values(name, in: text)
    }
    _ = S3XML.decodeEntities(text[...])
    return 0
}
