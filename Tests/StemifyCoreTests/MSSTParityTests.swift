import Foundation
import StemifyCore
import StemifyEngine
import StemifyTestSupport
import Testing

/// BS-RoFormer, Mel-Band RoFormer and SCNet against `msst` 0.1.0's `demix` on the fixtures of
/// `tools/make_msst_fixtures.py` (reduced width, published band layouts; trained-like weights,
/// `*_small`, and PyTorch's default initialisation with activated norms, `*_default`).
@Suite("RoFormer and SCNet parity with msst")
struct MSSTParityTests {
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
        case .scnet:
            return ConfiguredModel(config: config, network: try SCNet(config: config, state: state))
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
        ("scnet_small", "separation_net.dp_modules.3.linear_layers.1.weight"),  // a time-path RNN in the spectrum of time
        ("scnet_small", "separation_net.dp_modules.0.lstm_layers.0.weight_hh_l0_reverse"),  // one direction's recurrence
        ("scnet_small", "encoder.1.SDlayer.convs.2.weight"),  // the high band's down-sampling
        ("scnet_small", "encoder.0.conv_modules.0.layers.2.6.weight"),  // one convolution module layer
        ("scnet_vocals_small", "decoder.2.1.convtrs.0.bias"),  // the last up-sampling of the low band
        ("scnet_large_default", "decoder.2.1.convtrs.2.bias"),  // the high band's last up-sampling bias, at default init
        ("scnet_large_default", "encoder.2.conv_modules.0.layers.0.4.weight"),  // an activated norm's gain in the deepest SD block
        ("bs_default", "layers.1.0.layers.0.0.to_gates.weight"),  // an attention gate at default init
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

    /// At default init SCNet's stems peak over full scale (the up-sampling biases put a constant
    /// on every bin: a spike at every frame start). msst writes them as they are; clamping the
    /// float file cost 12–38 dB on such stems and the trained-like fixtures, scaled to stay under
    /// full scale, could not show it (issue 35).
    @Test("the file path (float32 WAV, clip mode none) keeps stems beyond full scale, as msst writes them",
          arguments: ["short", "mono44k"])
    func filePathBeyondFullScale(_ signal: String) throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-msst-file-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let ref = try Self.reference("scnet_large_default", signal)
        // Without samples over full scale the case could not tell a clamping writer.
        try #require(ref.data.contains { abs($0) > 1.2 })
        let model = try ConfiguredModelPipelineTests.repository.load(named: "scnet_large_default")
        let files = try TrackSeparator(model: model, separation: SeparationOptions(),
                                       output: StemOutputOptions(format: .wav, encoding: .float32, clipMode: .none))
            .separate(input: audioFixture(signal), into: out)
        #expect(files.map(\.lastPathComponent) == ["drums.wav", "bass.wav", "other.wav", "vocals.wav"])
        try expectFilesMatch(files, ref)
    }

    /// msst's inference divides the track by its mono mix's mean and std when the configuration
    /// says `inference.normalize: true`, and the stems are scaled back: without it the stems are
    /// those of another input.
    @Test("inference.normalize wraps the separation; ignoring it fails the bar")
    func normalize() throws {
        let model = try Self.model("scnet_norm_default")
        #expect(model.config.normalize)
        var plain = model.config
        plain.normalize = false
        let ignoring = ConfiguredModel(config: plain, network: model.network)
        let ref = try Self.reference("scnet_norm_default", "music16")
        let db = snr(reference: ref, estimate: try Self.separate(ignoring, "music16"))
        #expect(db < parityThresholdDB, "ignoring inference.normalize still gives \(db) dB")
        #expect(throws: CheckpointError.self) {
            try TrainingConfig(yaml: "audio: {chunk_size: 100}\nmodel: {band_SR: [0.2, 0.3, 0.5]}\ntraining: {instruments: [a]}\ninference: {normalize: 3}\n")
        }
    }

    @Test("a checkpoint in a training-loop dict with module. prefixes loads like a plain one")
    func nestedCheckpoint() throws {
        let nested = try ModelPackage.loadStateDict(bytes: [UInt8](Data(contentsOf: Self.folder.appendingPathComponent("mel_small.ckpt"))))
        #expect(nested.keys.allSatisfy { !$0.hasPrefix("module.") })
        #expect(nested["final_norm.gamma"] == nil && nested["layers.0.0.norm.gamma"] != nil)
    }
}

/// The RoFormers through the same file pipeline, model folder and resume path as Demucs.
@Suite("Configured models in the pipeline")
struct ConfiguredModelPipelineTests {
    static let repository = ModelRepository(directory: MSSTParityTests.folder)

    func samples(_ url: URL) throws -> Tensor {
        let wav = try WAVFileSource(path: url.path)
        return try wav.read(from: 0, count: wav.frameCount)
    }

