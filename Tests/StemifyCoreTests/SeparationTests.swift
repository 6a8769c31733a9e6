import StemifyEngine
import Foundation
import StemifyCore
import StemifyTestSupport
import Testing

@Suite("Streamed separation")
struct SeparationTests {
    @Test("a bag member whose weights are zero for every stem asked for is not run, and the stems asked for do not change")
    func skipsMembers() throws {
        let bag = try fixtureRepo.loadBag(named: "htft_small")
        let vocals = try #require(bag.sources.firstIndex(of: "vocals"))
        var chunksAll = 0, chunksVocals = 0
        let source = try WAVFileSource(path: audioFixture("short"))
        try StreamingSeparation(bag: bag, options: SeparationOptions(shifts: 0)).run(source, emit: { _, _, _ in }, progress: { chunksAll = $0.totalChunks })
        try StreamingSeparation(bag: bag, options: SeparationOptions(shifts: 0, sourcesNeeded: [vocals])).run(source, emit: { _, _, _ in }, progress: { chunksVocals = $0.totalChunks })
        #expect(chunksAll == 4 && chunksVocals == 1)
        let all = try separateFixture(bag, "short")
        let only = try separateFixture(bag, "short", options: SeparationOptions(shifts: 0, sourcesNeeded: [vocals]))
        let plane = all.count / 4
        #expect(all.data[(vocals * plane)..<((vocals + 1) * plane)] == only.data[(vocals * plane)..<((vocals + 1) * plane)])
    }

    @Test("shifts: the same seed gives the same stems, another seed other stems")
    func shifts() throws {
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        let a = try separateFixture(bag, "long", options: SeparationOptions(shifts: 2, seed: 7))
        let b = try separateFixture(bag, "long", options: SeparationOptions(shifts: 2, seed: 7))
        let c = try separateFixture(bag, "long", options: SeparationOptions(shifts: 2, seed: 8))
        #expect(a == b)
        #expect(a != c)
    }

    @Test("shifts: with the offsets the reference drew, the shift trick matches the reference")
    func shiftsParity() throws {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: fixturesDirectory().appendingPathComponent("manifest.json"))) as! [String: Any]
        let shifts = manifest["shifts"] as! [String: Any]
        let offsets = shifts["offsets"] as! [Int]
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        let est = try separateFixture(bag, "long", options: SeparationOptions(shifts: 2, shiftOffsets: offsets))
        expectParity(est, try reference("ht_small", "long__shifts2"), sources: bag.sources, label: "shifts 2")
    }

    @Test("progress is reported per chunk and output is emitted in order, covering the track once")
    func progressAndOrder() throws {
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        let source = try WAVFileSource(path: audioFixture("long"))
        var reports: [SeparationProgress] = []
        var next = 0
        try StreamingSeparation(bag: bag, options: SeparationOptions(shifts: 1, seed: 1)).run(source, emit: { start, stems, mix in
            #expect(start == next)
            #expect(stems.shape[2] == mix.shape[1])
            next += mix.shape[1]
        }, progress: { reports.append($0) })
        #expect(next == source.frameCount)
        #expect(reports.map(\.completedChunks) == Array(1...reports.count))
        #expect(reports.last?.completedChunks == reports.last?.totalChunks)
    }

    @Test("cancellation stops between chunks")
    func cancellation() throws {
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        let source = try WAVFileSource(path: audioFixture("long"))
        var chunks = 0
        #expect(throws: SeparationError.cancelled) {
            try StreamingSeparation(bag: bag, options: SeparationOptions(shifts: 0)).run(
                source, emit: { _, _, _ in }, progress: { chunks = $0.completedChunks }, isCancelled: { chunks >= 2 })
        }
        #expect(chunks == 2)
    }

    /// Chunks run several at once (one lane per thread); a chunk's arithmetic must not depend on
    /// how many ran beside it, or resumed runs and machines with other core counts would differ.
    @Test("two lanes give exactly the stems of one, for every Demucs family and a bag",
          arguments: ["ht_small", "hd_small", "demucs_small", "htft_small"])
    func lanes(_ model: String) throws {
        let bag = try fixtureRepo.loadBag(named: model)
        func run(lanes: Int, threads: Int) throws -> Tensor {
            try EngineThreads.withWidth(threads) {
                try separateFixture(bag, "long", options: SeparationOptions(shifts: 1, seed: 5, lanes: lanes))
            }
        }
        let one = try run(lanes: 1, threads: 2)
        #expect(try one == run(lanes: 2, threads: 2))
        #expect(try one == run(lanes: 3, threads: 3))
        #expect(try one == run(lanes: 1, threads: 1))
    }

    @Test("invalid options are refused", arguments: [SeparationOptions(shifts: -1), SeparationOptions(overlap: 1), SeparationOptions(overlap: -0.1)])
    func invalidOptions(_ options: SeparationOptions) throws {
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        #expect(throws: SeparationError.self) { try StreamingSeparation(bag: bag, options: options) }
    }
}

