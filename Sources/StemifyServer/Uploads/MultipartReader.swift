/// A streaming `multipart/form-data` reader (RFC 7578 over RFC 2046), fed the request body as it
/// arrives.
///
/// Why our own: multipart-kit 4.7.1 indexes a 128-entry table with any header-name byte, so a
/// byte above 0x7F there trapped the whole process (issue 9), and it hands out a piece at every
/// `\r` of binary data. This reader has no such table, bounds every buffer it keeps, and gives
/// file bytes in runs as long as the chunks it is fed. It uses only the standard library so the
/// libFuzzer harness (`scripts/fuzz.sh`) compiles it as it is.
///
/// ```
/// preamble  --B CRLF  headers CRLF CRLF  body  CRLF--B CRLF  headers …  body  CRLF--B--  epilogue
/// ```
package struct MultipartReader {
    package enum Event {
        /// A part starts; header names lower-cased.
        case headers([String: String])
        /// Bytes of the current part's body, in order.
        case body(ArraySlice<UInt8>)
        /// The current part is complete.
        case partEnd
    }

    package enum Failure: Error, Equatable {
        /// The boundary parameter is empty, too long or has characters RFC 2046 does not allow.
        case invalidBoundary
        /// A part's header block is not `name: value` lines or is longer than the limit.
        case malformedHeaders
        /// The bytes after a delimiter are neither `--` nor a line break.
        case malformedDelimiter
        /// The body ended before the closing delimiter.
        case truncated
    }

    private enum State {
        /// Before the first delimiter (a preamble is allowed and ignored).
        case preamble
        /// Just after a delimiter: `--` closes the body, optional blanks then CRLF opens a part.
        case afterDelimiter
        case headers
        case body
        /// After the closing delimiter: ignored.
        case epilogue
    }

    /// `CRLF--boundary`: every delimiter but the first is preceded by the line break of the
    /// part before it, which belongs to the delimiter, not to the part.
    private let delimiter: [UInt8]
    private let maxHeaderBytes: Int
    private var state = State.preamble
    private var buffer: [UInt8]
    private var start = 0

    /// - Parameter boundary: the `boundary` parameter of the Content-Type, unquoted.
    package init(boundary: String, maxHeaderBytes: Int = 8192) throws(Failure) {
        let bytes = Array(boundary.utf8)
        guard (1...70).contains(bytes.count), bytes.allSatisfy(Self.isBoundaryCharacter), bytes.last != UInt8(ascii: " ")
        else { throw .invalidBoundary }
        delimiter = Array("\r\n--".utf8) + bytes
        self.maxHeaderBytes = maxHeaderBytes
        // The first delimiter may start the body: a virtual line break in front lets one search
        // find it there or after a preamble.
        buffer = [UInt8(ascii: "\r"), UInt8(ascii: "\n")]
    }

    /// Whether the closing delimiter has been read.
    package var isComplete: Bool { if case .epilogue = state { true } else { false } }

    /// Consumes `chunk`, calling `handle` for each event it completes.
    package mutating func feed(_ chunk: some Sequence<UInt8>, _ handle: (Event) throws -> Void) throws {
        if case .epilogue = state { return }
        compact()
        buffer.append(contentsOf: chunk)
        try drain(handle)
    }

    /// The body has ended; throws unless the closing delimiter was read.
    package func finish() throws(Failure) {
        guard isComplete else { throw .truncated }
    }

    private mutating func drain(_ handle: (Event) throws -> Void) throws {
        while true {
            switch state {
            case .preamble:
                guard let at = find(delimiter, from: start) else {
                    // Keep only what could still be the start of a delimiter.
                    start = max(start, buffer.count - (delimiter.count - 1))
                    return
                }
                start = at + delimiter.count
                state = .afterDelimiter
            case .afterDelimiter:
                var i = start
                guard i + 2 <= buffer.count else { return }
                if buffer[i] == UInt8(ascii: "-") && buffer[i + 1] == UInt8(ascii: "-") {
                    state = .epilogue
                    buffer.removeAll()
                    start = 0
                    return
                }
                // Transport padding (RFC 2046 §5.1.1), bounded so a stream of blanks cannot grow the buffer.
                while i < buffer.count, buffer[i] == UInt8(ascii: " ") || buffer[i] == UInt8(ascii: "\t") {
                    i += 1
                    guard i - start <= 64 else { throw Failure.malformedDelimiter }
                }
                guard i + 2 <= buffer.count else { return }
                guard buffer[i] == UInt8(ascii: "\r"), buffer[i + 1] == UInt8(ascii: "\n") else { throw Failure.malformedDelimiter }
                // Keep the line break: with no header lines it is the first half of the blank line.
                start = i
                state = .headers
            case .headers:
                let end = find(Self.blankLine, from: start, limit: maxHeaderBytes + Self.blankLine.count)
                guard let end else {
                    if buffer.count - start > maxHeaderBytes + Self.blankLine.count { throw Failure.malformedHeaders }
                    return
                }
                let block = end == start ? [] : buffer[(start + 2)..<end]
                try handle(.headers(try Self.parseHeaders(block)))
                start = end + Self.blankLine.count
                state = .body
            case .body:
                if let at = find(delimiter, from: start) {
                    if at > start { try handle(.body(buffer[start..<at])) }
                    try handle(.partEnd)
                    start = at + delimiter.count
                    state = .afterDelimiter
                } else {
                    // Everything but a possible delimiter prefix at the end is body.
                    let safe = buffer.count - (delimiter.count - 1)
                    if safe > start {
                        try handle(.body(buffer[start..<safe]))
                        start = safe
                    }
                    return
                }
            case .epilogue:
                return
            }
        }
    }

    /// Drops consumed bytes so the buffer holds at most one chunk plus a delimiter's worth.
    private mutating func compact() {
        guard start > 0 else { return }
        buffer.removeFirst(min(start, buffer.count))
        start = 0
    }

    /// The first index of `needle` at or after `from` (within `limit` bytes of it if given).
    private func find(_ needle: [UInt8], from: Int, limit: Int? = nil) -> Int? {
        let last = buffer.count - needle.count
        guard from <= last else { return nil }
        let stop = limit.map { min(last, from + $0) } ?? last
        let first = needle[0]
        return buffer.withUnsafeBufferPointer { hay -> Int? in
            needle.withUnsafeBufferPointer { pattern -> Int? in
                var i = from
                while i <= stop {
                    if hay[i] == first {
                        var j = 1
                        while j < pattern.count && hay[i + j] == pattern[j] { j += 1 }
                        if j == pattern.count { return i }
                    }
                    i += 1
                }
                return nil
            }
        }
    }

    private static let blankLine: [UInt8] = Array("\r\n\r\n".utf8)

    /// `Name: value` lines (no folding: RFC 7578 forbids it). Names are RFC 7230 tokens,
    /// lower-cased; values are taken as UTF-8 with invalid bytes replaced.
    static func parseHeaders(_ block: ArraySlice<UInt8>) throws(Failure) -> [String: String] {
        var headers: [String: String] = [:]
        var lineStart = block.startIndex
        while lineStart < block.endIndex {
            var lineEnd = lineStart
            while lineEnd < block.endIndex && block[lineEnd] != UInt8(ascii: "\r") { lineEnd += 1 }
            if lineEnd < block.endIndex {
                guard lineEnd + 1 < block.endIndex, block[lineEnd + 1] == UInt8(ascii: "\n") else { throw .malformedHeaders }
            }
            let line = block[lineStart..<lineEnd]
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                  line[line.startIndex..<colon].allSatisfy(isTokenCharacter)
            else { throw .malformedHeaders }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            var value = line[(colon + 1)...]
            while let f = value.first, f == UInt8(ascii: " ") || f == UInt8(ascii: "\t") { value = value.dropFirst() }
            while let l = value.last, l == UInt8(ascii: " ") || l == UInt8(ascii: "\t") { value = value.dropLast() }
            headers[name] = String(decoding: value, as: UTF8.self)
            lineStart = lineEnd + 2
        }
        return headers
    }

    /// RFC 7230 `tchar`.
    static func isTokenCharacter(_ byte: UInt8) -> Bool { isAlphanumeric(byte) || tokenPunctuation.contains(byte) }

    /// RFC 2046 `bchars`.
    static func isBoundaryCharacter(_ byte: UInt8) -> Bool { isAlphanumeric(byte) || boundaryPunctuation.contains(byte) }

    private static let tokenPunctuation = Set("!#$%&'*+-.^_`|~".utf8)
    private static let boundaryPunctuation = Set("'()+_,-./:=? ".utf8)

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

/// Parameters of a `Content-Disposition` or `Content-Type` value (`form-data; name="file"`):
/// the first item, then `key=value` or `key="quoted \"value\""` pairs, keys lower-cased.
/// Malformed pieces are skipped, never fatal.
package struct HeaderParameters {
    package var value: String
    package var parameters: [String: String] = [:]

    package init(_ header: String) {
        let chars = Array(header.unicodeScalars)
        var i = 0
        func skipBlanks() { while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 } }
        skipBlanks()
        var head = ""
        while i < chars.count, chars[i] != ";" { head.unicodeScalars.append(chars[i]); i += 1 }
        value = head.trimmingBlanks()
        while i < chars.count {
            i += 1  // the ';'
            skipBlanks()
            var key = ""
            while i < chars.count, chars[i] != "=", chars[i] != ";" { key.unicodeScalars.append(chars[i]); i += 1 }
            guard i < chars.count, chars[i] == "=" else { continue }
            i += 1
            skipBlanks()
            var item = ""
            if i < chars.count, chars[i] == "\"" {
                i += 1
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                    item.unicodeScalars.append(chars[i])
                    i += 1
                }
                if i < chars.count { i += 1 }
                while i < chars.count, chars[i] != ";" { i += 1 }
            } else {
                while i < chars.count, chars[i] != ";" { item.unicodeScalars.append(chars[i]); i += 1 }
                item = item.trimmingBlanks()
            }
            parameters[key.trimmingBlanks().lowercased()] = item
        }
    }
}

extension String {
    fileprivate func trimmingBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