    @Test("NAME.ckpt + NAME.yaml in a model folder is a model called NAME")
    func folder() throws {
        let listing = Self.repository.list()
        #expect(listing.configured == ["bs4_small", "bs_default", "bs_small", "mel_default", "mel_small", "scnet_large_default",
                                       "scnet_norm_default", "scnet_small", "scnet_vocals_default", "scnet_vocals_small",
                                       "scnet_xl_ihf_default"])
        #expect(listing.bags.isEmpty)
        guard case let .configured(model) = try Self.repository.load(named: "mel_small") else {
            Issue.record("mel_small did not load as a configured model")
            return
        }
        #expect(model.config.family == .melBandRoformer && model.sources == ["vocals"])
        let store = ModelStore(directory: MSSTParityTests.folder)
        let info = try #require(store.list().first { $0.name == "bs_small" })
        #expect(info.available && info.sources == ["vocals", "instrumental"])
        #expect(throws: Never.self) { try store.validate("bs4_small") }
    }

    @Test("a vocals model writes vocals and the instrumental, mix minus vocals")
    func karaoke() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-karaoke-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let model = try Self.repository.load(named: "bs_small")
        let files = try TrackSeparator(model: model, separation: SeparationOptions(),
                                       output: StemOutputOptions(format: .wav, encoding: .float32, clipMode: .none))
            .separate(input: audioFixture("long"), into: out)
        #expect(files.map(\.lastPathComponent) == ["vocals.wav", "instrumental.wav"])
        let (vocals, instrumental) = (try samples(files[0]), try samples(files[1]))
        let ref = try MSSTParityTests.reference("bs_small", "long")
        #expect(snr(reference: ref, estimate: vocals.reshaped(ref.shape)) >= parityThresholdDB)
        let mix = try samples(URL(fileURLWithPath: audioFixture("long")))
        var expected = mix
        for i in 0..<expected.count { expected.data[i] -= ref.data[i] }
        #expect(snr(reference: expected, estimate: instrumental) >= parityThresholdDB)
    }

    @Test("a RoFormer separation stopped after any chunk and resumed gives identical stems", arguments: [1, 2, 4])
    func resume(stopAfter: Int) throws {
        let model = try Self.repository.load(named: "mel_small")
        let output = StemOutputOptions(format: .wav, encoding: .float32, clipMode: .shared)
        let source = try WAVFileSource(path: audioFixture("gaps"))
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        var total = 0
        let whole = try TrackSeparator(model: model, separation: SeparationOptions(), output: output)
            .separate(source: source, into: base.appendingPathComponent("whole"), progress: { _ in total += 1 })
        let dir = base.appendingPathComponent("resumed"), checkpoint = base.appendingPathComponent("checkpoint.bin")
        var chunks = 0
        #expect(throws: SeparationError.cancelled) {
            try TrackSeparator(model: model, separation: SeparationOptions(), output: output).separate(
                source: source, into: dir, progress: { _ in chunks += 1 }, isCancelled: { chunks >= stopAfter },
                checkpoint: checkpoint, checkpointInterval: 0)
        }
        var resumedChunks = 0
        let resumed = try TrackSeparator(model: model, separation: SeparationOptions(), output: output).separate(
            source: source, into: dir, progress: { _ in resumedChunks += 1 }, checkpoint: checkpoint, checkpointInterval: 0)
        #expect(resumedChunks > 0 && resumedChunks < total, "the resumed run did \(resumedChunks) of \(total) chunks")
        for (a, b) in zip(whole, resumed) {
            #expect(try Data(contentsOf: a) == Data(contentsOf: b), "\(b.lastPathComponent) differs from the uninterrupted run")
        }
    }

    @Test("two lanes give exactly the stems of one", arguments: ["mel_small", "bs_small", "scnet_small"])
    func lanes(_ name: String) throws {
        guard case let .configured(model) = try Self.repository.load(named: name) else {
            Issue.record("\(name) is not a configured model")
            return
        }
        let source = try WAVFileSource(path: audioFixture("gaps"))
        func run(lanes: Int) throws -> [Float] {
            var out: [Float] = []
            try EngineThreads.withWidth(2) {
                try FadedChunkSeparation(model: model, lanes: lanes).run(source, emit: { _, stems, _ in out += stems.data })
            }
            return out
        }
        let one = try run(lanes: 1)
        #expect(try !one.isEmpty && one == run(lanes: 2))
    }

    @Test("fewer overlapping chunks run fewer chunks and stay close to the default")
    func overlapCount() throws {
        guard case let .configured(model) = try Self.repository.load(named: "bs_small") else { return }
        let source = try WAVFileSource(path: audioFixture("gaps"))
        func run(_ n: Int?) throws -> (Int, Tensor) {
            var chunks = 0
            var out = Tensor(zeros: [1, 2, source.frameCount])
            try FadedChunkSeparation(model: model, numOverlap: n).run(source, emit: { start, stems, _ in
                let k = stems.shape[2]
                for r in 0..<2 { for i in 0..<k { out.data[r * source.frameCount + start + i] = stems.data[r * k + i] } }
            }, progress: { chunks = $0.totalChunks })
            return (chunks, out)
        }
        let (defaultChunks, _) = try run(nil)
        let (fewer, _) = try run(1)
        #expect(fewer < defaultChunks)
        #expect(throws: SeparationError.self) { try FadedChunkSeparation(model: model, numOverlap: 0) }
    }
}
