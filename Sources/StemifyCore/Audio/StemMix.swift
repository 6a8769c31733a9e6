import Foundation

/// How one stem enters an exported mix, as the page's mixer sets it.
public struct StemMixSettings: Codable, Sendable, Equatable {
    /// Linear gain, 0…2.
    public var volume: Double
    /// −1 (left) … 1 (right).
    public var pan: Double
    public var muted: Bool

    public static let volumeRange = 0.0...2.0
    public static let panRange = -1.0...1.0

    public init(volume: Double = 1, pan: Double = 0, muted: Bool = false) {
        (self.volume, self.pan, self.muted) = (volume, pan, muted)
    }

    /// How a stem the request leaves out enters the mix: at full volume, centred, except the
    /// karaoke `instrumental` (the other stems summed) where those stems are there too: the mix
    /// is then the song, not the song plus its backing again, as the page's mixer starts.
    public static func left(out stem: String, of stems: [String]) -> StemMixSettings {
        let doubles = stem == "instrumental" && stems.contains { $0 != "vocals" && $0 != "instrumental" }
        return StemMixSettings(muted: doubles)
    }

    /// Members left out keep their defaults (full volume, centre, not muted).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        volume = try c.decodeIfPresent(Double.self, forKey: .volume) ?? 1
        pan = try c.decodeIfPresent(Double.self, forKey: .pan) ?? 0
        muted = try c.decodeIfPresent(Bool.self, forKey: .muted) ?? false
    }

    /// The 2×C matrix (C = 1 or 2 channels in) of a gain followed by Web Audio's
    /// `StereoPannerNode`, the page's chain: an exported file then equals what the page plays.
    /// The spec's equal-power law places a mono input with cos/sin of (pan + 1)·π/4; a stereo
    /// one keeps the side it pans to and folds the other side into it.
    public func matrix(channels: Int) -> (left: [Double], right: [Double]) {
        let v = muted ? 0 : volume
        if channels == 1 {
            let x = (pan + 1) / 2
            return ([v * cos(x * .pi / 2)], [v * sin(x * .pi / 2)])
        }
        let x = pan <= 0 ? pan + 1 : pan
        let (gl, gr) = (cos(x * .pi / 2), sin(x * .pi / 2))
        return pan <= 0 ? ([v, v * gl], [0, v * gr]) : ([v * gl, 0], [v * gr, v])
    }
}
