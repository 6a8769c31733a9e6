import Foundation

/// Waits (up to ~5 s) until something accepts TCP connections on 127.0.0.1:`port`; for test
/// helpers started as subprocesses (local stand-ins for YouTube and the model download sites).
public func waitUntilListening(port: Int) throws {
    for _ in 0..<50 {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', \(port)), 0.2)"]
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        if probe.terminationStatus == 0 { return }
        Thread.sleep(forTimeInterval: 0.1)
    }
}
