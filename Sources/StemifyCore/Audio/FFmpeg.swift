import Foundation

/// Audio decoding and encoding through ffmpeg, hardened for untrusted files.
///
/// Every call names the input as `file:PATH`, allows only the `file` and `pipe` protocols and
/// only the demuxers in ``allowedDemuxers``, so a playlist (HLS, ffconcat) or any file disguised
/// as audio can never make ffmpeg open other files or URLs. The container is checked with
/// ffprobe first and forced on the decoder.
public enum FFmpeg {
    /// Demuxers accepted for input audio, keyed by ffprobe's `format_name`.
    public static let allowedDemuxers: [String: String] = [
        "mp3": "mp3", "wav": "wav", "flac": "flac", "ogg": "ogg", "aiff": "aiff", "aac": "aac",
        "matroska,webm": "matroska", "mov,mp4,m4a,3gp,3g2,mj2": "mov", "w64": "w64",
    ]
    static var formatWhitelist: String { Set(allowedDemuxers.values).sorted().joined(separator: ",") }

    /// What ffprobe says about an input.
    public struct Probe: Sendable, Equatable {
        /// ffprobe's `format_name`.
        public var format: String
        /// Seconds, when known.
        public var duration: Double?
        public var audioStreams: Int
        /// Channels of the first audio stream.
        public var channels: Int = 2
    }

