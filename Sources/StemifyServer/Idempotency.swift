import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// `Idempotency-Key` on the POSTs that create work (`/api/stemify`, `/api/batches`): the first
/// request with a key runs; a retry of the same request (same owner, key and content) within
/// 24 h gets the first answer again, marked `Idempotent-Replayed: true`, without a second job
/// or a second count against the rate limit; another request with the key is refused (422), and
/// one that comes while the first is still being answered is told to retry (409). A request
/// that fails lets go of its key, so the retry runs. The keys live in the queue's store, so
/// every API process sees them.
struct Idempotency: Sendable {
    let queue: any JobQueue
    static let ttl = 86400.0

    /// What a route answered, kept whole when it created something.
    enum Outcome {
        case created(status: HTTPResponse.Status, body: [UInt8], headers: HTTPFields)
        /// Not kept (a refusal such as 429): the key is let go.
        case other(Response)

        var response: Response {
            switch self {
            case let .created(status, body, headers):
                var all: HTTPFields = [.contentType: "application/json; charset=utf-8"]
                all.append(contentsOf: headers)
                return Response(status: status, headers: all, body: .init(byteBuffer: ByteBuffer(bytes: body)))
            case let .other(response): return response
            }
        }
    }

    /// The request's key, checked; nil without one.
    static func key(_ request: Request) throws -> String? {
        guard let key = request.headers[.idempotencyKey] else { return nil }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw StemifyError(.invalidRequest, "an Idempotency-Key is 1–255 visible ASCII characters")
        }
        return key
    }

    /// What makes two requests the same: the route, the options, and each song (a file by
    /// its bytes' digest, not the multipart framing a retry may change).
    static func fingerprint(path: String, form: SongIntake.Form, storage: any JobStorage) throws -> String {
        var text = path + "\n"
        for (k, v) in form.fields.sorted(by: { $0.key < $1.key }) { text += "field \(k)=\(v)\n" }
        for song in form.songs {
            switch song.source {
            case .file: text += "file \(song.name) \(try Digest.hex(file: storage.uploadPath(song.jobID).path))\n"
            case let .upload(id): text += "upload \(id)\n"
            case let .youtube(url): text += "youtube \(url)\n"
            }
        }
        return Digest.hex(text)
    }

    /// Runs `body` once per owner, key and request (see the type); without a key, just runs it.
    func run(key: String?, owner: String, fingerprint: @autoclosure () throws -> String,
             _ body: () async throws -> Outcome) async throws -> Response {
        guard let key else { return try await body().response }
        let id = Digest.hex(owner + "\n" + key)
        switch try await queue.claimIdempotencyKey(id: id, fingerprint: try fingerprint(), ttl: Self.ttl) {
        case .mismatch:
            throw StemifyError(.idempotencyKeyReused, "this Idempotency-Key was used for another request; use a new key for a new request")
        case .inProgress:
            throw StemifyError(.idempotencyKeyInUse, "the first request with this Idempotency-Key is still being answered; retry shortly")
        case let .replay(stored):
            var headers: HTTPFields = [.idempotentReplayed: "true"]
            if let location = stored.location { headers[.location] = location }
            return Outcome.created(status: HTTPResponse.Status(code: stored.status), body: Array(stored.body.utf8), headers: headers).response
        case .claimed:
            let outcome: Outcome
            do { outcome = try await body() } catch {
                try? await queue.releaseIdempotencyKey(id: id)
                throw error
            }
            switch outcome {
            case let .created(status, bytes, headers):
                try? await queue.completeIdempotencyKey(id: id, response: StoredResponse(
                    status: status.code, body: String(decoding: bytes, as: UTF8.self), location: headers[.location]))
            case .other:
                try? await queue.releaseIdempotencyKey(id: id)
            }
            return outcome.response
        }
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}
