import StemifyEngine
import Foundation
import StemifyCore
import StemifyTestSupport
import Testing

/// The issue's bar: every stem within 60 dB SNR (reference energy over error energy) of the
/// reference PyTorch Demucs 4.1.0 on the committed fixtures. Measured agreement is ~118 dB.
let parityThresholdDB = 60.0

struct ParityCase: CustomTestStringConvertible, Sendable {
    let model: String
    let signal: String
    /// Per stem, the reference against itself with a float64 STFT (`tools/make_fixtures.py`),
    /// where the input has bins at the noise floor.
    var spread: [Double]? = nil
    var testDescription: String { "\(model) on \(signal)" }

    /// Per stem: 60 dB, or the reference's spread less 1.5 dB where that is lower. A magnitude
    /// member takes the mixture's phase, which on noise-floor bins the FFT's rounding decides: no
    /// implementation can be closer to the reference than the reference is to its own float64
    /// run (issue 30).
    func thresholds(stems: Int) -> [Double] {
        (0..<stems).map { k in min(parityThresholdDB, (spread?[k] ?? .infinity) - 1.5) }
    }
}

let fixtureRepo = ModelRepository(directory: fixturesDirectory().appendingPathComponent("repo"))

func audioFixture(_ name: String) -> String {
    fixturesDirectory().appendingPathComponent("audio/\(name).wav").path
}

func reference(_ model: String, _ signal: String) throws -> Tensor {
    try readNPY(fixturesDirectory().appendingPathComponent("reference/\(model)__\(signal).npy"))
}

/// Runs the engine on a WAV fixture the way `stemify separate` does, returning `[S, C, L]`.
func separateFixture(_ bag: ModelBag, _ signal: String, options: SeparationOptions = SeparationOptions(shifts: 0)) throws -> Tensor {
    let wav = try WAVFileSource(path: audioFixture(signal))
    let source: any AudioSource = wav.sampleRate == 44100 && wav.channelCount == 2
        ? wav : ConvertedAudioSource(wav, rate: wav.sampleRate, targetRate: 44100, channels: 2)
    let s = bag.sources.count, c = 2, length = source.frameCount
    var out = Tensor(zeros: [s, c, length])
    try StreamingSeparation(bag: bag, options: options).run(source, emit: { start, stems, _ in
        let n = stems.shape[2]
        for r in 0..<(s * c) {
            for i in 0..<n { out.data[r * length + start + i] = stems.data[r * n + i] }
        }
    })
    return out
}

func expectParity(_ estimate: Tensor, _ ref: Tensor, sources: [String], label: String, threshold: Double = parityThresholdDB,
                  perStem: [Double]? = nil) {
    #expect(estimate.shape == ref.shape, "\(label): shape \(estimate.shape) vs \(ref.shape)")
    guard estimate.shape == ref.shape else { return }
    let plane = ref.count / sources.count
    for (k, name) in sources.enumerated() {
        let db = snr(reference: ref.data[(k * plane)..<((k + 1) * plane)], estimate: estimate.data[(k * plane)..<((k + 1) * plane)])
        let bar = perStem?[k] ?? threshold
        #expect(db >= bar, "\(label) \(name): SNR \(db) dB (bar \(bar) dB)")
        if ProcessInfo.processInfo.environment["STEMIFY_PRINT_SNR"] != nil { print("SNR \(label) \(name): \(String(format: "%.1f", db)) dB") }
    }
}

/// Each written float file (stem `k` of `files`) against stem `k` of the reference `[S, C, L]`.
func expectFilesMatch(_ files: [URL], _ ref: Tensor) throws {
    let plane = ref.count / ref.shape[0]
    for (k, file) in files.enumerated() {
        let wav = try WAVFileSource(path: file.path)
        let est = try wav.read(from: 0, count: wav.frameCount)
        #expect(est.count == plane)
        let db = snr(reference: ref.data[(k * plane)..<((k + 1) * plane)], estimate: est.data[...])
        #expect(db >= parityThresholdDB, "\(file.lastPathComponent): SNR \(db) dB")
    }
}

@Suite("Whole-model parity with the reference")
struct ParityTests {
    static let cases: [ParityCase] = {
        let manifest = try! JSONSerialization.jsonObject(with: Data(contentsOf: fixturesDirectory().appendingPathComponent("manifest.json"))) as! [String: Any]
        return (manifest["cases"] as! [[String: Any]]).map {
            ParityCase(model: $0["model"] as! String, signal: $0["signal"] as! String, spread: $0["spread"] as? [Double])
        }
    }()

