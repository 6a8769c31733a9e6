import Crypto
public import Foundation

/// Downloads published models into a model folder, the way demucs 4.1.0 does: first the
/// HuggingFace `adefossez/*` repositories (bag yaml + one safetensors file per member), then the
/// legacy `dl.fbaipublicfiles.com` `.th` files, whose names carry the first 8 hex digits of their
/// sha256, verified here. Files are written as `.part`, resumed where a previous try stopped
/// (curl `-C -`), and renamed into place only when complete.
///
/// Reference: `demucs/hf.py` (`hf_repo_name`), `demucs/pretrained.py`, `demucs/remote/*`.
public struct ModelDownloader: Sendable {
    /// `https://huggingface.co` unless overridden (tests use a local server).
    public var huggingFaceBase: String
    /// `https://dl.fbaipublicfiles.com/demucs` unless overridden.
    public var legacyBase: String
    public var namespace = "adefossez"
    /// Where configured models (RoFormers) come from instead of their publishers' URLs:
    /// `MIRROR/FILE` for each file name. Nil fetches from the publishers.
    public var mirror: String?

    public init(huggingFaceBase: String = "https://huggingface.co", legacyBase: String = "https://dl.fbaipublicfiles.com/demucs",
                mirror: String? = nil) {
        self.huggingFaceBase = huggingFaceBase
        self.legacyBase = legacyBase
        self.mirror = mirror
    }

    /// Bag files of the published models (`demucs/remote/*.yaml`).
    static let bags: [String: String] = [
        "htdemucs": "models: ['955717e8']\n",
        "htdemucs_ft": "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\nweights: [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.], [0., 0., 0., 1.]]\n",
        "htdemucs_6s": "models: ['5c90dfd2']\n",
        "hdemucs_mmi": "models: ['75fc33f5']\nsegment: 44\n",
        "mdx": "models: ['0d19c1c6', '7ecf8ec1', 'c511e2ab', '7d865c68']\nweights: [[1., 1., 0., 0.], [0., 1., 0., 0.], [1., 0., 1., 1.], [1., 0., 1., 1.]]\nsegment: 44\n",
        "mdx_extra": "models: ['e51eebcc', 'a1d90b5c', '5d2d6c55', 'cfa93e08']\nsegment: 44\n",
        "mdx_q": "models: ['6b9c2ca1', 'b72baf4e', '42e558d4', '305bc58f']\nweights: [[1., 1., 0., 0.], [0., 1., 0., 0.], [1., 0., 1., 1.], [1., 0., 1., 1.]]\nsegment: 44\n",
        "mdx_extra_q": "models: ['83fc094f', '464b36d7', '14fc6a69', '7fd6ef75']\nsegment: 44\n",
    ]

    /// Legacy file of each published signature (`demucs/remote/files.txt`).
    static let legacyFiles: [String: String] = [
        "0d19c1c6": "mdx_final/0d19c1c6-0f06f20e.th", "5d2d6c55": "mdx_final/5d2d6c55-db83574e.th",
        "7d865c68": "mdx_final/7d865c68-3d5dd56b.th", "7ecf8ec1": "mdx_final/7ecf8ec1-70f50cc9.th",
        "a1d90b5c": "mdx_final/a1d90b5c-ae9d2452.th", "c511e2ab": "mdx_final/c511e2ab-fe698775.th",
        "cfa93e08": "mdx_final/cfa93e08-61801ae1.th", "e51eebcc": "mdx_final/e51eebcc-c1b80bdd.th",
        "6b9c2ca1": "mdx_final/6b9c2ca1-3fd82607.th", "b72baf4e": "mdx_final/b72baf4e-8778635e.th",
        "42e558d4": "mdx_final/42e558d4-196e0e1b.th", "305bc58f": "mdx_final/305bc58f-18378783.th",
        "14fc6a69": "mdx_final/14fc6a69-a89dd0ee.th", "464b36d7": "mdx_final/464b36d7-e5a9386e.th",
        "7fd6ef75": "mdx_final/7fd6ef75-a905dd85.th", "83fc094f": "mdx_final/83fc094f-4a16d450.th",
        "955717e8": "hybrid_transformer/955717e8-8726e21a.th", "f7e0c4bc": "hybrid_transformer/f7e0c4bc-ba3fe64a.th",
        "d12395a8": "hybrid_transformer/d12395a8-e57c48e6.th", "92cfc3b6": "hybrid_transformer/92cfc3b6-ef3bcb9c.th",
        "04573f0d": "hybrid_transformer/04573f0d-f3cf25b2.th", "75fc33f5": "hybrid_transformer/75fc33f5-1941ce65.th",
        "5c90dfd2": "hybrid_transformer/5c90dfd2-34c22ccb.th",
    ]

