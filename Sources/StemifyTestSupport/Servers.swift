import Foundation

/// A test helper run as `python3 -c SCRIPT ARGS…` (local stand-ins for YouTube and the model
/// download sites). The script binds 127.0.0.1 port 0 and prints the port the kernel gave it:
/// a port picked by the test could already belong to another suite's server running in
/// parallel, and a probe would then wrongly find it "listening".
public final class LocalPythonServer: @unchecked Sendable {
    public let port: Int
    private let process = Process()

    /// `script` must bind before printing, e.g.
    /// `s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H); print(s.server_address[1], flush=True)`.
    public init(script: String, arguments: [String]) throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardOutput = output
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let text = String(data: line, encoding: .utf8)?.split(separator: "\n").first,
            let port = Int(text.trimmingCharacters(in: .whitespaces))
        else {
            process.terminate()
            throw LocalServerError.noPort(String(decoding: line, as: UTF8.self))
        }
        self.port = port
    }

    public func stop() {
        // SIGKILL: a server started by the service under test may leave SIGTERM ignored.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// A plain file server over `directory` (no request log).
    public static func files(in directory: URL) throws -> LocalPythonServer {
        try LocalPythonServer(
            script: """
                import http.server, os, sys
                class H(http.server.SimpleHTTPRequestHandler):
                    def log_message(self, *a): pass
                os.chdir(sys.argv[1])
                s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
                print(s.server_address[1], flush=True)
                s.serve_forever()
                """,
            arguments: [directory.path])
    }
}

public enum LocalServerError: Error, CustomStringConvertible {
    case noPort(String)
    public var description: String {
        switch self { case .noPort(let printed): "the local test server printed no port: \(printed.prefix(200))" }
    }
}
