public import StemifyEngine
#if canImport(Glibc)
import Glibc
#endif
public import Foundation

/// How written stems avoid clipping (`--clip-mode`), as the reference's `prevent_clip`, plus
/// the service's default.
public enum ClipMode: String, Sendable, CaseIterable {
    /// One gain for all stems, `1 / max(1.01 · loudest peak, 1)`: stems keep their relative
    /// levels and still sum back to the mix (the service default).
    case shared
    /// Divide each stem by its own `max(1.01 · peak, 1)` (the reference CLI default).
    case rescale
    /// Clamp to ±0.99.
    case clamp
    /// Leave as is (integer output still saturates at full scale).
    case none
}

/// How `no_STEM` is made with two stems (`--other-method`).
public enum OtherMethod: String, Sendable, CaseIterable {
    /// Sum of the other stems, written as `no_STEM`.
    case add
    /// Mix minus the stem, written as `minus_STEM`.
    case minus
    /// Only the stem itself.
    case none
}

/// What to write for a track.
public struct StemOutputOptions: Sendable {
    /// File format; mp3 and flac go through ffmpeg.
    public var format: FFmpeg.Format = .wav
    /// WAV sample encoding.
    public var encoding: WAVEncoding = .int16
    public var clipMode: ClipMode = .rescale
    /// Scale all stems by one gain so the loudest peak reaches 0.99 (relative levels kept).
    public var normalize = false
    /// Write only this stem and its complement.
    public var twoStems: String?
    public var otherMethod: OtherMethod = .add
    /// Also write `instrumental`, the sum of every stem but vocals (karaoke).
    public var instrumental = false
    /// mp3 bit rate in kbit/s.
    public var mp3Bitrate = 320
    /// Also write each stem's ``WaveformPeaks`` beside it (`NAME.peaks.json`).
    public var peaks = false
    /// Also write a 16-bit WAV of each compressed stem beside it (`NAME.playback.wav`): the page's
    /// player reads exact sample windows of every stem by byte range, which an MP3 cannot give.
    public var playback = false

    public init(format: FFmpeg.Format = .wav, encoding: WAVEncoding = .int16, clipMode: ClipMode = .rescale, normalize: Bool = false,
                twoStems: String? = nil, otherMethod: OtherMethod = .add, instrumental: Bool = false, mp3Bitrate: Int = 320,
                peaks: Bool = false, playback: Bool = false) {
        self.format = format
        self.encoding = encoding
        self.clipMode = clipMode
        self.normalize = normalize
        self.twoStems = twoStems
        self.otherMethod = otherMethod
        self.instrumental = instrumental
        self.mp3Bitrate = mp3Bitrate
        self.peaks = peaks
        self.playback = playback
    }

    /// Where the playback copy of the stem written at `stem` goes.
    public static func playbackFile(for stem: URL) -> URL {
        stem.deletingPathExtension().appendingPathExtension("playback.wav")
    }
}

/// Errors of a track separation that are the caller's to fix.
public enum TrackSeparationError: Error, Equatable, CustomStringConvertible {
    case unknownStem(String, available: [String])

    public var description: String {
        switch self {
        case let .unknownStem(s, available): "stem \"\(s)\" is not in the selected model; STEM must be one of \(available.joined(separator: ", "))"
        }
    }
}

/// Separates an audio file into stem files, streaming from input to output.
///
/// The input is read on demand, converted to the model's rate and channels, separated by
/// ``StreamingSeparation`` and written as it is produced to float scratch files beside the
/// outputs; a last pass applies the clip mode (which needs each stem's peak) and the encoding,
/// then renames each file into place. Memory does not grow with the track length.
public struct TrackSeparator {
    public let model: LoadedModel
    public let separation: SeparationOptions
    public let output: StemOutputOptions

    public init(model: LoadedModel, separation: SeparationOptions, output: StemOutputOptions) throws {
        if let stem = output.twoStems, !model.sources.contains(stem) {
            throw TrackSeparationError.unknownStem(stem, available: model.sources)
        }
        var sep = separation
        if let stem = output.twoStems, output.otherMethod != .add, let k = model.sources.firstIndex(of: stem) {
            // `minus_STEM` comes from the mix, so only STEM's networks need to run.
            sep.sourcesNeeded = [k]
        }
        self.model = model
        self.separation = sep
        self.output = output
    }

    /// Names of the files `separate` writes, in order.
    public var stemNames: [String] {
        guard let stem = output.twoStems else {
            // A vocals-only model always gives the karaoke track beside the vocals.
            if model.sources == ["vocals"] { return ["vocals", "instrumental"] }
            return model.sources + (output.instrumental && model.sources.contains("vocals") ? ["instrumental"] : [])
        }
        switch output.otherMethod {
        case .add: return [stem, "no_\(stem)"]
        case .minus: return ["minus_\(stem)", stem]
        case .none: return [stem]
        }
    }

