public import StemifyEngine
import Foundation

/// Why an audio file could not be read or written.
public enum AudioError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case notWAV(path: String)
    case unsupportedEncoding(path: String, format: Int, bits: Int)
    case malformed(path: String, reason: String)
    case empty(path: String)
    case unwritable(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(p, r): "cannot read '\(p)': \(r)"
        case let .notWAV(p): "'\(p)' is not a WAV file (RIFF/WAVE header missing)"
        case let .unsupportedEncoding(p, f, b): "'\(p)' uses WAV format \(f) with \(b) bits, which is not supported (PCM 8/16/24/32 or float 32/64)"
        case let .malformed(p, r): "'\(p)' is a malformed WAV file: \(r)"
        case let .empty(p): "'\(p)' has no audio frames"
        case let .unwritable(p, r): "cannot write '\(p)': \(r)"
        }
    }
}

/// A WAV file read on demand: frames are read from disk for each request, never all at once.
///
/// Integer PCM becomes Float by dividing by 2^(bits-1) (8-bit is unsigned, centred on 128).
public final class WAVFileSource: AudioSource, @unchecked Sendable {
    public let path: String
    public let sampleRate: Int
    public let channelCount: Int
    public let frameCount: Int
    private let format: Int
    private let bitsPerSample: Int
    private let dataOffset: UInt64
    private let handle: FileHandle

    public init(path: String) throws {
        self.path = path
        guard let h = FileHandle(forReadingAtPath: path) else { throw AudioError.unreadable(path: path, reason: "no such file or not readable") }
        handle = h
        let head = try h.read(upToCount: 12) ?? Data()
        guard head.count == 12, head.prefix(4) == Data("RIFF".utf8), head.suffix(4) == Data("WAVE".utf8) else {
            throw AudioError.notWAV(path: path)
        }
        var fmt: (format: Int, channels: Int, rate: Int, bits: Int)?
        var offset: UInt64 = 12
        var data: (offset: UInt64, size: UInt64)?
        let fileSize = try h.seekToEnd()
        while offset + 8 <= fileSize {
            try h.seek(toOffset: offset)
            guard let header = try h.read(upToCount: 8), header.count == 8 else { break }
            let id = String(decoding: header.prefix(4), as: UTF8.self)
            let size = UInt64(header.le32(4))
            if id == "fmt " {
                guard size >= 16, let body = try h.read(upToCount: Int(size)), body.count >= 16 else {
                    throw AudioError.malformed(path: path, reason: "short fmt chunk")
                }
                var format = Int(body.le16(0))
                if format == 0xFFFE, body.count >= 26 { format = Int(body.le16(24)) }  // WAVE_FORMAT_EXTENSIBLE
                fmt = (format, Int(body.le16(2)), Int(body.le32(4)), Int(body.le16(14)))
            } else if id == "data" {
                // A streamed writer may leave the size unset (0 or 0xFFFFFFFF): take the rest.
                let available = fileSize - (offset + 8)
                data = (offset + 8, size == 0 || size == 0xFFFF_FFFF || size > available ? available : size)
                break
            }
            offset += 8 + size + (size & 1)
        }
        guard let fmt else { throw AudioError.malformed(path: path, reason: "no fmt chunk") }
        guard let data else { throw AudioError.malformed(path: path, reason: "no data chunk") }
        let supported = (fmt.format == 1 && [8, 16, 24, 32].contains(fmt.bits)) || (fmt.format == 3 && [32, 64].contains(fmt.bits))
        guard supported else { throw AudioError.unsupportedEncoding(path: path, format: fmt.format, bits: fmt.bits) }
        // Bounds that no real file exceeds keep a forged header from asking for gigabytes per read.
        guard (1...64).contains(fmt.channels), (1000...768_000).contains(fmt.rate) else { throw AudioError.malformed(path: path, reason: "\(fmt.channels) channels at \(fmt.rate) Hz") }
        format = fmt.format
        bitsPerSample = fmt.bits
        channelCount = fmt.channels
        sampleRate = fmt.rate
        dataOffset = data.offset
        frameCount = Int(data.size) / (fmt.channels * fmt.bits / 8)
        guard frameCount > 0 else { throw AudioError.empty(path: path) }
    }

    deinit { try? handle.close() }

    public func read(from start: Int, count: Int) throws -> Tensor {
        var out = Tensor(zeros: [channelCount, count])
        let lo = max(start, 0), hi = min(start + count, frameCount)
        guard hi > lo else { return out }
        let bytesPerFrame = channelCount * bitsPerSample / 8
        try handle.seek(toOffset: dataOffset + UInt64(lo * bytesPerFrame))
        guard let raw = try handle.read(upToCount: (hi - lo) * bytesPerFrame), raw.count == (hi - lo) * bytesPerFrame else {
            throw AudioError.malformed(path: path, reason: "data chunk shorter than its header says")
        }
        let bytes = bitsPerSample / 8
        raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
            for f in 0..<(hi - lo) {
                for c in 0..<channelCount {
                    let o = (f * channelCount + c) * bytes
                    let v: Float
                    switch (format, bitsPerSample) {
                    case (1, 8): v = (Float(p[o]) - 128) / 128
                    case (1, 16): v = Float(Int16(bitPattern: UInt16(p[o]) | UInt16(p[o + 1]) << 8)) / 32768
                    case (1, 24):
                        let u = UInt32(p[o]) << 8 | UInt32(p[o + 1]) << 16 | UInt32(p[o + 2]) << 24
                        v = Float(Int32(bitPattern: u) >> 8) / 8_388_608
                    case (1, 32): v = Float(Int32(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))) / 2_147_483_648
                    case (3, 32): v = Float(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
                    default: v = Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
                    }
                    out.data[c * count + (lo - start) + f] = v
                }
            }
        }
        return out
    }
}

