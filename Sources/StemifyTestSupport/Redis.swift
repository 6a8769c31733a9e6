import Foundation

/// Database 1 of the test Redis (`scripts/redis.sh`, whose URL `scripts/test.sh` exports as
/// `STEMIFY_TEST_REDIS_URL`), emptied: the queue keys of a service under test start from none.
/// Tests that use it run one at a time (the HTTP API suite is serialized).
public func freshRedisDatabase() async throws -> String {
    guard let base = ProcessInfo.processInfo.environment["STEMIFY_TEST_REDIS_URL"] else {
        throw TestDatabaseError(description: "STEMIFY_TEST_REDIS_URL is not set: run the tests through scripts/test.sh")
    }
    let url = base.replacingOccurrences(of: #"/[0-9]*$"#, with: "/1", options: .regularExpression)
    let cli = Process()
    cli.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    // redis-cli reads `redis://:password@` as an empty user name: pass the parts instead.
    guard let parts = URLComponents(string: url), let host = parts.host else {
        throw TestDatabaseError(description: "STEMIFY_TEST_REDIS_URL is not a redis:// URL")
    }
    cli.arguments = ["redis-cli", "--no-auth-warning", "-h", host, "-p", String(parts.port ?? 6379), "-n", "1"]
        + (parts.password.map { ["-a", $0] } ?? []) + ["FLUSHDB"]
    let output = Pipe()
    cli.standardOutput = output
    cli.standardError = output
    try cli.run()
    let reply = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    cli.waitUntilExit()
    guard cli.terminationStatus == 0, reply.hasPrefix("OK") else {
        throw TestDatabaseError(description: "cannot empty database 1 of the test Redis: \(reply)")
    }
    return url
}