    /// Identifies the container and audio streams.
    ///
    /// - Throws: ``StemifyError`` with ``ErrorCode/unsupportedFormat`` for anything not audio in
    ///   an allowed container.
    public static func probe(_ path: String) throws -> Probe {
        let result = try Subprocess.run("ffprobe", [
            "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", formatWhitelist,
            "-show_entries", "format=format_name,duration:stream=codec_type,channels", "-of", "json", "file:\(path)",
        ])
        guard result.status == 0,
              let json = try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any],
              let format = json["format"] as? [String: Any], let name = format["format_name"] as? String
        else {
            throw StemifyError(.unsupportedFormat, "the file is not audio in a supported format (mp3, wav, flac, ogg/opus, m4a/aac, aiff, webm)",
                               detail: "ffprobe: \(result.stderrText)")
        }
        guard allowedDemuxers[name] != nil else {
            throw StemifyError(.unsupportedFormat, "this container is not accepted; upload mp3, wav, flac, ogg/opus, m4a/aac, aiff or webm audio",
                               detail: "format_name \(name)")
        }
        let streams = (json["streams"] as? [[String: Any]]) ?? []
        let audio = streams.filter { $0["codec_type"] as? String == "audio" }
        guard let first = audio.first else { throw StemifyError(.unsupportedFormat, "the file has no audio stream") }
        let duration = (format["duration"] as? String).flatMap(Double.init)
        return Probe(format: name, duration: duration, audioStreams: audio.count, channels: first["channels"] as? Int ?? 2)
    }

    /// Decodes the first audio stream to a 44.1 kHz stereo Float32 WAV at `output`, which
    /// ``WAVFileSource`` then reads on demand.
    ///
    /// - Throws: ``ErrorCode/invalidAudio`` when ffmpeg cannot decode it (truncated, corrupt).
    public static func decode(_ path: String, probe: Probe, to output: String, sampleRate: Int = 44100) throws {
        let demuxer = allowedDemuxers[probe.format]!
        let result = try Subprocess.run("ffmpeg", [
            "-nostdin", "-hide_banner", "-v", "error", "-xerror",
            "-protocol_whitelist", "file,pipe", "-format_whitelist", formatWhitelist, "-f", demuxer,
            "-i", "file:\(path)", "-map", "0:a:0", "-vn", "-ac", "2", "-ar", "\(sampleRate)",
            "-f", "wav", "-c:a", "pcm_f32le", "-y", "file:\(output)",
        ])
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        guard result.status == 0, size > 0 else {
            throw StemifyError(.invalidAudio, "the audio could not be decoded (truncated or corrupt file)", detail: "ffmpeg: \(result.stderrText)")
        }
    }

    /// Decodes the whole first audio stream to nothing, so a truncated or corrupt file is refused
    /// at upload rather than failing later in the queue. A file whose header promises more audio
    /// than decodes (an mp3 cut short, whose Xing/Info header still gives the full length) counts
    /// as truncated.
    public static func validateDecodes(_ path: String, probe: Probe) throws {
        let demuxer = allowedDemuxers[probe.format]!
        let result = try Subprocess.run("ffmpeg", [
            "-nostdin", "-hide_banner", "-v", "error", "-xerror",
            "-protocol_whitelist", "file,pipe", "-format_whitelist", formatWhitelist, "-f", demuxer,
            "-i", "file:\(path)", "-map", "0:a:0", "-f", "null", "-progress", "pipe:1", "-nostats", "-",
        ])
        let invalid = StemifyError(.invalidAudio, "the audio could not be decoded completely (truncated or corrupt file)",
                                   detail: "ffmpeg: \(result.stderrText)")
        guard result.status == 0 else { throw invalid }
        let decoded = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n")
            .compactMap { line -> Double? in
                guard line.hasPrefix("out_time_us=") else { return nil }
                return Double(line.dropFirst("out_time_us=".count)).map { $0 / 1e6 }
            }.last ?? 0
        guard decoded > 0 else { throw invalid }
        if let promised = probe.duration, promised - decoded > max(0.25, 0.02 * promised) { throw invalid }
    }

    /// Output formats of stems.
    public enum Format: String, Sendable, CaseIterable, Codable {
        case wav, mp3, flac
    }

    /// Codec and muxer of an output format: 16-bit WAV and FLAC, mp3 at `mp3Bitrate` kbit/s.
    static func encoder(_ format: Format, mp3Bitrate: Int) -> [String] {
        switch format {
        case .mp3: ["-c:a", "libmp3lame", "-b:a", "\(mp3Bitrate)k", "-f", "mp3"]
        case .flac: ["-c:a", "flac", "-sample_fmt", "s16", "-f", "flac"]
        case .wav: ["-c:a", "pcm_s16le", "-f", "wav"]
        }
    }

    /// Encodes a float WAV at `input` to `output` in `format`.
    public static func encode(wav input: String, to output: String, format: Format, mp3Bitrate: Int = 320) throws {
        let args = ["-nostdin", "-hide_banner", "-v", "error", "-protocol_whitelist", "file", "-f", "wav", "-i", "file:\(input)"]
            + encoder(format, mp3Bitrate: mp3Bitrate) + ["-y", "file:\(output)"]
        let result = try Subprocess.run("ffmpeg", args)
        guard result.status == 0 else {
            throw StemifyError(.internalError, "encoding \(format.rawValue) failed",
                               detail: "ffmpeg: \(result.stderrText)")
        }
    }

    /// One input of ``mix(_:to:format:mp3Bitrate:)``: a file of ours (a stem) and the 2×C
    /// matrix taking its C channels (1 or 2) to the mix's left and right.
    public struct MixInput: Sendable {
        public var path: String
        public var probe: Probe
        public var left: [Double]
        public var right: [Double]

        public init(path: String, probe: Probe, left: [Double], right: [Double]) {
            (self.path, self.probe, self.left, self.right) = (path, probe, left, right)
        }
    }

    /// Sums the inputs, each through its matrix, into one stereo file in `format`, at `speed`
    /// (pitch kept) and transposed by `semitones` (tempo kept). One ffmpeg process streams it all
    /// (no decoded copy of any stem on disk or in memory); inputs of different lengths are
    /// padded with silence to the longest.
    public static func mix(_ inputs: [MixInput], to output: String, format: Format, mp3Bitrate: Int = 320,
                           speed: Double = 1, semitones: Int = 0, sampleRate: Int = 44100) throws {
        precondition(!inputs.isEmpty)
        var args = ["-nostdin", "-hide_banner", "-v", "error", "-xerror", "-protocol_whitelist", "file", "-format_whitelist", formatWhitelist]
        var graph: [String] = []
        for (k, input) in inputs.enumerated() {
            args += ["-f", allowedDemuxers[input.probe.format]!, "-i", "file:\(input.path)"]
            func row(_ gains: [Double]) -> String {
                gains.enumerated().map { String(format: "%.9f*c%d", $0.element, $0.offset) }.joined(separator: "+")
            }
            graph.append("[\(k):a:0]pan=stereo|c0=\(row(input.left))|c1=\(row(input.right))[m\(k)]")
        }
        let labels = inputs.indices.map { "[m\($0)]" }.joined()
        graph.append("\(labels)amix=inputs=\(inputs.count):normalize=0:duration=longest" + retime(speed: speed, semitones: semitones, sampleRate: sampleRate) + "[out]")
        args += ["-filter_complex", graph.joined(separator: ";"), "-map", "[out]"]
            + encoder(format, mp3Bitrate: mp3Bitrate) + ["-y", "file:\(output)"]
        let result = try Subprocess.run("ffmpeg", args)
        guard result.status == 0 else {
            throw StemifyError(.internalError, "rendering the mix failed", detail: "ffmpeg: \(result.stderrText)")
        }
    }

    /// The filters after the mix for a speed and a transpose: the pitch moves by resampling
    /// (`asetrate`, which also changes the tempo by the same factor) and `atempo` (WSOLA) sets
    /// the tempo to `speed` with that pitch. `atempo` takes 0.5–100 per instance, so slower
    /// factors are split into several.
    static func retime(speed: Double, semitones: Int, sampleRate: Int) -> String {
        guard speed != 1 || semitones != 0 else { return "" }
        let pitch = pow(2, Double(semitones) / 12)
        var filters: [String] = []
        if semitones != 0 {
            filters += [String(format: "asetrate=%.6f", Double(sampleRate) * pitch), "aresample=\(sampleRate)"]
        }
        var tempo = speed / pitch
        while tempo < 0.5 {
            filters.append("atempo=0.5")
            tempo /= 0.5
        }
        if abs(tempo - 1) > 1e-9 { filters.append(String(format: "atempo=%.9f", tempo)) }
        return "," + filters.joined(separator: ",")
    }
}
