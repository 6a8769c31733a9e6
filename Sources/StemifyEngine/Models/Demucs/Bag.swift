/// A network that separates one chunk; every Demucs family conforms.
public protocol SeparationModel: Sendable {
    /// Stem names in output order.
    var sources: [String] { get }
    /// Channels of the audio the model takes and returns (2).
    var audioChannels: Int { get }
    /// Sample rate of that audio (44100).
    var samplerate: Int { get }
    /// Samples per chunk when a track is split: `int(segment · samplerate)`.
    var segmentLength: Int { get }
    /// Samples the network is run on for a chunk of `length` samples (the chunk is centred in
    /// real neighbouring audio up to this length, `TensorChunk.padded`).
    func validLength(_ length: Int) -> Int
    /// `[C, validLength] → [S, C, validLength]`.
    func forward(_ mix: Tensor) -> Tensor
    /// The model as a bag with `segment: seconds` leaves it (demucs 4.1.0 `BagOfModels`: the
    /// bag's segment replaces the member's, except that a transformer model keeps a shorter
    /// training segment).
    func withBagSegment(_ seconds: Double) -> any SeparationModel
}

extension HTDemucs: SeparationModel {
    public var sources: [String] { config.sources }
    public var audioChannels: Int { config.audioChannels }
    public var samplerate: Int { config.samplerate }
    public var segmentLength: Int { config.trainingLength }
    public func validLength(_ length: Int) -> Int { config.trainingLength }
    public func forward(_ mix: Tensor) -> Tensor { forward(mix, trace: nil) }
    public func withBagSegment(_ seconds: Double) -> any SeparationModel {
        guard seconds <= config.segmentSeconds else { return self }
        // Parity: `int(segment · samplerate)` with the bag's float segment.
        var c = config
        c.segment = (Int(Double(c.samplerate) * seconds), c.samplerate)
        return HTDemucs(config: c, weights: weights)
    }
}

/// Loads any supported model class from a package.
///
/// - Throws: ``CheckpointError/unsupportedClass(_:)`` for a class the engine does not implement yet.
public func loadModel(_ package: ModelPackage) throws -> any SeparationModel {
    if package.quantized != nil { return try loadModel(try package.dequantized()) }
    switch package.klass {
    case "demucs.htdemucs.HTDemucs": return try HTDemucs(package: package)
    case "demucs.hdemucs.HDemucs": return try HDemucs(package: package)
    case "demucs.demucs.Demucs": return try Demucs(package: package)
    default: throw CheckpointError.unsupportedClass(package.klass)
    }
}

/// Several models whose outputs are averaged per source with weights (`demucs/apply.py`,
/// `BagOfModels`). A single model is a bag of one with unit weights.
public struct ModelBag: Sendable {
    public var models: [any SeparationModel]
    /// `weights[m][s]`: weight of model `m` for source `s`.
    public var weights: [[Float]]

    /// Stem names in output order.
    public var sources: [String] { models[0].sources }
    public var samplerate: Int { models[0].samplerate }
    public var audioChannels: Int { models[0].audioChannels }

    /// - Throws: ``BagError`` when members disagree on sources, rate or channels, or the
    ///   weights do not have one row per model and one column per source.
    public init(models: [any SeparationModel], weights: [[Float]]? = nil) throws {
        guard let first = models.first else { throw BagError.empty }
        for m in models {
            guard m.sources == first.sources, m.samplerate == first.samplerate, m.audioChannels == first.audioChannels else {
                throw BagError.mismatchedMembers
            }
        }
        let w = weights ?? Array(repeating: Array(repeating: 1, count: first.sources.count), count: models.count)
        guard w.count == models.count, w.allSatisfy({ $0.count == first.sources.count }) else {
            throw BagError.badWeights(models: models.count, sources: first.sources.count)
        }
        self.models = models
        self.weights = w
    }
}

/// Why a bag could not be formed.
public enum BagError: Error, Equatable, CustomStringConvertible {
    /// The bag lists no model.
    case empty
    /// Members have different sources, sample rates or channel counts.
    case mismatchedMembers
    /// `weights` is not a models × sources matrix.
    case badWeights(models: Int, sources: Int)

    public var description: String {
        switch self {
        case .empty: "the bag lists no model"
        case .mismatchedMembers: "the bag's models differ in sources, sample rate or channels"
        case let .badWeights(m, s): "bag weights must be \(m) rows (one per model) of \(s) numbers (one per source)"
        }
    }
}
