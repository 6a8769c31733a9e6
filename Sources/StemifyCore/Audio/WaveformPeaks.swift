import Foundation
import StemifyEngine

/// A stem's outline for drawing: the loudest sample of any channel in each 1/50 s, in
/// thousandths of full scale. Written beside the stem when it is made, so the page draws a
/// 10-minute song from ~100 kB per stem instead of downloading and decoding every stem.
public struct WaveformPeaks: Codable, Sendable, Equatable {
    public static let perSecond = 50
    public static let scale = 1000

    public var sampleRate: Int
    public var samplesPerPeak: Int
    public var frames: Int
    public var scale: Int
    public var peaks: [Int]

    enum CodingKeys: String, CodingKey {
        case sampleRate = "sample_rate", samplesPerPeak = "samples_per_peak", frames, scale, peaks
    }

    /// Where the peaks of the stem at `stem` are written: `drums.mp3` → `drums.peaks.json`.
    public static func file(for stem: URL) -> URL {
        stem.deletingPathExtension().appendingPathExtension("peaks.json")
    }
}

/// Builds ``WaveformPeaks`` from planar blocks as they are written.
struct PeakAccumulator {
    private(set) var result: WaveformPeaks
    private var current: Float = 0
    private var filled = 0

    init(sampleRate: Int) {
        let per = max(1, sampleRate / WaveformPeaks.perSecond)
        result = WaveformPeaks(sampleRate: sampleRate, samplesPerPeak: per, frames: 0, scale: WaveformPeaks.scale, peaks: [])
    }

    /// Adds `[C, n]` planar samples.
    mutating func add(_ block: Tensor) {
        let (channels, n) = (block.shape[0], block.shape[1])
        block.data.withUnsafeBufferPointer { p in
            for i in 0..<n {
                for c in 0..<channels { current = max(current, abs(p[c * n + i])) }
                filled += 1
                if filled == result.samplesPerPeak { flush() }
            }
        }
        result.frames += n
    }

    private mutating func flush() {
        result.peaks.append(Int((min(current, 1) * Float(WaveformPeaks.scale)).rounded()))
        (current, filled) = (0, 0)
    }

    /// The peaks, the last partial 1/50 s included.
    mutating func finish() -> WaveformPeaks {
        if filled > 0 { flush() }
        return result
    }
}
