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
