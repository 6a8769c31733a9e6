import Foundation
import StemifyEngine
import StemifyTestSupport
import Testing

/// A configuration in the published files' form; `model` lines are appended to the section.
func roformerYAML(model: String = "  freqs_per_bands: !!python/tuple\n  - 1024\n  - 1\n", training: String = "  target_instrument: vocals\n") -> String {
    """
    audio:
      chunk_size: 352800
      sample_rate: 44100
    model:
      dim: 8
      depth: 1
      stereo: true
    \(model)
    training:
      instruments:
      - vocals
      - other
    \(training)
    inference:
      batch_size: 4
      num_overlap: 2
    """
}

@Suite("RoFormer configurations and checkpoints")
struct RoFormerConfigTests {
    @Test("a published-style config: tuples, chunk, overlap, stems, family from the keys")
    func parses() throws {
        let c = try TrainingConfig(yaml: roformerYAML())
        #expect(c.family == .bsRoformer)
        #expect(c.model["freqs_per_bands"] == .list([.int(1024), .int(1)]))
        #expect(c.chunkSize == 352800 && c.numOverlap == 2 && c.batchSize == 4 && c.sampleRate == 44100)
        #expect(c.stems == ["vocals"] && c.instruments == ["vocals", "other"])
        #expect(try TrainingConfig(yaml: roformerYAML(model: "  num_bands: 60\n")).family == .melBandRoformer)
        #expect(try TrainingConfig(yaml: roformerYAML(model: "  num_bands: 60\n", training: "  model_type: bs_roformer\n")).family == .bsRoformer)
        #expect(try TrainingConfig(yaml: roformerYAML(training: "")).stems == ["vocals", "other"])
    }

    @Test("bad configurations are refused with the reason", arguments: [
        (roformerYAML(model: "  dim_x: 3\n"), "cannot tell the model family"),
        (roformerYAML(training: "  target_instrument: drums\n"), "not in training.instruments"),
        (roformerYAML(training: "  model_type: mdx23c\n"), "model_type 'mdx23c'"),
        ("- just\n- a list\n", "not a mapping"),
        ("a: [unclosed\n", "not valid YAML"),
        (roformerYAML().replacingOccurrences(of: "  chunk_size: 352800", with: "  chunk_size: -5"), "chunk_size"),
        (roformerYAML().replacingOccurrences(of: "  - other", with: "  - ../../etc"), "stem name"),
        (String(repeating: "# padding\n", count: 7000), "larger than 64 KiB"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", "too many YAML nodes"),
    ])
    func refuses(_ yaml: String, _ reason: String) {
        do {
            _ = try TrainingConfig(yaml: yaml)
            Issue.record("accepted: \(reason)")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test("model keys or values the engine does not implement are named", arguments: [
        ("  freqs_per_bands: [1024, 1]\n  use_flux: true\n", "'use_flux' is unknown"),
        ("  freqs_per_bands: [1000, 1]\n", "freqs_per_bands"),
        ("  freqs_per_bands: [1024, 1]\n  linear_transformer_depth: 1\n", "linear_transformer_depth"),
        ("  freqs_per_bands: [1024, 1]\n  stft_n_fft: 2000\n", "stft_n_fft"),
        ("  num_bands: 60\n  stft_hop_length: 500\n", "not a multiple of stft_hop_length"),
    ])
    func refusesModel(_ model: String, _ reason: String) throws {
        let config = try TrainingConfig(yaml: roformerYAML(model: model).replacingOccurrences(of: "  stereo: true\n", with: "  stereo: true\n"))
        do {
            _ = try RoFormer(config: config, state: [:])
            Issue.record("accepted: \(reason)")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test("SCNet keys or values the engine does not implement are named", arguments: [
        ("  bandsplit_ratios: [0.175, 0.392, 0.433]\n", "'bandsplit_ratios' is unknown"),
        ("  num_dplayer: 5\n", "num_dplayer"),
        ("  dims: [3, 8]\n", "dims"),
        ("  nfft: 4000\n", "nfft"),
        ("  win_size: 2048\n", "win_size"),
        ("  band_kernel: [2, 4, 16]\n", "band_kernel"),
        ("  sources: [vocals]\n", "differ in length"),
    ])
    func refusesSCNet(_ extra: String, _ reason: String) throws {
        let yaml = """
        audio:
          chunk_size: 485100
        model:
          band_SR: [0.175, 0.392, 0.433]
        \(extra)
        training:
          instruments: [drums, bass, other, vocals]
        """
        let config = try TrainingConfig(yaml: yaml)
        #expect(config.family == .scnet)
        do {
            _ = try SCNet(config: config, state: [:])
            Issue.record("accepted: \(reason)")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test("a missing tensor is named before anything runs")
    func missingTensor() throws {
        let config = try TrainingConfig(yaml: roformerYAML())
        #expect(throws: CheckpointError.missingTensor(key: "band_split.to_features.0.0.gamma")) { try RoFormer(config: config, state: [:]) }
    }

    @Test("mel bands match librosa's filter bank as the reference binarises it")
    func melBands() throws {
        let url = fixturesDirectory().appendingPathComponent("msst/mel_bands.json")
        let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [[String: Any]]
        #expect(cases.count >= 4)
        for c in cases {
            let (n, nfft, rate) = (c["num_bands"] as! Int, c["nfft"] as! Int, c["sample_rate"] as! Int)
            let expected = c["bins"] as! [[Int]]
            #expect(melBandBins(bands: n, sampleRate: rate, nfft: nfft) == expected, "\(n) bands, nfft \(nfft), \(rate) Hz")
        }
    }

    @Test("a state dict pickle naming a callable is refused", arguments: ["os system", "builtins exec", "torch.serialization load"])
    func refusesCallables(_ global: String) {
        let parts = global.split(separator: " ").map(String.init)
        let cmd = Array("touch /tmp/stemify-pwned".utf8)
        var p: [UInt8] = [0x80, 2, 0x63] + Array("\(parts[0])\n\(parts[1])\n".utf8) + [0x58]
        p += [UInt8(cmd.count), 0, 0, 0] + cmd + [0x85, 0x52, 0x2E]
        #expect(throws: CheckpointError.unsupportedGlobal(module: parts[0], name: parts[1])) {
            try ModelPackage.loadStateDict(bytes: torchArchive(pickle: p))
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/stemify-pwned"))
    }

    @Test("truncated or path-tricked checkpoints are refused")
    func refusesDamaged() throws {
        let bytes = [UInt8](try Data(contentsOf: fixturesDirectory().appendingPathComponent("msst/bs_small.ckpt")))
        #expect(throws: CheckpointError.self) { try ModelPackage.loadStateDict(bytes: Array(bytes.prefix(bytes.count / 2))) }
        // Storages renamed out of the archive folder: the tensors' data cannot be found.
        let entries = readStoredZip(bytes).map { e in (e.name.contains("/data/") ? e.name.replacingOccurrences(of: "/data/", with: "/../../data/") : e.name, e.data) }
        #expect(throws: CheckpointError.self) { try ModelPackage.loadStateDict(bytes: makeStoredZip(entries)) }
        // A tensor whose storage is shorter than its shape.
        let short = readStoredZip(bytes).map { e in (e.name, e.name.hasSuffix("/data/0") ? Array(e.data.prefix(8)) : e.data) }
        #expect(throws: CheckpointError.self) { try ModelPackage.loadStateDict(bytes: makeStoredZip(short)) }
    }
}