/// Sample encodings for written WAV files.
public enum WAVEncoding: String, Sendable, CaseIterable {
    case int16, int24, float32

    var bits: Int { switch self { case .int16: 16; case .int24: 24; case .float32: 32 } }
}

/// Writes a WAV file frame block by frame block; the header is completed on `finish()`.
///
/// Integers are `trunc(x · (2^(bits-1) - 1))` of the value clamped to [-1, 1], as the reference's
/// `encode_wav`. Float output keeps the value as it is, beyond full scale too (NaN written as 0):
/// a stem may peak over 1 before any clip mode, and a float file is how such a stem is kept
/// whole (msst's writer, soundfile's `FLOAT`, does not clamp either).
public final class WAVWriter {
    public let path: String
    private let handle: FileHandle
    private let channels: Int
    private let sampleRate: Int
    private let encoding: WAVEncoding
    private var frames = 0

    public init(path: String, channels: Int, sampleRate: Int, encoding: WAVEncoding) throws {
        self.path = path
        self.channels = channels
        self.sampleRate = sampleRate
        self.encoding = encoding
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw AudioError.unwritable(path: path, reason: "cannot create the file")
        }
        handle = h
        try h.write(contentsOf: header(frames: 0))
    }

    /// Appends `[C, n]` frames.
    public func write(_ x: Tensor) throws {
        let n = x.shape[1], channels = channels, encoding = encoding
        let width = encoding.bits / 8
        // Encoded in place: appending to `Data` a byte at a time took seconds for a song's stems.
        let bytes = [UInt8](unsafeUninitializedCapacity: n * channels * width) { buffer, count in
            let out = UnsafeMutableRawPointer(buffer.baseAddress!)
            x.data.withUnsafeBufferPointer { samples in
                for c in 0..<channels {
                    let row = samples.baseAddress! + c * n
                    for f in 0..<n {
                        let raw = row[f].isNaN ? 0 : row[f]
                        let v = min(max(raw, -1), 1)
                        let at = (f * channels + c) * width
                        switch encoding {
                        case .int16:
                            out.storeBytes(of: Int16(v * 32767).littleEndian, toByteOffset: at, as: Int16.self)
                        case .int24:
                            let i = Int32(v * 8_388_607)
                            out.storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: at, as: UInt8.self)
                            out.storeBytes(of: UInt8(truncatingIfNeeded: i >> 8), toByteOffset: at + 1, as: UInt8.self)
                            out.storeBytes(of: UInt8(truncatingIfNeeded: i >> 16), toByteOffset: at + 2, as: UInt8.self)
                        case .float32:
                            out.storeBytes(of: raw.bitPattern.littleEndian, toByteOffset: at, as: UInt32.self)
                        }
                    }
                }
            }
            count = n * channels * width
        }
        try handle.write(contentsOf: bytes)
        frames += n
    }

    /// Rewrites the header with the final sizes and closes the file.
    public func finish() throws {
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: header(frames: frames))
        try handle.close()
    }

    private func header(frames: Int) -> Data {
        let isFloat = encoding == .float32
        let bits = encoding.bits
        let dataSize = frames * channels * bits / 8
        var h = Data()
        func u32(_ v: Int) { for k in 0..<4 { h.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
        func u16(_ v: Int) { for k in 0..<2 { h.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
        h.append(contentsOf: Array("RIFF".utf8))
        u32(4 + (8 + 16) + (isFloat ? 12 : 0) + 8 + dataSize)
        h.append(contentsOf: Array("WAVEfmt ".utf8))
        u32(16)
        u16(isFloat ? 3 : 1)
        u16(channels)
        u32(sampleRate)
        u32(sampleRate * channels * bits / 8)
        u16(channels * bits / 8)
        u16(bits)
        if isFloat {
            h.append(contentsOf: Array("fact".utf8))
            u32(4)
            u32(frames)
        }
        h.append(contentsOf: Array("data".utf8))
        u32(dataSize)
        return h
    }
}

extension Data {
    func le16(_ i: Int) -> UInt16 { UInt16(self[startIndex + i]) | UInt16(self[startIndex + i + 1]) << 8 }
    func le32(_ i: Int) -> UInt32 { UInt32(le16(i)) | UInt32(le16(i + 2)) << 16 }
}
