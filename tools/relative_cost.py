#!/usr/bin/env python3
"""What each catalog model costs next to htdemucs on this machine: `stemify separate` wall time
per second of audio on a long song, divided by htdemucs's. These are the `relative_cost`
figures of GET /api/models (Sources/StemifyCore/Models/PublishedModels.swift), at each
configuration's own overlap; a job's `num_overlap` scales them in proportion.

    tools/setup_reference.sh && swift build -c release
    .reference/bin/python tools/relative_cost.py --work /tmp/cost

Networks are full size with random weights (the cost does not depend on the values): htdemucs
as `tools/make_fixtures.py --full` builds it, the others as `tools/msst_parity.py` does. Each
model runs on a 1 s clip and on one `--steps` chunk hops longer; the difference is the time of
that many chunks, without model load and the padding at both ends, which a long song makes
negligible. Only Stemify runs here; `tools/benchmark.py` compares each with the reference.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
import msst_parity as mp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Catalog name -> the configuration msst_parity builds with the same hyperparameters.
CATALOG = {
    "bs_roformer_viperx_1297": "bs_viperx",
    "bs_roformer_viperx_1053": "bs_viperx",
    "mel_roformer_kj": "mel_kj",
    "mel_roformer_viperx_1143": "mel_viperx",
    "bs_roformer_4stem_965": "bs_4stem",
    "scnet_small": "scnet_small",
    "scnet_large": "scnet_large",
    "scnet_xl_ihf": "scnet_xl_ihf",
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="model folder and input (kept; models are reused)")
    p.add_argument("--steps", type=int, default=2, help="chunk hops between the short and the long run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default=",".join(dict.fromkeys(CATALOG.values())), help="msst_parity configurations to time")
    p.add_argument("--binary", default=str(ROOT / ".build" / "release" / "stemify"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    repo = args.work / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / "htdemucs.yaml").exists():
        mf.save_th(mf.build(mf.HTDEMUCS_KW, seed=100), repo, "955717e8")
        (repo / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    configs = args.configs.split(",")
    for i, name in enumerate(configs):
        if not (repo / f"{name}.ckpt").exists():
            mp.write_model(name, repo, seed=50 + i)

    def run(name, seconds, extra=()):
        wav = args.work / f"input{seconds:.3f}.wav"
        if not wav.exists():
            sf.write(str(wav), mf.signal(seconds, seed=11).T, 44100, subtype="FLOAT")
        cmd = [args.binary, "separate", "-n", name, "--repo", str(repo), "-o", str(args.work / "out"),
               "--quiet", "-j", str(args.threads), *extra, str(wav)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return time.perf_counter() - start

    def seconds_per_audio_second(name, step, extra=()):
        # One run of a short clip and one `args.steps` hops longer: the difference is exactly
        # that many more chunks, so model load and the padding at both ends cancel out.
        short = run(name, 1.0, extra)
        long = run(name, 1.0 + args.steps * step, extra)
        return (long - short) / (args.steps * step)

    base = seconds_per_audio_second("htdemucs", 7.8 * 0.75, ["--shifts", "1"])
    print(f"{'htdemucs':14s} {base:6.3f} s per audio s   1.0x   (shifts 1, overlap 0.25)", flush=True)
    for name in configs:
        spec = mp.CONFIGS[name][2]
        cost = seconds_per_audio_second(name, spec["chunk"] / spec["overlap"] / 44100)
        print(f"{name:14s} {cost:6.3f} s per audio s {cost / base:5.1f}x   (num_overlap {spec['overlap']})", flush=True)
    print(f"{args.threads} threads; catalog entries: " + ", ".join(f"{k} = {v}" for k, v in CATALOG.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
