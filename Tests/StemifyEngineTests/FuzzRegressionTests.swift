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

/// The config target's seeds and past crashes: YAML, NUL, state dict, then the network.
@Suite("config fuzz regressions")
struct ConfigFuzzRegressionTests {
    @Test("seeds and past crashes parse, load and build or throw")
    func replay() throws {
        let inputs = fuzzInputs("config")
        #expect(inputs.count >= 2)
        var built = 0
        for (_, bytes) in inputs {
            let split = bytes.firstIndex(of: 0) ?? bytes.count
            guard let config = try? TrainingConfig(yaml: String(decoding: bytes[..<split], as: UTF8.self)) else { continue }
            let state = split < bytes.count ? (try? ModelPackage.loadStateDict(bytes: Array(bytes[(split + 1)...]))) ?? [:] : [:]
            if let network = try? RoFormer(config: config, state: state) {
                // The seeds are whole models: run one chunk through each.
                let out = network.forward(Tensor(zeros: [2, config.chunkSize]))
                #expect(out.shape[0] == network.stems)
                built += 1
            }
        }
        #expect(built >= 2, "the seeds no longer build a network")
    }
}
