import Foundation
import Logging
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// `POST /api/stemify`: a song (multipart `file`) or a `youtube_url`, plus options; answers 202
/// with the job id at once. The upload is streamed to disk and its size limit enforced while
/// it streams; the audio is probed before the job is queued.
struct StemifyController: Sendable {
    let queue: any JobQueue
    let models: ModelStore
    let configuration: StemifyConfiguration
    let storage: any JobStorage
    let metrics: ServiceMetrics
    let uploads: ResumableUploads
    /// One upload validation (ffprobe + full decode) per core at a time.
    let validation = AsyncLimiter(limit: ProcessInfo.processInfo.activeProcessorCount)

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("/api/stemify", use: submit)
    }

    struct Accepted: Encodable {
        var jobId: String
        var status: String
        var statusUrl: String
        var eventsUrl: String
        enum CodingKeys: String, CodingKey { case jobId = "job_id", status, statusUrl = "status_url", eventsUrl = "events_url" }
    }

    @Sendable func submit(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = UUID().uuidString.lowercased()
        let upload = storage.uploadPath(id)
        try FileManager.default.createDirectory(at: upload.deletingLastPathComponent(), withIntermediateDirectories: true)
        let uploadPath = upload.path
        var keepUpload = false
        defer { if !keepUpload { try? FileManager.default.removeItem(atPath: uploadPath) } }
        do {
            let form = try await readForm(request, uploadPath: uploadPath)
            let options = try parseOptions(form.fields)
            let youtube = YouTube(configuration: configuration)
            let uploadID = form.fields["upload_id"]
            switch (form.filename, form.fields["youtube_url"], uploadID) {
            case (_?, nil, nil): guard form.fileBytes > 0 else { throw StemifyError(.emptyFile, "the uploaded file is empty") }
            case let (nil, url?, nil): _ = try youtube.videoID(url)
            case (nil, nil, _?): break
            default: throw StemifyError(.missingInput, "send exactly one of a multipart 'file' part, a 'youtube_url' or an 'upload_id'")
            }
            try models.validate(options.model, numOverlap: options.numOverlap)

            // The rate limit comes before any decoding or network work: that is what it protects.
            // A resumable upload was counted when it was created (songs are counted, not requests).
            let client = clientAddress(request, context, trustedProxies: configuration.trustedProxies)
            let (allowed, retryAfter) = uploadID != nil ? (true, 0) : try await queue.recordSubmission(
                client: client, period: configuration.rateLimitPeriodSeconds, limit: configuration.rateLimit)
            guard allowed else {
                metrics.recordRejection(code: .rateLimited)
                return errorResponse(
                    StemifyError(.rateLimited, "at most \(configuration.rateLimit) jobs per \(Int(configuration.rateLimitPeriodSeconds)) s; retry in \(Int(retryAfter.rounded(.up))) s"),
                    headers: [.retryAfter: "\(Int(retryAfter.rounded(.up)))"])
            }

            var filename = form.filename
            if let uploadID {
                filename = try await uploads.take(uploadID, client: client, to: upload).filename
            }
            let input: JobInput
            if let filename {
                let maxDuration = configuration.maxDurationSeconds
                try await validation.run { try await onThread {
                    let probe = try FFmpeg.probe(uploadPath)
                    if let d = probe.duration, d > maxDuration {
                        throw StemifyError(.audioTooLong, "the audio is \(Int(d)) s long; the limit is \(Int(maxDuration)) s")
                    }
                    try FFmpeg.validateDecodes(uploadPath, probe: probe)
                } }
                input = .upload(path: try await storage.keepUpload(id), filename: filename)
            } else {
                let url = form.fields["youtube_url"] ?? ""
                _ = try await onThread { try youtube.checkMetadata(url) }
                input = .youtube(url: url)
            }
            let job = Job(id: id, status: .queued, progress: 0, etaSeconds: nil, options: options, input: input, clientAddress: client,
                          createdAt: Date(), startedAt: nil, finishedAt: nil, errorCode: nil, errorMessage: nil, stems: [],
                          metrics: nil, attempts: 0)
            do {
                try await queue.enqueue(job)
            } catch {
                await storage.removeAll(job)
                throw error
            }
            keepUpload = true
            metrics.recordSubmission()
            context.logger.info("job queued", metadata: ["job.id": "\(id)", "job.model": "\(options.model)", "client": "\(client)"])
            return try jsonResponse(
                Accepted(jobId: id, status: "queued", statusUrl: "/api/jobs/\(id)", eventsUrl: "/api/jobs/\(id)/events"),
                status: .accepted, headers: [.location: "/api/jobs/\(id)"])
        } catch let error as StemifyError {
            metrics.recordRejection(code: error.code)
            throw error
        }
    }

    /// The form: small text fields in memory, the `file` part streamed to `uploadPath`.
    struct Form {
        var fields: [String: String] = [:]
        var filename: String?
        var fileBytes = 0
    }

    func readForm(_ request: Request, uploadPath: String) async throws -> Form {
        let limit = configuration.maxFileSize
        let tooLarge = StemifyError(.fileTooLarge, "the upload exceeds \(limit / (1024 * 1024)) MB")
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit + 64 * 1024 {
            throw tooLarge
        }
        let contentType = request.headers[.contentType] ?? ""
        let type = HeaderParameters(contentType)
        if type.value.lowercased() == "application/json" {
            let body: ByteBuffer
            do { body = try await request.body.collect(upTo: 64 * 1024) } catch {
                throw StemifyError(.invalidRequest, "the JSON body is larger than 64 KiB")
            }
            return Form(fields: try jsonFields(Data(body.readableBytesView)))
        }
        guard type.value.lowercased() == "multipart/form-data", let boundary = type.parameters["boundary"] else {
            throw StemifyError(.missingInput, "send multipart/form-data with a 'file' part, or JSON with 'youtube_url'")
        }
        let malformed = StemifyError(.invalidRequest, "the multipart body is malformed")
        var reader: MultipartReader
        do { reader = try MultipartReader(boundary: boundary) } catch { throw malformed }
        let state = FormState(uploadPath: uploadPath, limit: limit)
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
        return state.form
    }

    /// A JSON object's members as form fields: strings as they are, numbers and booleans as text.
    func jsonFields(_ data: Data) throws -> [String: String] {
        guard let object = try? JSONDecoder().decode([String: JSONScalar].self, from: data) else {
            throw StemifyError(.invalidRequest, "the JSON body must be an object of strings, numbers and booleans")
        }
        return object.compactMapValues(\.text)
    }

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
        return JobOptions(model: model, outputFormat: format, normalize: try bool("normalize"),
                          removeVocals: try bool("remove_vocals"), shifts: quality.shifts, overlap: quality.overlap,
                          numOverlap: numOverlap)
    }
}

