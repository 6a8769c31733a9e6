import StemifyEngine
import Foundation
import StemifyTestSupport
import Testing

/// The parts Hybrid Demucs (v3) and time-domain Demucs add, against the reference
/// (`tools/make_fixtures.py`, `make_ops`), and the loaders of both families and of DiffQ states.
@Suite("Demucs v2/v3 parts and DiffQ states")
struct FamiliesTests {
    func blstm() throws -> BLSTM {
        func direction(_ k: Int, _ suffix: String) throws -> LSTMDirection {
            var bias = try op("blstm.lstm.bias_ih_l\(k)\(suffix)")
            let hh = try op("blstm.lstm.bias_hh_l\(k)\(suffix)")
            for i in 0..<bias.count { bias.data[i] += hh.data[i] }
            return LSTMDirection(inputWeight: try op("blstm.lstm.weight_ih_l\(k)\(suffix)"),
                                 hiddenWeight: try op("blstm.lstm.weight_hh_l\(k)\(suffix)"), bias: bias)
        }
        let layers = try (0..<2).map { k in (forward: try direction(k, ""), backward: try direction(k, "_reverse")) }
        return BLSTM(lstm: BidirectionalLSTM(layers: layers),
                     linear: LinearLayer(weight: try op("blstm.linear.weight"), bias: try op("blstm.linear.bias")),
                     maxSteps: 200, skip: true)
    }

    @Test("BLSTM: two bidirectional layers, a linear map and the residual; long inputs in stitched windows of 200 steps")
    func lstm() throws {
        let layer = try blstm()
        expectClose(layer(try op("blstm_in")), try op("blstm_out"), "BLSTM over 450 steps (3 windows)", minSNR: 100)
        expectClose(layer(try op("blstm_short_in")), try op("blstm_short_out"), "BLSTM over 150 steps (one pass)", minSNR: 100)
    }

    @Test("LocalState: attention with learned distance decay and no self-attention, plus the residual")
    func localState() throws {
        func conv(_ name: String) throws -> ConvLayer {
            let w = try op("localstate.\(name).weight")
            return ConvLayer(weight: w.reshaped([w.shape[0], w.shape[1], 1, 1]), bias: try op("localstate.\(name).bias"),
                             geometry: ConvGeometry(kernel: (1, 1)), isTransposed: false)
        }
        let layer = LocalState(content: try conv("content"), query: try conv("query"), key: try conv("key"),
                               queryDecay: try conv("query_decay"), proj: try conv("proj"), heads: 4, ndecay: 4)
        let x = try op("localstate_in")
        expectClose(layer(x).reshaped([8, 37]), try op("localstate_out"), "LocalState")
    }

    @Test("julius resample_frac ×2 and ÷2, as time-domain Demucs runs")
    func resampleByTwo() throws {
        let x = try op("resample_up_in")
        expectClose(resampleFrac(x, from: 1, to: 2), try op("resample_up_out"), "×2", minSNR: 100)
        expectClose(resampleFrac(x, from: 2, to: 1), try op("resample_down_out"), "÷2", minSNR: 100)
    }

    /// DiffQ states list parameters without names in the reference's module order; the loaders
    /// must take tensors in exactly that order, which a `.th` state dict keeps (safetensors
    /// files sort their keys).
    @Test("loaders take parameters in the reference's registration order",
          arguments: ["c0ffee20-", "c0ffee22-", "c0ffee30-"])
    func registrationOrder(_ file: String) throws {
        let package = try ModelPackage.load(contentsOf: try repoFile(file))
        let order = try package.parameterOrder()
        #expect(order.map(\.key) == package.stateOrder)
        #expect(order.allSatisfy { package.state[$0.key]?.shape == $0.shape })
        _ = try loadModel(package)
    }

    @Test("DiffQ states in both file forms dequantize onto every parameter",
          arguments: ["c0ffee40-", "c0ffee42.safetensors"])
    func diffq(_ file: String) throws {
        let package = try ModelPackage.load(contentsOf: try repoFile(file))
        #expect(package.quantized != nil && package.state.isEmpty)
        let plain = try package.dequantized()
        #expect(plain.quantized == nil)
        #expect(plain.stateOrder.count == plain.state.count && !plain.state.isEmpty)
        // Dequantized values stay within each parameter's quantization range: finite, not all zero.
        #expect(plain.state.values.allSatisfy { $0.tensor.data.allSatisfy(\.isFinite) })
        #expect(plain.state.values.contains { $0.tensor.data.contains { $0 != 0 } })
        _ = try loadModel(package)
    }

    @Test("a DiffQ state packed by torch_pack, or meant for other parameters, is refused with the reason")
    func diffqErrors() throws {
        let bytes = [UInt8](try Data(contentsOf: try repoFile("c0ffee42.safetensors")))
        let torchPack = replacing("torch_pack\\\", false", with: "torch_pack\\\", true ", in: bytes)
        #expect(torchPack != bytes)
        #expect(try modelError(torchPack, suffix: ".safetensors") == .unsupportedKwarg(key: "meta.torch_pack", value: "True"))
        // Another min_size moves parameters between the quantized and the small lists.
        let moved = replacing("\\\"min_size\\\", 0.004", with: "\\\"min_size\\\", 0.400", in: bytes)
        #expect(moved != bytes)
        let error = try #require(try modelError(moved, suffix: ".safetensors"))
        #expect(error.description.contains("DiffQ") || error.description.contains("shape"), "\(error)")
        // The 3-bit levels' tensor given as the 2-bit ones: levels beyond their width.
        let swapped = replacing("{\\\"_tensor\\\": \\\"t0\\\"}, {\\\"_tensor\\\": \\\"t1\\\"}",
                                with: "{\\\"_tensor\\\": \\\"t1\\\"}, {\\\"_tensor\\\": \\\"t0\\\"}", in: bytes)
        #expect(swapped != bytes)
        let beyond = try #require(try modelError(swapped, suffix: ".safetensors"))
        #expect(beyond.description.contains("beyond its 2-bit width"), "\(beyond)")
    }

    @Test("Hybrid Demucs kwargs this engine does not implement are refused by name")
    func unsupportedHybrid() throws {
        let package = try ModelPackage.load(contentsOf: try repoFile("c0ffee20-"))
        for (key, value) in [("wiener_iters", KwargValue.int(1)), ("hybrid", .bool(false)), ("no_such_kwarg", .int(1))] {
            var p = package
            p.kwargs[key] = value
            #expect(throws: CheckpointError.self) { try HDemucs(package: p) }
        }
    }
}

/// Loads `bytes` as a checkpoint and builds whatever model it holds; returns the error.
func modelError(_ bytes: [UInt8], suffix: String) throws -> CheckpointError? {
    try loadError(bytes, suffix: suffix, build: { _ = try loadModel($0) })
}
