import Foundation
import StemifyCore
import Testing

/// The streamed ZIP writer, read back by Python's zipfile (an implementation not ours).
@Suite("ZIP stream")
struct ZipStreamTests {
    /// Writes `entries` through a ``ZipStream`` in uneven pieces; returns the archive.
    func archive(_ entries: [(String, [UInt8])], zip64Threshold: UInt64 = 0xFFFF_FFFF) throws -> [UInt8] {
        var zip = ZipStream(zip64Threshold: zip64Threshold)
        var out: [UInt8] = []
        for (name, bytes) in entries {
            out += zip.begin(name)
            var i = 0
            var step = 1
            while i < bytes.count {
                let piece = Array(bytes[i..<min(bytes.count, i + step)])
                try piece.withUnsafeBytes { try zip.append($0) }
                out += piece
                i += step
                step = step * 3 + 1
            }
            out += zip.end()
        }
        out += zip.finish()
        #expect(zip.offset == UInt64(out.count))
        return out
    }

    /// `zipfile`'s view: each entry's name, CRC check and bytes (hex), plus whether it used ZIP64.
    func python(_ archive: [UInt8]) throws -> [String: Any] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID().uuidString).zip")
        try Data(archive).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = """
            import json, sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            bad = z.testzip()
            entries = [[i.filename, None if bad else z.read(i).hex(), i.header_offset, i.flag_bits] for i in z.infolist()]
            print(json.dumps({"bad": bad, "entries": entries}))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, file.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "zipfile refused the archive")
        return try #require(try JSONSerialization.jsonObject(with: output) as? [String: Any])
    }

    func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
        var g = seed
        return (0..<n).map { _ in
            g = g &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: g >> 56)
        }
    }

    @Test("entries of many sizes, UTF-8 names and an empty one read back with their CRCs", arguments: [UInt64(0xFFFF_FFFF), 100])
    func roundTrip(_ threshold: UInt64) throws {
        let entries: [(String, [UInt8])] = [
            ("01 Zwölf Töne/vocals.wav", randomBytes(100_003, seed: 1)), ("01 Zwölf Töne/empty.wav", []),
            ("02 b/x.mp3", randomBytes(1, seed: 2)), ("02 b/y.flac", randomBytes(7_777, seed: 3)),
        ]
        let archive = try archive(entries, zip64Threshold: threshold)
        let read = try python(archive)
        #expect(read["bad"] is NSNull)
        let got = try #require(read["entries"] as? [[Any]])
        #expect(got.map { $0[0] as? String } == entries.map(\.0))
        for (g, e) in zip(got, entries) {
            #expect(g[1] as? String == e.1.map { String(format: "%02x", $0) }.joined(), "\(e.0)")
            // Bit 3: data descriptor; bit 11: UTF-8 names.
            #expect(g[3] as? Int == 0x808)
        }
        // A lowered threshold puts every later entry's offset in a ZIP64 field, read back right.
        let offsets = got.compactMap { $0[2] as? Int }
        #expect(offsets.count == 4 && offsets[0] == 0 && offsets == offsets.sorted())
        if threshold == 100 { #expect(archive.contains(0x06) && archive.indices.contains { archive[$0...].starts(with: [0x50, 0x4b, 0x06, 0x06]) }) }
    }

    @Test("a flipped byte of an entry is caught by zipfile's CRC check")
    func corruption() throws {
        var archive = try archive([("a.wav", randomBytes(5000, seed: 9))])
        archive[2000] ^= 0x40
        let read = try python(archive)
        #expect(read["bad"] as? String == "a.wav")
    }

    @Test("CRC-32 gives the published check value and agrees across split points")
    func crc() {
        var c = CRC32()
        c.update(Array("123456789".utf8))
        #expect(c.value == 0xCBF4_3926)
        let bytes = randomBytes(1000, seed: 4)
        var whole = CRC32()
        whole.update(bytes)
        for split in [0, 1, 7, 8, 9, 500, 999] {
            var parts = CRC32()
            parts.update(Array(bytes[..<split]))
            parts.update(Array(bytes[split...]))
            #expect(parts.value == whole.value)
        }
    }
}
