/// A model ready to separate whole tracks: a Demucs bag with the reference's `apply_model`, or
/// a configured network (RoFormer) with Music-Source-Separation-Training's chunked inference.
public enum LoadedModel: Sendable {
    case demucs(ModelBag)
    case configured(ConfiguredModel)

    /// Stems a separation returns, in order.
    public var sources: [String] {
        switch self {
        case let .demucs(bag): bag.sources
        case let .configured(model): model.sources
        }
    }

    public var samplerate: Int {
        switch self {
        case let .demucs(bag): bag.samplerate
        case let .configured(model): model.samplerate
        }
    }

    /// Channels the input is converted to. Demucs takes its own count; configured models take
    /// mono or stereo as it is and return the same count (`demix` separates mono as duplicated
    /// stereo and keeps the first channel).
    public func inputChannels(for source: Int) -> Int {
        switch self {
        case let .demucs(bag): bag.audioChannels
        case .configured: min(max(source, 1), 2)
        }
    }

    /// Runs the model's recipe on `source` (already at ``samplerate`` and
    /// ``inputChannels(for:)``); the closures are those of ``StreamingSeparation/run(_:emit:progress:isCancelled:resume:checkpoint:)``.
    /// Demucs reads `shifts` and `overlap` from `options`, a configured model `overlapCount`;
    /// both read `lanes`.
    public func run(
        _ source: any AudioSource, options: SeparationOptions,
        emit: (Int, Tensor, Tensor) throws -> Void,
        progress: (SeparationProgress) -> Void,
        isCancelled: () -> Bool,
        resume: SeparationCheckpoint?,
        checkpoint: ((SeparationCheckpoint) throws -> Void)?
    ) throws {
        switch self {
        case let .demucs(bag):
            try StreamingSeparation(bag: bag, options: options)
                .run(source, emit: emit, progress: progress, isCancelled: isCancelled, resume: resume, checkpoint: checkpoint)
        case let .configured(model):
            try FadedChunkSeparation(model: model, numOverlap: options.overlapCount, lanes: options.lanes)
                .run(source, emit: emit, progress: progress, isCancelled: isCancelled, resume: resume, checkpoint: checkpoint)
        }
    }
}
