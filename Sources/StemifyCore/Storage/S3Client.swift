import AsyncHTTPClient
import Crypto
public import Foundation
public import NIOCore
import NIOFoundationCompat
public import NIOHTTP1

/// Where job files go in an S3-compatible store: `s3://bucket/prefix`, the endpoint (AWS by
/// region, or a custom one such as MinIO, R2 or moto, addressed path-style) and the region.
public struct S3Location: Sendable, Equatable {
    public var bucket: String
    /// Empty, or ending in `/`.
    public var prefix: String
    /// The custom endpoint; nil for AWS (virtual-hosted `bucket.s3.REGION.amazonaws.com`).
    public var endpoint: URL?
    public var region: String

    /// - Throws: a message for `storage_url` or `storage_endpoint` when they cannot be used.
    public init(url: String, endpoint: String?, region: String) throws(ConfigurationError) {
        guard url.hasPrefix("s3://") else { throw ConfigurationError(key: "storage_url", message: "must be s3://bucket/prefix") }
        let path = url.dropFirst("s3://".count)
        let bucket = path.prefix { $0 != "/" }
        // S3's bucket naming rules, so a typo fails at start-up rather than at the first upload.
        guard (3...63).contains(bucket.count),
              bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }),
              bucket.first?.isLetter == true || bucket.first?.isNumber == true
        else { throw ConfigurationError(key: "storage_url", message: "'\(bucket)' is not a valid bucket name") }
        self.bucket = String(bucket)
        let prefix = path.dropFirst(bucket.count).drop { $0 == "/" }
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? String(prefix) : "\(prefix)/"
        if let endpoint, !endpoint.isEmpty {
            guard let e = URL(string: endpoint), ["http", "https"].contains(e.scheme ?? ""), e.host != nil else {
                throw ConfigurationError(key: "storage_endpoint", message: "must be an http:// or https:// URL")
            }
            self.endpoint = e
        }
        self.region = region
    }

    /// `key` as a URL path: each segment percent-encoded once, as SigV4 signs it.
    static func encodedPath(_ key: String) -> String {
        key.split(separator: "/", omittingEmptySubsequences: false).map { SigV4.encode(String($0)) }.joined(separator: "/")
    }

    /// The URL of `key` (which is under the prefix already), path-style on custom endpoints.
    package func url(_ key: String, query: [(String, String)] = []) -> URL {
        let path = Self.encodedPath(key)
        var components: URLComponents
        if let endpoint {
            components = URLComponents(url: endpoint, resolvingAgainstBaseURL: false)!
            let base = components.percentEncodedPath.hasSuffix("/") ? String(components.percentEncodedPath.dropLast()) : components.percentEncodedPath
            components.percentEncodedPath = "\(base)/\(bucket)" + (key.isEmpty ? "" : "/\(path)")
        } else {
            components = URLComponents()
            components.scheme = "https"
            components.host = "\(bucket).s3.\(region).amazonaws.com"
            components.percentEncodedPath = "/\(path)"
        }
        if !query.isEmpty {
            components.percentEncodedQuery = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        }
        return components.url!
    }
}

/// A failed request to the object store; the message names the operation and S3's error code,
/// never credentials.
public struct S3Error: Error, CustomStringConvertible {
    public var operation: String
    public var status: Int?
    public var code: String?
    public var description: String {
        "S3 \(operation) failed" + (status.map { " (HTTP \($0)\(code.map { ", \($0)" } ?? ""))" } ?? " (unreachable)")
    }
}

/// The S3 operations Stemify needs, signed with ``SigV4`` and sent with async-http-client.
///
/// Requests that fail to connect or get a 5xx (or 429) are retried with backoff for about 30 s,
/// so a store that is briefly unreachable (a restart, a failover) costs time, not jobs. Bodies
/// are sent from memory: single PUTs up to ``partSize``, multipart uploads in parts of that
/// size beyond it, so memory stays bounded whatever the file size.
public struct S3Client: Sendable {
    public let location: S3Location
    let signer: SigV4
    let http: HTTPClient
    /// The part size of multipart uploads and the largest single PUT (S3's minimum part is 5 MiB).
    public var partSize: Int
    /// Delays between attempts of a failing request (about 30 s in all by default).
    public var retryDelays: [Double]

