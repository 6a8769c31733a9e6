import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// Resumable uploads at `/api/uploads`, tus 1.0.0 (core, creation, expiration, termination,
/// checksum): create with the declared length, PATCH chunks at their offset, HEAD to learn where
/// to resume after a dropped connection. A finished upload becomes a job through
/// `POST /api/stemify` with its `upload_id`. Errors are the API's usual JSON bodies; the statuses
/// are the ones tus names.
struct UploadsController: Sendable {
    let uploads: ResumableUploads
    let queue: any JobQueue
    let configuration: StemifyConfiguration
    let metrics: ServiceMetrics

    static let version = "1.0.0"

    func addRoutes(to router: Router<AppRequestContext>) {
        router.group("/api/uploads")
            .add(middleware: TusResumableHeader())
            .on("", method: .options, use: options)
            .post("", use: create)
            .head(":id", use: head)
            .patch(":id", use: patch)
            .delete(":id", use: terminate)
    }

    /// tus asks for `Tus-Resumable` on every response, errors included: they are rendered
    /// here, inside the group, so the header can be added to them too.
    struct TusResumableHeader: RouterMiddleware {
        func handle(_ request: Request, context: AppRequestContext,
                    next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
            var response: Response
            do {
                response = try await next(request, context)
            } catch {
                response = ErrorMiddleware<AppRequestContext>.response(for: error, request: request, context: context)
            }
            response.headers[.tusResumable] = UploadsController.version
            // tus: a 412 says which versions the server does speak.
            if response.status == .preconditionFailed { response.headers[.tusVersion] = UploadsController.version }
            return response
        }
    }

    /// Headers every tus response carries.
    private var common: HTTPFields { [.tusResumable: Self.version, .cacheControl: "no-store"] }

    /// The protocol's capabilities (no `Tus-Resumable` needed).
    @Sendable func options(_ request: Request, context: AppRequestContext) async throws -> Response {
        var headers = common
        headers[.tusVersion] = Self.version
        headers[.tusExtension] = "creation,expiration,termination,checksum"
        headers[.tusMaxSize] = "\(configuration.maxFileSize)"
        headers[.tusChecksumAlgorithm] = ResumableUploads.Chunk.algorithms.joined(separator: ",")
        return Response(status: .noContent, headers: headers)
    }

    /// Every request but OPTIONS names the version it speaks.
    private func checkVersion(_ request: Request) throws {
        guard request.headers[.tusResumable] == Self.version else {
            throw StemifyError(.tusVersionUnsupported, "send 'Tus-Resumable: \(Self.version)'; it is the tus version this server speaks")
        }
    }

    private func uploadID(_ context: AppRequestContext) -> String { context.parameters.get("id") ?? "" }

    /// Whose uploads a request sees: its owner token or key, never its address, so a resume
    /// from another network finds the upload. A caller without a token owns nothing.
    private func client(_ request: Request, _ context: AppRequestContext) -> String {
        context.caller.owner ?? "anonymous"
    }

