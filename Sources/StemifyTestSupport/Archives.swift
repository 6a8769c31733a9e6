import Foundation

/// A zip archive with stored (uncompressed) entries, like `torch.save` writes; for building
/// hostile checkpoints in tests.
public func makeStoredZip(_ entries: [(name: String, data: [UInt8])], compressedMethod: Bool = false) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    func u16(_ v: Int, _ a: inout [UInt8]) { a += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: Int, _ a: inout [UInt8]) { for k in 0..<4 { a.append(UInt8(v >> (8 * k) & 0xFF)) } }
    for (name, data) in entries {
        let offset = out.count
        let nameBytes = Array(name.utf8)
        u32(0x0403_4B50, &out); u16(20, &out); u16(0, &out); u16(compressedMethod ? 8 : 0, &out)
        u16(0, &out); u16(0, &out); u32(0, &out); u32(data.count, &out); u32(data.count, &out)
        u16(nameBytes.count, &out); u16(0, &out)
        out += nameBytes
        out += data
        u32(0x0201_4B50, &central); u16(20, &central); u16(20, &central); u16(0, &central); u16(compressedMethod ? 8 : 0, &central)
        u16(0, &central); u16(0, &central); u32(0, &central); u32(data.count, &central); u32(data.count, &central)
        u16(nameBytes.count, &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
        u32(0, &central); u32(offset, &central)
        central += nameBytes
    }
    let dirOffset = out.count
    out += central
    u32(0x0605_4B50, &out); u16(0, &out); u16(0, &out); u16(entries.count, &out); u16(entries.count, &out)
    u32(central.count, &out); u32(dirOffset, &out); u16(0, &out)
    return out
}

/// Replaces every occurrence of `target` in `bytes` (same or different length).
public func replacing(_ target: String, with replacement: String, in bytes: [UInt8]) -> [UInt8] {
    let t = Array(target.utf8), r = Array(replacement.utf8)
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        if i + t.count <= bytes.count && Array(bytes[i..<(i + t.count)]) == t {
            out += r
            i += t.count
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return out
}

/// Entries of a stored zip (read through its central directory), for editing a real checkpoint.
public func readStoredZip(_ bytes: [UInt8]) -> [(name: String, data: [UInt8])] {
    func u16(_ i: Int) -> Int { Int(bytes[i]) | Int(bytes[i + 1]) << 8 }
    func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
    var eocd = bytes.count - 22
    while eocd > 0 && u32(eocd) != 0x0605_4B50 { eocd -= 1 }
    var p = u32(eocd + 16)
    var out: [(String, [UInt8])] = []
    for _ in 0..<u16(eocd + 10) {
        let size = u32(p + 24), nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
        let local = u32(p + 42)
        let name = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
        let start = local + 30 + u16(local + 26) + u16(local + 28)
        out.append((name, Array(bytes[start..<(start + size)])))
        p += 46 + nameLength + extraLength + commentLength
    }
    return out
}