    /// Separates the audio file at `input` into `directory/STEM.EXT`.
    ///
    /// WAV is read directly (and resampled like the reference); any other format is decoded by
    /// ffmpeg to 44.1 kHz stereo first.
    /// - Returns: the written files.
    public func separate(
        input: String, into directory: URL,
        progress: (SeparationProgress) -> Void = { _ in },
        isCancelled: () -> Bool = { false }
    ) throws -> [URL] {
        let wav: WAVFileSource
        do {
            wav = try WAVFileSource(path: input)
        } catch AudioError.notWAV, AudioError.unsupportedEncoding {
            let raw = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID().uuidString).wav").path
            defer { try? FileManager.default.removeItem(atPath: raw) }
            try FFmpeg.decode(input, probe: try FFmpeg.probe(input), to: raw, sampleRate: model.samplerate)
            return try separate(source: try WAVFileSource(path: raw), into: directory, progress: progress, isCancelled: isCancelled)
        }
        let channels = model.inputChannels(for: wav.channelCount)
        let source: any AudioSource = (wav.sampleRate == model.samplerate && wav.channelCount == channels)
            ? wav
            : ConvertedAudioSource(wav, rate: wav.sampleRate, targetRate: model.samplerate, channels: channels)
        return try separate(source: source, into: directory, progress: progress, isCancelled: isCancelled)
    }

    /// Separates audio already at the model's rate and channel count into `directory/STEM.EXT`.
    ///
    /// - Parameters:
    ///   - checkpoint: a file where the run records where it stands (at most every
    ///     `checkpointInterval` seconds, after output was written). When it exists, the run
    ///     continues from it and the stems are identical to an uninterrupted run; the partial
    ///     stems in `directory` are then kept when the run throws, for whoever continues it.
    public func separate(
        source: any AudioSource, into directory: URL,
        progress: (SeparationProgress) -> Void = { _ in },
        isCancelled: () -> Bool = { false },
        checkpoint: URL? = nil, checkpointInterval: Double = 10
    ) throws -> [URL] {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let names = stemNames
        let channels = source.channelCount
        let resume: SeparationCheckpoint? = try checkpoint.flatMap { url in
            guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
            return try SeparationCheckpoint(decoding: [UInt8](data))
        }
        var scratch = try names.map { name in
            try ScratchStem(url: directory.appendingPathComponent(".\(name).partial.f32"), keeping: resume?.emitted ?? 0, channels: channels)
        }
        var finished = false
        defer { if checkpoint == nil || finished { for s in scratch { try? FileManager.default.removeItem(at: s.url) } } }
        var lastSave = Date.distantPast
        let save: ((SeparationCheckpoint) throws -> Void)? = checkpoint.map { url in
            { state in
                guard Date().timeIntervalSince(lastSave) >= checkpointInterval else { return }
                for s in scratch { try s.handle.synchronize() }
                let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
                try Data(state.encoded()).write(to: tmp)
                // rename(2) replaces atomically: a reader sees the old checkpoint or the new one.
                guard rename(tmp.path, url.path) == 0 else {
                    throw AudioError.unwritable(path: url.path, reason: "cannot replace the checkpoint (errno \(errno))")
                }
                lastSave = Date()
            }
        }
        let sources = model.sources
        try model.run(source, options: separation, emit: { _, stems, mix in
            let n = mix.shape[1]
            let plane = channels * n
            func stem(_ k: Int) -> ArraySlice<Float> { stems.data[(k * plane)..<((k + 1) * plane)] }
            if let two = output.twoStems, let k = sources.firstIndex(of: two) {
                let selected = Array(stem(k))
                switch output.otherMethod {
                case .add:
                    var rest = [Float](repeating: 0, count: plane)
                    for j in sources.indices where j != k {
                        let s = stem(j)
                        for i in 0..<plane { rest[i] += s[s.startIndex + i] }
                    }
                    try scratch[0].append(selected, channels: channels)
                    try scratch[1].append(rest, channels: channels)
                case .minus:
                    var minus = mix.data
                    for i in 0..<plane { minus[i] -= selected[i] }
                    try scratch[0].append(minus, channels: channels)
                    try scratch[1].append(selected, channels: channels)
                case .none:
                    try scratch[0].append(selected, channels: channels)
                }
            } else {
                for k in sources.indices { try scratch[k].append(Array(stem(k)), channels: channels) }
                if scratch.count > sources.count, let vocals = sources.firstIndex(of: "vocals") {
                    // The other stems' sum, or the mix minus the vocals when there are none.
                    var rest = sources.count == 1 ? mix.data : [Float](repeating: 0, count: plane)
                    if sources.count == 1 {
                        let v = stem(vocals)
                        for i in 0..<plane { rest[i] -= v[v.startIndex + i] }
                    }
                    for j in sources.indices where j != vocals {
                        let s = stem(j)
                        for i in 0..<plane { rest[i] += s[s.startIndex + i] }
                    }
                    try scratch[sources.count].append(rest, channels: channels)
                }
            }
        }, progress: progress, isCancelled: isCancelled, resume: resume, checkpoint: save)

        // One gain for every stem (shared clipping, normalize) keeps their relative levels.
        let loudest = scratch.map(\.peak).max() ?? 0
        var shared: Float?
        if output.normalize { shared = loudest > 0 ? loudest / 0.99 : 1 }
        else if output.clipMode == .shared { shared = max(1.01 * loudest, 1) }
        var written: [URL] = []
        for (name, stem) in zip(names, scratch) {
            let final = directory.appendingPathComponent("\(name).\(output.format.rawValue)")
            try stem.finish(into: final, channels: channels, sampleRate: model.samplerate, options: output, sharedDivisor: shared)
            written.append(final)
        }
        finished = true
        if let checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return written
    }
}

