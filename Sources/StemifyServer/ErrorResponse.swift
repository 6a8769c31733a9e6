import Foundation
import Logging
import Hummingbird
import StemifyCore

/// Renders every error as `{"error": {"code", "message"}}` with a stable code. A ``StemifyError``
/// keeps its status; anything else becomes 500 `internal_error`, logged, never leaked.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as StemifyError {
            return errorResponse(error)
        } catch let error as HTTPError {
            let code: ErrorCode = error.status == .notFound ? ErrorCode(rawValue: "not_found") : .invalidOption
            return errorResponse(StemifyError(code, error.body ?? error.status.reasonPhrase, status: error.status.code))
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return errorResponse(StemifyError(.internalError, "internal error; see the server log", status: 500))
        }
    }
}

/// The JSON error body for `error`.
func errorResponse(_ error: StemifyError, headers extra: HTTPFields = [:]) -> Response {
    let body = #"{"error":{"code":"# + jsonString(error.code.rawValue) + #","message":"# + jsonString(error.message) + "}}"
    var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
    headers.append(contentsOf: extra)
    return Response(status: .init(code: error.status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
    let data = try! JSONEncoder().encode(s)
    return String(decoding: data, as: UTF8.self)
}

/// Encodes a JSON response.
func jsonResponse(_ object: some Encodable, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
    headers.append(contentsOf: extra)
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: [UInt8](try encoder.encode(object)))))
}
