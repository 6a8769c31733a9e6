/// A ZIP archive written front to back while its entries stream through, never held whole:
/// what `GET /api/batches/{id}/stems.zip` sends. Entries are stored, not deflated (the stems
/// are MP3/FLAC already, or WAV that deflate barely shrinks and would cost a core), and each is
/// followed by a data descriptor because its CRC is known only once its bytes went by.
///
/// Offsets past 4 GiB (a long album in WAV) get the ZIP64 records: the offset in the central
/// directory entry's ZIP64 extra field and the ZIP64 end records. One entry stays under 4 GiB
/// (a stem is at most `max_duration` of audio).
///
/// Usage: for each entry ``begin(_:)``, then ``append(_:)`` its bytes, then ``end()``; finally
/// ``finish()``. Each returns the bytes to send next.
public struct ZipStream: Sendable {
    struct Entry {
        var name: [UInt8]
        var crc: UInt32
        var size: UInt64
        var offset: UInt64
    }

    /// Offsets at or past this use ZIP64 records; 0xFFFFFFFF except in tests.
    let zip64Threshold: UInt64
    private var entries: [Entry] = []
    private var current: Entry?
    private var crc = CRC32()
    /// Bytes written so far.
    public private(set) var offset: UInt64 = 0

    public init(zip64Threshold: UInt64 = 0xFFFF_FFFF) {
        self.zip64Threshold = zip64Threshold
    }

    /// DOS date and time of 1980-01-01 00:00: entries carry no meaningful time, and a fixed
    /// one makes the archive a function of its contents.
    private static let dosTime: UInt16 = 0
    private static let dosDate: UInt16 = (0 << 9) | (1 << 5) | 1
    /// Bit 3: sizes and CRC follow in a data descriptor; bit 11: names are UTF-8.
    private static let flags: UInt16 = (1 << 3) | (1 << 11)

    /// The local header of an entry called `name` (a path with `/` separators).
    public mutating func begin(_ name: String) -> [UInt8] {
        precondition(current == nil, "end() the previous entry first")
        let nameBytes = Array(name.utf8)
        current = Entry(name: nameBytes, crc: 0, size: 0, offset: offset)
        crc = CRC32()
        var out: [UInt8] = []
        out.le32(0x0403_4b50)
        out.le16(20)  // version needed: 2.0
        out.le16(Self.flags)
        out.le16(0)  // stored
        out.le16(Self.dosTime)
        out.le16(Self.dosDate)
        out.le32(0)  // CRC, compressed and uncompressed size: in the descriptor
        out.le32(0)
        out.le32(0)
        out.le16(UInt16(nameBytes.count))
        out.le16(0)  // no extra field
        out.append(contentsOf: nameBytes)
        offset += UInt64(out.count)
        return out
    }

