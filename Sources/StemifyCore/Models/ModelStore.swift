public import StemifyEngine
public import Foundation

/// A model name the service offers, with what a client needs to choose it.
public struct ModelInfo: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    /// `demucs`, or the configured family (`bs_roformer`, `mel_band_roformer`).
    public var family: String
    /// Stems it produces.
    public var sources: [String]
    /// Its files are in the model folder.
    public var available: Bool
    /// Wall time relative to htdemucs on the same track (measured with `tools/benchmark.py`).
    public var relativeCost: Double
    /// RoFormer and SCNet models: the configuration's `num_overlap`, at which `relativeCost` holds.
    public var numOverlap: Int?
    /// Published SDR per stem, where it was published, and the weights' licence.
    public var sdr: [String: Double]?
    public var sdrSource: String?
    public var licence: String?

    public init(name: String, description: String, family: String = "demucs", sources: [String], available: Bool, relativeCost: Double,
                numOverlap: Int? = nil, sdr: [String: Double]? = nil, sdrSource: String? = nil, licence: String? = nil) {
        self.numOverlap = numOverlap
        self.name = name
        self.description = description
        self.family = family
        self.sources = sources
        self.available = available
        self.relativeCost = relativeCost
        self.sdr = sdr
        self.sdrSource = sdrSource
        self.licence = licence
    }

    enum CodingKeys: String, CodingKey {
        case name, description, family, sources, available, relativeCost = "relative_cost", numOverlap = "num_overlap", sdr, sdrSource = "sdr_source", licence
    }
}

/// Models by name over a model folder (``ModelRepository``), with loaded bags cached.
///
/// The published names are always listed (every one runs on the native engine). Any other bag
/// file in the folder (a user's own or fine-tuned model) is offered too.
public final class ModelStore: @unchecked Sendable {
    public let repository: ModelRepository
    private let lock = NSLock()
    private var cache: [String: LoadedModel] = [:]

    /// Fetches published models on first use; nil when downloads are off.
    public let downloader: ModelDownloader?

    public init(directory: URL, downloader: ModelDownloader? = nil) {
        repository = ModelRepository(directory: directory)
        self.downloader = downloader
    }

    private static let four = ["drums", "bass", "other", "vocals"]

    static let catalog: [(name: String, description: String, sources: [String], cost: Double)] = [
        ("htdemucs", "Hybrid Transformer Demucs v4: the default, good quality at moderate speed", four, 1),
        ("htdemucs_ft", "Fine-tuned htdemucs bag: best quality, about 4× slower", four, 4),
        ("htdemucs_6s", "htdemucs with guitar and piano stems (piano is weak)", four + ["guitar", "piano"], 0.8),
        ("hdemucs_mmi", "Hybrid Demucs v3 trained on extra data: the previous generation's best single model", four, 0.7),
        ("mdx", "Demucs v3 MDX challenge bag: two waveform and two hybrid networks", four, 2.8),
        ("mdx_extra", "MDX bag of four hybrid networks trained on extra data", four, 2.8),
        ("mdx_q", "Quantized mdx: the same networks from a 4× smaller download", four, 2.8),
        ("mdx_extra_q", "Quantized mdx_extra: the same networks from a 4× smaller download", four, 2.8),
    ]

    /// Every offered model.
    public func list() -> [ModelInfo] {
        var out = Self.catalog.map { entry in
            ModelInfo(name: entry.name, description: entry.description, sources: entry.sources,
                      available: isAvailable(entry.name), relativeCost: entry.cost)
        }
        for p in PublishedModel.catalog {
            out.append(ModelInfo(name: p.name, description: p.description, family: p.family.rawValue, sources: p.sources,
                                 available: isAvailable(p.name), relativeCost: p.relativeCost, numOverlap: p.numOverlap, sdr: p.sdr,
                                 sdrSource: p.sdrSource, licence: p.licence))
        }
        let known = Set(out.map(\.name))
        let listing = repository.list()
        for bag in listing.bags where !known.contains(bag) {
            out.append(ModelInfo(name: bag, description: "Custom model from the model folder", sources: [],
                                 available: isAvailable(bag), relativeCost: 1))
        }
        for name in listing.configured where !known.contains(name) {
            let config = repository.configuredFiles(named: name)
                .flatMap { try? String(contentsOf: $0.config, encoding: .utf8) }
                .flatMap { try? TrainingConfig(yaml: $0) }
            let sources = config.map { $0.stems == ["vocals"] ? ["vocals", "instrumental"] : $0.stems } ?? []
            let family = config.map { ["bs_roformer": "BS-RoFormer", "mel_band_roformer": "Mel-Band RoFormer", "scnet": "SCNet"][$0.family.rawValue]! } ?? "Configured"
            out.append(ModelInfo(name: name, description: "\(family) model from the model folder", family: config?.family.rawValue ?? "bs_roformer",
                                 sources: sources, available: config != nil, relativeCost: 1, numOverlap: config?.numOverlap))
        }
        return out
    }

    /// Whether the bag file and every member checkpoint (or a configured model's pair) are in the folder.
    public func isAvailable(_ name: String) -> Bool {
        if repository.configuredFiles(named: name) != nil { return true }
        guard let spec = try? repository.bagSpec(named: name) else { return false }
        return spec.models.allSatisfy { (try? repository.checkpoint(for: $0)) != nil }
    }

    /// Checks that `name` can run here, and takes `numOverlap` when one is given (only the
    /// chunked RoFormer and SCNet models do), throwing the error a client should see.
    public func validate(_ name: String, numOverlap: Int? = nil) throws {
        let entry = Self.catalog.first { $0.name == name }
        let listing = repository.list()
        let published = PublishedModel.named(name)
        if entry == nil && published == nil && !listing.bags.contains(name) && !listing.configured.contains(name) {
            throw StemifyError(.unknownModel, "unknown model '\(name)'; GET /api/models lists the models")
        }
        if !isAvailable(name) && !(downloader != nil && (ModelDownloader.bags[name] != nil || published != nil)) {
            throw StemifyError(.modelUnavailable, "model '\(name)' is not installed on this server; put \(name).yaml and its checkpoints in the model folder",
                               detail: repository.directory.path)
        }
        // Not installed but downloadable: only if its source answers, or the job would be
        // accepted and fail later.
        if !isAvailable(name), let downloader, !reachable(name, downloader) {
            throw StemifyError(.modelUnavailable, "model '\(name)' is not installed on this server and cannot be downloaded now; try again later, or install it (stemify models pull \(name))",
                               detail: repository.directory.path)
        }
        if numOverlap != nil && published == nil && !listing.configured.contains(name) {
            throw StemifyError(.invalidOption, "'num_overlap' applies to RoFormer and SCNet models; '\(name)' is a Demucs model (use 'quality')")
        }
    }

    /// Reachability answers, kept a minute so a burst of submissions asks once.
    private var reachability: [String: (at: Date, reachable: Bool)] = [:]

    private func reachable(_ name: String, _ downloader: ModelDownloader) -> Bool {
        if let known = lock.withLock({ reachability[name] }), Date().timeIntervalSince(known.at) < 60 { return known.reachable }
        let answer = downloader.canReach(name)
        lock.withLock { reachability[name] = (Date(), answer) }
        return answer
    }

    /// The loaded model (loaded once, then shared by all workers).
    public func model(_ name: String) throws -> LoadedModel {
        lock.lock()
        defer { lock.unlock() }
        if let b = cache[name] { return b }
        if !isAvailable(name), let downloader {
            try downloader.pull(name, into: repository.directory)
        }
        let b = try repository.load(named: name)
        cache[name] = b
        return b
    }
}
