import DemucsKit
import Foundation
import Testing

@Test func scratchTiming() throws {
    guard let path = ProcessInfo.processInfo.environment["SCRATCH_MODEL"] else { return }
    EngineThreads.set(2)
    let model = try HTDemucs(package: try ModelPackage.load(contentsOf: URL(fileURLWithPath: path)))
    var mix = Tensor(zeros: [2, model.trainingLength])
    for i in 0..<mix.count { mix.data[i] = Float(sin(Double(i) * 0.01)) * 0.3 }
    for _ in 0..<2 {
        var last = Date()
        let start = last
        _ = model.forward(mix) { name, _ in
            let now = Date()
            print(String(format: "%@ %.3f", name, now.timeIntervalSince(last)))
            last = now
        }
        print(String(format: "tail %.3f total %.3f", Date().timeIntervalSince(last), Date().timeIntervalSince(start)))
    }
}

@Test func scratchOps() throws {
    guard ProcessInfo.processInfo.environment["SCRATCH_MODEL"] != nil else { return }
    EngineThreads.set(2)
    func rnd(_ shape: [Int]) -> Tensor {
        var t = Tensor(zeros: shape)
        for i in 0..<t.count { t.data[i] = Float.random(in: -1...1) }
        return t
    }
    let x = rnd([2688, 512]), w1 = rnd([2048, 512]), b1 = rnd([2048])
    for _ in 0..<2 {
        let t0 = Date()
        _ = linear(x, weight: w1, bias: b1)
        let dt = Date().timeIntervalSince(t0)
        print(String(format: "linear 2688x512x2048: %.3f s, %.1f GFLOP/s", dt, 2.0 * 2688 * 512 * 2048 / dt / 1e9))
    }
    let w = MultiheadAttentionWeights(inProjWeight: rnd([1536, 512]), inProjBias: rnd([1536]), outProjWeight: rnd([512, 512]), outProjBias: rnd([512]), heads: 8)
    for _ in 0..<2 {
        let t0 = Date()
        _ = multiheadAttention(x, keyValue: nil, weights: w)
        let dt = Date().timeIntervalSince(t0)
        let flops = 2.0 * 2688 * 512 * 1536 + 2.0 * 2688 * 512 * 512 + 4.0 * 2688 * 2688 * 512
        print(String(format: "self attention 2688: %.3f s, %.1f GFLOP/s", dt, flops / dt / 1e9))
    }
}