    /// The HuggingFace repository of a model name (`hf_repo_name`).
    public static func huggingFaceRepository(_ name: String) -> String {
        if name == "htdemucs" { return "HTDemucs" }
        if name.hasPrefix("htdemucs_") { return "HTDemucs-" + name.dropFirst("htdemucs_".count) }
        return "Demucs-" + name
    }

    /// Downloads `name` into `directory` unless its files are already there.
    ///
    /// - Parameter progress: (file name, bytes so far) after each file.
    /// - Throws: ``StemifyError`` with ``ErrorCode/modelUnavailable``, saying which files to put where.
    public func pull(_ name: String, into directory: URL, progress: (String) -> Void = { _ in }) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let repo = ModelRepository(directory: directory)
        if let published = PublishedModel.named(name) {
            if repo.configuredFiles(named: name) != nil { return }
            do {
                try pullConfigured(published, into: directory, mirror: mirror, progress: progress)
                return
            } catch {
                throw StemifyError(.modelUnavailable, "model '\(name)' is not installed and cannot be downloaded (no network?); put \(name).\(published.checkpointExtension) (from \(published.checkpointURL)) and \(name).yaml (from \(published.configURL)) in the model folder",
                                   detail: "\(directory.path): \(error)")
            }
        }
        if let spec = try? repo.bagSpec(named: name), spec.models.allSatisfy({ (try? repo.checkpoint(for: $0)) != nil }) { return }
        var failures: [String] = []
        do {
            try pullFromHuggingFace(name, into: directory, progress: progress)
            return
        } catch {
            failures.append("\(error)")
        }
        guard let bag = Self.bags[name] else {
            throw StemifyError(.modelUnavailable, "model '\(name)' is not installed and cannot be downloaded; put \(name).yaml and its checkpoints in the model folder",
                               detail: "\(directory.path): \(failures.joined(separator: "; "))")
        }
        do {
            let spec = try ModelRepository.parseBag(text: bag, path: name)
            for sig in Set(spec.models) where (try? repo.checkpoint(for: sig)) == nil {
                guard let path = Self.legacyFiles[sig] else { continue }
                let file = String(path.split(separator: "/").last!)
                try fetch("\(legacyBase)/\(path)", to: directory.appendingPathComponent(file), sha256Prefix: String(file.dropFirst(9).prefix(8)))
                progress(file)
            }
            try bag.write(to: directory.appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
        } catch {
            failures.append("\(error)")
            let files = (try? ModelRepository.parseBag(text: bag, path: name).models.compactMap { Self.legacyFiles[$0] }) ?? []
            throw StemifyError(.modelUnavailable, "model '\(name)' is not installed and cannot be downloaded (no network?); put \(name).yaml and \(files.map { String($0.split(separator: "/").last!) }.joined(separator: ", ")) in the model folder",
                               detail: "\(directory.path): \(failures.joined(separator: "; "))")
        }
    }

