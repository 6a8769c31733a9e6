import Foundation
import CStemifyKernels

/// The instruction sets the engine's elementwise vector kernels (GELU, GLU, softmax's
/// exponentials) are compiled for, all in one binary; the best one this CPU runs is used unless
/// ``select(_:)`` says otherwise (`STEMIFY_ISA`), so both x86 paths can be measured and tested on
/// one machine. Matrix products are OpenBLAS's, loaded with the same level (``MatrixKernels``).
public enum InstructionSet: String, CaseIterable, Sendable, Comparable {
    /// Plain C vectors of four lanes (SSE2 on x86, NEON on arm64).
    case portable
    /// AVX2 with FMA, eight lanes (x86-64-v3).
    case avx2
    /// AVX-512 F/BW/VL/DQ, sixteen lanes (x86-64-v4).
    case avx512

    var code: Int32 {
        switch self {
        case .portable: Int32(STEMIFY_ISA_PORTABLE)
        case .avx2: Int32(STEMIFY_ISA_AVX2)
        case .avx512: Int32(STEMIFY_ISA_AVX512)
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.code < b.code }

    /// Whether this CPU (and its OS) runs the set.
    public var isSupported: Bool { stemify_isa_supported(code) != 0 }

    /// The widest set this CPU runs.
    public static var best: InstructionSet { allCases.last { $0.isSupported } ?? .portable }

    /// A setting's value (`STEMIFY_ISA`, `--isa`): `auto` for ``best``, or the name of a set
    /// this CPU runs.
    public init(setting: String) throws(InstructionSetError) {
        let name = setting.lowercased()
        if name == "auto" {
            self = Self.best
            return
        }
        guard let isa = InstructionSet(rawValue: name) else {
            throw InstructionSetError(message: "'\(setting)' is not one of auto, \(Self.allCases.reversed().map(\.rawValue).joined(separator: ", "))")
        }
        guard isa.isSupported else {
            throw InstructionSetError(message: "this CPU does not run \(isa); it runs up to \(Self.best)")
        }
        self = isa
    }

    /// The set the engine's kernels use in this process.
    public static var active: InstructionSet { VectorKernels.active.isa }

    /// Uses `isa` (supported) from now on. Meant for the start of a process: a separation
    /// running meanwhile would mix sets (each correct, reductions differing in their last bits).
    public static func select(_ isa: InstructionSet) {
        VectorKernels.active = VectorKernels(isa)
    }
}

public struct InstructionSetError: Error, Sendable {
    public let message: String
}

/// One instruction set's kernel table. The engine calls the pointer forms inside its parallel
/// loops; the array forms are for tests and `stemify-bench`, which compare the sets.
public struct VectorKernels: @unchecked Sendable {
    public let isa: InstructionSet
    let gelu: @convention(c) (UnsafeMutablePointer<Float>?, Int) -> Void
    let glu: @convention(c) (UnsafePointer<Float>?, UnsafePointer<Float>?, Float, Float, UnsafeMutablePointer<Float>?, Int) -> Void
    let expSum: @convention(c) (UnsafeMutablePointer<Float>?, Int, Float) -> Float
    let max: @convention(c) (UnsafePointer<Float>?, Int) -> Float

    /// The kernels of `isa`, which must be supported (``InstructionSet/isSupported``).
    public init(_ isa: InstructionSet) {
        let table = stemify_kernels_for(isa.code)!.pointee
        self.isa = isa
        (gelu, glu, expSum, max) = (table.gelu!, table.glu!, table.exp_sum!, table.max!)
    }

    /// Set once when a process starts (``InstructionSet/select(_:)``), read by every kernel call;
    /// until then `STEMIFY_ISA`'s set where it names one this CPU runs (so that a test run can be
    /// repeated on a narrower set), else the widest.
    nonisolated(unsafe) static var active = VectorKernels(
        (try? InstructionSet(setting: ProcessInfo.processInfo.environment["STEMIFY_ISA"] ?? "auto")) ?? .best)
}

extension VectorKernels {
    /// `x = gelu(x)`, exact erf form.
    public func gelu(_ x: inout [Float]) {
        let n = x.count
        x.withUnsafeMutableBufferPointer { gelu($0.baseAddress, n) }
    }

    /// `(a + biasA) · σ(b + biasB)`.
    public func glu(_ a: [Float], _ b: [Float], biasA: Float = 0, biasB: Float = 0) -> [Float] {
        precondition(a.count == b.count, "glu halves differ: \(a.count) vs \(b.count)")
        return [Float](unsafeUninitializedCapacity: a.count) { out, count in
            glu(a, b, biasA, biasB, out.baseAddress, a.count)
            count = a.count
        }
    }

    /// `p = exp(p − max p)`, returning the sum: softmax's numerators.
    public func softmaxNumerators(_ p: inout [Float]) -> Float {
        let n = p.count
        return p.withUnsafeMutableBufferPointer { expSum($0.baseAddress, n, max($0.baseAddress, n)) }
    }
}
