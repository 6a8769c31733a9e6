#!/usr/bin/env bash
# One command: installs what is missing (OpenBLAS, ffmpeg, yt-dlp), builds, and starts the
# service on the embedded default (SQLite queue, local files, in-process workers) on
# http://127.0.0.1:8080. Models are read from $DEMUCS_MODEL_PATH (default ./stemify-data/models).
# Extra arguments go to `stemify serve` (e.g. --port 9000 --config stemify.yaml).
#
# In production run it under a supervisor that restarts it if it ever stops: the systemd units
# in deploy/ (`Restart=always`, docs/deployment.md), or at least
#   until .build/release/stemify serve; do echo "stemify exited ($?); restarting" >&2; sleep 1; done
# A restart loses no job: queued and running jobs are in the queue, and a running separation
# resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product stemify
exec .build/release/stemify serve "$@"
