import Foundation
import HTTPTypes
import Hummingbird
import StemifyCore

/// Who is asking, resolved once per request by ``AccessMiddleware``.
///
/// Every job, batch and upload has an owner: the API key that made it (`k:ID`) or, with keys
/// off, the SHA-256 of the owner token the creator holds (`t:HEX`). Only the owner (or an
/// `admin` key) sees it; anyone else gets the same 404 as for an id that never existed.
struct Caller: Sendable {
    /// What this caller owns; nil for a caller without a token (keys off) until it creates something.
    var owner: String?
    /// The key, with keys on.
    var key: APIKey?
    /// The identity the rate limit counts and its limit (0: none).
    var quotaClient: String
    var quota: Int

    var isAdmin: Bool { key?.scopes.contains(.admin) == true }

    /// Whether this caller may see something owned by `owner`. Rows from before owners were
    /// kept hold an address, not an owner: those stay open to all, as they were.
    func owns(_ owner: String) -> Bool {
        guard Self.isOwner(owner) else { return true }
        return isAdmin || owner == self.owner
    }

    static func isOwner(_ value: String) -> Bool { value.hasPrefix("t:") || value.hasPrefix("k:") }

    /// The owner of something this caller creates now, and the token to hand back when a new
    /// one had to be made (the caller sent none).
    func ownerForCreation() -> (owner: String, newToken: String?) {
        if let owner { return (owner, nil) }
        let token = OwnerToken.prefix + APIKeyStore.randomToken()
        return (OwnerToken.owner(of: token), token)
    }
}

/// Owner tokens (keys off): made by the server for a caller that sent none, or by the client
/// itself (`sto_` and at least 32 URL-safe characters); only their SHA-256 is stored.
enum OwnerToken {
    static let prefix = "sto_"
    static let cookie = "stemify_owner"

    static func isWellFormed(_ token: String) -> Bool {
        guard token.hasPrefix(prefix) else { return false }
        let body = token.dropFirst(prefix.count)
        return (32...128).contains(body.count) && body.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
        }
    }

    static func owner(of token: String) -> String { "t:" + Digest.hex(token) }

    /// Headers that give a newly made token to the caller: the page keeps it as a cookie (sent
    /// with its `<audio>` and download requests too); API clients read `owner_token` or this header.
    static func headers(_ token: String) -> HTTPFields {
        [.setCookie: "\(cookie)=\(token); Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict", .stemifyOwnerToken: token]
    }
}

/// Resolves the ``Caller`` of every `/api/` request. With `api_keys` on, a request without a
/// live key is refused (401), and one whose key lacks the scope the route needs gets 403:
/// `submit` to create, cancel or delete, `read` to look (GET, HEAD, a mix export), `admin`
/// for everything on every owner's work.
struct AccessMiddleware: RouterMiddleware {
    let configuration: StemifyConfiguration
    let keys: APIKeyStore

    func handle(_ request: Request, context: AppRequestContext,
                next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        let address = clientAddress(request, context, trustedProxies: configuration.trustedProxies)
        let credential = Self.credential(request)
        if configuration.apiKeys {
            guard request.uri.path.hasPrefix("/api/") else { return try await next(request, context) }
            guard let credential, let key = try keys.key(secret: credential) else {
                let error = StemifyError(.unauthorized, credential == nil
                    ? "send an API key as 'Authorization: Bearer sk_…'" : "this API key is not known or was revoked")
                return errorResponse(error, headers: [.wwwAuthenticate: "Bearer realm=\"stemify\""])
            }
            let needed: KeyScope = Self.isRead(request) ? .read : .submit
            guard key.scopes.contains(needed) || key.scopes.contains(.admin) else {
                throw StemifyError(.forbidden, "this key lacks the '\(needed.rawValue)' scope")
            }
            context.caller = Caller(owner: key.owner, key: key, quotaClient: key.owner, quota: key.quota ?? configuration.rateLimit)
        } else {
            let owner = credential.flatMap { OwnerToken.isWellFormed($0) ? OwnerToken.owner(of: $0) : nil }
            context.caller = Caller(owner: owner, key: nil, quotaClient: address, quota: configuration.rateLimit)
        }
        return try await next(request, context)
    }

    /// GET and HEAD look; so does a mix export (it renders what the owner may already read).
    static func isRead(_ request: Request) -> Bool {
        request.method == .get || request.method == .head || request.method == .options
            || (request.method == .post && request.uri.path.hasSuffix("/mix"))
    }

    /// `Authorization: Bearer X`, else the `access_token` query parameter (RFC 6750 §2.3: for
    /// an `EventSource` or `<audio>` on another origin, which cannot send headers), else the
    /// owner cookie the page holds.
    static func credential(_ request: Request) -> String? {
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]).trimmingCharacters(in: .whitespaces) }
        }
        if let token = request.uri.queryParameters["access_token"], !token.isEmpty { return String(token) }
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0].trimmingCharacters(in: .whitespaces) == OwnerToken.cookie { return String(kv[1]) }
            }
        }
        return nil
    }
}

extension HTTPField.Name {
    static let stemifyOwnerToken = Self("Stemify-Owner-Token")!
}
