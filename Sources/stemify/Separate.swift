import ArgumentParser
import StemifyEngine
import Foundation
import StemifyCore

/// `stemify separate`, mirroring the reference CLI (`python -m demucs.separate`) where flags exist.
struct Separate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Separate audio files into stems, written to OUT/NAME/TRACK/STEM.wav.")

    @Option(name: .short, help: "Model: a bag name (NAME.yaml), a single signature, or a configured model (NAME.ckpt + NAME.yaml).")
    var name = "htdemucs"

    @Option(help: "Folder laid out like the official model repository. Default: $DEMUCS_MODEL_PATH.")
    var repo: String?

    @Option(name: .short, help: "Output folder.")
    var out = "separated"

    @Option(help: "Random shifts averaged (0 is deterministic).")
    var shifts = 1

    @Option(help: "Overlap between chunks, in [0, 1) (Demucs models).")
    var overlap = 0.25

    @Option(help: "Chunks covering each sample (RoFormer models; default: the model configuration's num_overlap). Fewer is faster.")
    var numOverlap: Int?

    @Option(help: "Only write STEM and its complement (no_STEM, or minus_STEM).")
    var twoStems: String?

    @Option(help: "How the complement of --two-stems is made: add, minus or none.")
    var otherMethod: String = "add"

    @Flag(help: "Write 24-bit integer WAV.")
    var int24 = false

    @Flag(help: "Write 32-bit float WAV.")
    var float32 = false

    @Flag(help: "Write mp3 stems (through ffmpeg).")
    var mp3 = false

    @Option(help: "mp3 bit rate in kbit/s.")
    var mp3Bitrate = 320

    @Flag(help: "Write flac stems (through ffmpeg).")
    var flac = false

    @Option(help: "Clipping prevention: rescale, clamp or none.")
    var clipMode: String = "rescale"

    @Option(name: [.customShort("j"), .long], help: "Threads (default: all cores).")
    var jobs: Int?

    @Option(help: "Chunks separated at once, each on a share of the threads (default: one per thread, up to 24 s of audio in flight). Fewer use less memory; the stems are the same.")
    var lanes: Int?

    @Option(help: "Vector kernels: auto, avx512, avx2 or portable (default: $STEMIFY_ISA, else auto: the widest this CPU runs).")
    var isa: String?

    @Flag(help: "No progress bar.")
    var quiet = false

    @Argument(help: "Audio files (WAV read directly; mp3, flac, ogg, m4a, … through ffmpeg).")
    var files: [String]

    func validate() throws {
        if int24 && float32 { throw ValidationError("--int24 and --float32 are exclusive") }
        if mp3 && flac { throw ValidationError("--mp3 and --flac are exclusive") }
        if ClipMode(rawValue: clipMode) == nil { throw ValidationError("--clip-mode must be rescale, clamp or none") }
        if OtherMethod(rawValue: otherMethod) == nil { throw ValidationError("--other-method must be add, minus or none") }
        if shifts < 0 { throw ValidationError("--shifts must be ≥ 0") }
        if !(0..<1).contains(overlap) { throw ValidationError("--overlap must be in [0, 1)") }
        if let j = jobs, j < 1 { throw ValidationError("-j must be ≥ 1") }
        if let l = lanes, l < 1 { throw ValidationError("--lanes must be ≥ 1") }
        if let n = numOverlap, n < 1 { throw ValidationError("--num-overlap must be ≥ 1") }
        if files.isEmpty { throw ValidationError("give at least one audio file") }
        do { _ = try instructionSet() } catch { throw ValidationError("--isa (or STEMIFY_ISA): \(error.message)") }
    }

    func instructionSet() throws(InstructionSetError) -> InstructionSet {
        try InstructionSet(setting: isa ?? ProcessInfo.processInfo.environment["STEMIFY_ISA"] ?? "auto")
    }

    func run() throws {
        if let jobs { EngineThreads.set(jobs) } else { EngineThreads.set(ProcessInfo.processInfo.activeProcessorCount) }
        if let lanes { EngineThreads.setMaxLanes(lanes) }
        InstructionSet.select(try instructionSet())
        do { try MatrixKernels.load() } catch { throw CLIError(error.message) }
        guard let repoPath = repo ?? ProcessInfo.processInfo.environment["DEMUCS_MODEL_PATH"] else {
            throw CLIError("no model folder: pass --repo DIR or set DEMUCS_MODEL_PATH (a folder with \(name).yaml and its checkpoints)")
        }
        let repository = ModelRepository(directory: URL(fileURLWithPath: repoPath))
        let model = try reportingErrors { try repository.load(named: name) }
        let separator = try reportingErrors {
            try TrackSeparator(
                model: model,
                separation: SeparationOptions(shifts: shifts, overlap: overlap, overlapCount: numOverlap),
                output: StemOutputOptions(
                    format: mp3 ? .mp3 : flac ? .flac : .wav,
                    encoding: float32 ? .float32 : int24 ? .int24 : .int16,
                    clipMode: ClipMode(rawValue: clipMode)!, twoStems: twoStems,
                    otherMethod: OtherMethod(rawValue: otherMethod)!, mp3Bitrate: mp3Bitrate))
        }
        let base = URL(fileURLWithPath: out).appendingPathComponent(name)
        if !quiet { FileHandle.standardError.write(Data("Separated tracks will be stored in \(base.path)\n".utf8)) }
        var failures = 0
        for file in files {
            let track = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
            let bar = ProgressBar(label: track, enabled: !quiet && isatty(2) != 0)
            do {
                let written = try separator.separate(
                    input: file, into: base.appendingPathComponent(track), progress: { bar.update($0) })
                bar.finish()
                if !quiet { FileHandle.standardError.write(Data("\(track): \(written.map(\.lastPathComponent).joined(separator: ", "))\n".utf8)) }
            } catch {
                bar.finish()
                FileHandle.standardError.write(Data("error: \(file): \(error)\n".utf8))
                failures += 1
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

/// A user-facing error printed as is.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`, turning library errors into messages ArgumentParser prints without a stack.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as any CustomStringConvertible {
        throw CLIError(error.description)
    }
}

/// A one-line progress bar on stderr, redrawn in place.
final class ProgressBar {
    let label: String
    let enabled: Bool
    let started = Date()

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled
    }

    func update(_ p: SeparationProgress) {
        guard enabled else { return }
        let width = 30
        let filled = Int(p.fraction * Double(width))
        let elapsed = Date().timeIntervalSince(started)
        let eta = p.fraction > 0 ? elapsed * (1 - p.fraction) / p.fraction : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "\r%@ %@ %3d%% %d/%d chunks, ETA %.0fs ", label, bar, Int(p.fraction * 100), p.completedChunks, p.totalChunks, eta)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
