import Foundation
import StemifyCore
import StemifyEngine
import StemifyTestSupport
import Testing

/// `FFmpeg.mix` with the matrices of `StemMixSettings` against Web Audio's StereoPannerNode as
/// its specification writes it, for mono and stereo stems.
@Suite("Mix export")
struct StemMixTests {
    func write(_ planar: [[Float]], to path: String) throws {
        let writer = try WAVWriter(path: path, channels: planar.count, sampleRate: 44100, encoding: .float32)
        var x = Tensor(zeros: [planar.count, planar[0].count])
        for (c, channel) in planar.enumerated() { for (i, v) in channel.enumerated() { x.data[c * channel.count + i] = v } }
        try writer.write(x)
        try writer.finish()
    }

    /// The spec's equal-power panning (Web Audio 1.0, "StereoPannerNode"), then the gain.
    func reference(_ input: [[Float]], volume: Double, pan: Double) -> [[Float]] {
        let n = input[0].count
        var out = [[Float]](repeating: [Float](repeating: 0, count: n), count: 2)
        if input.count == 1 {
            let x = (pan + 1) / 2
            for i in 0..<n {
                out[0][i] = Float(volume * cos(x * .pi / 2)) * input[0][i]
                out[1][i] = Float(volume * sin(x * .pi / 2)) * input[0][i]
            }
            return out
        }
        let x = pan <= 0 ? pan + 1 : pan
        let (gl, gr) = (cos(x * .pi / 2), sin(x * .pi / 2))
        for i in 0..<n {
            let (l, r) = (Double(input[0][i]), Double(input[1][i]))
            out[0][i] = Float(volume * (pan <= 0 ? l + r * gl : l * gl))
            out[1][i] = Float(volume * (pan <= 0 ? r * gr : r + l * gr))
        }
        return out
    }

    @Test("a mono and a stereo stem, panned and scaled, sum to the spec's output (≥ 60 dB after 16-bit WAV)",
          arguments: [(-1.0, 0.0), (-0.3, 0.7), (0.0, -0.4), (0.6, 1.0), (1.0, -1.0)])
    func panLaw(_ pans: (Double, Double)) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-mixtest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let n = 22050
        var g: UInt32 = 7
        func noise() -> Float { g = g &* 1_664_525 &+ 1_013_904_223; return Float(g >> 8) / Float(1 << 24) - 0.5 }
        let mono = [(0..<n).map { 0.4 * sin(Float($0) * 0.03) + 0.1 * noise() }]
        let stereo = [(0..<n).map { _ in 0.3 * noise() }, (0..<n).map { 0.3 * sin(Float($0) * 0.011) }]
        try write(mono, to: dir.appendingPathComponent("mono.wav").path)
        try write(stereo, to: dir.appendingPathComponent("stereo.wav").path)
        let settings = [StemMixSettings(volume: 0.8, pan: pans.0), StemMixSettings(volume: 1.3, pan: pans.1)]
        let inputs = try zip(["mono.wav", "stereo.wav"], settings).map { file, s in
            let path = dir.appendingPathComponent(file).path
            let probe = try FFmpeg.probe(path)
            let m = s.matrix(channels: probe.channels)
            return FFmpeg.MixInput(path: path, probe: probe, left: m.left, right: m.right)
        }
        #expect(inputs.map(\.probe.channels) == [1, 2])
        let output = dir.appendingPathComponent("mix.wav").path
        try FFmpeg.mix(inputs, to: output, format: .wav)
        let source = try WAVFileSource(path: output)
        #expect(source.channelCount == 2 && source.frameCount == n)
        let x = try source.read(from: 0, count: n)
        let a = reference(mono, volume: 0.8, pan: pans.0), b = reference(stereo, volume: 1.3, pan: pans.1)
        // [left, right] of both inputs summed, planar like the file read back.
        let expected = [0, 1].flatMap { c in zip(a[c], b[c]).map { $0 + $1 } }
        let ratio = snr(reference: expected[...], estimate: x.data[...])
        #expect(ratio >= 60, "pans \(pans): \(ratio) dB")
        // Sensitivity: the same with left and right swapped is far off.
        let swapped = Array(expected[n...] + expected[..<n])
        #expect(snr(reference: swapped[...], estimate: x.data[...]) < 40, "pans \(pans)")
    }

    /// The frequency of a steady tone, from the mean spacing of its rising zero crossings.
    static func frequency(_ x: ArraySlice<Float>, sampleRate: Double) -> Double {
        var crossings: [Double] = []
        var previous = x[x.startIndex]
        for i in (x.startIndex + 1)..<x.endIndex {
            let v = x[i]
            if previous < 0 && v >= 0 { crossings.append(Double(i - x.startIndex) - Double(v) / Double(v - previous)) }
            previous = v
        }
        guard let first = crossings.first, let last = crossings.last, crossings.count > 1 else { return 0 }
        return Double(crossings.count - 1) / ((last - first) / sampleRate)
    }

    @Test("speed and key in the export: a 440 Hz tone of 4 s lasts 4/speed s and sounds at 440·2^(k/12) Hz (±1 %)",
          arguments: [(1.0, 3), (1.5, 0), (0.5, 0), (0.75, -6), (1.25, 6), (0.5, -6), (1.5, 6)])
    func speedAndKey(_ setting: (speed: Double, semitones: Int)) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stemify-mixtest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let n = 4 * 44100
        let tone = (0..<n).map { Float(0.5 * sin(2 * Double.pi * 440 * Double($0) / 44100)) }
        let path = dir.appendingPathComponent("tone.wav").path
        try write([tone, tone], to: path)
        let probe = try FFmpeg.probe(path)
        let m = StemMixSettings().matrix(channels: 2)
        let output = dir.appendingPathComponent("mix.wav").path
        try FFmpeg.mix([FFmpeg.MixInput(path: path, probe: probe, left: m.left, right: m.right)], to: output, format: .wav,
                       speed: setting.speed, semitones: setting.semitones)
        let source = try WAVFileSource(path: output)
        let seconds = Double(source.frameCount) / Double(source.sampleRate)
        #expect(abs(seconds - 4 / setting.speed) < 0.05, "\(setting): \(seconds) s")
        let x = try source.read(from: 0, count: source.frameCount)
        // The middle half: away from the filters' start and end.
        let f = Self.frequency(x.data[(source.frameCount / 4)..<(3 * source.frameCount / 4)], sampleRate: Double(source.sampleRate))
        let expected = 440 * pow(2, Double(setting.semitones) / 12)
        #expect(abs(f / expected - 1) < 0.01, "\(setting): \(f) Hz, expected \(expected)")
    }

    @Test("a muted stem contributes nothing")
    func muted() {
        let m = StemMixSettings(volume: 1.5, pan: 0.2, muted: true).matrix(channels: 2)
        #expect((m.left + m.right).allSatisfy { $0 == 0 })
    }
}
