public import StemifyEngine
public import Foundation
import Yams

/// Why a model could not be found or loaded from a model folder.
public enum ModelRepositoryError: Error, Equatable, CustomStringConvertible {
    /// Neither `NAME.yaml` nor a checkpoint for signature `NAME` is in the folder.
    case notFound(name: String, directory: String)
    /// A bag file lists a signature with no checkpoint in the folder.
    case missingMember(bag: String, signature: String, directory: String)
    /// Several checkpoints match one signature (`SIG-aaaa.th` and `SIG-bbbb.th`).
    case ambiguous(signature: String, files: [String])
    /// The bag file is not valid YAML or lacks `models`.
    case invalidBagFile(path: String, reason: String)

    public var description: String {
        switch self {
        case let .notFound(name, dir):
            "model '\(name)' is not in \(dir): put its bag file \(name).yaml and checkpoints (SIG-CHECKSUM.th, SIG.th or SIG.safetensors) there"
        case let .missingMember(bag, sig, dir):
            "bag '\(bag)' lists model '\(sig)', but \(dir) has no \(sig).safetensors, \(sig).th or \(sig)-CHECKSUM.th"
        case let .ambiguous(sig, files): "several checkpoints for '\(sig)': \(files.joined(separator: ", "))"
        case let .invalidBagFile(path, reason): "invalid bag file \(path): \(reason)"
        }
    }
}

/// A bag as a `NAME.yaml` file describes it (`demucs/remote/*.yaml`).
public struct BagSpec: Sendable, Equatable {
    /// Member signatures, in order (they may repeat).
    public var models: [String]
    /// `weights[m][s]`, or nil for all ones.
    public var weights: [[Float]]?
    /// Segment override in seconds, or nil.
    public var segment: Double?
}

/// A folder laid out like the official model repository: `SIG-CHECKSUM.th`, `SIG.th` or
/// `SIG.safetensors` checkpoints and `NAME.yaml` bag files. Also the layout of
/// `DEMUCS_MODEL_PATH`. Models published with a training configuration (RoFormers) sit beside
/// them as `NAME.ckpt` (or `.pth`) + `NAME.yaml`.
///
/// Reference: `demucs/repo.py` (`LocalRepo`, `BagOnlyRepo`), `demucs/pretrained.py`.
public struct ModelRepository: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// The checkpoint and configuration of a model published the Music-Source-Separation-Training
    /// way: `NAME.ckpt` or `NAME.pth` beside `NAME.yaml`. Nil when there is no such pair (then
    /// `NAME.yaml` is a Demucs bag file).
    public func configuredFiles(named name: String) -> (checkpoint: URL, config: URL)? {
        let fm = FileManager.default
        let yaml = directory.appendingPathComponent("\(name).yaml")
        guard fm.fileExists(atPath: yaml.path) else { return nil }
        for ext in ["ckpt", "pth"] {
            let url = directory.appendingPathComponent("\(name).\(ext)")
            if fm.fileExists(atPath: url.path) { return (url, yaml) }
        }
        return nil
    }

    /// The model called `name`: a configured model (``configuredFiles(named:)``) or a Demucs bag.
    public func load(named name: String) throws -> LoadedModel {
        if let files = configuredFiles(named: name) {
            return .configured(try ConfiguredModel.load(checkpoint: files.checkpoint, config: files.config))
        }
        return .demucs(try loadBag(named: name))
    }

    /// The bag for `name`: `NAME.yaml` if present, else a bag of the single checkpoint `NAME`.
    public func bagSpec(named name: String) throws -> BagSpec {
        let yaml = directory.appendingPathComponent("\(name).yaml")
        if FileManager.default.fileExists(atPath: yaml.path) {
            return try Self.parseBag(at: yaml)
        }
        if try checkpoint(for: name) != nil { return BagSpec(models: [name], weights: nil, segment: nil) }
        throw ModelRepositoryError.notFound(name: name, directory: directory.path)
    }

    /// The checkpoint file for a signature, or nil when there is none.
    public func checkpoint(for signature: String) throws -> URL? {
        let fm = FileManager.default
        for candidate in ["\(signature).safetensors", "\(signature).th"] {
            let url = directory.appendingPathComponent(candidate)
            if fm.fileExists(atPath: url.path) { return url }
        }
        let files = ((try? fm.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasPrefix("\(signature)-") && $0.hasSuffix(".th") }
            .sorted()
        if files.count > 1 { throw ModelRepositoryError.ambiguous(signature: signature, files: files) }
        return files.first.map { directory.appendingPathComponent($0) }
    }

    /// Loads every member and forms the bag, applying the bag's segment rule.
    public func loadBag(named name: String) throws -> ModelBag {
        let spec = try bagSpec(named: name)
        var cache: [String: any SeparationModel] = [:]
        var models: [any SeparationModel] = []
        for sig in spec.models {
            if let m = cache[sig] {
                models.append(m)
                continue
            }
            guard let url = try checkpoint(for: sig) else {
                throw ModelRepositoryError.missingMember(bag: name, signature: sig, directory: directory.path)
            }
            var model = try loadModel(try ModelPackage.load(contentsOf: url))
            if let segment = spec.segment { model = model.withBagSegment(segment) }
            cache[sig] = model
            models.append(model)
        }
        return try ModelBag(models: models, weights: spec.weights)
    }

    /// Bag files, single checkpoints and configured models (checkpoint + YAML pairs) in the
    /// folder, sorted.
    public func list() -> (bags: [String], singles: [String], configured: [String]) {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let yamls = files.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        let configured = yamls.filter { configuredFiles(named: $0) != nil }
        let bags = yamls.filter { configuredFiles(named: $0) == nil }
        var singles = Set<String>()
        for f in files {
            if f.hasSuffix(".safetensors") { singles.insert(String(f.dropLast(12))) }
            else if f.hasSuffix(".th") { singles.insert(String(f.dropLast(3).split(separator: "-")[0])) }
        }
        return (bags, singles.sorted(), configured)
    }

    static func parseBag(at url: URL) throws -> BagSpec {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "unreadable")
        }
        return try parseBag(text: text, path: url.path)
    }

    static func parseBag(text: String, path: String) throws -> BagSpec {
        let url = URL(fileURLWithPath: path)
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch {
            throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "not valid YAML")
        }
        guard let dict = node as? [String: Any] else { throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "not a mapping") }
        guard let models = dict["models"] as? [Any], !models.isEmpty else {
            throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "no 'models' list")
        }
        let sigs = models.map { "\($0)" }
        var weights: [[Float]]?
        if let w = dict["weights"] {
            guard let rows = w as? [[Any]] else { throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "'weights' is not a list of lists") }
            weights = try rows.map { row in
                try row.map { v -> Float in
                    if let d = v as? Double { return Float(d) }
                    if let i = v as? Int { return Float(i) }
                    throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "weight \(v) is not a number")
                }
            }
        }
        var segment: Double?
        if let s = dict["segment"] {
            if let d = s as? Double { segment = d } else if let i = s as? Int { segment = Double(i) } else {
                throw ModelRepositoryError.invalidBagFile(path: url.path, reason: "'segment' is not a number")
            }
        }
        return BagSpec(models: sigs, weights: weights, segment: segment)
    }
}
