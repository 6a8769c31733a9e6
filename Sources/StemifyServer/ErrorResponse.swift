import Foundation
import Logging
public import HTTPTypes
public import Hummingbird
import NIOCore
public import StemifyCore

/// The one table from error codes to HTTP statuses. Core errors know nothing of HTTP.
extension ErrorCode {
    package var httpStatus: HTTPResponse.Status {
        switch self {
        case .missingInput, .invalidRequest, .emptyFile, .invalidAudio, .audioTooLong, .invalidYouTubeURL,
             .youtubePlaylist, .videoTooLong, .unknownModel, .invalidOption, .invalidFilename, .invalidBatch,
             .invalidMix:
            .badRequest
        case .fileTooLarge, .uploadLengthExceeded: .contentTooLarge
        case .methodNotAllowed: .methodNotAllowed
        case .idempotencyKeyReused: .unprocessableContent
        case .idempotencyKeyInUse: .conflict
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .unsupportedFormat, .invalidContentType: .unsupportedMediaType
        case .uploadNotFound: .notFound
        case .uploadExpired: .gone
        case .uploadOffsetMismatch, .uploadIncomplete: .conflict
        case .checksumMismatch: HTTPResponse.Status(code: 460, reasonPhrase: "Checksum Mismatch")
        case .tusVersionUnsupported: .preconditionFailed
        case .videoBlocked: .forbidden
        case .youtubeUnavailable: .badGateway
        case .modelUnavailable, .unavailable: .serviceUnavailable
        case .rateLimited: .tooManyRequests
        case .jobNotFound, .stemNotFound, .notFound, .batchNotFound: .notFound
        case .separationFailed, .internalError: .internalServerError
        }
    }
}

/// Rendered as `{"error": {"code", "message"}}` with the code's status; the detail never leaves
/// the server.
extension StemifyError: HTTPResponseError {
    public var status: HTTPResponse.Status { code.httpStatus }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        errorResponse(self)
    }
}

/// The error boundary: whatever a route throws leaves as a ``StemifyError`` body. Details go to
/// the log with the request path; Hummingbird's own errors (no route, bad query) get codes too.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return Self.response(for: error, request: request, context: context)
        }
    }

    /// The response for anything a route threw, logged as its kind deserves.
    static func response(for error: any Error, request: Request, context: Context) -> Response {
        switch error {
        case let error as StemifyError:
            if error.code.httpStatus.code >= 500 || error.detail != nil {
                context.logger.log(level: error.code.httpStatus.code >= 500 ? .error : .info, "request failed", metadata: [
                    "error.code": "\(error.code)", "error.detail": "\(error.detail ?? "")", "path": "\(request.uri.path)",
                ])
            }
            return errorResponse(error)
        case let error as HTTPError:
            let code: ErrorCode = switch error.status.code {
            case 404: .notFound
            case 413: .fileTooLarge
            case 400..<500: .invalidRequest
            default: .internalError
            }
            let message = code == .notFound ? "no such resource" : code == .internalError ? "internal error; see the server log" : "the request is not valid"
            return errorResponse(StemifyError(code, message))
        default:
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return errorResponse(StemifyError(.internalError, "internal error; see the server log"))
        }
    }
}

/// The JSON error body for `error`, with the status its code maps to.
func errorResponse(_ error: StemifyError, headers extra: HTTPFields = [:]) -> Response {
    struct Body: Encodable {
        struct Detail: Encodable { var code: String, message: String }
        var error: Detail
    }
    let body = Body(error: .init(code: error.code.rawValue, message: error.message))
    // Two strings always encode; the fallback only keeps this function non-throwing.
    let bytes = (try? JSONEncoder().encode(body)).map { [UInt8]($0) } ?? Array(#"{"error":{"code":"internal_error","message":""}}"#.utf8)
    var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
    headers.append(contentsOf: extra)
    return Response(status: error.code.httpStatus, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

/// Encodes a JSON response.
func jsonResponse(_ object: some Encodable, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) throws -> Response {
    var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
    headers.append(contentsOf: extra)
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try jsonBytes(object))))
}

/// The API's JSON encoding: sorted keys, slashes as they are.
func jsonBytes(_ object: some Encodable) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return [UInt8](try encoder.encode(object))
}
