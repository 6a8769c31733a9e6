import Foundation
import Logging
import HTTPTypes
import Hummingbird
import MultipartKit
import NIOCore
import StemifyCore

/// `POST /api/stemify`: a song (multipart `file`) or a `youtube_url`, plus options; answers 202
/// with the job id at once. The upload is streamed to disk and its size limit enforced while
/// it streams; the audio is probed before the job is queued.
struct StemifyController: Sendable {
    let queue: any JobQueue
    let models: ModelStore
    let configuration: StemifyConfiguration
    let metrics: ServiceMetrics
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
        let upload = configuration.storage.uploadPath(id)
        try FileManager.default.createDirectory(at: upload.deletingLastPathComponent(), withIntermediateDirectories: true)
        let uploadPath = upload.path
        var keepUpload = false
        defer { if !keepUpload { try? FileManager.default.removeItem(atPath: uploadPath) } }
        do {
            let form = try await readForm(request, uploadPath: uploadPath)
            let options = try parseOptions(form.fields)
            let input: JobInput
            switch (form.filename, form.fields["youtube_url"]) {
            case let (filename?, nil):
                guard form.fileBytes > 0 else { throw StemifyError(.emptyFile, "the uploaded file is empty") }
                let maxDuration = configuration.maxDurationSeconds
                try await validation.run { try await onThread {
                    let probe = try FFmpeg.probe(uploadPath)
                    if let d = probe.duration, d > maxDuration {
                        throw StemifyError(.audioTooLong, "the audio is \(Int(d)) s long; the limit is \(Int(maxDuration)) s")
                    }
                    try FFmpeg.validateDecodes(uploadPath, probe: probe)
                } }
                input = .upload(path: uploadPath, filename: filename)
            case let (nil, url?):
                let youtube = YouTube(configuration: configuration)
                _ = try youtube.videoID(url)
                _ = try await onThread { try youtube.checkMetadata(url) }
                input = .youtube(url: url)
            default:
                throw StemifyError(.missingInput, "send exactly one of a multipart 'file' part or a 'youtube_url' field")
            }
            try models.validate(options.model)
            let client = clientAddress(request, context)
            let (allowed, retryAfter) = try await queue.recordSubmission(
                client: client, period: configuration.rateLimitPeriodSeconds, limit: configuration.rateLimit)
            guard allowed else {
                metrics.recordRejection(code: .rateLimited)
                return errorResponse(
                    StemifyError(.rateLimited, "at most \(configuration.rateLimit) jobs per \(Int(configuration.rateLimitPeriodSeconds)) s; retry in \(Int(retryAfter.rounded(.up))) s", status: 429),
                    headers: [.retryAfter: "\(Int(retryAfter.rounded(.up)))"])
            }
            let job = Job(id: id, status: .queued, progress: 0, etaSeconds: nil, options: options, input: input, clientAddress: client,
                          createdAt: Date(), startedAt: nil, finishedAt: nil, errorCode: nil, errorMessage: nil, stems: [],
                          metrics: nil, attempts: 0)
            try await queue.enqueue(job)
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
        let tooLarge = StemifyError(.fileTooLarge, "the upload exceeds \(limit / (1024 * 1024)) MB", status: 413)
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit + 64 * 1024 {
            throw tooLarge
        }
        let contentType = request.headers[.contentType] ?? ""
        if contentType.hasPrefix("application/json") {
            var body = try await request.body.collect(upTo: 64 * 1024)
            let data = Data(body.readBytes(length: body.readableBytes) ?? [])
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw StemifyError(.invalidOption, "the JSON body must be an object")
            }
            var form = Form()
            for (k, v) in object { form.fields[k] = "\(v)" }
            return form
        }
        guard contentType.hasPrefix("multipart/form-data"),
              let boundary = contentType.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.hasPrefix("boundary=") }).map({ String($0.dropFirst("boundary=".count)) })
        else {
            throw StemifyError(.missingInput, "send multipart/form-data with a 'file' part, or JSON with 'youtube_url'")
        }
        let parser = MultipartParser(boundary: String(boundary).trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
        let state = FormState(uploadPath: uploadPath, limit: limit)
        parser.onHeader = { name, value in state.header(name, value) }
        parser.onBody = { buffer in state.body(&buffer) }
        parser.onPartComplete = { state.partComplete() }
        for try await buffer in request.body {
            do { try parser.execute(buffer) } catch {
                throw StemifyError(.invalidOption, "malformed multipart body")
            }
            if let error = state.error { throw error }
            if state.overLimit { throw tooLarge }
        }
        try state.finish()
        if state.overLimit { throw tooLarge }
        return state.form
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
            throw StemifyError(.unknownModel, "unknown model '\(model)'", status: 400)
        }
        return JobOptions(model: model, outputFormat: format, normalize: try bool("normalize"),
                          removeVocals: try bool("remove_vocals"), shifts: quality.shifts, overlap: quality.overlap)
    }

    /// The peer address, or the last untrusted hop of X-Forwarded-For when the peer is a trusted proxy.
    func clientAddress(_ request: Request, _ context: AppRequestContext) -> String {
        let peer = context.remoteAddress?.ipAddress ?? "unknown"
        guard configuration.trustedProxies.contains(peer), let forwarded = request.headers[HTTPField.Name("X-Forwarded-For")!] else { return peer }
        let hops = forwarded.split(separator: ",").map { String($0).trimmingCharacters(in: CharacterSet.whitespaces) }
        return hops.last(where: { !configuration.trustedProxies.contains($0) }) ?? peer
    }
}

