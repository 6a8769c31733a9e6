import Foundation
import StemifyCore
import Testing

/// AWS's published Signature Version 4 vectors: the generic test suite (credentials
/// AKIDEXAMPLE, 2015-08-30T12:36:00Z, us-east-1, service "service") and the S3 documentation's
/// worked examples (examplebucket, 2013-05-24). The expected signatures are AWS's, not ours.
@Suite("AWS Signature V4")
struct SigV4Tests {
    static let suite = SigV4(accessKey: "AKIDEXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region: "us-east-1", service: "service")
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z
    static let s3 = SigV4(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1")
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z

    func authorization(_ headers: [(String, String)]) -> String? { headers.first { $0.0 == "authorization" }?.1 }

    @Test("the test suite's requests", arguments: [
        ("get-vanilla", "GET", "https://example.amazonaws.com/", [], "host;x-amz-date",
         "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("post-vanilla", "POST", "https://example.amazonaws.com/", [], "host;x-amz-date",
         "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        ("get-vanilla-query-order-key-case", "GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", [], "host;x-amz-date",
         "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("post-header-value-case", "POST", "https://example.amazonaws.com/", [("My-Header1", "VALUE1")], "host;my-header1;x-amz-date",
         "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
    ] as [(String, String, String, [(String, String)], String, String)])
    func suite(_ name: String, method: String, url: String, headers: [(String, String)], signed: String, signature: String) throws {
        let out = Self.suite.sign(method: method, url: try #require(URL(string: url)), headers: headers, date: Self.suiteDate,
                                  contentHashHeader: false)
        #expect(authorization(out) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=\(signed), Signature=\(signature)", "\(name)")
        #expect(out.contains { $0 == ("x-amz-date", "20150830T123600Z") })
    }

    @Test("S3's GET Object example (a Range header, the payload hash sent)")
    func s3Get() throws {
        let out = Self.s3.sign(method: "GET", url: try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt")),
                               headers: [("Range", "bytes=0-9")], date: Self.s3Date)
        #expect(authorization(out) == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test("S3's presigned URL example (GET, one day)")
    func s3Presign() throws {
        let url = Self.s3.presign(url: try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt")), expires: 86400, date: Self.s3Date)
        let query = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems)
        #expect(query.first { $0.name == "X-Amz-Signature" }?.value == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        #expect(query.first { $0.name == "X-Amz-Credential" }?.value == "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request")
    }

    @Test("a changed byte anywhere changes the signature")
    func sensitivity() throws {
        let url = try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txt"))
        let base = authorization(Self.s3.sign(method: "GET", url: url, date: Self.s3Date))
        var other = Self.s3
        other.secretKey += "x"
        #expect(authorization(other.sign(method: "GET", url: url, date: Self.s3Date)) != base)
        #expect(authorization(Self.s3.sign(method: "PUT", url: url, date: Self.s3Date)) != base)
        #expect(authorization(Self.s3.sign(method: "GET", url: try #require(URL(string: "https://examplebucket.s3.amazonaws.com/test.txu")),
                                           date: Self.s3Date)) != base)
        #expect(authorization(Self.s3.sign(method: "GET", url: url, date: Self.s3Date + 1)) != base)
    }

    @Test("path segments and query values are encoded once, RFC 3986 style")
    func encoding() throws {
        let url = try #require(URL(string: "http://127.0.0.1:9000/bucket/stems/a%20b/vocals+1.mp3?prefix=a/b&x=%7E"))
        let out = Self.s3.sign(method: "GET", url: url, date: Self.s3Date)
        #expect(out.contains { $0 == ("host", "127.0.0.1:9000") })
        #expect(SigV4.encode("a b/+~é") == "a%20b%2F%2B~%C3%A9")
    }
}
