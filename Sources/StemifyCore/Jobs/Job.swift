public import Foundation

/// Where a job is in its life.
public enum JobStatus: String, Codable, Sendable, CaseIterable {
    case queued, downloading, decoding, separating, encoding, done, failed, cancelled

    /// No further change will happen.
    public var isTerminal: Bool { self == .done || self == .failed || self == .cancelled }
}

/// What a client asked for.
public struct JobOptions: Codable, Sendable, Equatable, Hashable {
    /// Model name (`htdemucs`, …, or any bag in the model folder).
    public var model: String
    public var outputFormat: FFmpeg.Format
    public var normalize: Bool
    /// Karaoke: also write `instrumental`, everything but vocals.
    public var removeVocals: Bool
    public var shifts: Int
    public var overlap: Double
    /// Overlapping chunks per chunk length for RoFormer and SCNet models; nil keeps the
    /// configuration's `inference.num_overlap`. Time grows linearly with it.
    public var numOverlap: Int?
    /// What the API accepts: the published configurations use 1–4; beyond 16 a song costs
    /// hours for no audible gain.
    public static let numOverlapRange = 1...16
    /// Where the job's terminal state is POSTed (signed); checked against private addresses
    /// when given and again at each delivery.
    public var callbackURL: String?

    public init(model: String = "htdemucs", outputFormat: FFmpeg.Format = .mp3, normalize: Bool = false,
                removeVocals: Bool = false, shifts: Int = 1, overlap: Double = 0.25, numOverlap: Int? = nil, callbackURL: String? = nil) {
        self.model = model
        self.outputFormat = outputFormat
        self.normalize = normalize
        self.removeVocals = removeVocals
        self.shifts = shifts
        self.overlap = overlap
        self.numOverlap = numOverlap
        self.callbackURL = callbackURL
    }

    enum CodingKeys: String, CodingKey {
        case model, outputFormat = "output_format", normalize, removeVocals = "remove_vocals", shifts, overlap
        case numOverlap = "num_overlap", callbackURL = "callback_url"
    }
}

/// The quality presets of `POST /api/stemify` (`quality=fast|balanced|best`).
public enum QualityPreset: String, Sendable, CaseIterable {
    /// One pass, no shift, the 4-source htdemucs unless a model is given.
    case fast
    /// The reference CLI's defaults: one random shift, overlap 0.25.
    case balanced
    /// Two shifts averaged, overlap 0.5.
    case best

    public var shifts: Int { switch self { case .fast: 0; case .balanced: 1; case .best: 2 } }
    public var overlap: Double { self == .best ? 0.5 : 0.25 }
}

/// A stem file of a finished job.
public struct StemFile: Codable, Sendable, Equatable {
    public var name: String
    public var file: String
    public var format: String
    public var bytes: Int
    public var duration: Double
    /// Where its ``WaveformPeaks`` are kept; nil for stems made before peaks were.
    public var peaks: String?
    /// Where its 16-bit WAV copy for the page's player is kept (``StemOutputOptions/playback``);
    /// nil where the stem is that WAV itself, or was made before the player.
    public var playback: String?

    public init(name: String, file: String, format: String, bytes: Int, duration: Double, peaks: String? = nil, playback: String? = nil) {
        self.name = name
        self.file = file
        self.format = format
        self.bytes = bytes
        self.duration = duration
        self.peaks = peaks
        self.playback = playback
    }

    /// The 16-bit WAV the page's player reads windows of: the playback copy, or a 16-bit WAV stem.
    public var playbackFile: String? { playback ?? (format == "wav" ? file : nil) }
}

/// Figures recorded for a finished job.
public struct JobMetrics: Codable, Sendable, Equatable {
    public var processingSeconds: Double
    public var audioSeconds: Double
    public var inputFormat: String
    public var outputBytes: Int
    public var cacheHit: Bool

    public init(processingSeconds: Double, audioSeconds: Double, inputFormat: String, outputBytes: Int, cacheHit: Bool) {
        self.processingSeconds = processingSeconds
        self.audioSeconds = audioSeconds
        self.inputFormat = inputFormat
        self.outputBytes = outputBytes
        self.cacheHit = cacheHit
    }

    enum CodingKeys: String, CodingKey {
        case processingSeconds = "processing_seconds", audioSeconds = "audio_seconds", inputFormat = "input_format",
             outputBytes = "output_bytes", cacheHit = "cache_hit"
    }
}

/// Where the audio comes from.
public enum JobInput: Sendable, Equatable {
    /// An uploaded file, already on disk.
    case upload(path: String, filename: String)
    /// A YouTube video to download.
    case youtube(url: String)
}

/// A separation job as the queue stores it.
public struct Job: Sendable, Equatable {
    public var id: String
    public var status: JobStatus
    /// 0–1 over the whole job.
    public var progress: Double
    public var etaSeconds: Double?
    public var options: JobOptions
    public var input: JobInput
    /// Who may see it: an API key (`k:ID`) or the hash of an owner token (`t:HEX`); rows from
    /// before owners hold the creator's address (the `client` column) and are open to all.
    public var owner: String
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var errorCode: ErrorCode?
    public var errorMessage: String?
    public var stems: [StemFile]
    public var metrics: JobMetrics?
    public var attempts: Int

    public init(id: String, status: JobStatus, progress: Double, etaSeconds: Double?, options: JobOptions, input: JobInput,
                owner: String, createdAt: Date, startedAt: Date?, finishedAt: Date?, errorCode: ErrorCode?,
                errorMessage: String?, stems: [StemFile], metrics: JobMetrics?, attempts: Int) {
        self.id = id
        self.status = status
        self.progress = progress
        self.etaSeconds = etaSeconds
        self.options = options
        self.input = input
        self.owner = owner
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.stems = stems
        self.metrics = metrics
        self.attempts = attempts
    }
}