    @Test("every stem within 60 dB of the reference, or of its own float64-STFT spread on noise-floor inputs", arguments: cases)
    func parity(_ c: ParityCase) throws {
        let bag = try fixtureRepo.loadBag(named: c.model)
        expectParity(try separateFixture(bag, c.signal), try reference(c.model, c.signal), sources: bag.sources, label: c.testDescription,
                     perStem: c.thresholds(stems: bag.sources.count))
    }

    @Test("stemify's file path (float32 WAV, no clipping) matches the reference")
    func filePath() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-parity-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        let separator = try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(shifts: 0),
                                           output: StemOutputOptions(encoding: .float32, clipMode: .none))
        let files = try separator.separate(input: audioFixture("long"), into: out)
        #expect(files.map(\.lastPathComponent) == ["drums.wav", "bass.wav", "other.wav", "vocals.wav"])
        try expectFilesMatch(files, try reference("ht_small", "long"))
    }

    /// The parity threshold only means something if breaking the network fails it. With the
    /// fixtures' randomised LayerScales and norm affines, switching off one residual branch
    /// must fail the 60 dB bar (at initialisation values it would pass at ~113 dB).
    @Test("switching off one transformer sub-layer or one DConv branch fails the parity bar",
          arguments: ["transformer self-attention", "transformer cross-attention", "time transformer feed-forward",
                      "encoder DConv", "decoder DConv"])
    func sensitivity(_ branch: String) throws {
        let url = try #require(try fixtureRepo.checkpoint(for: "a1c0ffee"))
        let model = try HTDemucs(package: try ModelPackage.load(contentsOf: url))
        var w = model.weights
        func zero(_ t: inout Tensor) { t.data = [Float](repeating: 0, count: t.count) }
        switch branch {
        case "transformer self-attention": zero(&w.transformer!.layers[2].gamma1)
        case "transformer cross-attention": zero(&w.transformer!.layers[1].gamma1)
        case "time transformer feed-forward": zero(&w.transformer!.timeLayers[4].gamma2)
        case "encoder DConv": zero(&w.encoder[1].dconv!.layers[1].scale)
        default: zero(&w.decoder[2].dconv!.layers[0].scale)
        }
        let broken = try ModelBag(models: [HTDemucs(config: model.config, weights: w)])
        let est = try separateFixture(broken, "short")
        let ref = try reference("ht_small", "short")
        let db = snr(reference: ref, estimate: est)
        // Measured on these fixtures: 41–52 dB for transformer sub-layers, lower for DConv.
        #expect(db < parityThresholdDB - 5, "\(branch) off: SNR \(db) dB should be clearly below \(parityThresholdDB)")
    }

    /// The same proof for the v2/v3 families: their deepest DConv branches carry a BLSTM and
    /// LocalState attention, each of which must matter at the 60 dB bar.
    @Test("switching off one BLSTM, LocalState or deep DConv branch of Hybrid or waveform Demucs fails the parity bar",
          arguments: ["hybrid BLSTM", "hybrid LocalState", "hybrid deep DConv", "waveform BLSTM", "waveform LocalState"])
    func sensitivityV3(_ branch: String) throws {
        func edit(_ d: inout DConv) {
            switch branch {
            case "hybrid BLSTM", "waveform BLSTM": d.layers[0].lstm = nil
            case "hybrid LocalState", "waveform LocalState": d.layers[1].attention = nil
            default: d.layers[1].scale.data = [Float](repeating: 0, count: d.layers[1].scale.count)
            }
        }
        let name = branch.hasPrefix("hybrid") ? "hd_small" : "demucs_small"
        let model = try #require(try fixtureRepo.loadBag(named: name).models.first)
        let broken: any SeparationModel
        if var hd = model as? HDemucs {
            var w = hd.weights
            guard case var .layer(layer) = w.encoder[5], var d = layer.dconv else { Issue.record("no DConv at level 5"); return }
            edit(&d)
            layer.dconv = d
            w.encoder[5] = .layer(layer)
            hd = HDemucs(config: hd.config, weights: w)
            broken = hd
        } else {
            let demucs = try #require(model as? Demucs)
            var w = demucs.weights
            let index = try #require(w.encoder[4].steps.firstIndex { if case .dconv = $0 { true } else { false } })
            guard case var .dconv(d) = w.encoder[4].steps[index] else { return }
            edit(&d)
            w.encoder[4].steps[index] = .dconv(d)
            broken = Demucs(config: demucs.config, weights: w)
        }
        let est = try separateFixture(try ModelBag(models: [broken]), "long")
        let db = snr(reference: try reference(name, "long"), estimate: est)
        #expect(db < parityThresholdDB - 5, "\(branch) off: SNR \(db) dB should be clearly below \(parityThresholdDB)")
        print("sensitivity: \(branch) off gives \(db) dB")
    }
}