    private func expires(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: date)
    }

    /// `Upload-Length` (required: deferred lengths are not offered) and `Upload-Metadata`
    /// (`filename`). The length limit and the rate limit apply here, before any byte is stored;
    /// the job made from the upload later is not counted again.
    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        try checkVersion(request)
        guard let length = request.headers[.uploadLength].flatMap(parseByteCount) else {
            throw StemifyError(.invalidRequest, "send the upload's size in bytes as Upload-Length")
        }
        var metadata: [String: String] = [:]
        if let header = request.headers[.uploadMetadata] {
            guard let parsed = parseUploadMetadata(header) else {
                throw StemifyError(.invalidRequest, "Upload-Metadata must be comma-separated 'key base64value' pairs")
            }
            metadata = parsed
        }
        if let filename = metadata["filename"] { try checkFilename(filename) }
        guard length <= configuration.maxFileSize else {
            throw StemifyError(.fileTooLarge, "the upload exceeds \(configuration.maxFileSize / (1024 * 1024)) MB")
        }
        let caller = context.caller
        let (owner, newToken) = caller.ownerForCreation()
        let (allowed, retryAfter) = try await queue.recordSubmission(
            client: caller.quotaClient, period: configuration.rateLimitPeriodSeconds, limit: caller.quota)
        guard allowed else {
            metrics.recordRejection(code: .rateLimited)
            var headers = common
            headers[.retryAfter] = "\(Int(retryAfter.rounded(.up)))"
            return errorResponse(
                StemifyError(.rateLimited, "at most \(caller.quota) songs per \(Int(configuration.rateLimitPeriodSeconds)) s; retry in \(Int(retryAfter.rounded(.up))) s"),
                headers: headers)
        }
        let upload = try await uploads.create(length: length, limit: configuration.maxFileSize, client: owner, filename: metadata["filename"])
        var headers = common
        if let newToken { headers.append(contentsOf: OwnerToken.headers(newToken)) }
        headers[.location] = "/api/uploads/\(upload.id)"
        headers[.uploadExpires] = expires(upload.expiresAt)
        headers[.uploadOffset] = "0"
        return Response(status: .created, headers: headers)
    }

    /// Where to resume: the bytes stored so far.
    @Sendable func head(_ request: Request, context: AppRequestContext) async throws -> Response {
        try checkVersion(request)
        let upload = try await uploads.upload(uploadID(context), client: client(request, context))
        var headers = common
        headers[.uploadOffset] = "\(upload.offset)"
        headers[.uploadLength] = "\(upload.length)"
        headers[.uploadExpires] = expires(upload.expiresAt)
        return Response(status: .ok, headers: headers)
    }

    /// A chunk at the upload's current offset. Bytes are stored as they arrive, so a chunk cut by
    /// a dropped connection keeps what reached the server (unless it declared a checksum).
    @Sendable func patch(_ request: Request, context: AppRequestContext) async throws -> Response {
        try checkVersion(request)
        guard request.headers[.contentType]?.lowercased() == "application/offset+octet-stream" else {
            throw StemifyError(.invalidContentType, "send chunks as Content-Type: application/offset+octet-stream")
        }
        guard let offset = request.headers[.uploadOffset].flatMap(parseByteCount) else {
            throw StemifyError(.invalidRequest, "send the chunk's position as Upload-Offset (a byte count)")
        }
        var checksum: (algorithm: String, digest: [UInt8])?
        if let header = request.headers[.uploadChecksum] {
            guard let parsed = parseUploadChecksum(header), ResumableUploads.Chunk.algorithms.contains(parsed.algorithm) else {
                throw StemifyError(.invalidRequest, "Upload-Checksum must be 'ALGORITHM BASE64DIGEST' with ALGORITHM one of \(ResumableUploads.Chunk.algorithms.joined(separator: ", "))")
            }
            checksum = parsed
        }
        let chunk = try await uploads.begin(uploadID(context), client: client(request, context), offset: offset,
                                            checksum: checksum?.algorithm)
        let upload: ResumableUploads.Upload
        do {
            for try await buffer in request.body {
                try chunk.write(buffer.readableBytesView)
            }
            upload = try await uploads.finish(chunk, expectedDigest: checksum?.digest)
        } catch let error as StemifyError where error.code == .checksumMismatch {
            throw error
        } catch let error as StemifyError {
            await uploads.abandon(chunk, refused: error.code == .uploadLengthExceeded)
            throw error
        } catch {
            // The body stream failed: the client went away. What arrived is kept for its resume.
            await uploads.abandon(chunk)
            throw StemifyError(.invalidRequest, "the connection closed before the chunk ended; ask for the offset (HEAD) and resume",
                               detail: "upload \(chunk.upload.id) cut at \(chunk.offset) bytes: \(error)")
        }
        var headers = common
        headers[.uploadOffset] = "\(upload.offset)"
        headers[.uploadExpires] = expires(upload.expiresAt)
        return Response(status: .noContent, headers: headers)
    }

    /// tus termination: the upload and its bytes are gone.
    @Sendable func terminate(_ request: Request, context: AppRequestContext) async throws -> Response {
        try checkVersion(request)
        try await uploads.terminate(uploadID(context), client: client(request, context))
        return Response(status: .noContent, headers: common)
    }
}

extension HTTPField.Name {
    static let tusResumable = Self("Tus-Resumable")!
    static let tusVersion = Self("Tus-Version")!
    static let tusExtension = Self("Tus-Extension")!
    static let tusMaxSize = Self("Tus-Max-Size")!
    static let tusChecksumAlgorithm = Self("Tus-Checksum-Algorithm")!
    static let uploadLength = Self("Upload-Length")!
    static let uploadOffset = Self("Upload-Offset")!
    static let uploadMetadata = Self("Upload-Metadata")!
    static let uploadExpires = Self("Upload-Expires")!
    static let uploadChecksum = Self("Upload-Checksum")!
}
