#!/usr/bin/env bash
# Installs the system libraries Stemify links (OpenBLAS) when pkg-config cannot find them.
set -euo pipefail
if ! pkg-config --exists openblas 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libopenblas-dev pkg-config >/dev/null
fi
