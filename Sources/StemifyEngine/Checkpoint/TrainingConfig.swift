import Foundation
import Yams

/// The YAML configuration published beside a Music-Source-Separation-Training checkpoint
/// (`msst` 0.1.0 reads it with `yaml.load(..., FullLoader)` into a `ConfigDict`).
///
/// It is read as plain data: Yams composes a node tree and nothing is constructed from tags, so
/// `!!python/tuple` is a list and any other `!!python/...` tag is just a tag. Sizes are bounded
/// (64 KiB of text, 100,000 nodes, so aliases cannot blow up).
public struct TrainingConfig: Sendable {
    /// The network families the engine implements, named as the reference's `--model_type`.
    public enum Family: String, Sendable, CaseIterable {
        case bsRoformer = "bs_roformer"
        case melBandRoformer = "mel_band_roformer"
        case scnet
    }

    public var family: Family
    /// The `model:` section: the network's constructor arguments.
    public var model: [String: KwargValue]
    /// `inference.chunk_size`, else `audio.chunk_size`: samples per chunk.
    public var chunkSize: Int
    /// `inference.num_overlap`: chunks covering each sample (step = chunk / num_overlap).
    public var numOverlap: Int
    /// `inference.batch_size`: chunks per forward in the reference; it decides which chunks
    /// fade (see ``FadedChunkSeparation``), so it is kept for parity.
    public var batchSize: Int
    /// `audio.sample_rate`.
    public var sampleRate: Int
    /// `inference.normalize`: msst's inference divides the track by the mean and standard
    /// deviation of its mono mix before `demix` and undoes it on the stems.
    public var normalize: Bool
    /// `training.instruments`: the network's outputs, in order.
    public var instruments: [String]
    /// `training.target_instrument`: the one stem a single-output network estimates.
    public var targetInstrument: String?

    /// Stems the separation returns: the target alone when there is one, else every instrument.
    public var stems: [String] { targetInstrument.map { [$0] } ?? instruments }

