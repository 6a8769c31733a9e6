/// The zip container of `torch.save` (`.th` files): entries stored uncompressed.
///
/// Only the central directory and local headers are read; no entry is ever decompressed.
struct TorchZip {
    struct Entry {
        var offset: Int
        var size: Int
    }

    let bytes: [UInt8]
    private(set) var entries: [String: Entry] = [:]

    init(bytes: [UInt8]) throws {
        self.bytes = bytes
        // Every size and offset is checked against the file size as it is read, so a forged
        // value can neither trap an integer conversion nor overflow the sums after it.
        func within(_ value: UInt64, _ what: String) throws -> Int {
            guard value <= UInt64(bytes.count) else { throw CheckpointError.corruptArchive("\(what) \(value) is past the end of the file") }
            return Int(value)
        }
        let eocd = try Self.findEndOfCentralDirectory(bytes)
        var count = Int(bytes.u16(eocd + 10))
        var dirSize = try within(UInt64(bytes.u32(eocd + 12)), "central directory size")
        var dirOffset = Int(bytes.u32(eocd + 16))
        if dirOffset == 0xFFFF_FFFF || count == 0xFFFF {
            // ZIP64: the locator sits just before the end record and points at the zip64 end record.
            let locator = eocd - 20
            guard locator >= 0, bytes.u32(locator) == 0x0706_4B50 else { throw CheckpointError.corruptArchive("zip64 locator missing") }
            let record = try within(bytes.u64(locator + 8), "zip64 end record offset")
            guard record + 56 <= bytes.count, bytes.u32(record) == 0x0606_4B50 else { throw CheckpointError.corruptArchive("zip64 end record missing") }
            // Each entry takes at least 46 bytes of the directory.
            count = try within(bytes.u64(record + 32), "entry count")
            dirSize = try within(bytes.u64(record + 40), "central directory size")
            dirOffset = try within(bytes.u64(record + 48), "central directory offset")
        }
        guard dirOffset + dirSize <= bytes.count else { throw CheckpointError.corruptArchive("central directory past the end of the file") }
        var p = dirOffset
        for _ in 0..<count {
            guard p + 46 <= bytes.count, bytes.u32(p) == 0x0201_4B50 else { throw CheckpointError.corruptArchive("bad central directory entry") }
            let method = bytes.u16(p + 10)
            var size = Int(bytes.u32(p + 24))
            let nameLength = Int(bytes.u16(p + 28)), extraLength = Int(bytes.u16(p + 30)), commentLength = Int(bytes.u16(p + 32))
            var localOffset = Int(bytes.u32(p + 42))
            guard p + 46 + nameLength + extraLength <= bytes.count else { throw CheckpointError.corruptArchive("central directory entry cut short") }
            let name = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            if size == 0xFFFF_FFFF || localOffset == 0xFFFF_FFFF {
                var e = p + 46 + nameLength
                let end = e + extraLength
                while e + 4 <= end {
                    let id = bytes.u16(e), len = Int(bytes.u16(e + 2))
                    if id == 1 {
                        var f = e + 4
                        let fieldEnd = min(end, e + 4 + len)
                        if size == 0xFFFF_FFFF, f + 8 <= fieldEnd { size = try within(bytes.u64(f), "entry size"); f += 8 }  // uncompressed
                        if Int(bytes.u32(p + 20)) == 0xFFFF_FFFF { f += 8 }  // compressed
                        if localOffset == 0xFFFF_FFFF, f + 8 <= fieldEnd { localOffset = try within(bytes.u64(f), "local header offset") }
                    }
                    e += 4 + len
                }
            }
            guard method == 0 else { throw CheckpointError.compressedEntry(name) }
            guard localOffset + 30 <= bytes.count, bytes.u32(localOffset) == 0x0403_4B50 else {
                throw CheckpointError.corruptArchive("bad local header for '\(name)'")
            }
            let dataOffset = localOffset + 30 + Int(bytes.u16(localOffset + 26)) + Int(bytes.u16(localOffset + 28))
            guard dataOffset + size <= bytes.count else { throw CheckpointError.corruptArchive("entry '\(name)' runs past the end of the file") }
            entries[name] = Entry(offset: dataOffset, size: size)
            p += 46 + nameLength + extraLength + commentLength
        }
    }

    func data(_ name: String) throws -> ArraySlice<UInt8> {
        guard let e = entries[name] else { throw CheckpointError.missingEntry(name) }
        return bytes[e.offset..<(e.offset + e.size)]
    }

    private static func findEndOfCentralDirectory(_ b: [UInt8]) throws -> Int {
        guard b.count >= 22 else { throw CheckpointError.corruptArchive("file too short for a zip archive") }
        var p = b.count - 22
        let stop = max(0, b.count - 22 - 65535)
        while p >= stop {
            if b.u32(p) == 0x0605_4B50 { return p }
            p -= 1
        }
        throw CheckpointError.corruptArchive("no end of central directory (truncated file?)")
    }
}

extension Array where Element == UInt8 {
    @inline(__always) func u16(_ i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    @inline(__always) func u32(_ i: Int) -> UInt32 { UInt32(u16(i)) | UInt32(u16(i + 2)) << 16 }
    @inline(__always) func u64(_ i: Int) -> UInt64 { UInt64(u32(i)) | UInt64(u32(i + 4)) << 32 }
}
