import StemifyEngine
import StemifyTestSupport
import Testing

/// The checkpoint fuzz target's seeds and every input it once crashed on (scripts/fuzz.sh):
/// each must load or throw, never trap.
@Suite("checkpoint fuzz regressions")
struct CheckpointFuzzRegressionTests {
    @Test("seeds and past crashes load or throw")
    func replay() {
        let inputs = fuzzInputs("checkpoint")
        #expect(inputs.count >= 5)
        for (_, bytes) in inputs {
            if let package = try? ModelPackage.load(bytes: bytes) { _ = try? loadModel(package) }
        }
    }
}
