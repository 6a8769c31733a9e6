import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import StemifyCore
import StemifyTestSupport
import Testing

@Suite("S3 locations and XML")
struct S3LocationTests {
    @Test("custom endpoints are path-style, AWS is virtual-hosted; keys are encoded once")
    func urls() throws {
        let custom = try S3Location(url: "s3://my-bucket/some/prefix", endpoint: "http://127.0.0.1:9000", region: "eu-west-1")
        #expect(custom.prefix == "some/prefix/")
        #expect(custom.url("some/prefix/a b+c.wav").absoluteString == "http://127.0.0.1:9000/my-bucket/some/prefix/a%20b%2Bc.wav")
        let aws = try S3Location(url: "s3://my-bucket", endpoint: nil, region: "eu-west-1")
        #expect(aws.prefix == "")
        #expect(aws.url("stems/x.wav", query: [("uploadId", "a/b")]).absoluteString
            == "https://my-bucket.s3.eu-west-1.amazonaws.com/stems/x.wav?uploadId=a%2Fb")
    }

    @Test("bad storage URLs and endpoints are refused with the key at fault", arguments: [
        ("http://bucket/x", nil, "storage_url"), ("s3://", nil, "storage_url"), ("s3://ab", nil, "storage_url"),
        ("s3://Upper/x", nil, "storage_url"), ("s3://-dash/x", nil, "storage_url"), ("s3://under_score", nil, "storage_url"),
        ("s3://good-bucket", "ftp://host", "storage_endpoint"), ("s3://good-bucket", "not a url", "storage_endpoint"),
    ] as [(String, String?, String)])
    func refused(_ url: String, _ endpoint: String?, _ key: String) {
        #expect(throws: ConfigurationError.self) { try S3Location(url: url, endpoint: endpoint, region: "us-east-1") }
        do { _ = try S3Location(url: url, endpoint: endpoint, region: "us-east-1") } catch { #expect(error.key == key) }
    }

    @Test("XML values: entities decoded, anything unexpected left out")
    func xml() {
        let text = "<R><Key>a&amp;b</Key><Key>&#x41;&#66;&lt;&gt;&quot;&apos;</Key><Key>bad&nope;</Key><Key><b/></Key><Key>open"
        #expect(S3XML.values("Key", in: text) == ["a&b", "AB<>\"'"])
        #expect(S3XML.value("UploadId", in: "<X><UploadId>abc</UploadId></X>") == "abc")
        #expect(S3XML.value("Missing", in: text) == nil)
        #expect(S3XML.decodeEntities("&#x110000;") == nil)
        #expect(S3XML.decodeEntities("&#99999999999;") == nil)
        #expect(S3XML.decodeEntities("tail &") == nil)
    }
}

/// Against the real S3-compatible server `scripts/s3.sh` starts (moto).
@Suite("S3 client and object storage")
struct ObjectStorageTests {
    static func client(partSize: Int = 5 << 20) async throws -> S3Client {
        let (endpoint, url) = try freshBucket()
        let location = try S3Location(url: url, endpoint: endpoint, region: "us-east-1")
        let client = S3Client(location: location, signer: SigV4(accessKey: "test", secretKey: "test", region: "us-east-1"),
                              partSize: partSize)
        try await client.prepareBucket()
        return client
    }

    static func randomFile(bytes: Int) throws -> URL {
        var generator = SystemRandomNumberGenerator()
        let data = Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-s3-\(UUID().uuidString)")
        try data.write(to: url)
        return url
    }

    @Test("single and multipart uploads come back byte for byte; list, copy, delete", arguments: [1, 5 << 20, (12 << 20) + 3])
    func roundTrip(_ bytes: Int) async throws {
        let client = try await Self.client()
        let file = try Self.randomFile(bytes: bytes)
        let back = file.appendingPathExtension("back")
        defer { for f in [file, back] { try? FileManager.default.removeItem(at: f) } }
        let key = client.key("stems/job/vocals.wav")
        try await client.upload(file, to: key, headers: [("content-type", "audio/wav")])
        #expect(try await client.download(key, to: back))
        #expect(try Data(contentsOf: back) == Data(contentsOf: file))
        try await client.copy(key, to: client.key("stems/other/vocals.wav"))
        #expect(try await client.list(client.key("stems/")).sorted() == [client.key("stems/job/vocals.wav"), client.key("stems/other/vocals.wav")])
        try await client.delete(key)
        #expect(try await !client.exists(key))
        #expect(try await client.exists(client.key("stems/other/vocals.wav")))
        #expect(try await !client.download(key, to: back))
    }