    /// Counts `bytes` of the current entry (the caller sends them as they are).
    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(current != nil, "begin() an entry first")
        crc.update(bytes)
        current!.size += UInt64(bytes.count)
        offset += UInt64(bytes.count)
        if current!.size >= 0xFFFF_FFFF {
            throw StemifyError(.internalError, "a stem is too large for the archive", detail: "ZIP entry over 4 GiB")
        }
    }

    /// The data descriptor closing the current entry.
    public mutating func end() -> [UInt8] {
        precondition(current != nil, "begin() an entry first")
        var entry = current!
        entry.crc = crc.value
        entries.append(entry)
        current = nil
        var out: [UInt8] = []
        out.le32(0x0807_4b50)
        out.le32(entry.crc)
        out.le32(UInt32(entry.size))
        out.le32(UInt32(entry.size))
        offset += UInt64(out.count)
        return out
    }

    /// The central directory and the end records.
    public mutating func finish() -> [UInt8] {
        precondition(current == nil, "end() the last entry first")
        let directoryStart = offset
        var out: [UInt8] = []
        for entry in entries {
            let zip64 = entry.offset >= zip64Threshold
            out.le32(0x0201_4b50)
            out.le16((3 << 8) | 45)  // made by: Unix, 4.5
            out.le16(zip64 ? 45 : 20)
            out.le16(Self.flags)
            out.le16(0)
            out.le16(Self.dosTime)
            out.le16(Self.dosDate)
            out.le32(entry.crc)
            out.le32(UInt32(entry.size))
            out.le32(UInt32(entry.size))
            out.le16(UInt16(entry.name.count))
            out.le16(zip64 ? 12 : 0)  // extra field length
            out.le16(0)  // comment
            out.le16(0)  // disk
            out.le16(0)  // internal attributes
            out.le32(0o100644 << 16)  // external attributes: a regular file, rw-r--r--
            out.le32(zip64 ? 0xFFFF_FFFF : UInt32(entry.offset))
            out.append(contentsOf: entry.name)
            if zip64 {
                out.le16(0x0001)
                out.le16(8)
                out.le64(entry.offset)
            }
        }
        let directorySize = UInt64(out.count)
        let count = UInt64(entries.count)
        let needs64 = directoryStart >= zip64Threshold || count >= 0xFFFF || directorySize >= 0xFFFF_FFFF
        if needs64 {
            let recordStart = directoryStart + directorySize
            out.le32(0x0606_4b50)
            out.le64(44)  // size of the rest of this record
            out.le16((3 << 8) | 45)
            out.le16(45)
            out.le32(0)  // this disk
            out.le32(0)  // disk of the directory
            out.le64(count)
            out.le64(count)
            out.le64(directorySize)
            out.le64(directoryStart)
            out.le32(0x0706_4b50)  // the locator
            out.le32(0)
            out.le64(recordStart)
            out.le32(1)  // disks
        }
        out.le32(0x0605_4b50)
        out.le16(0)
        out.le16(0)
        out.le16(needs64 ? 0xFFFF : UInt16(count))
        out.le16(needs64 ? 0xFFFF : UInt16(count))
        out.le32(needs64 ? 0xFFFF_FFFF : UInt32(directorySize))
        out.le32(needs64 ? 0xFFFF_FFFF : UInt32(directoryStart))
        out.le16(0)  // comment
        offset += UInt64(out.count)
        return out
    }
}

/// CRC-32 (the ZIP/zlib polynomial 0xEDB88320), eight bytes per step ("slicing by 8").
public struct CRC32: Sendable {
    public private(set) var value: UInt32 = 0

    public init() {}

    private static let tables: [[UInt32]] = {
        var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xFF)] }
        }
        return t
    }()

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        let t = Self.tables
        var c = ~value
        var i = 0
        let n = bytes.count
        t[0].withUnsafeBufferPointer { t0 in t[1].withUnsafeBufferPointer { t1 in t[2].withUnsafeBufferPointer { t2 in
        t[3].withUnsafeBufferPointer { t3 in t[4].withUnsafeBufferPointer { t4 in t[5].withUnsafeBufferPointer { t5 in
        t[6].withUnsafeBufferPointer { t6 in t[7].withUnsafeBufferPointer { t7 in
            while i + 8 <= n {
                let lo = c ^ (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
                let hi = UInt32(bytes[i + 4]) | UInt32(bytes[i + 5]) << 8 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 24
                c = t7[Int(lo & 0xFF)] ^ t6[Int((lo >> 8) & 0xFF)] ^ t5[Int((lo >> 16) & 0xFF)] ^ t4[Int(lo >> 24)]
                    ^ t3[Int(hi & 0xFF)] ^ t2[Int((hi >> 8) & 0xFF)] ^ t1[Int((hi >> 16) & 0xFF)] ^ t0[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t0[Int((c ^ UInt32(bytes[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        } } } } } } } }
        value = ~c
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }
}

extension [UInt8] {
    mutating func le16(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
    mutating func le32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { append(UInt8((v >> UInt32(s)) & 0xFF)) } }
    mutating func le64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { append(UInt8((v >> UInt64(s)) & 0xFF)) } }
}