    /// One client for the process (it is never shut down): a refused or silent connection
    /// fails within seconds, so the retries below decide how long an outage is waited out.
    public static let sharedHTTP = HTTPClient(
        eventLoopGroup: HTTPClient.defaultEventLoopGroup,
        configuration: .init(timeout: .init(connect: .seconds(5), read: .seconds(60))))

    public init(location: S3Location, signer: SigV4, partSize: Int = 16 << 20, retryDelays: [Double] = [0.25, 0.5, 1, 2, 4, 8, 15],
                http: HTTPClient = S3Client.sharedHTTP) {
        self.location = location
        self.signer = signer
        self.partSize = max(partSize, 5 << 20)
        self.retryDelays = retryDelays
        self.http = http
    }

    /// The full key of `name` under the prefix.
    public func key(_ name: String) -> String { location.prefix + name }

    // MARK: - Requests

    /// Sends one signed request, retrying transient failures; returns the response with its
    /// body unread. `accept` lists the statuses that are answers rather than failures.
    func send(_ operation: String, _ method: HTTPMethod, key: String, query: [(String, String)] = [],
              headers: [(String, String)] = [], body: ByteBuffer? = nil, accept: Set<Int> = [200],
              retrying: Bool = true) async throws -> HTTPClientResponse {
        let url = location.url(key, query: query)
        var attempt = 0
        while true {
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = method
            let hash = body.map { SigV4.hex(SHA256.hash(data: $0.readableBytesView)) } ?? SigV4.emptyPayloadHash
            for (name, value) in signer.sign(method: method.rawValue, url: url, headers: headers, payloadHash: hash) {
                request.headers.add(name: name, value: value)
            }
            if let body { request.body = .bytes(body) }
            var failure: S3Error
            do {
                // The deadline covers the response head; bodies stream under the read timeout.
                let response = try await http.execute(request, timeout: .seconds(30))
                let status = Int(response.status.code)
                if accept.contains(status) { return response }
                let text = String(buffer: (try? await response.body.collect(upTo: 64 * 1024)) ?? ByteBuffer())
                failure = S3Error(operation: operation, status: status, code: S3XML.value("Code", in: text))
                guard status >= 500 || status == 429 else { throw failure }
            } catch let error as S3Error {
                throw error
            } catch {
                failure = S3Error(operation: operation, status: nil, code: nil)
            }
            guard retrying, attempt < retryDelays.count else { throw failure }
            try await Task.sleep(for: .seconds(retryDelays[attempt]))
            attempt += 1
        }
    }

    /// Checks that the bucket answers with these credentials, creating it when it does not
    /// exist yet (a first start against an empty MinIO or moto). No retries: a process with a
    /// wrong setting should stop at once and say so.
    public func prepareBucket() async throws {
        if try await send("HeadBucket", .HEAD, key: "", accept: [200, 404], retrying: false).status == .notFound {
            _ = try await send("CreateBucket", .PUT, key: "", accept: [200, 409], retrying: false)
        }
    }

    /// Stores `body` at `key` with the given headers (Content-Type and the like).
    public func put(_ key: String, _ body: ByteBuffer, headers: [(String, String)] = []) async throws {
        _ = try await send("PutObject", .PUT, key: key, headers: headers, body: body)
    }