@Suite("Track separation to files")
struct TrackSeparatorTests {
    func run(_ output: StemOutputOptions, model: String = "ht_small") throws -> (URL, [URL]) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-track-\(UUID().uuidString)")
        let bag = try fixtureRepo.loadBag(named: model)
        let files = try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(shifts: 0), output: output)
            .separate(input: audioFixture("short"), into: out)
        return (out, files)
    }

    func samples(_ url: URL) throws -> Tensor {
        let wav = try WAVFileSource(path: url.path)
        return try wav.read(from: 0, count: wav.frameCount)
    }

    /// A worker that dies mid-track leaves a checkpoint; whoever continues from it must write
    /// exactly the stems an uninterrupted run writes (shifts included: the seed is the job's).
    @Test("a separation stopped after any chunk and resumed from its checkpoint gives identical stems",
          arguments: [("ht_small", 1), ("ht_small", 2), ("hd_small", 1), ("demucs_small", 3)])
    func resume(_ model: String, stopAfter: Int) throws {
        let bag = try fixtureRepo.loadBag(named: model)
        let options = SeparationOptions(shifts: 1, seed: 42)
        let output = StemOutputOptions(format: .wav, encoding: .float32, clipMode: .shared, instrumental: true)
        let source = try WAVFileSource(path: audioFixture("long"))
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }

        var total = 0
        let whole = try TrackSeparator(model: .demucs(bag), separation: options, output: output)
            .separate(source: source, into: base.appendingPathComponent("whole"), progress: { _ in total += 1 })

        let dir = base.appendingPathComponent("resumed"), checkpoint = base.appendingPathComponent("checkpoint.bin")
        var chunks = 0
        #expect(throws: SeparationError.cancelled) {
            try TrackSeparator(model: .demucs(bag), separation: options, output: output).separate(
                source: source, into: dir, progress: { _ in chunks += 1 }, isCancelled: { chunks >= stopAfter },
                checkpoint: checkpoint, checkpointInterval: 0)
        }
        #expect(FileManager.default.fileExists(atPath: checkpoint.path))
        var resumedChunks = 0
        let resumed = try TrackSeparator(model: .demucs(bag), separation: options, output: output).separate(
            source: source, into: dir, progress: { _ in resumedChunks += 1 }, checkpoint: checkpoint, checkpointInterval: 0)
        #expect(resumedChunks > 0 && resumedChunks < total, "the resumed run did \(resumedChunks) of \(total) chunks")
        #expect(!FileManager.default.fileExists(atPath: checkpoint.path), "a finished run removes its checkpoint")
        #expect(resumed.map(\.lastPathComponent) == whole.map(\.lastPathComponent))
        for (a, b) in zip(whole, resumed) {
            #expect(try Data(contentsOf: a) == Data(contentsOf: b), "\(b.lastPathComponent) differs from the uninterrupted run")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test("a checkpoint from other options or a damaged one is refused, not misused")
    func badCheckpoint() throws {
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        let source = try WAVFileSource(path: audioFixture("long"))
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-ckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let checkpoint = base.appendingPathComponent("checkpoint.bin")
        var chunks = 0
        #expect(throws: SeparationError.cancelled) {
            try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(shifts: 1, seed: 1), output: StemOutputOptions(format: .wav))
                .separate(source: source, into: base, progress: { _ in chunks += 1 }, isCancelled: { chunks >= 1 },
                          checkpoint: checkpoint, checkpointInterval: 0)
        }
        // Two shifts make two passes where the checkpoint has one.
        #expect(throws: SeparationError.self) {
            try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(shifts: 2, seed: 1), output: StemOutputOptions(format: .wav))
                .separate(source: source, into: base, checkpoint: checkpoint)
        }
        let bytes = try Data(contentsOf: checkpoint)
        try bytes.prefix(bytes.count / 2).write(to: checkpoint)
        #expect(throws: SeparationError.self) {
            try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(shifts: 1, seed: 1), output: StemOutputOptions(format: .wav))
                .separate(source: source, into: base, checkpoint: checkpoint)
        }
    }

    @Test("--two-stems vocals with add writes vocals and no_vocals = the sum of the other stems")
    func twoStemsAdd() throws {
        let (out, files) = try run(StemOutputOptions(encoding: .float32, clipMode: .none, twoStems: "vocals"))
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(files.map(\.lastPathComponent) == ["vocals.wav", "no_vocals.wav"])
        let ref = try reference("ht_small", "short")
        let plane = ref.count / 4
        var rest = [Float](repeating: 0, count: plane)
        for k in 0..<3 { for i in 0..<plane { rest[i] += ref.data[k * plane + i] } }
        #expect(snr(reference: rest[...], estimate: try samples(files[1]).data[...]) > parityThresholdDB)
        #expect(snr(reference: ref.data[(3 * plane)...], estimate: try samples(files[0]).data[...]) > parityThresholdDB)
    }

    @Test("--other-method minus writes minus_vocals = mix - vocals and runs only the vocals network")
    func twoStemsMinus() throws {
        let (out, files) = try run(StemOutputOptions(encoding: .float32, clipMode: .none, twoStems: "vocals", otherMethod: .minus), model: "htft_small")
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(files.map(\.lastPathComponent) == ["minus_vocals.wav", "vocals.wav"])
        let mix = try samples(URL(fileURLWithPath: audioFixture("short")))
        let vocals = try samples(files[1]), minus = try samples(files[0])
        for i in 0..<mix.count { #expect(abs(mix.data[i] - vocals.data[i] - minus.data[i]) < 1e-6) }
        let ref = try reference("htft_small", "short")
        #expect(snr(reference: ref.data[(3 * ref.count / 4)...], estimate: vocals.data[...]) > parityThresholdDB)
    }

    @Test("clip mode rescale divides a stem by max(1.01 · peak, 1); 16-bit truncates like the reference")
    func rescaleAndInt16() throws {
        let (out, files) = try run(StemOutputOptions(encoding: .int16, clipMode: .rescale))
        defer { try? FileManager.default.removeItem(at: out) }
        let ref = try reference("ht_small", "short")
        let plane = ref.count / 4
        for (k, file) in files.enumerated() {
            let stem = ref.data[(k * plane)..<((k + 1) * plane)]
            let divisor = max(1.01 * stem.map(abs).max()!, 1)
            let expected = stem.map { Float(Int16(min(max($0 / divisor, -1), 1) * 32767)) / 32768 }
            let got = try samples(file)
            // 16-bit rounding of values that differ by ~1e-6 may flip one step.
            let off = zip(expected, got.data).filter { abs($0 - $1) > 1.5 / 32768 }.count
            #expect(off == 0, "\(file.lastPathComponent): \(off) samples differ by more than one step")
        }
    }

    @Test("any input format goes through ffmpeg; mp3 and flac stems come out at the input's length")
    func otherFormats() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-fmt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let mp3 = out.appendingPathComponent("in.mp3")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ffmpeg", "-v", "error", "-y", "-i", audioFixture("long"), "-c:a", "libmp3lame", mp3.path]
        try p.run()
        p.waitUntilExit()
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        for format in [FFmpeg.Format.mp3, .flac] {
            let files = try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(shifts: 0), output: StemOutputOptions(format: format))
                .separate(input: mp3.path, into: out.appendingPathComponent(format.rawValue))
            #expect(files.map(\.pathExtension) == Array(repeating: format.rawValue, count: 4))
            let probe = try FFmpeg.probe(files[0].path)
            #expect(abs((probe.duration ?? 0) - 1.1) < 0.1, "\(format): \(String(describing: probe.duration))")
        }
    }

    @Test("an unknown --two-stems stem is refused with the list of stems")
    func unknownStem() throws {
        let bag = try fixtureRepo.loadBag(named: "ht_small")
        #expect(throws: TrackSeparationError.unknownStem("guitar", available: bag.sources)) {
            try TrackSeparator(model: .demucs(bag), separation: SeparationOptions(), output: StemOutputOptions(twoStems: "guitar"))
        }
    }
}