/// What the multipart events build: text fields in memory (8 KiB each at most), the one `file`
/// part streamed to disk in 1 MiB writes.
private final class FormState {
    let uploadPath: String
    let limit: Int
    var form = StemifyController.Form()
    private var part: [String: String] = [:]
    private var fieldBuffer: [UInt8] = []
    private var fileBuffer: [UInt8] = []
    private var file: FileHandle?

    init(uploadPath: String, limit: Int) {
        self.uploadPath = uploadPath
        self.limit = limit
    }

    private var disposition: HeaderParameters { HeaderParameters(part["content-disposition"] ?? "") }

    func handle(_ event: MultipartReader.Event) throws {
        switch event {
        case let .headers(headers):
            part = headers
            guard disposition.parameters["name"] == "file" else { return }
            guard form.filename == nil else { throw StemifyError(.invalidOption, "send one 'file' part") }
            form.filename = disposition.parameters["filename"].flatMap { $0.isEmpty ? nil : $0 } ?? "upload"
            guard FileManager.default.createFile(atPath: uploadPath, contents: nil),
                  let handle = FileHandle(forWritingAtPath: uploadPath)
            else { throw StemifyError(.internalError, "cannot store the upload", detail: "cannot create \(uploadPath)") }
            file = handle
        case let .body(bytes):
            if file != nil {
                form.fileBytes += bytes.count
                guard form.fileBytes <= limit else { throw StemifyError(.fileTooLarge, "the upload exceeds \(limit / (1024 * 1024)) MB") }
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
            } else if let name = disposition.parameters["name"] {
                form.fields[name] = String(decoding: fieldBuffer, as: UTF8.self)
            }
            fieldBuffer.removeAll(keepingCapacity: true)
            part = [:]
        }
    }

    private func flush() throws {
        guard !fileBuffer.isEmpty, let file else { return }
        do { try file.write(contentsOf: fileBuffer) } catch {
            throw StemifyError(.internalError, "cannot store the upload", detail: "writing \(uploadPath): \(error)")
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
private enum JSONScalar: Decodable {
    case text(String?)

    var text: String? { if case let .text(t) = self { t } else { nil } }

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .text(nil) }
        else if let b = try? c.decode(Bool.self) { self = .text(b ? "true" : "false") }
        else if let i = try? c.decode(Int.self) { self = .text(String(i)) }
        else if let d = try? c.decode(Double.self) { self = .text(String(d)) }
        else { self = .text(try c.decode(String.self)) }
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}