    public init(yaml text: String, path: String = "config") throws {
        let bad = { (why: String) in CheckpointError.invalidConfig(path: path, reason: why) }
        guard text.utf8.count <= 1 << 16 else { throw bad("larger than 64 KiB") }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw bad("not valid YAML") }
        var budget = 100_000
        guard let root, case let .dict(top) = try Self.value(root, budget: &budget) else { throw bad("not a mapping") }
        func section(_ name: String) throws -> [String: KwargValue] {
            guard let v = top[name] else { return [:] }
            guard case let .dict(d) = v else { throw bad("'\(name)' is not a mapping") }
            return d
        }
        let (audio, inference, training) = (try section("audio"), try section("inference"), try section("training"))
        model = try section("model")
        guard !model.isEmpty else { throw bad("no 'model' section") }
        func int(_ d: [String: KwargValue], _ key: String, in name: String, range: ClosedRange<Int>) throws -> Int? {
            guard let v = d[key] else { return nil }
            guard let i = v.int(in: range) else { throw bad("'\(name).\(key)' must be an integer in \(range.lowerBound)...\(range.upperBound), got \(v)") }
            return i
        }
        guard let chunk = try int(inference, "chunk_size", in: "inference", range: 1...(1 << 26))
                ?? int(audio, "chunk_size", in: "audio", range: 1...(1 << 26)) else { throw bad("no 'audio.chunk_size'") }
        chunkSize = chunk
        numOverlap = try int(inference, "num_overlap", in: "inference", range: 1...chunk) ?? 2
        batchSize = try int(inference, "batch_size", in: "inference", range: 1...1024) ?? 1
        sampleRate = try int(audio, "sample_rate", in: "audio", range: 1000...768_000) ?? 44100
        switch inference["normalize"] {
        case nil, .none?: normalize = false
        case let .bool(b)?: normalize = b
        case let v?: throw bad("'inference.normalize' must be true or false, got \(v)")
        }
        guard case let .list(names)? = training["instruments"], !names.isEmpty, names.count <= 64 else {
            throw bad("'training.instruments' must be a list of stem names")
        }
        instruments = try names.map { v in
            guard case let .string(s) = v, Self.isStemName(s) else { throw bad("stem name \(v) must be letters, digits, '_' or '-'") }
            return s
        }
        guard Set(instruments).count == instruments.count else { throw bad("'training.instruments' repeats a name") }
        switch training["target_instrument"] {
        case nil, .none?: targetInstrument = nil
        case let .string(s)?:
            guard instruments.contains(s) else { throw bad("target_instrument '\(s)' is not in training.instruments") }
            targetInstrument = s
        case let v?: throw bad("'training.target_instrument' must be a name, got \(v)")
        }
        family = try Self.family(model: model, training: training, bad: bad)
    }

    /// `training.model_type` when present; otherwise the key only that family's constructor
    /// takes: `freqs_per_bands` (BS-RoFormer), `num_bands` (Mel-Band RoFormer), `band_SR`
    /// (SCNet).
    private static func family(model: [String: KwargValue], training: [String: KwargValue], bad: (String) -> CheckpointError) throws -> Family {
        if case let .string(name)? = training["model_type"] {
            guard let f = Family(rawValue: name) else {
                throw bad("model_type '\(name)' is not one the engine implements (\(Family.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return f
        }
        if model["freqs_per_bands"] != nil { return .bsRoformer }
        if model["num_bands"] != nil { return .melBandRoformer }
        if model["band_SR"] != nil { return .scnet }
        throw bad("cannot tell the model family: no training.model_type, and the model section has none of freqs_per_bands, num_bands, band_SR")
    }

    static func isStemName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-") }
    }

    private static func value(_ node: Node, budget: inout Int) throws -> KwargValue {
        budget -= 1
        guard budget >= 0 else { throw CheckpointError.invalidConfig(path: "config", reason: "too many YAML nodes") }
        switch node {
        case let .scalar(s):
            if s.style == .plain {
                if node.null != nil { return .none }
                if let b = node.bool { return .bool(b) }
                if let i = node.int { return .int(i) }
                if let d = node.float { return .double(d) }
            }
            return .string(s.string)
        case let .sequence(seq):
            return .list(try seq.map { try value($0, budget: &budget) })
        case let .mapping(map):
            var out: [String: KwargValue] = [:]
            for (k, v) in map {
                guard case let .scalar(key) = k else { throw CheckpointError.invalidConfig(path: "config", reason: "a mapping key is not a scalar") }
                out[key.string] = try value(v, budget: &budget)
            }
            return .dict(out)
        case .alias:
            throw CheckpointError.invalidConfig(path: "config", reason: "unresolved YAML alias")
        }
    }
}

extension [String: KwargValue] {
    /// A constructor argument that must be an integer in `range`; `fallback` when absent.
    func int(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
        guard let v = self[key] else { return fallback }
        guard let i = v.int(in: range) else { throw CheckpointError.unsupportedKwarg(key: key, value: "\(v)") }
        return i
    }

    /// The STFT arguments every family takes under its own names: a power-of-two size, a hop
    /// no longer than it, and a window exactly as long (the only kind the engine implements).
    func stft(size: String, _ sizeDefault: Int, hop: String, _ hopDefault: Int, window: String) throws -> (nfft: Int, hop: Int) {
        let nfft = try int(size, sizeDefault, 16...65536)
        guard nfft & (nfft - 1) == 0 else { throw CheckpointError.unsupportedKwarg(key: size, value: "\(nfft) (a power of two is needed)") }
        let hopLength = try int(hop, hopDefault, 1...nfft)
        guard try int(window, nfft, 1...65536) == nfft else {
            throw CheckpointError.unsupportedKwarg(key: window, value: "\(self[window]!) (only windows as long as \(size))")
        }
        return (nfft, hopLength)
    }

    /// A boolean constructor argument; `fallback` when absent or null.
    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        switch self[key] {
        case nil, .none?: return fallback
        case let .bool(b)?: return b
        case let v?: throw CheckpointError.unsupportedKwarg(key: key, value: "\(v)")
        }
    }
}

extension KwargValue {
    /// The value as an integer in `range` (a float with no fraction counts), else nil.
    func int(in range: ClosedRange<Int>) -> Int? {
        switch self {
        case let .int(i): return range.contains(i) ? i : nil
        case let .double(d) where d.rounded() == d && d >= Double(range.lowerBound) && d <= Double(range.upperBound): return Int(d)
        default: return nil
        }
    }
}
