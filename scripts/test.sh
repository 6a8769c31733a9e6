#!/usr/bin/env bash
# The test command: installs system dependencies if missing, starts a throwaway PostgreSQL,
# Redis and S3-compatible server (moto), runs every test in release mode (the engine's numeric loops are ~30x slower unoptimised),
# then the many-machines fault script (API + worker processes, SIGKILL, database restart, object
# store outage) on PostgreSQL + shared folder, Redis + bucket and PostgreSQL + bucket, the
# TypeScript client check, the page in a headless Chromium, and two bounded fuzz runs:
# libFuzzer over the byte parsers (40 s a target) and schemathesis over the served OpenAPI
# document (120 s, the server healthy afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
STEMIFY_TEST_POSTGRES_URL="$(scripts/postgres.sh)"
export STEMIFY_TEST_POSTGRES_URL
STEMIFY_TEST_REDIS_URL="$(scripts/redis.sh)"
export STEMIFY_TEST_REDIS_URL
STEMIFY_TEST_S3_URL="$(scripts/s3.sh)"
export STEMIFY_TEST_S3_URL
swift build -c release --build-tests
# The live-server tests run in a process of their own: the engine's tests hold the cooperative
# thread pool (one thread per core) in long synchronous loops, and a server whose handlers get
# no thread for 20 s times its test client out. Their suites run one after another: each runs
# real separations on a live server, and several at once on two cores starved an event stream
# past its read timeout (about 35 s more than in parallel here).
swift test -c release --skip-build --skip StemifyServerTests
swift test -c release --skip-build --no-parallel --filter StemifyServerTests
# The tests above run the engine's AVX-512 kernels and products where the CPU has them; parity
# and the engine's suite again on the AVX2 ones, which an AVX2-only machine runs.
if grep -qw avx512f /proc/cpuinfo; then
    STEMIFY_ISA=avx2 swift test -c release --skip-build --filter "StemifyCoreTests.ParityTests|StemifyEngineTests"
fi
python3 tools/fault_test.py --postgres "$STEMIFY_TEST_POSTGRES_URL"
python3 tools/fault_test.py --redis --s3 "$STEMIFY_TEST_S3_URL"
python3 tools/fault_test.py --postgres "$STEMIFY_TEST_POSTGRES_URL" --s3 "$STEMIFY_TEST_S3_URL"
scripts/check-client.sh
python3 tools/browser_test.py
python3 tools/engine_test.py
scripts/fuzz.sh --ci
scripts/api-fuzz.sh 120