    /// Stores a file: one PUT up to ``partSize``, a multipart upload beyond.
    public func upload(_ file: URL, to key: String, headers: [(String, String)] = []) async throws {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        let size = Int(try handle.seekToEnd())
        try handle.seek(toOffset: 0)
        if size <= partSize {
            try await put(key, ByteBuffer(data: try handle.readToEnd() ?? Data()), headers: headers)
            return
        }
        let created = try await send("CreateMultipartUpload", .POST, key: key, query: [("uploads", "")], headers: headers)
        let text = String(buffer: try await created.body.collect(upTo: 64 * 1024))
        guard let uploadID = S3XML.value("UploadId", in: text) else { throw S3Error(operation: "CreateMultipartUpload", status: 200, code: "NoUploadId") }
        do {
            var etags: [String] = []
            while let data = try handle.read(upToCount: partSize), !data.isEmpty {
                let query = [("partNumber", String(etags.count + 1)), ("uploadId", uploadID)]
                let part = try await send("UploadPart", .PUT, key: key, query: query, body: ByteBuffer(data: data))
                guard let etag = part.headers.first(name: "etag") else { throw S3Error(operation: "UploadPart", status: 200, code: "NoETag") }
                etags.append(etag)
            }
            let parts = etags.enumerated().map { "<Part><PartNumber>\($0.offset + 1)</PartNumber><ETag>\(escape($0.element))</ETag></Part>" }
            let body = ByteBuffer(string: "<CompleteMultipartUpload>\(parts.joined())</CompleteMultipartUpload>")
            let done = try await send("CompleteMultipartUpload", .POST, key: key, query: [("uploadId", uploadID)], body: body)
            // S3 can answer 200 and still fail the completion in the body.
            let answer = String(buffer: try await done.body.collect(upTo: 64 * 1024))
            if let code = S3XML.value("Code", in: answer) { throw S3Error(operation: "CompleteMultipartUpload", status: 200, code: code) }
        } catch {
            _ = try? await send("AbortMultipartUpload", .DELETE, key: key, query: [("uploadId", uploadID)], accept: [204, 200, 404])
            throw error
        }
    }

    /// Writes the object at `key` to `file`; false when there is no such object.
    @discardableResult
    public func download(_ key: String, to file: URL) async throws -> Bool {
        let response = try await send("GetObject", .GET, key: key, accept: [200, 404])
        if response.status == .notFound { return false }
        guard FileManager.default.createFile(atPath: file.path, contents: nil), let handle = FileHandle(forWritingAtPath: file.path) else {
            throw S3Error(operation: "GetObject", status: nil, code: "LocalWriteFailed")
        }
        defer { try? handle.close() }
        for try await buffer in response.body { try handle.write(contentsOf: buffer.readableBytesView) }
        return true
    }

    /// The object at `key` with its body unread, for streaming on (the API proxies stems this
    /// way): `headers` carries Range and If-None-Match; 206, 304, 404 and 416 are answers too.
    public func get(_ key: String, headers: [(String, String)] = [], method: HTTPMethod = .GET) async throws -> HTTPClientResponse {
        try await send("GetObject", method, key: key, headers: headers, accept: [200, 206, 304, 404, 416])
    }

    /// Whether `key` exists.
    public func exists(_ key: String) async throws -> Bool {
        try await send("HeadObject", .HEAD, key: key, accept: [200, 404]).status == .ok
    }

    /// Copies `source` to `key` inside the bucket, metadata included.
    public func copy(_ source: String, to key: String) async throws {
        let copySource = "/\(location.bucket)/" + S3Location.encodedPath(source)
        let response = try await send("CopyObject", .PUT, key: key, headers: [("x-amz-copy-source", copySource)])
        let answer = String(buffer: try await response.body.collect(upTo: 64 * 1024))
        if S3XML.value("Code", in: answer) != nil { throw S3Error(operation: "CopyObject", status: 200, code: S3XML.value("Code", in: answer)) }
    }

    /// Deletes `key`; a missing object is not an error.
    public func delete(_ key: String) async throws {
        _ = try await send("DeleteObject", .DELETE, key: key, accept: [200, 204, 404])
    }

    /// Every key starting with `prefix` (ListObjectsV2, page by page).
    public func list(_ prefix: String) async throws -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try await send("ListObjectsV2", .GET, key: "", query: query)
            let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
            keys += S3XML.values("Key", in: text)
            token = S3XML.value("IsTruncated", in: text) == "true" ? S3XML.value("NextContinuationToken", in: text) : nil
        } while token != nil
        return keys
    }

    /// A URL anyone can GET `key` with for `expires` seconds; `response` query parameters
    /// (`response-content-disposition` and the like) override the stored headers.
    public func presignedURL(_ key: String, expires: Int, response: [(String, String)] = []) -> URL {
        signer.presign(url: location.url(key, query: response), expires: expires)
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
