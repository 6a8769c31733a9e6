/// A stable, documented error code (`docs/errors.md`): what clients match on. Every case is
/// produced somewhere; a test walks them against the document and the OpenAPI enum.
public enum ErrorCode: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// The request has neither a `file` nor a `youtube_url` (or both).
    case missingInput = "missing_input"
    /// The request body is not well-formed multipart or JSON.
    case invalidRequest = "invalid_request"
    /// The uploaded file is empty.
    case emptyFile = "empty_file"
    /// The upload exceeds the configured size limit.
    case fileTooLarge = "file_too_large"
    /// The file is not audio ffprobe recognises in an allowed container.
    case unsupportedFormat = "unsupported_format"
    /// The file claims to be audio but cannot be decoded (truncated, corrupt).
    case invalidAudio = "invalid_audio"
    /// The audio is longer than the configured maximum duration.
    case audioTooLong = "audio_too_long"
    /// The URL is not a single YouTube video URL.
    case invalidYouTubeURL = "invalid_youtube_url"
    /// The URL names a playlist.
    case youtubePlaylist = "youtube_playlist"
    /// The video is longer than the configured maximum duration.
    case videoTooLong = "video_too_long"
    /// The video id is on the blocklist.
    case videoBlocked = "video_blocked"
    /// yt-dlp could not fetch the video.
    case youtubeUnavailable = "youtube_unavailable"
    /// The model name is not one Stemify knows.
    case unknownModel = "unknown_model"
    /// The model is known but its files are not in the model folder and cannot be downloaded.
    case modelUnavailable = "model_unavailable"
    /// An option has a value outside its documented set.
    case invalidOption = "invalid_option"
    /// Too many jobs from this client in the rate-limit period.
    case rateLimited = "rate_limited"
    /// No job has this id (or it expired).
    case jobNotFound = "job_not_found"
    /// The job has no stem of that name (yet).
    case stemNotFound = "stem_not_found"
    /// No such route or file.
    case notFound = "not_found"
    /// No upload has this id for this client (never created, taken by a job, removed).
    case uploadNotFound = "upload_not_found"
    /// The upload expired: no bytes arrived within `upload_expiry`.
    case uploadExpired = "upload_expired"
    /// A chunk's `Upload-Offset` is not the upload's offset (or another chunk is being written).
    case uploadOffsetMismatch = "upload_offset_mismatch"
    /// A job was asked for an upload that has not received all its bytes.
    case uploadIncomplete = "upload_incomplete"
    /// A chunk's bytes do not match its `Upload-Checksum`; they were not kept.
    case checksumMismatch = "checksum_mismatch"
    /// The request's `Tus-Resumable` is missing or not the version the server speaks (1.0.0).
    case tusVersionUnsupported = "tus_version_unsupported"
    /// A chunk's `Content-Type` is not `application/offset+octet-stream`.
    case invalidContentType = "invalid_content_type"
    /// A file name with a path in it (`/`, `\\`, `..`), a control character, or over 255 bytes.
    case invalidFilename = "invalid_filename"
    /// A batch with no song, or more than `max_batch_size`.
    case invalidBatch = "invalid_batch"
    /// No batch has this id (never created, or expired after its last job).
    case batchNotFound = "batch_not_found"
    /// A mix export naming a stem the job lacks, a volume or pan out of range, or an unknown format.
    case invalidMix = "invalid_mix"
    /// A known path asked with a method it does not take (the response lists them in `Allow`).
    case methodNotAllowed = "method_not_allowed"
    /// API keys are on and the request carries no key, or one that is unknown or revoked.
    case unauthorized = "unauthorized"
    /// The key is valid but lacks the scope this request needs.
    case forbidden = "forbidden"
    /// An `Idempotency-Key` sent again with a different request.
    case idempotencyKeyReused = "idempotency_key_reused"
    /// An `Idempotency-Key` whose first request is still being answered.
    case idempotencyKeyInUse = "idempotency_key_in_use"
    /// A tus chunk that would run past the upload's declared `Upload-Length`.
    case uploadLengthExceeded = "upload_length_exceeded"
    /// Separation failed inside the engine.
    case separationFailed = "separation_failed"
    /// The service cannot take requests now (its queue or model folder is not reachable).
    case unavailable = "unavailable"
    /// Anything unexpected; details are in the server log, never in the response.
    case internalError = "internal_error"

    public var description: String { rawValue }
}

/// An error a client can act on: a stable code and a message that says what happened and what to
/// do. The message is shown to clients, so it never carries a server path or a tool's output;
/// `detail` does, and goes only to the log. Nothing here knows of HTTP: the server maps codes to
/// statuses in one table (`StemifyError+HTTP.swift`).
public struct StemifyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// For the log only.
    public var detail: String?

    public init(_ code: ErrorCode, _ message: String, detail: String? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    public var description: String { "\(code): \(message)" + (detail.map { " (\($0))" } ?? "") }
}
