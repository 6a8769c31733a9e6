#!/usr/bin/env bash
# Installs the references into .reference/: PyTorch Demucs (PyPI demucs 4.1.0) and
# Music-Source-Separation-Training (PyPI msst 0.1.0: BS-/Mel-Band RoFormer, SCNet), CPU-only torch.
# Used by tools/make_fixtures.py, tools/make_msst_fixtures.py, the parity and benchmark scripts;
# never by tests or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${REFERENCE_VENV:-.reference}
python3 -m venv "$VENV"
# The CPU build; plain `pip install torch` pulls the multi-GB CUDA build.
"$VENV/bin/pip" install 'torch==2.13.0+cpu' || "$VENV/bin/pip" install torch --index-url https://download.pytorch.org/whl/cpu
"$VENV/bin/pip" install --no-deps demucs==4.1.0 diffq==0.2.4
"$VENV/bin/pip" install julius einops tqdm pyyaml numpy omegaconf safetensors soundfile sphn lameenc
# msst pins torch<2.12; its model code runs on 2.13, so it goes in without its dependencies, and
# what its model files import is added by hand.
"$VENV/bin/pip" install --no-deps msst==0.1.0 rotary-embedding-torch==0.9.1
"$VENV/bin/pip" install beartype librosa ml-collections scipy packaging matplotlib
# The ONNX Runtime peer of tools/benchmark.py --onnx: demucs-onnx's export patches and overlap-add
# (its export extra pins torch<2.5; the legacy exporter it calls runs on 2.13).
"$VENV/bin/pip" install onnx onnxscript onnxruntime
"$VENV/bin/pip" install --no-deps demucs-onnx==0.3.4 soxr huggingface-hub
echo "reference installed in $VENV"
