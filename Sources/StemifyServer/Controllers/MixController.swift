import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import StemifyCore

/// `POST /api/jobs/{id}/mix`: the job's stems mixed as the page's mixer sets them (volume, pan,
/// mute per stem, speed and key), rendered on the server by one ffmpeg process.
///
/// On the server rather than in the page (an `OfflineAudioContext`): the page would have to
/// download and decode every stem whole (a 10-minute song is ~100 MB of samples per stem in
/// memory) and has no MP3 encoder; ffmpeg streams the stems it already reads and writes any
/// format. The pan law is Web Audio's (``StemMixSettings/matrix(channels:)``), so the file is
/// what the page played.
struct MixController: Sendable {
    let queue: any JobQueue
    let storage: any JobStorage
    let configuration: StemifyConfiguration
    /// Shared with the upload checks: one ffmpeg per core.
    let limiter: AsyncLimiter

    struct MixRequest: Decodable {
        var format: String?
        var stems: [String: StemMixSettings]?
        var speed: Double?
        var semitones: Int?
    }

    /// The mixer's ranges: 50–150 % speed, ±6 semitones.
    static let speedRange = 0.5...1.5
    static let semitoneRange = -6...6

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("/api/jobs/:id/mix", use: mix)
    }

    @Sendable func mix(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let invalid = StemifyError(.invalidMix, "send JSON {\"format\": \"wav\"|\"mp3\"|\"flac\", \"stems\": {NAME: {\"volume\": 0–2, \"pan\": −1–1, \"muted\": bool}}, \"speed\": 0.5–1.5, \"semitones\": −6–6}")
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: 64 * 1024) } catch { throw invalid }
        let data = Data(body.readableBytesView)
        guard let mix = try? JSONDecoder().decode(MixRequest.self, from: data) else { throw invalid }
        if let member = Self.unknownMember(in: data) {
            throw StemifyError(.invalidMix, "unknown member '\(member.prefix(64))': a mix takes format and stems, each stem volume, pan and muted")
        }
        guard let job = try await queue.job(id: id), context.caller.owns(job.owner) else {
            throw StemifyError(.jobNotFound, "no job '\(id)' (it may have expired or been deleted)")
        }
        guard job.status == .done, !job.stems.isEmpty else { throw StemifyError(.stemNotFound, "job '\(job.id)' has no stems yet") }
        guard let format = FFmpeg.Format(rawValue: mix.format ?? "wav") else {
            throw StemifyError(.invalidMix, "the format must be wav, mp3 or flac")
        }
        let (speed, semitones) = (mix.speed ?? 1, mix.semitones ?? 0)
        guard Self.speedRange.contains(speed), Self.semitoneRange.contains(semitones) else {
            throw StemifyError(.invalidMix, "speed must be within 0.5–1.5 and semitones within −6–6")
        }
        let settings = mix.stems ?? [:]
        for (name, s) in settings {
            guard job.stems.contains(where: { $0.name == name }) else {
                throw StemifyError(.invalidMix, "this job has no stem '\(name.prefix(64))'; it has \(job.stems.map(\.name).joined(separator: ", "))")
            }
            guard StemMixSettings.volumeRange.contains(s.volume), StemMixSettings.panRange.contains(s.pan) else {
                throw StemifyError(.invalidMix, "stem '\(name)': volume must be within 0–2 and pan within −1–1")
            }
        }

        let folder = URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("mixes/\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var copies: [(StemFile, String)] = []
        for stem in job.stems { copies.append((stem, try await localCopy(stem, in: folder))) }
        let local = copies
        let names = job.stems.map(\.name)
        let output = folder.appendingPathComponent("mix.\(format.rawValue)").path
        let bitrate = configuration.mp3Bitrate
        try await limiter.run {
            try await onThread {
                let inputs = try local.map { stem, path in
                    let probe = try FFmpeg.probe(path)
                    let m = (settings[stem.name] ?? StemMixSettings.left(out: stem.name, of: names)).matrix(channels: probe.channels)
                    return FFmpeg.MixInput(path: path, probe: probe, left: m.left, right: m.right)
                }
                try FFmpeg.mix(inputs, to: output, format: format, mp3Bitrate: bitrate, speed: speed, semitones: semitones)
            }
        }
        // Open, then let the folder go: the open file stays readable until the body is sent, and
        // nothing is left behind if the client never reads it.
        guard let handle = FileHandle(forReadingAtPath: output),
              let size = try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int
        else { throw StemifyError(.internalError, "the rendered mix is missing") }
        let file = "\(zipFolderName(job)) (mix).\(format.rawValue)"
        return Response(status: .ok, headers: [
            .contentType: StemHeaders.contentType(format.rawValue), .contentLength: "\(size)", .cacheControl: "no-store",
            .contentDisposition: StemHeaders.disposition(file),
        ], body: ResponseBody { writer in
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        })
    }

    /// The first member of the body that the schema does not name (`additionalProperties:
    /// false`), as `key` or `stems.NAME.key`. Decoding alone skips unknown keys, so a misspelt
    /// `{"Format": "mp3"}` or `{"muted ": true}` gave a WAV with every stem in.
    static func unknownMember(in data: Data) -> String? {
        guard let top = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        if let key = top.keys.sorted().first(where: { !["format", "stems", "speed", "semitones"].contains($0) }) { return key }
        for (name, value) in (top["stems"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
            let members = (value as? [String: Any] ?? [:]).keys.sorted()
            if let key = members.first(where: { !["volume", "pan", "muted"].contains($0) }) { return "stems.\(name).\(key)" }
        }
        return nil
    }

    /// A stem as a local file: its own path in a folder store, a download from the bucket otherwise.
    private func localCopy(_ stem: StemFile, in folder: URL) async throws -> String {
        let gone = StemifyError(.stemNotFound, "the stem '\(stem.name)' is no longer stored")
        guard let objects = storage as? ObjectStorage, let key = objects.key(stem.file) else {
            guard FileManager.default.fileExists(atPath: stem.file) else { throw gone }
            return stem.file
        }
        let local = folder.appendingPathComponent("\(stem.name).\(stem.format)")
        let found: Bool
        do { found = try await objects.client.download(key, to: local) } catch {
            throw StemifyError(.unavailable, "the stem storage is unavailable; try again shortly", detail: "\(error)")
        }
        guard found else { throw gone }
        return local.path
    }
}
