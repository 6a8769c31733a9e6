#!/usr/bin/env bash
# One command: installs what is missing (OpenBLAS, ffmpeg, yt-dlp), builds, and starts the
# service on the embedded default (SQLite queue, local files, in-process workers) on
# http://127.0.0.1:8080. Models are read from $DEMUCS_MODEL_PATH (default ./stemify-data/models).
# Extra arguments go to `stemify serve` (e.g. --port 9000 --config stemify.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product stemify
exec .build/release/stemify serve "$@"
