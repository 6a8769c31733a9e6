#!/usr/bin/env bash
# Type-checks the TypeScript client (Debian's tsc) and checks that the committed build the page
# serves (Sources/StemifyServer/Public/lib) is what the sources compile to.
set -euo pipefail
cd "$(dirname "$0")/.."
tsc -p clients/typescript --noEmit
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
tsc -p clients/typescript --outDir "$out"
if ! diff -r "$out" Sources/StemifyServer/Public/lib >/dev/null; then
    diff -r "$out" Sources/StemifyServer/Public/lib | head -20
    echo "the committed client build is stale: run 'tsc -p clients/typescript' and commit Sources/StemifyServer/Public/lib" >&2
    exit 1
fi
echo "TypeScript client: types check, committed build up to date"
