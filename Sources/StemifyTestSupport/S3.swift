import Foundation

/// A bucket of its own on the test S3 server (`scripts/s3.sh`, whose endpoint `scripts/test.sh`
/// exports as `STEMIFY_TEST_S3_URL`): `(endpoint, s3://BUCKET/PREFIX)`. Storage creates the
/// bucket when it opens it; a fresh name keeps tests apart.
public func freshBucket(prefix: String = "jobs") throws -> (endpoint: String, url: String) {
    guard let endpoint = ProcessInfo.processInfo.environment["STEMIFY_TEST_S3_URL"] else {
        throw TestDatabaseError(description: "STEMIFY_TEST_S3_URL is not set: run the tests through scripts/test.sh")
    }
    return (endpoint, "s3://stemify-\(UUID().uuidString.lowercased().prefix(13))/\(prefix)")
}