/// One stem's samples as raw interleaved Float32 while the separation runs, plus its peak.
private struct ScratchStem {
    let url: URL
    let handle: FileHandle
    var peak: Float = 0

    /// Creates the file, or continues one keeping its first `frames` frames (a resumed run).
    init(url: URL, keeping frames: Int, channels: Int) throws {
        self.url = url
        if frames == 0 || !FileManager.default.fileExists(atPath: url.path) {
            guard frames == 0 else { throw AudioError.unwritable(path: url.path, reason: "the partial stem of the checkpoint is missing") }
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw AudioError.unwritable(path: url.path, reason: "cannot create a scratch file")
            }
        }
        guard let h = FileHandle(forUpdatingAtPath: url.path) else {
            throw AudioError.unwritable(path: url.path, reason: "cannot open a scratch file")
        }
        handle = h
        let bytes = UInt64(frames * channels * 4)
        // Output written after the last checkpoint is produced again; the peak is that of what stays.
        guard try h.seekToEnd() >= bytes else { throw AudioError.unwritable(path: url.path, reason: "the partial stem is shorter than its checkpoint") }
        try h.truncate(atOffset: bytes)
        try h.seek(toOffset: 0)
        while let data = try h.read(upToCount: 1 << 20), !data.isEmpty {
            data.withUnsafeBytes { p in
                for i in 0..<(data.count / 4) { peak = max(peak, abs(p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self))) }
            }
        }
        try h.seek(toOffset: bytes)
    }

    /// Appends planar `[C, n]` samples.
    mutating func append(_ planar: [Float], channels: Int) throws {
        let n = planar.count / channels
        var interleaved = [Float](repeating: 0, count: planar.count)
        for c in 0..<channels {
            for i in 0..<n {
                let v = planar[c * n + i]
                interleaved[i * channels + c] = v
                peak = max(peak, abs(v))
            }
        }
        try handle.write(contentsOf: interleaved.withUnsafeBytes { Data($0) })
    }

    /// Applies the clip mode and writes the final file atomically (temporary name, then rename).
    func finish(into final: URL, channels: Int, sampleRate: Int, options: StemOutputOptions, sharedDivisor: Float?) throws {
        let tmp = final.deletingLastPathComponent().appendingPathComponent(".\(final.lastPathComponent).tmp")
        let wavPath = options.format == .wav ? tmp.path : tmp.path + ".wav"
        let writer = try WAVWriter(path: wavPath, channels: channels, sampleRate: sampleRate,
                                   encoding: options.format == .wav ? options.encoding : .float32)
        // Parity: `wav / max(1.01 * wav.abs().max(), 1)`.
        let divisor: Float = sharedDivisor ?? (options.clipMode == .rescale ? max(1.01 * peak, 1) : 1)
        var peaks = options.peaks ? PeakAccumulator(sampleRate: sampleRate) : nil
        let playbackFile = StemOutputOptions.playbackFile(for: final)
        let playbackTmp = tmp.path + ".playback.wav"
        let playback = options.playback && options.format != .wav
            ? try WAVWriter(path: playbackTmp, channels: channels, sampleRate: sampleRate, encoding: .int16) : nil
        defer { if playback != nil { try? FileManager.default.removeItem(atPath: playbackTmp) } }
        try handle.seek(toOffset: 0)
        let block = 1 << 16
        while let data = try handle.read(upToCount: block * channels * 4), !data.isEmpty {
            let n = data.count / (channels * 4)
            var planar = Tensor(zeros: [channels, n])
            data.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
                for i in 0..<n {
                    for c in 0..<channels {
                        var v = p.loadUnaligned(fromByteOffset: (i * channels + c) * 4, as: Float.self) / divisor
                        if options.clipMode == .clamp { v = min(max(v, -0.99), 0.99) }
                        planar.data[c * n + i] = v
                    }
                }
            }
            peaks?.add(planar)
            try writer.write(planar)
            try playback?.write(planar)
        }
        try writer.finish()
        try playback?.finish()
        try handle.close()
        if options.format != .wav {
            defer { try? FileManager.default.removeItem(atPath: wavPath) }
            try FFmpeg.encode(wav: wavPath, to: tmp.path, format: options.format, mp3Bitrate: options.mp3Bitrate)
        }
        _ = try? FileManager.default.removeItem(at: final)
        try FileManager.default.moveItem(at: tmp, to: final)
        if playback != nil {
            _ = try? FileManager.default.removeItem(at: playbackFile)
            try FileManager.default.moveItem(atPath: playbackTmp, toPath: playbackFile.path)
        }
        if var peaks {
            try JSONEncoder().encode(peaks.finish()).write(to: WaveformPeaks.file(for: final), options: .atomic)
        }
    }
}
