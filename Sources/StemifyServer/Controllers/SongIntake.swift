import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// How requests become queued jobs, shared by `POST /api/stemify` (one song) and
/// `POST /api/batches` (several): the form (uploads streamed to disk, their size limit enforced
/// while they stream), the options, the rate limit (songs, not requests), the checks each song
/// passes (ffprobe and a full decode for files, metadata for links) and the enqueueing.
///
/// Several songs are accepted all together or not at all: when one fails its checks, nothing
/// is queued, files are removed and the resumable uploads already taken are put back, so the
/// client can send the batch again without the bad song and without uploading the rest again.
struct SongIntake: Sendable {
    let queue: any JobQueue
    let models: ModelStore
    let configuration: StemifyConfiguration
    let storage: any JobStorage
    let metrics: ServiceMetrics
    let uploads: ResumableUploads
    /// One upload validation (ffprobe + full decode) per core at a time.
    let validation = AsyncLimiter(limit: ProcessInfo.processInfo.activeProcessorCount)

    /// Where a song's audio comes from.
    enum Source: Sendable {
        /// A multipart `file` part, stored at the job's upload path.
        case file(filename: String, bytes: Int)
        /// A finished resumable upload, moved to the job's upload path when the song is accepted.
        case upload(id: String)
        case youtube(url: String)
    }

    struct Song: Sendable {
        /// The job this song becomes (its upload path is named after it).
        var jobID: String
        var source: Source
        /// What the client calls it: the file name or the link.
        var name: String
    }

    struct Form {
        /// Each field's last value (the options).
        var fields: [String: String] = [:]
        /// Songs in the order their parts or members came.
        var songs: [Song] = []
    }

    // MARK: - Form

    /// Reads a multipart form (files streamed to their upload paths, up to `maxSongs` songs) or a
    /// JSON object (`upload_id` and `youtube_url` may be arrays). On error nothing is left on disk.
    func readForm(_ request: Request, maxSongs: Int, tooMany: StemifyError) async throws -> Form {
        let limit = configuration.maxFileSize
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit * maxSongs + 64 * 1024 {
            throw StemifyError(.fileTooLarge, "the upload exceeds \(limit / (1024 * 1024)) MB per song")
        }
        let type = HeaderParameters(request.headers[.contentType] ?? "")
        if type.value.lowercased() == "application/json" {
            let body: ByteBuffer
            do { body = try await request.body.collect(upTo: 64 * 1024) } catch {
                throw StemifyError(.invalidRequest, "the JSON body is larger than 64 KiB")
            }
            return try jsonForm(Data(body.readableBytesView), maxSongs: maxSongs, tooMany: tooMany)
        }
        guard type.value.lowercased() == "multipart/form-data", let boundary = type.parameters["boundary"] else {
            throw StemifyError(.missingInput, "send multipart/form-data with a 'file' part, or JSON with 'youtube_url' or 'upload_id'")
        }
        let malformed = StemifyError(.invalidRequest, "the multipart body is malformed")
        var reader: MultipartReader
        do { reader = try MultipartReader(boundary: boundary) } catch { throw malformed }
        let state = FormState(storage: storage, limit: limit, maxSongs: maxSongs, tooMany: tooMany)
        do {
            defer { state.close() }
            for try await buffer in request.body {
                do {
                    try reader.feed(buffer.readableBytesView) { try state.handle($0) }
                } catch let error as StemifyError {
                    throw error
                } catch {
                    throw malformed
                }
            }
            do { try reader.finish() } catch { throw malformed }
            try state.finish()
        } catch {
            discard(state.form.songs)
            throw error
        }
        return state.form
    }

