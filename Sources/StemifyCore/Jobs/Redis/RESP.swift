/// A value of the Redis serialization protocol, version 2 (what every Redis since 2.0 speaks
/// without `HELLO`): the replies a command can get.
public enum RESPValue: Sendable, Equatable {
    /// `+OK`
    case simple(String)
    /// `-ERR ...`: the command failed; the connection is fine.
    case error(String)
    /// `:42`
    case integer(Int)
    /// `$5 hello`; nil for `$-1` (a missing key).
    case bulk([UInt8]?)
    /// `*2 ...`; nil for `*-1` (a timed-out blocking pop).
    case array([RESPValue]?)

    /// The text of a simple or bulk string.
    public var string: String? {
        switch self {
        case let .simple(s): s
        case let .bulk(bytes?): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// An integer reply, or a string holding one (`HGET` of a counter).
    public var int: Int? {
        switch self {
        case let .integer(n): n
        default: string.flatMap { Int($0) }
        }
    }

    public var isNull: Bool {
        switch self {
        case .bulk(nil), .array(nil): true
        default: false
        }
    }

    /// The elements of an array reply; empty for a null array.
    public var elements: [RESPValue] {
        if case let .array(values?) = self { return values }
        return []
    }
}

/// The bytes of a command: an array of bulk strings, which is how clients must send them.
public func respCommand(_ arguments: [String]) -> [UInt8] {
    var out = Array("*\(arguments.count)\r\n".utf8)
    for argument in arguments {
        let bytes = Array(argument.utf8)
        out += Array("$\(bytes.count)\r\n".utf8)
        out += bytes
        out += [13, 10]
    }
    return out
}

/// Reads RESP2 replies from bytes as they arrive, in any split.
///
/// The server is outside the process, so the parser trusts nothing: lengths are bounded
/// (`maxBulk` bytes a string, `maxElements` an array, `maxDepth` nesting, a line at most
/// 64 KiB), and anything malformed is ``RESPParser/Failure``, after which the connection must be
/// dropped. It is fuzzed (`scripts/fuzz.sh resp`).
public struct RESPParser: Sendable {
    public enum Failure: Error, Equatable {
        /// A reply that is not RESP2, or over a limit: the stream cannot be trusted further.
        case malformed(String)
    }

    public let maxBulk: Int
    public let maxElements: Int
    public let maxDepth: Int
    static let maxLine = 64 * 1024

    private var buffer: [UInt8] = []
    private var start = 0

    public init(maxBulk: Int = 64 << 20, maxElements: Int = 1 << 20, maxDepth: Int = 8) {
        self.maxBulk = maxBulk
        self.maxElements = maxElements
        self.maxDepth = maxDepth
    }

    /// Appends received bytes.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete reply, or nil until more bytes arrive.
    public mutating func next() throws(Failure) -> RESPValue? {
        var position = start
        guard let value = try parse(at: &position, depth: 0) else { return nil }
        start = position
        return value
    }

    /// One value at `position`, advancing it; nil when the bytes end first.
    private func parse(at position: inout Int, depth: Int) throws(Failure) -> RESPValue? {
        guard depth <= maxDepth else { throw .malformed("arrays nested deeper than \(maxDepth)") }
        guard position < buffer.count else { return nil }
        let kind = buffer[position]
        var p = position + 1
        guard let line = try self.line(at: &p) else { return nil }
        let value: RESPValue
        switch kind {
        case UInt8(ascii: "+"): value = .simple(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"): value = .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"): value = .integer(try integer(line))
        case UInt8(ascii: "$"):
            let length = try integer(line)
            if length == -1 {
                value = .bulk(nil)
            } else {
                guard (0...maxBulk).contains(length) else { throw .malformed("a bulk string of \(length) bytes") }
                guard buffer.count - p >= length + 2 else { return nil }
                guard buffer[p + length] == 13 && buffer[p + length + 1] == 10 else {
                    throw .malformed("a bulk string not ended by CRLF")
                }
                value = .bulk(Array(buffer[p..<(p + length)]))
                p += length + 2
            }
        case UInt8(ascii: "*"):
            let count = try integer(line)
            if count == -1 {
                value = .array(nil)
            } else {
                guard (0...maxElements).contains(count) else { throw .malformed("an array of \(count) elements") }
                var elements: [RESPValue] = []
                for _ in 0..<count {
                    guard let element = try parse(at: &p, depth: depth + 1) else { return nil }
                    elements.append(element)
                }
                value = .array(elements)
            }
        default:
            throw .malformed("an unknown reply type byte \(kind)")
        }
        position = p
        return value
    }

    /// The bytes up to the next CRLF at `position`, which moves past it.
    private func line(at position: inout Int) throws(Failure) -> ArraySlice<UInt8>? {
        var i = position
        let limit = min(buffer.count, position + Self.maxLine)
        while i < limit && buffer[i] != 10 { i += 1 }
        guard i < limit else {
            if limit - position >= Self.maxLine { throw .malformed("a reply line longer than \(Self.maxLine) bytes") }
            return nil
        }
        guard i > position && buffer[i - 1] == 13 else { throw .malformed("a line ended by LF alone") }
        let line = buffer[position..<(i - 1)]
        position = i + 1
        return line
    }

    private func integer(_ line: ArraySlice<UInt8>) throws(Failure) -> Int {
        guard line.count <= 20, let n = Int(String(decoding: line, as: UTF8.self)) else {
            throw .malformed("an integer that is not one")
        }
        return n
    }
}
