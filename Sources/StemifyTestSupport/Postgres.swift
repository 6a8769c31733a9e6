import Foundation

/// Why the test database could not be made.
public struct TestDatabaseError: Error, CustomStringConvertible {
    public let description: String
}

/// A new, empty database on the test server (`scripts/postgres.sh`, whose URL
/// `scripts/test.sh` exports as `STEMIFY_TEST_POSTGRES_URL`).
public func freshPostgresDatabase() throws -> String {
    guard let admin = ProcessInfo.processInfo.environment["STEMIFY_TEST_POSTGRES_URL"] else {
        throw TestDatabaseError(description: "STEMIFY_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh")
    }
    let name = "stemify_test_\(UUID().uuidString.prefix(8).lowercased())"
    let psql = Process()
    psql.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    psql.arguments = ["psql", admin, "-q", "-c", "CREATE DATABASE \(name)"]
    try psql.run()
    psql.waitUntilExit()
    guard psql.terminationStatus == 0 else { throw TestDatabaseError(description: "cannot create a database on \(admin)") }
    return admin.replacingOccurrences(of: #"/[^/]*$"#, with: "/\(name)", options: .regularExpression)
}
