/// A stable, documented error code (`docs/errors.md`), as clients match on it.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The request has neither a `file` nor a `youtube_url` (or both).
    public static let missingInput = ErrorCode(rawValue: "missing_input")
    /// The uploaded file is empty.
    public static let emptyFile = ErrorCode(rawValue: "empty_file")
    /// The upload exceeds the configured size limit.
    public static let fileTooLarge = ErrorCode(rawValue: "file_too_large")
    /// The file is not audio ffprobe recognises in an allowed container.
    public static let unsupportedFormat = ErrorCode(rawValue: "unsupported_format")
    /// The file claims to be audio but cannot be decoded (truncated, corrupt).
    public static let invalidAudio = ErrorCode(rawValue: "invalid_audio")
    /// The audio is longer than the configured maximum duration.
    public static let audioTooLong = ErrorCode(rawValue: "audio_too_long")
    /// The URL is not a single YouTube video URL.
    public static let invalidYouTubeURL = ErrorCode(rawValue: "invalid_youtube_url")
    /// The URL names a playlist.
    public static let youtubePlaylist = ErrorCode(rawValue: "youtube_playlist")
    /// The video is longer than the configured maximum duration.
    public static let videoTooLong = ErrorCode(rawValue: "video_too_long")
    /// The video id is on the blocklist.
    public static let videoBlocked = ErrorCode(rawValue: "video_blocked")
    /// yt-dlp could not fetch the video.
    public static let youtubeUnavailable = ErrorCode(rawValue: "youtube_unavailable")
    /// The model name is not one Stemify knows.
    public static let unknownModel = ErrorCode(rawValue: "unknown_model")
    /// The model is known but its files are not available or its family is not implemented yet.
    public static let modelUnavailable = ErrorCode(rawValue: "model_unavailable")
    /// An option has a value outside its documented set.
    public static let invalidOption = ErrorCode(rawValue: "invalid_option")
    /// Too many jobs from this client in the rate-limit period.
    public static let rateLimited = ErrorCode(rawValue: "rate_limited")
    /// No job has this id (or it expired).
    public static let jobNotFound = ErrorCode(rawValue: "job_not_found")
    /// The job has no stem of that name (yet).
    public static let stemNotFound = ErrorCode(rawValue: "stem_not_found")
    /// Separation failed inside the engine.
    public static let separationFailed = ErrorCode(rawValue: "separation_failed")
    /// The job was cancelled.
    public static let cancelled = ErrorCode(rawValue: "cancelled")
    /// Anything unexpected; details are in the server log, never in the response.
    public static let internalError = ErrorCode(rawValue: "internal_error")
}

/// An error a client can act on: a stable code, a message that says what and what to do, and
/// the HTTP status it maps to.
public struct StemifyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public var status: Int

    public init(_ code: ErrorCode, _ message: String, status: Int = 400) {
        self.code = code
        self.message = message
        self.status = status
    }

    public var description: String { "\(code): \(message)" }
}
