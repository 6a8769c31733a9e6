import StemifyEngine
import StemifyTestSupport
import Testing

@Suite("Spectrogram pair as HTDemucs._spec / _ispec")
struct STFTTests {
    let spec = Spectrogram(nfft: 4096)

    @Test("STFT with two-stage reflect padding and frame crop", arguments: ["stft", "stft_short"])
    func forward(_ name: String) throws {
        let (re, im) = spec.forward(try op("\(name)_in"))
        expectClose(re, try op("\(name)_re"), "\(name) real")
        expectClose(im, try op("\(name)_im"), "\(name) imaginary")
    }

    @Test("iSTFT of a random spectrum, Nyquist bin and edge frames restored as zeros")
    func inverse() throws {
        let out = spec.inverse(re: try op("istft_re"), im: try op("istft_im"), length: 5000)
        expectClose(out, try op("istft_out"), "istft")
    }

    /// Channels are inverted two per FFT; an odd count leaves one alone, and each channel's
    /// signal must not depend on its partner.
    @Test("iSTFT of one and of three channels gives the reference's rows")
    func inverseOddChannels() throws {
        let (re, im, ref) = (try op("istft_re"), try op("istft_im"), try op("istft_out"))
        let plane = re.count / 2, n = ref.count / 2
        func channels(_ t: Tensor, _ order: [Int], _ size: Int) -> Tensor {
            Tensor(shape: [order.count] + t.shape.dropFirst(), data: order.flatMap { Array(t.data[($0 * size)..<(($0 + 1) * size)]) })
        }
        for order in [[1], [0, 1, 0], [1, 0, 1]] {
            let out = spec.inverse(re: channels(re, order, plane), im: channels(im, order, plane), length: 5000)
            expectClose(out, channels(ref, order, n), "istft channels \(order)")
        }
    }
}

@Suite("Resampling and channel conversion as the reference's convert_audio")
struct ResampleTests {
    @Test("julius resample_frac to 44.1 kHz", arguments: [22050, 48000])
    func resample(_ rate: Int) throws {
        let x = try op("resample_\(rate)_in")
        let source = ConvertedAudioSource(TensorAudioSource(x), rate: rate, targetRate: 44100, channels: 2)
        let ref = try op("resample_\(rate)_out")
        #expect(source.frameCount == ref.shape[1])
        let whole = try source.read(from: 0, count: source.frameCount)
        expectClose(whole, ref, "resample \(rate)", minSNR: 100)
        // Any window gives the same samples as the whole, and zeros outside the track.
        let part = try source.read(from: 300, count: 250)
        #expect(part.data[0..<250] == whole.data[300..<550])
        let outside = try source.read(from: -5, count: 5)
        #expect(outside.data.allSatisfy { $0 == 0 })
    }

    @Test("mono is duplicated, extra channels are dropped")
    func channels() throws {
        let mono = Tensor(shape: [1, 4], data: [1, 2, 3, 4])
        let stereo = try ConvertedAudioSource(TensorAudioSource(mono), rate: 44100, targetRate: 44100, channels: 2).read(from: 0, count: 4)
        #expect(stereo.data == [1, 2, 3, 4, 1, 2, 3, 4])
        let three = Tensor(shape: [3, 2], data: [1, 2, 3, 4, 5, 6])
        let two = try ConvertedAudioSource(TensorAudioSource(three), rate: 44100, targetRate: 44100, channels: 2).read(from: 0, count: 2)
        #expect(two.data == [1, 2, 3, 4])
    }
}
