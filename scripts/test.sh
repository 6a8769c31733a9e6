#!/usr/bin/env bash
# The test command: installs system dependencies if missing, then runs every test in release
# mode (the engine's numeric loops are ~30x slower unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test -c release
