import StemifyEngine
import Foundation
import StemifyTestSupport
import Testing

/// The magnitude path of Hybrid Demucs v3 (`cac=False`, members of mdx and mdx_extra) against
/// the reference's own `HDemucs._mask`, on a mixture with exact zero bins and every sign of
/// zero on both axes (the cases `atan2` conventions disagree on).
@Suite("HDemucs magnitude mask as HDemucs._mask")
struct MaskTests {
    func fixture() throws -> (magnitude: Tensor, re: Tensor, im: Tensor, outRe: Tensor, outIm: Tensor) {
        let m = try op("mask_magnitude")  // [S, C, F, T]
        let flat = m.reshaped([m.shape[0] * m.shape[1], m.shape[2], m.shape[3]])
        return (flat, try op("mask_mix_re"), try op("mask_mix_im"), try op("mask_out_re"), try op("mask_out_im"))
    }

    func error(_ re: Tensor, _ im: Tensor, _ refRe: Tensor, _ refIm: Tensor) -> Double {
        var err = 0.0, energy = 0.0
        for i in 0..<refRe.count {
            let (dr, di) = (Double(re.data[i] - refRe.data[i]), Double(im.data[i] - refIm.data[i]))
            err += dr * dr + di * di
            energy += Double(refRe.data[i] * refRe.data[i] + refIm.data[i] * refIm.data[i])
        }
        return 10 * log10(energy / max(err, 1e-30))
    }

    @Test("estimated magnitudes take the mixture's phase; exact zero bins take angle 0")
    func mask() throws {
        let f = try fixture()
        let (re, im) = withMixturePhase(f.magnitude, re: f.re, im: f.im)
        let db = error(re, im, f.outRe.reshaped(re.shape), f.outIm.reshaped(im.shape))
        #expect(db > 120, "mask SNR \(db) dB")
    }

    /// The fixture can tell: the ways the phase handling could break each fail it.
    @Test("breaking the phase handling fails the fixture", arguments: ["zero bins at pi", "no mixture phase", "phase of the other channel"])
    func sensitivity(_ broken: String) throws {
        let f = try fixture()
        var re = f.re, im = f.im
        switch broken {
        case "zero bins at pi":
            // atan2(+0, -0) = pi: what a plain atan2 gives where the reference adds 1 first.
            for i in 0..<re.count where re.data[i] == 0 && im.data[i] == 0 { re.data[i] = -0.0 }
            let (outRe, outIm) = withMixturePhaseUsingAtan2(f.magnitude, re: re, im: im)
            #expect(error(outRe, outIm, f.outRe.reshaped(outRe.shape), f.outIm.reshaped(outIm.shape)) < 40)
            return
        case "no mixture phase":
            im.data = [Float](repeating: 0, count: im.count)
            re.data = [Float](repeating: 1, count: re.count)
        default:
            let half = re.count / 2
            re.data = Array(re.data[half...] + re.data[..<half])
            im.data = Array(im.data[half...] + im.data[..<half])
        }
        let (outRe, outIm) = withMixturePhase(f.magnitude, re: re, im: im)
        let db = error(outRe, outIm, f.outRe.reshaped(outRe.shape), f.outIm.reshaped(outIm.shape))
        #expect(db < 20, "\(broken): \(db) dB")
    }

    /// The mask with a plain `atan2` (no special case for exact zeros).
    func withMixturePhaseUsingAtan2(_ magnitude: Tensor, re: Tensor, im: Tensor) -> (Tensor, Tensor) {
        let plane = re.shape[1] * re.shape[2], channels = re.shape[0]
        var outRe = magnitude, outIm = magnitude
        for i in 0..<magnitude.count {
            let src = ((i / plane) % channels) * plane + i % plane
            let angle = atan2f(im.data[src], re.data[src])
            outRe.data[i] = magnitude.data[i] * cosf(angle)
            outIm.data[i] = magnitude.data[i] * sinf(angle)
        }
        return (outRe, outIm)
    }
}
