#!/usr/bin/env python3
"""The shapes of `stemify-bench` timed in PyTorch (the reference's kernels: MKL, oneDNN), one thread.

    swift build -c release --product stemify-bench && .build/release/stemify-bench --repeat 5
    .reference/bin/python tools/bench_ops_reference.py
"""
import time, torch, torch.nn.functional as F
torch.set_num_threads(1)
def bench(name, fn, r=3):
    fn(); ts=[]
    for _ in range(r):
        t=time.perf_counter(); fn(); ts.append((time.perf_counter()-t)*1000)
    ts.sort(); print(f"{name:50s} best {ts[0]:8.1f} ms median {ts[len(ts)//2]:8.1f} ms", flush=True)
with torch.no_grad():
    mha = torch.nn.MultiheadAttention(512, 8, batch_first=True).eval()
    x = torch.randn(1, 2688, 512); xt = torch.randn(1, 1344, 512)
    bench("attention 2688x2688 d512", lambda: mha(x, x, x, need_weights=False))
    bench("attention 2688x1344 d512", lambda: mha(x, xt, xt, need_weights=False))
    spec = torch.randn(1, 4, 2048, 336); w = torch.randn(48, 4, 8, 1)
    bench("conv k8x1 s4 4->48", lambda: F.conv2d(spec, w, stride=(4, 1), padding=(2, 0)))
    x48 = torch.randn(1, 48, 512 * 336); w1 = torch.randn(6, 48, 3)
    bench("dconv 48->6 k3 d2 (conv1d over rows)", lambda: F.conv1d(x48.view(1,48,512,336).permute(0,2,1,3).reshape(512,48,336), w1, padding=2, dilation=2))
    h6 = torch.randn(512, 6, 336); w2 = torch.randn(96, 6, 1)
    bench("dconv 6->96 pointwise", lambda: F.conv1d(h6, w2))
    x4 = torch.randn(1, 48, 512, 336); wr = torch.randn(96, 48, 3, 3)
    bench("rewrite 3x3 48->96", lambda: F.conv2d(x4, wr, padding=1))
    wt = torch.randn(48, 16, 8, 1)
    bench("convtranspose k8 s4 48->16", lambda: F.conv_transpose2d(x4, wt, stride=(4, 1)))
    bench("gelu [48,512,336]", lambda: F.gelu(x4))
    x96 = torch.randn(1, 96, 512, 336)
    bench("glu of [96,...]", lambda: F.glu(x96, 1))
