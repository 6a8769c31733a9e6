#!/usr/bin/env bash
# Installs the reference PyTorch Demucs (PyPI demucs 4.1.0, CPU-only torch) into .reference/.
# Used by tools/make_fixtures.py and tools/benchmark.py; never by tests or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${REFERENCE_VENV:-.reference}
python3 -m venv "$VENV"
# The CPU build; plain `pip install torch` pulls the multi-GB CUDA build.
"$VENV/bin/pip" install 'torch==2.13.0+cpu' || "$VENV/bin/pip" install torch --index-url https://download.pytorch.org/whl/cpu
"$VENV/bin/pip" install --no-deps demucs==4.1.0 diffq==0.2.4
"$VENV/bin/pip" install julius einops tqdm pyyaml numpy omegaconf safetensors soundfile sphn lameenc
echo "reference installed in $VENV"
