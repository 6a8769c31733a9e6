import Foundation
import StemifyCore
import StemifyEngine
import StemifyTestSupport
import Testing

/// BS-RoFormer and Mel-Band RoFormer against `msst` 0.1.0's `demix` on the fixtures of
/// `tools/make_msst_fixtures.py` (reduced width, published band layouts, trained-like weights).
@Suite("RoFormer parity with msst")
struct RoFormerParityTests {
    static let folder = fixturesDirectory().appendingPathComponent("msst")

    static let cases: [ParityCase] = {
        let manifest = try! JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("manifest.json"))) as! [String: Any]
        return (manifest["cases"] as! [[String: Any]]).map { ParityCase(model: $0["model"] as! String, signal: $0["signal"] as! String) }
    }()

    static func model(_ name: String, editing edit: (inout [String: Tensor]) -> Void = { _ in }) throws -> ConfiguredModel {
        let config = try TrainingConfig(yaml: String(contentsOf: folder.appendingPathComponent("\(name).yaml"), encoding: .utf8))
        var state = try ModelPackage.loadStateDict(bytes: [UInt8](Data(contentsOf: folder.appendingPathComponent("\(name).ckpt"))))
        edit(&state)
        switch config.family {
        case .bsRoformer, .melBandRoformer:
            return ConfiguredModel(config: config, network: try RoFormer(config: config, state: state))
        }
    }

    /// The engine on a WAV fixture as the reference reads it (no resampling, channels kept).
    static func separate(_ model: ConfiguredModel, _ signal: String) throws -> Tensor {
        let source = try WAVFileSource(path: audioFixture(signal))
        let s = model.sources.count, c = source.channelCount, length = source.frameCount
        var out = Tensor(zeros: [s, c, length])
        var covered = 0
        try FadedChunkSeparation(model: model).run(source, emit: { start, stems, mix in
            #expect(start == covered, "output emitted out of order")
            let n = stems.shape[2]
            #expect(mix.shape == [c, n])
            for r in 0..<(s * c) {
                for i in 0..<n { out.data[r * length + start + i] = stems.data[r * n + i] }
            }
            covered = start + n
        })
        #expect(covered == length)
        return out
    }

    static func reference(_ model: String, _ signal: String) throws -> Tensor {
        try readNPY(folder.appendingPathComponent("\(model)-\(signal).npy"))
    }

    @Test("every stem within 60 dB of msst", arguments: cases)
    func parity(_ c: ParityCase) throws {
        let model = try Self.model(c.model)
        expectParity(try Self.separate(model, c.signal), try Self.reference(c.model, c.signal), sources: model.sources, label: "\(c)")
    }

    /// Switching off one part of the network must fail the bar, or the fixtures could not tell.
    @Test("breaking a branch fails the parity bar", arguments: [
        ("bs_small", "layers.0.0.layers.0.0.to_out.0.weight"),  // time attention of the first layer
        ("bs_small", "layers.1.1.layers.0.1.net.4.weight"),  // frequency feed-forward of the last layer
        ("bs_small", "band_split.to_features.30.1.weight"),  // one band's projection
        ("bs4_small", "layers.2.0.layers.0.0.to_gates.bias"),  // a gate, where skip connections feed in
        ("mel_small", "layers.0.1.norm.gamma"),  // a transformer's closing norm
        ("mel_small", "mask_estimators.0.to_freqs.10.0.2.weight"),  // one band's mask MLP
    ])
    func sensitivity(_ name: String, _ key: String) throws {
        let model = try Self.model(name) { state in
            state[key] = Tensor(zeros: state[key]!.shape)
        }
        let out = try Self.separate(model, "long")
        let ref = try Self.reference(name, "long")
        let plane = ref.count / model.sources.count
        let worst = (0..<model.sources.count).map { k in
            snr(reference: ref.data[(k * plane)..<((k + 1) * plane)], estimate: out.data[(k * plane)..<((k + 1) * plane)])
        }.min()!
        #expect(worst < parityThresholdDB, "zeroing \(key) still gives \(worst) dB")
    }

    @Test("a checkpoint in a training-loop dict with module. prefixes loads like a plain one")
    func nestedCheckpoint() throws {
        let nested = try ModelPackage.loadStateDict(bytes: [UInt8](Data(contentsOf: Self.folder.appendingPathComponent("mel_small.ckpt"))))
        #expect(nested.keys.allSatisfy { !$0.hasPrefix("module.") })
        #expect(nested["final_norm.gamma"] == nil && nested["layers.0.0.norm.gamma"] != nil)
    }
}
