#!/usr/bin/env bash
# Installs what Stemify needs from Debian and builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product stemify
echo "built: $(pwd)/.build/release/stemify"
