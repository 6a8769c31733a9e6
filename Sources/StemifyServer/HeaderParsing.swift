/// Parsers of request header values. Standard library only: `scripts/fuzz.sh` compiles this file
/// into its libFuzzer harness as it is.

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` for one range of a `size`-byte file. Returns nil when the
/// header is not a single byte range (the file is served whole, as RFC 9110 allows), `.some(nil)`
/// when it cannot be satisfied (416).
package func parseRange(_ header: String, size: Int) -> ClosedRange<Int>?? {
    guard size > 0, header.hasPrefix("bytes="), !header.contains(",") else { return nil }
    let spec = header.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
    guard spec.count == 2, spec.allSatisfy({ $0.allSatisfy(\.isASCIIDigit) }) else { return nil }
    // Digits only, but possibly more than Int holds: such a position is past any file.
    let (a, b) = (Int(spec[0]), Int(spec[1]))
    switch (spec[0].isEmpty, spec[1].isEmpty) {
    case (false, _):
        guard let start = a, start < size else { return .some(nil) }
        if !spec[1].isEmpty && b == nil { return .some(start...(size - 1)) }
        let end = min(b ?? size - 1, size - 1)
        return end >= start ? .some(start...end) : .some(nil)
    case (true, false):
        guard b != 0 else { return .some(nil) }
        let n = b ?? size
        return .some(max(0, size - n)...(size - 1))
    default:
        return nil
    }
}

/// The client behind a chain of proxies: the last `X-Forwarded-For` hop that is not itself a
/// trusted proxy (earlier hops are the client's own claims), or `peer` when there is none.
package func forwardedClient(peer: String, header: String, trusted: Set<String>) -> String {
    let hops = header.split(separator: ",").map { $0.trimmingCharacters(in: " \t") }.filter { !$0.isEmpty && $0.count <= 64 }
    return hops.last(where: { !trusted.contains($0) }) ?? peer
}

/// A tus length or offset header (`Upload-Length`, `Upload-Offset`): decimal digits only, no sign,
/// at most 18 of them; nil otherwise.
package func parseByteCount(_ header: String) -> Int? {
    guard (1...18).contains(header.count), header.allSatisfy(\.isASCIIDigit) else { return nil }
    return Int(header)
}

/// tus `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
/// Returns nil when a key is repeated, empty or not ASCII without spaces, or a value is not
/// base64 of UTF-8.
package func parseUploadMetadata(_ header: String) -> [String: String]? {
    var result: [String: String] = [:]
    for pair in header.split(separator: ",", omittingEmptySubsequences: false) {
        let parts = pair.trimmingCharacters(in: " ").split(separator: " ", omittingEmptySubsequences: true)
        guard (1...2).contains(parts.count), let key = parts.first,
              key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }), result[String(key)] == nil
        else { return nil }
        if parts.count == 2 {
            guard let bytes = decodeBase64(parts[1]), let text = String(validating: bytes, as: UTF8.self) else { return nil }
            result[String(key)] = text
        } else {
            result[String(key)] = ""
        }
    }
    return result
}

/// tus `Upload-Checksum`: `algorithm base64digest`, the algorithm lowercased.
package func parseUploadChecksum(_ header: String) -> (algorithm: String, digest: [UInt8])? {
    let parts = header.split(separator: " ")
    guard parts.count == 2, let digest = decodeBase64(parts[1]), !digest.isEmpty else { return nil }
    return (parts[0].lowercased(), digest)
}

/// Standard base64 with padding (RFC 4648 §4); nil for anything else.
package func decodeBase64(_ text: some StringProtocol) -> [UInt8]? {
    let bytes = Array(text.utf8)
    guard bytes.count % 4 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count / 4 * 3)
    var i = 0
    while i < bytes.count {
        let last = i + 4 == bytes.count
        let padding = last ? (bytes[i + 3] == UInt8(ascii: "=") ? (bytes[i + 2] == UInt8(ascii: "=") ? 2 : 1) : 0) : 0
        var quantum: UInt32 = 0
        for j in 0..<4 {
            if j >= 4 - padding {
                quantum <<= 6
                continue
            }
            guard let v = value(bytes[i + j]) else { return nil }
            quantum = quantum << 6 | UInt32(v)
        }
        out.append(UInt8(quantum >> 16 & 0xFF))
        if padding < 2 { out.append(UInt8(quantum >> 8 & 0xFF)) }
        if padding < 1 { out.append(UInt8(quantum & 0xFF)) }
        i += 4
    }
    return out
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
