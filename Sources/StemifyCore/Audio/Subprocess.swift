import Foundation

/// Runs a program (never through a shell) and collects its output.
enum Subprocess {
    struct Result {
        var status: Int32
        var stdout: Data
        var stderr: Data

        /// The end of stderr, for a log line's detail (never for a client message).
        var stderrText: String {
            String(decoding: stderr.suffix(400), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Runs `executable` (looked up on PATH) with `arguments`, feeding `input` to stdin.
    static func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Result {
        let process = Process()
        process.executableURL = try locate(executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            try inPipe.fileHandleForWriting.write(contentsOf: input)
            try inPipe.fileHandleForWriting.close()
        }
        // Read stderr on another thread so neither pipe fills up and blocks the child.
        let errBox = DataBox()
        let done = DispatchSemaphore(value: 0)
        let errHandle = err.fileHandleForReading
        Thread {
            errBox.data = errHandle.readDataToEndOfFile()
            done.signal()
        }.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        process.waitUntilExit()
        let errData = errBox.data
        return Result(status: process.terminationStatus, stdout: outData, stderr: errData)
    }

    private final class DataBox: @unchecked Sendable {
        var data = Data()
    }

    /// The absolute path of a program on PATH.
    static func locate(_ name: String) throws -> URL {
        if name.hasPrefix("/") { return URL(fileURLWithPath: name) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw MissingProgram(name: name)
    }

    struct MissingProgram: Error, CustomStringConvertible {
        let name: String
        var description: String { "\(name) is not installed (scripts/install-deps.sh installs it)" }
    }
}
