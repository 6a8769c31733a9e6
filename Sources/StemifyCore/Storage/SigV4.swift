public import Foundation
import Crypto

/// AWS Signature Version 4 for S3-compatible object stores: the `Authorization` header of a
/// request, or a presigned URL. Checked against AWS's published test vectors (`SigV4Tests`).
///
/// S3 rules, which differ from the other services': the path is encoded once (not twice) and
/// not normalised, and the payload hash is sent as `x-amz-content-sha256`.
public struct SigV4: Sendable {
    public var accessKey: String
    public var secretKey: String
    public var region: String
    public var service: String
    /// Temporary credentials' token (`AWS_SESSION_TOKEN`), signed as `x-amz-security-token`.
    public var sessionToken: String?

    public init(accessKey: String, secretKey: String, region: String, service: String = "s3", sessionToken: String? = nil) {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
        self.service = service
        self.sessionToken = sessionToken
    }

    /// The SHA-256 of no bytes, the payload hash of a request without a body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// What S3 accepts instead of a hash when the body is not known ahead (streamed uploads).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// The headers to send: those given, `host`, `x-amz-date`, the security token if any, and
    /// `authorization`. `payloadHash` is the hex SHA-256 of the body or ``unsignedPayload``;
    /// `contentHashHeader` adds it as `x-amz-content-sha256` (S3 requires it).
    public func sign(method: String, url: URL, headers: [(String, String)] = [], payloadHash: String = emptyPayloadHash,
                     date: Date = Date(), contentHashHeader: Bool = true) -> [(String, String)] {
        let (amzDate, day) = Self.stamps(date)
        var all = headers
        if !all.contains(where: { $0.0.lowercased() == "host" }) { all.append(("host", Self.host(url))) }
        all.append(("x-amz-date", amzDate))
        if contentHashHeader { all.append(("x-amz-content-sha256", payloadHash)) }
        if let sessionToken { all.append(("x-amz-security-token", sessionToken)) }
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(all)
        let query = Self.queryItems(url)
        let request = [method.uppercased(), Self.canonicalPath(url), Self.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let signature = self.signature(request: request, amzDate: amzDate, day: day, scope: scope)
        all.append(("authorization", "AWS4-HMAC-SHA256 Credential=\(accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return all
    }

    /// A URL anyone can `method` for `expires` seconds (at most 7 days), signed in its query.
    public func presign(method: String = "GET", url: URL, expires: Int, date: Date = Date()) -> URL {
        let (amzDate, day) = Self.stamps(date)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        var query = Self.queryItems(url)
        query += [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", "\(accessKey)/\(scope)"),
                  ("X-Amz-Date", amzDate), ("X-Amz-Expires", String(min(max(expires, 1), 604_800))), ("X-Amz-SignedHeaders", "host")]
        if let sessionToken { query.append(("X-Amz-Security-Token", sessionToken)) }
        let canonical = Self.canonicalQuery(query)
        let request = [method.uppercased(), Self.canonicalPath(url), canonical, "host:\(Self.host(url))\n", "host", Self.unsignedPayload]
            .joined(separator: "\n")
        let signature = self.signature(request: request, amzDate: amzDate, day: day, scope: scope)
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.percentEncodedQuery = canonical + "&X-Amz-Signature=\(signature)"
        return components.url!
    }

    // MARK: - The steps of the algorithm

    func signature(request: String, amzDate: String, day: String, scope: String) -> String {
        let hashed = Self.hex(SHA256.hash(data: Data(request.utf8)))
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(hashed)"
        var key = SymmetricKey(data: Data("AWS4\(secretKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
    }

    static func stamps(_ date: Date) -> (amzDate: String, day: String) {
        let c = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        let day = String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
        return (day + String(format: "T%02d%02d%02dZ", c.hour!, c.minute!, c.second!), day)
    }

    /// `host` or `host:port` when the port is not the scheme's default.
    static func host(_ url: URL) -> String {
        let host = url.host ?? ""
        guard let port = url.port else { return host }
        let standard = (url.scheme == "https" && port == 443) || (url.scheme == "http" && port == 80)
        return standard ? host : "\(host):\(port)"
    }

    /// Each segment of the path decoded, then encoded the SigV4 way ('/' kept between them).
    static func canonicalPath(_ url: URL) -> String {
        let path = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? "/"
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { encode(String($0).removingPercentEncoding ?? String($0)) }
            .joined(separator: "/")
    }

    /// The query's (name, value) pairs, decoded.
    static func queryItems(_ url: URL) -> [(String, String)] {
        guard let query = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedQuery, !query.isEmpty else { return [] }
        return query.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// Encoded pairs sorted by name, then value.
    static func canonicalQuery(_ items: [(String, String)]) -> String {
        let encoded: [(name: String, value: String)] = items.map { (encode($0.0), encode($0.1)) }
        let sorted = encoded.sorted { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    /// Lower-case names sorted, values trimmed with inner runs of spaces collapsed, repeated
    /// names joined by commas; and the `;`-joined names.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (String, String) {
        var byName: [String: [String]] = [:]
        for (name, value) in headers {
            let collapsed = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            byName[name.lowercased(), default: []].append(collapsed.trimmingCharacters(in: .whitespaces))
        }
        let names = byName.keys.sorted()
        return (names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined(), names.joined(separator: ";"))
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters, upper-case hex.
    public static func encode(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            if unreserved.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    private static let unreserved: Set<UInt8> = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
