#!/usr/bin/env python3
"""Wall time and peak RSS of `stemify separate` against the reference, same model, input, threads.

Run by hand (needs the reference: tools/setup_reference.sh, and full-size models:
`.reference/bin/python tools/make_fixtures.py --full DIR` for Demucs,
`.reference/bin/python tools/msst_parity.py --config NAME --keep DIR` for RoFormer / SCNet):

    .reference/bin/python tools/benchmark.py --repo DIR --model htdemucs --input DIR/bench60.wav --threads 2
    .reference/bin/python tools/benchmark.py ... --isa avx512,avx2     # stemify once per kernel set
    .reference/bin/python tools/benchmark.py ... --onnx --rounds 2    # also ONNX Runtime, alternating
    .reference/bin/python tools/benchmark.py --repo DIR/repo --model mel_kj --input DIR/input.wav --threads 2

A Demucs bag is compared with the reference `apply_model` (demucs 4.1.0); a configured model
(NAME.ckpt + NAME.yaml) with `msst` 0.1.0's `demix` at the configuration's overlap. Each side
runs as its own process, one after the other, with the same thread count; peak RSS is that
child's own `ru_maxrss` (wait4). Prints the CPU, then one row per side: seconds, RSS, and the
ratio.

`--onnx` adds the peer CPU users reach for when PyTorch is slow: the same network exported to
ONNX by PyPI `demucs-onnx` 0.3.4 (its patches for export, the legacy exporter, opset 17; the
export is checked against the PyTorch model and kept beside the checkpoints as
`onnx/MODEL.onnx`, untimed) and run by onnxruntime with the same threads through
`demucs-onnx`'s own overlap-add (7.8 s chunks, overlap 0.25, like the reference's). HTDemucs
models only (one network; demucs-onnx exports nothing else). `--rounds N` repeats the sides in
turn N times, so a machine's drift shows in every column.

`--reference-isa auto,avx2` runs the reference once per level: `avx2` caps PyTorch's own
kernels (`ATEN_CPU_CAPABILITY`), MKL's products (`MKL_ENABLE_INSTRUCTIONS`) and oneDNN's
convolutions (`ONEDNN_MAX_CPU_ISA`) at AVX2, as they run on an AVX2-only CPU; with `--isa avx2`
that is an AVX2 machine's side by side on an AVX-512 one. ONNX Runtime has no such switch and
always runs its widest kernels.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from kernel_libraries import FORCE

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


MSST_REFERENCE = r'''
import sys, torch, numpy as np, soundfile as sf, yaml
torch.set_num_threads(int(sys.argv[4]))
from ml_collections import ConfigDict
from msst.models.bs_roformer import BSRoformer, MelBandRoformer
from msst.models.scnet import SCNet
from msst.utils.model_utils import demix
from pathlib import Path
repo, name = Path(sys.argv[1]), sys.argv[2]
config = ConfigDict(yaml.load((repo / f"{name}.yaml").read_text(), Loader=yaml.FullLoader))
kind = config.training.get("model_type") or ("bs_roformer" if "freqs_per_bands" in config.model
        else "mel_band_roformer" if "num_bands" in config.model else "scnet")
klass = {"bs_roformer": BSRoformer, "mel_band_roformer": MelBandRoformer, "scnet": SCNet}[kind]
model = klass(**dict(config.model)).eval()
state = torch.load(repo / f"{name}.ckpt", map_location="cpu", weights_only=True)
state = state.get("state_dict", state)
model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
data, sr = sf.read(sys.argv[3], dtype="float32", always_2d=True)
out = demix(config, model, data.T.copy(), torch.device("cpu"), kind)
'''


ONNX_EXPORT = r'''
import sys, copy
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from make_fixtures import load_bag
from demucs_onnx.export import exporter
from demucs_onnx.export.patch import patch_htdemucs_for_onnx
bag = load_bag(Path(sys.argv[1]), sys.argv[2])
if len(bag.models) != 1 or type(bag.models[0]).__name__ != "HTDemucs":
    raise SystemExit("demucs-onnx exports one HTDemucs network; this model is not one")
model = bag.models[0].eval()
out = Path(sys.argv[3])
exporter._export_one(patch_htdemucs_for_onnx(copy.deepcopy(model)), out, n_samples=exporter.N_SAMPLES,
                     opset=17, verbose=True)
exporter._verify_onnx_parity(model, out, n_samples=exporter.N_SAMPLES, bag_index=None, stem="all",
                             tolerance=1e-2, verbose=True)
'''


ONNX_RUN = r'''
import sys, numpy as np, soundfile as sf, onnxruntime as ort
from demucs_onnx.inference import _chunked_separate_single
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
options.intra_op_num_threads = int(sys.argv[3])
options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], sess_options=options, providers=["CPUExecutionProvider"])
data, sr = sf.read(sys.argv[2], dtype="float32", always_2d=True)
wav = np.ascontiguousarray(data.T)
ref = wav.mean(0); mean = ref.mean(); std = ref.std() + 1e-8
sources = [str(i) for i in range(session.get_outputs()[0].shape[1])]
out = _chunked_separate_single(session, sources, (wav - mean) / std, progress=False)
'''


# What caps the reference's libraries at a level ("auto": nothing, their own CPU tables):
# PyTorch's own kernels, and MKL and oneDNN as kernel_libraries.py forces them.
REFERENCE_LEVELS = {"auto": {}} | {
    level: {"ATEN_CPU_CAPABILITY": level, **force["mkl"], **force["onednn"]} for level, force in FORCE.items()
}


def measure(cmd, env=None):
    """Wall seconds and the child's own peak RSS in MB."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with status {child.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def cpu():
    """The model name and the vector extensions that matter here, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "unknown")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile"]
    return f"{name}, {os.cpu_count()} CPUs, {' '.join(f for f in wanted if f in flags)}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--model", default="htdemucs")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stemify", type=Path, default=ROOT / ".build" / "release" / "stemify")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--isa", default="auto", help="comma-separated kernel sets for stemify (auto, avx512, avx2, portable)")
    p.add_argument("--reference-isa", default="auto",
                   help="comma-separated levels for the reference (auto, avx2, avx512)")
    p.add_argument("--onnx", action="store_true", help="also time the network exported to ONNX, run by onnxruntime")
    p.add_argument("--rounds", type=int, default=1, help="times to run every side, in turn")
    args = p.parse_args()
    print(f"CPU: {cpu()}", flush=True)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    out = Path("/tmp/stemify-bench")
    configured = (args.repo / f"{args.model}.ckpt").exists() and (args.repo / f"{args.model}.yaml").exists()
    levels = args.reference_isa.split(",")
    if unknown := [level for level in levels if level not in REFERENCE_LEVELS]:
        raise SystemExit(f"--reference-isa: unknown level {', '.join(unknown)} (known: {', '.join(REFERENCE_LEVELS)})")
    # (name, command, extra environment)
    sides = [(f"stemify ({isa})", [str(args.stemify), "separate", "-n", args.model, "--repo", str(args.repo),
                                   "-o", str(out), "--shifts", "1", "-j", str(args.threads), "--isa", isa,
                                   "--quiet", str(args.input)], {})
             for isa in args.isa.split(",")]
    if not args.skip_reference:
        script = MSST_REFERENCE if configured else REFERENCE
        for level in levels:
            label = "msst demix" if configured else "demucs apply_model"
            sides.append((f"reference ({label}{'' if level == 'auto' else ', ' + level})",
                          [sys.executable, "-c", script, str(args.repo), args.model, str(args.input), str(args.threads),
                           str(ROOT / "tools")], REFERENCE_LEVELS[level]))
    if args.onnx:
        exported = args.repo / "onnx" / f"{args.model}.onnx"
        if not exported.exists():
            exported.parent.mkdir(exist_ok=True)
            print(f"exporting {args.model} to {exported} (untimed)", flush=True)
            subprocess.run([sys.executable, "-c", ONNX_EXPORT, str(args.repo), args.model, str(exported),
                            str(ROOT / "tools")], check=True, stderr=subprocess.DEVNULL)
        sides.append(("onnxruntime (demucs-onnx)", [sys.executable, "-c", ONNX_RUN, str(exported), str(args.input),
                                                     str(args.threads)], {}))
    times = {name: [] for name, _, _ in sides}
    for round in range(args.rounds):
        for name, cmd, extra in sides:
            wall, rss = measure(cmd, dict(env, **extra))
            times[name].append(wall)
            print(f"{name:36} {args.model}: {wall:7.1f} s wall, peak RSS {rss:7.0f} MB", flush=True)
    best = {name: min(walls) for name, walls in times.items()}
    peers = [name for name in best if not name.startswith("stemify")]
    for name in (n for n in best if n.startswith("stemify")):
        for peer in peers:
            print(f"{name} / {peer}: {best[name] / best[peer]:.2f}x (best of {args.rounds})")


if __name__ == "__main__":
    main()
