#!/usr/bin/env python3
"""Wall time and peak RSS of `stemify separate` against the reference, same model, input, threads.

Run by hand (needs the reference: tools/setup_reference.sh, and full-size models:
`.reference/bin/python tools/make_fixtures.py --full DIR`):

    .reference/bin/python tools/benchmark.py --repo DIR --model htdemucs --input DIR/bench60.wav --threads 2

Each side runs as its own process, one after the other, with the same thread count; peak RSS is
the child's `ru_maxrss`. Prints one table row per model: seconds, ratio, RSS.
"""
import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REFERENCE = r'''
import sys, torch, numpy as np, soundfile as sf
torch.set_num_threads(int(sys.argv[4]))
sys.path.insert(0, sys.argv[5])
from make_fixtures import load_bag
from demucs.apply import apply_model
from pathlib import Path
model = load_bag(Path(sys.argv[1]), sys.argv[2])
data, sr = sf.read(sys.argv[3], dtype="float32", always_2d=True)
wav = torch.from_numpy(np.ascontiguousarray(data.T))
ref = wav.mean(0); mean = ref.mean(); std = ref.std() + 1e-8
with torch.no_grad():
    out = apply_model(model, ((wav - mean) / std)[None], shifts=1, split=True, overlap=0.25, num_workers=0)
out = out * std + mean
'''


def measure(cmd, env=None):
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak / 1024, before


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--model", default="htdemucs")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stemify", type=Path, default=ROOT / ".build" / "release" / "stemify")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    out = Path("/tmp/stemify-bench")
    ours = measure([str(args.stemify), "separate", "-n", args.model, "--repo", str(args.repo), "-o", str(out),
                    "--shifts", "1", "-j", str(args.threads), "--quiet", str(args.input)], env)
    print(f"stemify   {args.model}: {ours[0]:7.1f} s wall, peak RSS {ours[1]:7.0f} MB", flush=True)
    if args.skip_reference:
        return
    # ru_maxrss of children is a maximum over all children so far: run the reference second and
    # only trust its figure when it is larger; otherwise report it as "<= ours".
    ref = measure([sys.executable, "-c", REFERENCE, str(args.repo), args.model, str(args.input), str(args.threads),
                   str(ROOT / "tools")], env)
    ref_rss = f"{ref[1]:7.0f} MB" if ref[1] > ours[1] else f"<= {ours[1]:.0f} MB"
    print(f"reference {args.model}: {ref[0]:7.1f} s wall, peak RSS {ref_rss}")
    print(f"ratio (reference / stemify wall time): {ref[0] / ours[0]:.2f}x")


if __name__ == "__main__":
    main()
