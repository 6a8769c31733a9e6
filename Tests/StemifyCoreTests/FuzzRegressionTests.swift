import Foundation
import StemifyCore
import StemifyTestSupport
import Testing

/// The WAV fuzz target's seeds and every input it once crashed on (scripts/fuzz.sh).
@Suite("WAV fuzz regressions")
struct WAVFuzzRegressionTests {
    @Test("seeds read completely; past crashes read or throw")
    func replay() throws {
        let inputs = fuzzInputs("wav")
        #expect(inputs.count >= 6)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-wav-\(UUID().uuidString).wav").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        for (name, bytes) in inputs {
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            guard let source = try? WAVFileSource(path: path) else {
                #expect(!name.hasPrefix("corpus/"), "seed \(name) does not read")
                continue
            }
            _ = try? source.read(from: 0, count: min(source.frameCount, 1 << 16))
        }
    }
}