    /// Whether a source of `name` answers now (a HEAD of its first file, 5 s at most): what
    /// decides, at submission, between queueing a job that will download its model and
    /// answering `model_unavailable` at once.
    public func canReach(_ name: String) -> Bool {
        var urls: [String] = []
        if let published = PublishedModel.named(name) {
            urls.append(mirror.map { "\($0)/\(name).yaml" } ?? published.configURL)
        } else {
            urls.append("\(huggingFaceBase)/\(namespace)/\(Self.huggingFaceRepository(name))/resolve/main/\(name).yaml")
            if let bag = Self.bags[name], let first = try? ModelRepository.parseBag(text: bag, path: name).models.first,
               let path = Self.legacyFiles[first] {
                urls.append("\(legacyBase)/\(path)")
            }
        }
        return urls.contains { url in
            let result = try? Subprocess.run("curl", ["--head", "--fail", "--silent", "--location", "--max-time", "5", "--output", "/dev/null", "--", url])
            return result?.status == 0
        }
    }

    private func pullFromHuggingFace(_ name: String, into directory: URL, progress: (String) -> Void) throws {
        let base = "\(huggingFaceBase)/\(namespace)/\(Self.huggingFaceRepository(name))/resolve/main"
        let yaml = directory.appendingPathComponent("\(name).yaml.download")
        try fetch("\(base)/\(name).yaml", to: yaml, sha256Prefix: nil)
        defer { try? FileManager.default.removeItem(at: yaml) }
        let spec = try ModelRepository.parseBag(at: yaml)
        for sig in Set(spec.models) {
            try fetch("\(base)/\(sig).safetensors", to: directory.appendingPathComponent("\(sig).safetensors"), sha256Prefix: nil)
            progress("\(sig).safetensors")
        }
        // The bag file last: a model counts as present only when all its files are.
        try FileManager.default.moveItem(at: yaml, to: directory.appendingPathComponent("\(name).yaml"))
    }

    /// Downloads `url` to `destination` through `destination.part` (resumed if present), checks
    /// the sha256 prefix when given, then renames into place.
    func fetch(_ url: String, to destination: URL, sha256Prefix: String?) throws {
        if FileManager.default.fileExists(atPath: destination.path) { return }
        let part = destination.path + ".part"
        let result = try Subprocess.run("curl", ["--fail", "--silent", "--show-error", "--location", "--retry", "2",
                                                 "--connect-timeout", "10", "--continue-at", "-", "--output", part, "--", url])
        guard result.status == 0 else {
            throw DownloadError(url: url, reason: String(decoding: result.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if let prefix = sha256Prefix {
            let digest = try sha256(of: part)
            guard digest.hasPrefix(prefix) else {
                try? FileManager.default.removeItem(atPath: part)
                throw DownloadError(url: url, reason: "checksum mismatch: sha256 \(digest.prefix(8)), expected \(prefix)")
            }
        }
        try FileManager.default.moveItem(atPath: part, toPath: destination.path)
    }

    /// Checks every checkpoint whose name carries a checksum, and every one whose first
    /// download recorded one (`FILE.sha256`); returns the files that fail.
    public func verify(directory: URL) throws -> [String] {
        let all = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        let named = all.filter { $0.hasSuffix(".th") && $0.contains("-") }
        let recorded = all.filter { $0.hasSuffix(".sha256") }.map { String($0.dropLast(".sha256".count)) }
        return try (named + recorded).sorted().filter { file in
            let path = directory.appendingPathComponent(file).path
            if recorded.contains(file) {
                let expected = (try? String(contentsOfFile: path + ".sha256", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                return try !FileManager.default.fileExists(atPath: path) || sha256(of: path) != expected
            }
            let expected = String(file.split(separator: "-").last!.dropLast(3))
            return try !sha256(of: path).hasPrefix(expected)
        }
    }

    func sha256(of path: String) throws -> String { try Digest.hex(file: path) }
}

/// A download that failed: the URL and curl's reason.
public struct DownloadError: Error, CustomStringConvertible {
    public var url: String
    public var reason: String
    public var description: String { "\(url): \(reason)" }
}
