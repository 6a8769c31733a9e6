import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import StemifyServer
import StemifyCore
import Testing

extension HTTPField.Name {
    fileprivate static let origin = Self("Origin")!
    fileprivate static let accessControlRequestMethod = Self("Access-Control-Request-Method")!
    fileprivate static let accessControlAllowOrigin = Self("Access-Control-Allow-Origin")!
    fileprivate static let accessControlAllowMethods = Self("Access-Control-Allow-Methods")!
    fileprivate static let accessControlAllowHeaders = Self("Access-Control-Allow-Headers")!
    fileprivate static let accessControlExposeHeaders = Self("Access-Control-Expose-Headers")!
    fileprivate static let xContentTypeOptions = Self("X-Content-Type-Options")!
    fileprivate static let contentSecurityPolicy = Self("Content-Security-Policy")!
    fileprivate static let referrerPolicy = Self("Referrer-Policy")!
}

@Suite("the web's conventions: HEAD, CORS, conditionals, security headers")
struct WebConventionsTests {
    @Test("HEAD answers every GET route with its headers and no body")
    func headEverywhere() async throws {
        try await withServer(testConfiguration()) { client in
            for path in ["/", "/healthz", "/api/models", "/api/limits", "/openapi.yaml", "/app.js", "/lib/client.js"] {
                let get = try await client.execute(uri: path, method: .get)
                let head = try await client.execute(uri: path, method: .head)
                #expect(head.status == get.status && get.status == .ok, "\(path)")
                #expect(head.body.readableBytes == 0, "\(path)")
                #expect(head.headers[.contentType] == get.headers[.contentType], "\(path)")
                #expect(head.headers[.contentLength] == "\(get.body.readableBytes)", "\(path): \(head.headers[.contentLength] ?? "-")")
            }
            // An unknown job: the same 404 as GET, without the body.
            let missing = try await client.execute(uri: "/api/jobs/nope", method: .head)
            #expect(missing.status == .notFound && missing.body.readableBytes == 0)
        }
    }

    @Test("CORS: a listed origin gets preflights answered and the headers a page may read; others get none")
    func cors() async throws {
        let origin = "https://app.example.com"
        try await withServer(testConfiguration { $0.corsOrigins = [origin] }) { client in
            let preflight = try await client.execute(uri: "/api/stemify", method: .options, headers: [
                .origin: origin, .accessControlRequestMethod: "POST", HTTPField.Name("Access-Control-Request-Headers")!: "authorization, idempotency-key",
            ])
            #expect(preflight.status == .noContent)
            #expect(preflight.headers[.accessControlAllowOrigin] == origin)
            #expect(preflight.headers[.accessControlAllowMethods] == "POST")
            let allowedHeaders = preflight.headers[.accessControlAllowHeaders]?.lowercased() ?? ""
            #expect(allowedHeaders.contains("authorization") && allowedHeaders.contains("idempotency-key"))
            #expect(preflight.headers[.vary]?.contains("Origin") == true)

            // A method the path does not take, and an origin not listed: no permission.
            let wrongMethod = try await client.execute(uri: "/api/stemify", method: .options, headers: [.origin: origin, .accessControlRequestMethod: "PUT"])
            #expect(wrongMethod.headers[.accessControlAllowOrigin] == nil)
            let stranger = try await client.execute(uri: "/api/stemify", method: .options, headers: [.origin: "https://evil.example", .accessControlRequestMethod: "POST"])
            #expect(stranger.headers[.accessControlAllowOrigin] == nil)

            // Actual requests, errors included, carry the origin and what may be read.
            let models = try await client.execute(uri: "/api/models", method: .get, headers: [.origin: origin])
            #expect(models.headers[.accessControlAllowOrigin] == origin)
            #expect(models.headers[.accessControlExposeHeaders]?.contains("Location") == true)
            let missing = try await client.execute(uri: "/api/jobs/nope", method: .get, headers: [.origin: origin])
            #expect(missing.status == .notFound && missing.headers[.accessControlAllowOrigin] == origin)
            #expect(try await client.execute(uri: "/api/models", method: .get, headers: [.origin: "https://evil.example"])
                .headers[.accessControlAllowOrigin] == nil)

            // tus's own OPTIONS (no preflight header) still answers the protocol's capabilities.
            let tus = try await client.execute(uri: "/api/uploads", method: .options, headers: [.origin: origin])
            #expect(tus.headers[HTTPField.Name("Tus-Version")!] == "1.0.0" && tus.headers[.accessControlAllowOrigin] == origin)
        }
        try await withServer(testConfiguration { $0.corsOrigins = ["*"] }) { client in
            let any = try await client.execute(uri: "/api/limits", method: .get, headers: [.origin: "https://anywhere.example"])
            #expect(any.headers[.accessControlAllowOrigin] == "*")
        }
        // Without the setting, no origin is allowed.
        try await withServer(testConfiguration()) { client in
            let response = try await client.execute(uri: "/api/limits", method: .get, headers: [.origin: origin])
            #expect(response.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test("cors_origins takes origins or *, nothing else", arguments: ["https://a.example/path", "ftp://a.example", "a.example", "https://a.example?x=1"])
    func corsSetting(_ bad: String) throws {
        #expect(throws: ConfigurationError.self) { try StemifyConfiguration.load(file: nil, environment: ["STEMIFY_CORS_ORIGINS": bad]) }
        let good = try StemifyConfiguration.load(file: nil, environment: ["STEMIFY_CORS_ORIGINS": "https://a.example, http://localhost:3000"])
        #expect(good.corsOrigins == ["https://a.example", "http://localhost:3000"])
    }

    @Test("the page: a content security policy, no sniffing, no referrer beyond the origin")
    func pageHeaders() async throws {
        try await withServer(testConfiguration()) { client in
            let page = try await client.execute(uri: "/", method: .get)
            let policy = try #require(page.headers[.contentSecurityPolicy])
            #expect(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"))
            #expect(page.headers[.referrerPolicy] == "same-origin")
            for path in ["/", "/api/models", "/api/jobs/nope"] {
                #expect(try await client.execute(uri: path, method: .get).headers[.xContentTypeOptions] == "nosniff", "\(path)")
            }
        }
    }

    @Test("entity tags compare as RFC 9110 says")
    func entityTags() {
        #expect(EntityTags.noneMatchFails("W/\"a\"", etag: "\"a\""))
        #expect(EntityTags.noneMatchFails("\"b\", W/\"a\"", etag: "\"a\""))
        #expect(EntityTags.noneMatchFails("*", etag: "\"a\""))
        #expect(!EntityTags.noneMatchFails("\"b\"", etag: "\"a\""))
        #expect(!EntityTags.noneMatchFails("\"ab\"", etag: "\"a\""))
        #expect(EntityTags.rangeApplies(ifRange: nil, etag: "\"a\""))
        #expect(EntityTags.rangeApplies(ifRange: "\"a\"", etag: "\"a\""))
        #expect(!EntityTags.rangeApplies(ifRange: "W/\"a\"", etag: "\"a\""))
        #expect(!EntityTags.rangeApplies(ifRange: "\"a\"", etag: "W/\"a\""))
        #expect(!EntityTags.rangeApplies(ifRange: "Tue, 01 Dec 2026 00:00:00 GMT", etag: "\"a\""))
        #expect(!EntityTags.rangeApplies(ifRange: "\"a\"", etag: nil))
    }
}
