import Foundation
public import StemifyEngine

/// A model published with a training configuration (Music-Source-Separation-Training layout):
/// where its two files are, what it gives, how good the publisher measured it, and what it costs.
public struct PublishedModel: Sendable, Equatable {
    public var name: String
    public var family: TrainingConfig.Family
    public var description: String
    /// Files written to the model folder: stems the service returns (a vocals model adds the
    /// instrumental, mix minus vocals).
    public var sources: [String]
    public var checkpointURL: String
    public var configURL: String
    /// Download size, from the parameter count (float32); the publishers state none.
    public var approximateMegabytes: Int
    public var licence: String
    /// Published SDR in dB per stem (or "average"), and where it was published.
    public var sdr: [String: Double]
    public var sdrSource: String
    /// Stemify's wall time per second of audio relative to its htdemucs, each model at its
    /// configuration's overlap, as `tools/relative_cost.py` measured it (2 threads, AVX-512
    /// Xeon, full-size random networks; figures in the README).
    public var relativeCost: Double
    /// The configuration's `inference.num_overlap`, at which `relativeCost` holds; a job's
    /// `num_overlap` scales the time in proportion.
    public var numOverlap: Int

    /// File name of the checkpoint in the publisher's URL (`.ckpt` or `.pth`).
    var checkpointExtension: String { URL(string: checkpointURL)?.pathExtension ?? "ckpt" }

    static let msstConfigs = "https://raw.githubusercontent.com/ZFTurbo/Music-Source-Separation-Training/main/configs"
    static let uvr = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models"
    static let msstReleases = "https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download"

    /// The published checkpoints the engine runs.
    public static let catalog: [PublishedModel] = [
        PublishedModel(
            name: "bs_roformer_viperx_1297", family: .bsRoformer,
            description: "BS-RoFormer vocals (viperx): the best vocals/karaoke model here, about 36× htdemucs's time",
            sources: ["vocals", "instrumental"],
            checkpointURL: "\(uvr)/model_bs_roformer_ep_317_sdr_12.9755.ckpt",
            configURL: "\(msstConfigs)/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml",
            approximateMegabytes: 640, licence: "not stated by the publisher",
            sdr: ["vocals": 10.87], sdrSource: "MVSep multisong dataset", relativeCost: 36, numOverlap: 2),
        PublishedModel(
            name: "bs_roformer_viperx_1053", family: .bsRoformer,
            description: "BS-RoFormer 'other' (viperx): everything but vocals as one stem",
            sources: ["other"],
            checkpointURL: "\(uvr)/model_bs_roformer_ep_937_sdr_10.5309.ckpt",
            configURL: "\(msstConfigs)/viperx/model_bs_roformer_ep_937_sdr_10.5309.yaml",
            approximateMegabytes: 640, licence: "not stated by the publisher",
            sdr: ["other": 6.85], sdrSource: "MVSep multisong dataset", relativeCost: 36, numOverlap: 2),
        PublishedModel(
            name: "mel_roformer_kj", family: .melBandRoformer,
            description: "Mel-Band RoFormer vocals (KimberleyJensen): vocals and karaoke, about 14× htdemucs's time",
            sources: ["vocals", "instrumental"],
            checkpointURL: "https://huggingface.co/KimberleyJSN/melbandroformer/resolve/main/MelBandRoformer.ckpt",
            configURL: "\(msstConfigs)/KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml",
            approximateMegabytes: 910, licence: "not stated by the publisher",
            sdr: ["vocals": 10.98], sdrSource: "MVSep multisong dataset", relativeCost: 14, numOverlap: 2),
        PublishedModel(
            name: "mel_roformer_viperx_1143", family: .melBandRoformer,
            description: "Mel-Band RoFormer vocals (viperx)",
            sources: ["vocals", "instrumental"],
            checkpointURL: "\(uvr)/model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt",
            configURL: "\(msstConfigs)/viperx/model_mel_band_roformer_ep_3005_sdr_11.4360.yaml",
            approximateMegabytes: 910, licence: "not stated by the publisher",
            sdr: ["vocals": 9.67], sdrSource: "MVSep multisong dataset", relativeCost: 25, numOverlap: 2),
        PublishedModel(
            name: "bs_roformer_4stem_965", family: .bsRoformer,
            description: "BS-RoFormer four stems trained on MUSDB18-HQ only",
            sources: ["drums", "bass", "other", "vocals"],
            checkpointURL: "\(msstReleases)/v1.0.12/model_bs_roformer_ep_17_sdr_9.6568.ckpt",
            configURL: "\(msstReleases)/v1.0.12/config_bs_roformer_384_8_2_485100.yaml",
            approximateMegabytes: 530, licence: "not stated by the publisher",
            sdr: ["average": 9.65], sdrSource: "MUSDB18-HQ test set", relativeCost: 22, numOverlap: 2),
        PublishedModel(
            name: "scnet_small", family: .scnet,
            description: "SCNet four stems (starrytong): htdemucs's quality in a tenth of its parameters",
            sources: ["drums", "bass", "other", "vocals"],
            checkpointURL: "\(msstReleases)/v.1.0.6/scnet_checkpoint_musdb18.ckpt",
            configURL: "\(msstConfigs)/config_musdb18_scnet.yaml",
            approximateMegabytes: 45, licence: "not stated by the publisher",
            sdr: ["average": 9.03], sdrSource: "MUSDB18-HQ test set", relativeCost: 2.9, numOverlap: 4),
        PublishedModel(
            name: "scnet_large", family: .scnet,
            description: "SCNet large four stems: better than htdemucs, about 9× its time",
            sources: ["drums", "bass", "other", "vocals"],
            checkpointURL: "\(msstReleases)/v1.0.8/model_scnet_sdr_9.3244.ckpt",
            configURL: "\(msstConfigs)/config_musdb18_scnet_large.yaml",
            approximateMegabytes: 170, licence: "not stated by the publisher",
            sdr: ["average": 9.32], sdrSource: "MUSDB18-HQ test set", relativeCost: 9.4, numOverlap: 4),
        PublishedModel(
            name: "scnet_xl_ihf", family: .scnet,
            description: "SCNet XL IHF four stems: the best four-stem model here, about 18× htdemucs's time",
            sources: ["drums", "bass", "other", "vocals"],
            checkpointURL: "\(msstReleases)/v1.0.15/model_scnet_ep_36_sdr_10.0891.ckpt",
            configURL: "\(msstReleases)/v1.0.15/config_musdb18_scnet_xl_more_wide_v5.yaml",
            approximateMegabytes: 215, licence: "not stated by the publisher",
            sdr: ["average": 10.08], sdrSource: "MUSDB18-HQ test set", relativeCost: 18, numOverlap: 4),
    ]