    @Test("Range and If-None-Match reach the store; a presigned URL serves the stem with its headers")
    func rangeAndPresigned() async throws {
        let client = try await Self.client()
        let file = try Self.randomFile(bytes: 1000)
        defer { try? FileManager.default.removeItem(at: file) }
        let storage = ObjectStorage(client: client, scratch: FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID())"))
        let named = file.deletingLastPathComponent().appendingPathComponent("bass.mp3")
        try FileManager.default.copyItem(at: file, to: named)
        let location = try #require(try await storage.keepStems([named], job: "j1").first)
        #expect(!FileManager.default.fileExists(atPath: named.path), "the local copy is gone once kept")
        let key = try #require(storage.key(location))
        let bytes = try Data(contentsOf: file)

        let part = try await client.get(key, headers: [("range", "bytes=10-19")])
        #expect(part.status.code == 206)
        #expect(Data(buffer: try await part.body.collect(upTo: 100)) == bytes[10...19])
        let etag = try #require(part.headers.first(name: "etag"))
        #expect(try await client.get(key, headers: [("if-none-match", etag)]).status.code == 304)

        let url = try #require(storage.directURL(location))
        let direct = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        #expect(direct.status.code == 200)
        #expect(direct.headers.first(name: "content-type") == "audio/mpeg")
        #expect(direct.headers.first(name: "content-disposition") == "attachment; filename=\"bass.mp3\"")
        #expect(direct.headers.first(name: "cache-control")?.contains("immutable") == true)
        #expect(Data(buffer: try await direct.body.collect(upTo: 2000)) == bytes)

        let cdn = ObjectStorage(client: client, scratch: storage.workDirectory(""), publicBaseURL: "https://cdn.example.com/")
        #expect(cdn.directURL(location) == "https://cdn.example.com/\(key)")
        #expect(cdn.directURL("/a/local/path.wav") == nil)
    }

    /// A checkpoint as the separator leaves it: `checkpoint.bin` plus partial stems at least as long.
    static func writeCheckpoint(_ storage: ObjectStorage, job: String, state: String, partials: [String: Data]) throws {
        let stems = storage.stemsDirectory(job)
        try FileManager.default.createDirectory(at: stems, withIntermediateDirectories: true)
        for (name, data) in partials { try data.write(to: stems.appendingPathComponent(name)) }
        try Data(state.utf8).write(to: storage.checkpointPath(job))
    }

    @Test("a checkpoint saved in pieces is restored whole by another machine; what the bucket lacks starts over")
    func checkpoints() async throws {
        let client = try await Self.client()
        let scratch = { FileManager.default.temporaryDirectory.appendingPathComponent("stemify-\(UUID())") }
        let (first, second) = (ObjectStorage(client: client, scratch: scratch()), ObjectStorage(client: client, scratch: scratch()))
        let drums = try Data(contentsOf: Self.randomFile(bytes: 7 << 20)), bass = Data(repeating: 7, count: 1000)
        try Self.writeCheckpoint(first, job: "j", state: "one", partials: [".drums.partial.f32": drums.prefix(3 << 20), ".bass.partial.f32": bass.prefix(10)])
        try await first.saveCheckpoint(job: "j")
        // The same checkpoint again uploads nothing new; a later one only what the stems gained.
        try await first.saveCheckpoint(job: "j")
        try await Task.sleep(for: .milliseconds(20))
        try Self.writeCheckpoint(first, job: "j", state: "two", partials: [".drums.partial.f32": drums, ".bass.partial.f32": bass])
        try await first.saveCheckpoint(job: "j")
        let parts = try await client.list(client.key("work/j/part/")).sorted()
        #expect(parts.count == 4, "\(parts)")
        #expect(parts.contains(client.key("work/j/part/.drums.partial.f32/0000000000000000")))
        #expect(parts.contains(client.key("work/j/part/.drums.partial.f32/\(ObjectStorage.offsetName(3 << 20))")))

        try await second.restoreCheckpoint(job: "j")
        #expect(try String(contentsOf: second.checkpointPath("j"), encoding: .utf8) == "two")
        #expect(try Data(contentsOf: second.stemsDirectory("j").appendingPathComponent(".drums.partial.f32")) == drums)
        #expect(try Data(contentsOf: second.stemsDirectory("j").appendingPathComponent(".bass.partial.f32")) == bass)

        // A lost piece in the middle: the restore leaves no checkpoint, so the run starts over.
        try await client.delete(client.key("work/j/part/.bass.partial.f32/0000000000000000"))
        try await second.restoreCheckpoint(job: "j")
        #expect(!FileManager.default.fileExists(atPath: second.checkpointPath("j").path))

        // Finished or failed: the work is gone from both the machine and the bucket.
        await second.removeWork("j")
        #expect(try await client.list(client.key("work/j/")).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: second.workDirectory("j").path))
    }

    @Test("an unreachable store fails after the retries with a message that names the operation")
    func unreachable() async throws {
        let location = try S3Location(url: "s3://nowhere/x", endpoint: "http://127.0.0.1:9", region: "us-east-1")
        let client = S3Client(location: location, signer: SigV4(accessKey: "a", secretKey: "b", region: "us-east-1"), retryDelays: [0.01, 0.01])
        do {
            _ = try await client.exists(client.key("a"))
            Issue.record("a request to a closed port succeeded")
        } catch let error as S3Error {
            #expect(error.description == "S3 HeadObject failed (unreachable)")
        }
    }
}