    /// A JSON object's members as form fields: strings as they are, numbers and booleans as text;
    /// `upload_id` and `youtube_url` as one string or an array of them.
    func jsonForm(_ data: Data, maxSongs: Int, tooMany: StemifyError) throws -> Form {
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: data) else {
            throw StemifyError(.invalidRequest, "the JSON body must be an object of strings, numbers, booleans and arrays of strings")
        }
        var form = Form()
        for (key, value) in object {
            if case let .text(text?) = value { form.fields[key] = text }
        }
        for key in ["upload_id", "youtube_url"] {
            let values: [String] = switch object[key] {
            case let .text(text?): [text]
            case let .list(list): list
            default: []
            }
            for value in values {
                guard form.songs.count < maxSongs else { throw tooMany }
                form.songs.append(Song(jobID: newJobID(), source: key == "upload_id" ? .upload(id: value) : .youtube(url: value), name: value))
            }
        }
        return form
    }

    func newJobID() -> String { UUID().uuidString.lowercased() }

    /// Removes the files of songs that did not become jobs.
    func discard(_ songs: [Song]) {
        for song in songs { try? FileManager.default.removeItem(at: storage.uploadPath(song.jobID)) }
    }

    // MARK: - Options

    func parseOptions(_ fields: [String: String]) throws -> JobOptions {
        func bool(_ key: String) throws -> Bool {
            guard let v = fields[key]?.lowercased() else { return false }
            switch v {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off", "": return false
            default: throw StemifyError(.invalidOption, "'\(key)' must be true or false, got '\(v)'")
            }
        }
        let quality: QualityPreset
        if let q = fields["quality"] {
            guard let preset = QualityPreset(rawValue: q.lowercased()) else {
                throw StemifyError(.invalidOption, "'quality' must be fast, balanced or best, got '\(q)'")
            }
            quality = preset
        } else {
            quality = .balanced
        }
        var format = FFmpeg.Format.mp3
        if let f = fields["output_format"] {
            guard let parsed = FFmpeg.Format(rawValue: f.lowercased()) else {
                throw StemifyError(.invalidOption, "'output_format' must be wav, mp3 or flac, got '\(f)'")
            }
            format = parsed
        }
        let model = fields["model"].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
            ?? (quality == .best ? "htdemucs_ft" : "htdemucs")
        guard model.range(of: #"^[A-Za-z0-9_.-]{1,64}$"#, options: .regularExpression) != nil else {
            throw StemifyError(.unknownModel, "unknown model '\(model)'")
        }
        var numOverlap: Int?
        if let text = fields["num_overlap"] {
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), JobOptions.numOverlapRange.contains(n) else {
                throw StemifyError(.invalidOption, "'num_overlap' must be an integer from \(JobOptions.numOverlapRange.lowerBound) to \(JobOptions.numOverlapRange.upperBound), got '\(text.prefix(32))'")
            }
            numOverlap = n
        }
        let callback = try fields["callback_url"].flatMap { $0.isEmpty ? nil : $0 }.map { try CallbackURL.parse($0).absoluteString }
        return JobOptions(model: model, outputFormat: format, normalize: try bool("normalize"),
                          removeVocals: try bool("remove_vocals"), shifts: quality.shifts, overlap: quality.overlap,
                          numOverlap: numOverlap, callbackURL: callback)
    }

    // MARK: - Songs

    /// The checks that cost nothing, before the rate limit counts anything: links are YouTube
    /// videos, upload ids name finished uploads of this owner (their names filled in), files
    /// are not empty, the model is offered and installed (or can be downloaded).
    func check(_ songs: [Song], options: JobOptions, owner: String) async throws -> [Song] {
        let youtube = YouTube(configuration: configuration)
        var checked = songs
        var uploadIDs = Set<String>()
        for (index, song) in songs.enumerated() {
            switch song.source {
            case let .file(_, bytes):
                guard bytes > 0 else { throw StemifyError(.emptyFile, "the uploaded file '\(song.name)' is empty") }
            case let .youtube(url):
                _ = try youtube.videoID(url)
            case let .upload(id):
                guard uploadIDs.insert(id).inserted else {
                    throw StemifyError(.invalidBatch, "the upload '\(id.prefix(64))' is named twice")
                }
                let upload = try await uploads.upload(id, client: owner)
                guard upload.isComplete else {
                    throw StemifyError(.uploadIncomplete, "the upload has \(upload.offset) of \(upload.length) bytes; finish it first")
                }
                checked[index].name = upload.filename
            }
        }
        // A model to download is looked for (a HEAD of its source): off the event loop.
        let models = self.models
        try await onThread { try models.validate(options.model, numOverlap: options.numOverlap) }
        if let callback = options.callbackURL {
            let allowed = configuration.webhookAllowHosts
            try await onThread { try CallbackURL.check(callback, allowedHosts: allowed) }
        }
        return checked
    }

    /// Counts the songs against the caller's rate limit (its key's quota, or its address's
    /// `rate_limit`); the 429 to answer when over it. Resumable uploads were counted when they
    /// were created.
    func admit(_ songs: [Song], caller: Caller) async throws -> Response? {
        let count = songs.count(where: { if case .upload = $0.source { false } else { true } })
        guard count > 0 else { return nil }
        return try await admit(count: count, caller: caller)
    }

    /// Counts `count` songs for `caller`; the 429 (with `Retry-After`) when over its limit.
    func admit(count: Int, caller: Caller) async throws -> Response? {
        let (allowed, retryAfter) = try await queue.recordSubmission(
            client: caller.quotaClient, count: count, period: configuration.rateLimitPeriodSeconds, limit: caller.quota)
        guard !allowed else { return nil }
        metrics.recordRejection(code: .rateLimited)
        let wait = Int(retryAfter.rounded(.up))
        var headers = try await rateLimitHeaders(caller)
        headers[.retryAfter] = "\(wait)"
        return errorResponse(
            StemifyError(.rateLimited, "at most \(caller.quota) songs per \(Int(configuration.rateLimitPeriodSeconds)) s; retry in \(wait) s"),
            headers: headers)
    }

    /// Songs counted by ``admit(_:caller:)`` whose submission then failed: refused songs do
    /// not use up the limit (five wrong files used to lock a client out for the period).
    func refund(_ songs: [Song], caller: Caller) async {
        let count = songs.count(where: { if case .upload = $0.source { false } else { true } })
        try? await queue.refundSubmissions(client: caller.quotaClient, count: count)
    }

    /// `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the oldest counted song leaves
    /// the window) for the caller; none when it has no limit.
    func rateLimitHeaders(_ caller: Caller) async throws -> HTTPFields {
        guard caller.quota > 0 else { return [:] }
        let window = try await queue.submissionWindow(client: caller.quotaClient, period: configuration.rateLimitPeriodSeconds)
        return [.rateLimitLimit: "\(caller.quota)", .rateLimitRemaining: "\(window.remaining(limit: caller.quota))",
                .rateLimitReset: "\(Int(window.reset(period: configuration.rateLimitPeriodSeconds).rounded(.up)))"]
    }

    /// Validates every song and keeps its upload; returns the jobs, not yet queued. All or none:
    /// on error nothing is kept and taken resumable uploads are back where they were.
    func accept(_ songs: [Song], options: JobOptions, owner: String) async throws -> [Job] {
        var taken: [(song: Song, upload: ResumableUploads.Upload)] = []
        var jobs: [Job] = []
        do {
            for song in songs {
                if case let .upload(id) = song.source {
                    taken.append((song, try await uploads.take(id, client: owner, to: storage.uploadPath(song.jobID))))
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, song) in songs.enumerated() {
                    group.addTask { try await validate(song, index: index, of: songs.count) }
                }
                try await group.waitForAll()
            }
            for song in songs {
                let input: JobInput = switch song.source {
                case let .youtube(url): .youtube(url: url)
                case .file, .upload: .upload(path: try await storage.keepUpload(song.jobID), filename: song.name)
                }
                jobs.append(Job(id: song.jobID, status: .queued, progress: 0, etaSeconds: nil, options: options, input: input,
                                owner: owner, createdAt: Date(), startedAt: nil, finishedAt: nil, errorCode: nil,
                                errorMessage: nil, stems: [], metrics: nil, attempts: 0))
            }
            return jobs
        } catch {
            for job in jobs { await storage.removeAll(job) }
            for (song, upload) in taken { await uploads.putBack(upload, from: storage.uploadPath(song.jobID)) }
            discard(songs)
            throw error
        }
    }

    /// One song's audio: the probe and a full decode for files, the metadata for links.
    private func validate(_ song: Song, index: Int, of count: Int) async throws {
        do {
            switch song.source {
            case .file, .upload:
                let path = storage.uploadPath(song.jobID).path
                let maxDuration = configuration.maxDurationSeconds
                try await validation.run { try await onThread {
                    let probe = try FFmpeg.probe(path)
                    if let d = probe.duration, d > maxDuration {
                        throw StemifyError(.audioTooLong, "the audio is \(Int(d)) s long; the limit is \(Int(maxDuration)) s")
                    }
                    try FFmpeg.validateDecodes(path, probe: probe)
                } }
            case let .youtube(url):
                // yt-dlp is a Python process per link: as many at a time as decodes.
                let youtube = YouTube(configuration: configuration)
                _ = try await validation.run { try await onThread { try youtube.checkMetadata(url) } }
            }
        } catch let error as StemifyError where count > 1 {
            // Which song of the batch, by its position and the client's own name for it.
            throw StemifyError(error.code, "song \(index + 1) ('\(song.name.prefix(120))'): \(error.message)", detail: error.detail)
        }
    }

    /// Queues the jobs; when the queue fails part way, the ones queued are cancelled and every
    /// file removed (the client gets the error and may retry).
    func enqueue(_ jobs: [Job]) async throws {
        var queued: [Job] = []
        do {
            for job in jobs {
                try await queue.enqueue(job)
                queued.append(job)
            }
        } catch {
            for job in queued { _ = try? await queue.cancel(id: job.id) }
            for job in jobs { await storage.removeAll(job) }
            throw error
        }
        for _ in jobs { metrics.recordSubmission() }
    }
}

