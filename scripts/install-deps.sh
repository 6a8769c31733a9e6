#!/usr/bin/env bash
# Installs what Stemify needs and is missing: OpenBLAS (linked), ffmpeg/ffprobe (audio in and
# out) from Debian, yt-dlp (YouTube input) from PyPI.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
pkg-config --exists openblas 2>/dev/null || missing+=(libopenblas-dev pkg-config)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v yt-dlp >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check yt-dlp 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages yt-dlp
fi
