public import Foundation

/// YouTube input: strict URL acceptance, then yt-dlp (as a subprocess, no shell).
///
/// Only single-video URLs on YouTube's own hosts are accepted (`youtube.com` and its `www`, `m`,
/// `music` subdomains with `/watch?v=`, `/shorts/ID`, `/embed/ID`, `/live/ID`; `youtu.be/ID`),
/// never with credentials, a port, or a look-alike host. The duration is read from the
/// metadata and checked before anything is downloaded.
public struct YouTube: Sendable {
    public let configuration: StemifyConfiguration

    public init(configuration: StemifyConfiguration) { self.configuration = configuration }

    /// The video id of an acceptable URL.
    ///
    /// - Throws: ``ErrorCode/invalidYouTubeURL``, ``ErrorCode/youtubePlaylist`` or ``ErrorCode/videoBlocked``.
    public func videoID(_ text: String) throws -> String {
        let invalid = StemifyError(.invalidYouTubeURL, "youtube_url must be a single YouTube video URL (https://www.youtube.com/watch?v=ID or https://youtu.be/ID)")
        guard text.count < 2048, let c = URLComponents(string: text.trimmingCharacters(in: .whitespaces)),
              let scheme = c.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = c.host?.lowercased(), c.user == nil, c.password == nil
        else { throw invalid }
        let testHost = configuration.youtubeTestHosts.contains(host)
        if c.port != nil && !testHost { throw invalid }
        let items = c.queryItems ?? []
        func query(_ name: String) -> String? { items.first { $0.name == name }?.value }
        let path = c.path.split(separator: "/").map(String.init)
        var id: String?
        if ["youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"].contains(host) || testHost {
            if path == ["playlist"] || (query("list") != nil && query("v") == nil) {
                throw StemifyError(.youtubePlaylist, "playlists are not accepted; give the URL of one video")
            }
            if path == ["watch"] {
                id = query("v")
            } else if path.count == 2, ["shorts", "embed", "live", "v"].contains(path[0]) {
                id = path[1]
            } else if testHost, path.count == 1 {
                id = path[0]
            }
        } else if host == "youtu.be", path.count == 1 {
            id = path[0]
        }
        guard let id, id.range(of: #"^[A-Za-z0-9_-]{6,64}$"#, options: .regularExpression) != nil || testHost else { throw invalid }
        if configuration.youtubeBlocklist.contains(id) {
            throw StemifyError(.videoBlocked, "this video is not accepted by this server")
        }
        return id
    }

    private static let common = ["--no-playlist", "--no-config", "--no-warnings", "--socket-timeout", "20"]

    /// Reads the video's metadata and checks its duration, before anything is downloaded.
    ///
    /// - Returns: the duration in seconds.
    /// - Throws: ``ErrorCode/youtubePlaylist``, ``ErrorCode/videoTooLong``, ``ErrorCode/youtubeUnavailable``.
    public func checkMetadata(_ url: String) throws -> Double {
        _ = try videoID(url)
        let info = try Subprocess.run("yt-dlp", ["--dump-single-json", "--skip-download"] + Self.common + ["--", url])
        guard info.status == 0, let json = try? JSONSerialization.jsonObject(with: info.stdout) as? [String: Any] else {
            throw StemifyError(.youtubeUnavailable, "the video could not be fetched", detail: "yt-dlp: \(info.stderrText)")
        }
        if json["_type"] as? String == "playlist" {
            throw StemifyError(.youtubePlaylist, "playlists are not accepted; give the URL of one video")
        }
        guard let duration = (json["duration"] as? NSNumber)?.doubleValue, json["is_live"] as? Bool != true else {
            throw StemifyError(.youtubeUnavailable, "the video's duration is unknown (live streams are not accepted)")
        }
        if duration > configuration.maxDurationSeconds {
            throw StemifyError(.videoTooLong, "the video is \(Int(duration)) s long; the limit is \(Int(configuration.maxDurationSeconds)) s")
        }
        return duration
    }

    /// Checks the metadata again, then downloads the audio into `directory`.
    ///
    /// - Returns: the downloaded file's path.
    public func download(_ url: String, into directory: URL) throws -> String {
        _ = try checkMetadata(url)
        let template = directory.appendingPathComponent("youtube.%(ext)s").path
        let result = try Subprocess.run("yt-dlp", ["-f", "bestaudio/best", "-o", template, "--max-filesize",
                                                   "\(configuration.maxFileSize * 4)"] + Self.common + ["--", url])
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        guard result.status == 0, let file = files.first(where: { $0.hasPrefix("youtube.") && !$0.hasSuffix(".part") }) else {
            throw StemifyError(.youtubeUnavailable, "the video could not be downloaded", detail: "yt-dlp: \(result.stderrText)")
        }
        return directory.appendingPathComponent(file).path
    }
}