    public static func named(_ name: String) -> PublishedModel? { catalog.first { $0.name == name } }
}

extension ModelDownloader {
    /// Downloads a published configured model as `NAME.ckpt` (or `.pth`) + `NAME.yaml`, the
    /// checkpoint resumed where a previous try stopped. Publishers give no checksums, so the
    /// sha256 of the first download is recorded in `NAME.ckpt.sha256`; ``verify(directory:)``
    /// checks it later.
    ///
    /// - Parameter mirror: fetch every file from `mirror/FILE` instead (an offline mirror, tests).
    func pullConfigured(_ model: PublishedModel, into directory: URL, mirror: String?, progress: (String) -> Void) throws {
        func url(_ published: String) -> String {
            guard let mirror else { return published }
            return "\(mirror)/\(URL(string: published)?.lastPathComponent ?? published)"
        }
        let checkpoint = directory.appendingPathComponent("\(model.name).\(model.checkpointExtension)")
        try fetch(url(model.checkpointURL), to: checkpoint, sha256Prefix: nil)
        let record = URL(fileURLWithPath: checkpoint.path + ".sha256")
        if !FileManager.default.fileExists(atPath: record.path) {
            try (try sha256(of: checkpoint.path) + "\n").write(to: record, atomically: true, encoding: .utf8)
        }
        progress(checkpoint.lastPathComponent)
        // The configuration last: a model counts as present only when both files are.
        let config = directory.appendingPathComponent("\(model.name).yaml.download")
        defer { try? FileManager.default.removeItem(at: config) }
        try fetch(url(model.configURL), to: config, sha256Prefix: nil)
        let text = (try? String(contentsOf: config, encoding: .utf8)) ?? ""
        let parsed = try TrainingConfig(yaml: text, path: "\(model.name).yaml")
        guard parsed.family == model.family else {
            throw DownloadError(url: url(model.configURL), reason: "the configuration describes a \(parsed.family.rawValue), not a \(model.family.rawValue)")
        }
        try FileManager.default.moveItem(at: config, to: directory.appendingPathComponent("\(model.name).yaml"))
        progress("\(model.name).yaml")
    }
}
