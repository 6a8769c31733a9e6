import StemifyEngine
import Foundation

/// Reads a little-endian float32 `.npy` file (format 1.0/2.0, C order), as written by
/// `numpy.save` in the fixture generator.
public func readNPY(_ url: URL) throws -> Tensor {
    let (shape, values): ([Int], [Float]) = try readNPYValues(url, descr: "<f4")
    return Tensor(shape: shape, data: values)
}

/// A float64 `.npy` file: the shape and the values, for references computed in double precision.
public func readNPYDouble(_ url: URL) throws -> (shape: [Int], values: [Double]) {
    try readNPYValues(url, descr: "<f8")
}

private func readNPYValues<T: BinaryFloatingPoint>(_ url: URL, descr: String) throws -> ([Int], [T]) {
    let data = try Data(contentsOf: url)
    guard data.count > 10, data.prefix(6) == Data([0x93]) + Data("NUMPY".utf8) else { throw NPYError.notNPY(url.path) }
    let major = data[data.startIndex + 6]
    let headerLength: Int
    let headerStart: Int
    if major == 1 {
        headerLength = Int(data[data.startIndex + 8]) | Int(data[data.startIndex + 9]) << 8
        headerStart = 10
    } else {
        headerLength = (0..<4).reduce(0) { $0 | Int(data[data.startIndex + 8 + $1]) << (8 * $1) }
        headerStart = 12
    }
    let header = String(decoding: data[(data.startIndex + headerStart)..<(data.startIndex + headerStart + headerLength)], as: UTF8.self)
    guard header.contains("'descr': '\(descr)'"), header.contains("'fortran_order': False") else { throw NPYError.unsupported(url.path, header) }
    guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
        throw NPYError.unsupported(url.path, header)
    }
    let shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    let count = shape.reduce(1, *)
    let width = MemoryLayout<T>.size
    let start = data.startIndex + headerStart + headerLength
    guard data.count - (start - data.startIndex) >= count * width else { throw NPYError.truncated(url.path) }
    var values = [T](repeating: 0, count: count)
    values.withUnsafeMutableBytes { dst in
        data[start..<(start + count * width)].withUnsafeBytes { src in dst.copyMemory(from: src) }
    }
    return (shape, values)
}

public enum NPYError: Error {
    case notNPY(String)
    case unsupported(String, String)
    case truncated(String)
}

/// Signal-to-noise ratio of `estimate` against `reference`, in dB: reference energy over
/// error energy. Infinite when they are equal.
public func snr(reference: ArraySlice<Float>, estimate: ArraySlice<Float>) -> Double {
    precondition(reference.count == estimate.count, "snr: \(reference.count) vs \(estimate.count) samples")
    var signal = 0.0, noise = 0.0
    for (r, e) in zip(reference, estimate) {
        signal += Double(r) * Double(r)
        noise += (Double(r) - Double(e)) * (Double(r) - Double(e))
    }
    return noise == 0 ? .infinity : 10 * log10(signal / noise)
}

/// `snr` over whole tensors.
public func snr(reference: Tensor, estimate: Tensor) -> Double {
    precondition(reference.shape == estimate.shape, "snr: shapes \(reference.shape) vs \(estimate.shape)")
    return snr(reference: reference.data[...], estimate: estimate.data[...])
}

/// The repository's `Tests/Fixtures` folder.
public func fixturesDirectory(file: String = #filePath) -> URL {
    var url = URL(fileURLWithPath: file)
    while url.path != "/" {
        url.deleteLastPathComponent()
        let candidate = url.appendingPathComponent("Tests/Fixtures")
        if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
    }
    fatalError("Tests/Fixtures not found above \(file)")
}

/// Every file a fuzz target has kept for `target`: its committed seeds (`Fuzz/corpus/TARGET`)
/// and the inputs that once crashed it (`Fuzz/regressions/TARGET`), replayed by the tests.
public func fuzzInputs(_ target: String) -> [(name: String, bytes: [UInt8])] {
    let root = fixturesDirectory().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz")
    var out: [(String, [UInt8])] = []
    for folder in ["corpus", "regressions"] {
        let dir = root.appendingPathComponent(folder).appendingPathComponent(target)
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted() {
            if let data = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) { out.append(("\(folder)/\(name)", [UInt8](data))) }
        }
    }
    return out
}