/// What the multipart events build: text fields in memory (8 KiB each at most), each `file`
/// part streamed to its song's upload path in 1 MiB writes.
private final class FormState {
    let storage: any JobStorage
    let limit: Int
    let maxSongs: Int
    let tooMany: StemifyError
    var form = SongIntake.Form()
    private var part: [String: String] = [:]
    private var fieldBuffer: [UInt8] = []
    private var fileBuffer: [UInt8] = []
    private var fileBytes = 0
    private var file: FileHandle?
    private var filePath = ""

    init(storage: any JobStorage, limit: Int, maxSongs: Int, tooMany: StemifyError) {
        self.storage = storage
        self.limit = limit
        self.maxSongs = maxSongs
        self.tooMany = tooMany
    }

    private var disposition: HeaderParameters { HeaderParameters(part["content-disposition"] ?? "") }

    func handle(_ event: MultipartReader.Event) throws {
        switch event {
        case let .headers(headers):
            part = headers
            guard disposition.parameters["name"] == "file" else { return }
            guard form.songs.count < maxSongs else { throw tooMany }
            let filename = disposition.parameters["filename"].flatMap { $0.isEmpty ? nil : $0 } ?? "upload"
            try checkFilename(filename)
            let id = UUID().uuidString.lowercased()
            let path = storage.uploadPath(id)
            try? FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path.path, contents: nil),
                  let handle = FileHandle(forWritingAtPath: path.path)
            else { throw StemifyError(.internalError, "cannot store the upload", detail: "cannot create \(path.path)") }
            // Listed before its bytes arrive, so a failure part way removes it too.
            form.songs.append(SongIntake.Song(jobID: id, source: .file(filename: filename, bytes: 0), name: filename))
            (file, filePath, fileBytes) = (handle, path.path, 0)
        case let .body(bytes):
            if file != nil {
                fileBytes += bytes.count
                guard fileBytes <= limit else { throw StemifyError(.fileTooLarge, "the upload exceeds \(limit / (1024 * 1024)) MB") }
                fileBuffer.append(contentsOf: bytes)
                if fileBuffer.count >= 1 << 20 { try flush() }
            } else {
                guard fieldBuffer.count + bytes.count <= 8192 else {
                    throw StemifyError(.invalidOption, "a form field is longer than 8 KiB")
                }
                fieldBuffer.append(contentsOf: bytes)
            }
        case .partEnd:
            if file != nil {
                try flush()
                close()
                let last = form.songs.count - 1
                form.songs[last].source = .file(filename: form.songs[last].name, bytes: fileBytes)
            } else if let name = disposition.parameters["name"] {
                let value = String(decoding: fieldBuffer, as: UTF8.self)
                form.fields[name] = value
                if name == "upload_id" || name == "youtube_url" {
                    guard form.songs.count < maxSongs else { throw tooMany }
                    let source: SongIntake.Source = name == "upload_id" ? .upload(id: value) : .youtube(url: value)
                    form.songs.append(SongIntake.Song(jobID: UUID().uuidString.lowercased(), source: source, name: value))
                }
            }
            fieldBuffer.removeAll(keepingCapacity: true)
            part = [:]
        }
    }

    private func flush() throws {
        guard !fileBuffer.isEmpty, let file else { return }
        do { try file.write(contentsOf: fileBuffer) } catch {
            throw StemifyError(.internalError, "cannot store the upload", detail: "writing \(filePath): \(error)")
        }
        fileBuffer.removeAll(keepingCapacity: true)
    }

    func close() {
        try? file?.close()
        file = nil
    }

    func finish() throws {
        try flush()
        close()
    }
}

/// A JSON member value a form field can hold.
private enum JSONValue: Decodable {
    case text(String?)
    case list([String])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .text(nil) }
        else if let b = try? c.decode(Bool.self) { self = .text(b ? "true" : "false") }
        else if let i = try? c.decode(Int.self) { self = .text(String(i)) }
        else if let d = try? c.decode(Double.self) { self = .text(String(d)) }
        else if let l = try? c.decode([String].self) { self = .list(l) }
        else { self = .text(try c.decode(String.self)) }
    }
}

/// A client's file name is shown and becomes a folder name in the batch ZIP: one with a path in
/// it (`../x`, `a/b`, `C:\x`), a control character or more than 255 bytes is refused rather than
/// quietly changed.
func checkFilename(_ name: String) throws {
    let bad = name == "." || name == ".." || name.utf8.count > 255
        || name.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7F }
    if bad {
        throw StemifyError(.invalidFilename, "a file name must not hold a path, control characters or more than 255 bytes")
    }
}

extension HTTPField.Name {
    static let rateLimitLimit = Self("RateLimit-Limit")!
    static let rateLimitRemaining = Self("RateLimit-Remaining")!
    static let rateLimitReset = Self("RateLimit-Reset")!
}