/// Streaming multipart state. The parser calls back at every `\r`, so file bytes are buffered
/// to 1 MiB before each write (writing every piece made a 40 MB upload take 10 s).
private final class FormState {
    let uploadPath: String
    let limit: Int
    var form = StemifyController.Form()
    var error: StemifyError?
    var overLimit = false
    private var headers: [String: String] = [:]
    private var fieldBuffer = ByteBuffer()
    private var fileBuffer = Data()
    private var file: FileHandle?
    private var inFile = false

    init(uploadPath: String, limit: Int) {
        self.uploadPath = uploadPath
        self.limit = limit
    }

    func header(_ name: String, _ value: String) { headers[name.lowercased()] = value }

    private var partName: String? { disposition("name") }

    private func disposition(_ key: String) -> String? {
        guard let d = headers["content-disposition"] else { return nil }
        for piece in d.split(separator: ";") {
            let kv = piece.trimmingCharacters(in: .whitespaces)
            if kv.hasPrefix("\(key)=") { return String(kv.dropFirst(key.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }

    func body(_ buffer: inout ByteBuffer) {
        if partName == "file" {
            if !inFile {
                inFile = true
                guard form.filename == nil else { error = StemifyError(.invalidOption, "send one 'file' part"); return }
                form.filename = disposition("filename") ?? "upload"
                _ = FileManager.default.createFile(atPath: uploadPath, contents: nil)
                file = FileHandle(forWritingAtPath: uploadPath)
            }
            form.fileBytes += buffer.readableBytes
            if form.fileBytes > limit { overLimit = true; return }
            if let bytes = buffer.readBytes(length: buffer.readableBytes) { fileBuffer.append(contentsOf: bytes) }
            if fileBuffer.count >= 1 << 20 { flush() }
        } else {
            if fieldBuffer.readableBytes + buffer.readableBytes > 8192 {
                error = StemifyError(.invalidOption, "form field '\(partName ?? "?")' is too long")
                return
            }
            fieldBuffer.writeBuffer(&buffer)
        }
    }

    func partComplete() {
        if partName == "file" {
            if !inFile { form.filename = disposition("filename") ?? "upload" }
            flush()
            try? file?.close()
            file = nil
            inFile = false
        } else if let name = partName {
            form.fields[name] = fieldBuffer.readString(length: fieldBuffer.readableBytes) ?? ""
        }
        fieldBuffer.clear()
        headers = [:]
    }

    private func flush() {
        guard !fileBuffer.isEmpty else { return }
        do { try file?.write(contentsOf: fileBuffer) } catch { self.error = StemifyError(.internalError, "cannot store the upload", status: 500) }
        fileBuffer.removeAll(keepingCapacity: true)
    }

    func finish() throws {
        flush()
        try? file?.close()
        if let error { throw error }
    }
}
