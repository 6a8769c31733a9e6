#!/usr/bin/env bash
# Property-based API fuzzing: schemathesis generates requests from the served OpenAPI document
# (every operation, the multipart upload included, valid and invalid data) against a real
# `stemify serve` on loopback, and checks every answer: no 5xx, statuses and content types the
# document lists, bodies matching their schemas, invalid data refused. Then the server must
# still be alive and healthy.
#
#   scripts/api-fuzz.sh          # 120 s (scripts/test.sh)
#   scripts/api-fuzz.sh 1800     # by hand
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
port=${STEMIFY_FUZZ_PORT:-18089}
binary=.build/release/stemify
[ -x "$binary" ] || swift build -c release --product stemify
command -v schemathesis >/dev/null || python3 -m pip install --quiet --disable-pip-version-check schemathesis \
    || python3 -m pip install --quiet --break-system-packages schemathesis
data=$(mktemp -d)
log=.build/api-fuzz.log
mkdir -p .build "$data/models"
# A server as deployed: its default models installed (the fixture networks under the default
# names; without them every request that names no model is a 503 model_unavailable), a high
# rate limit (the run submits thousands of jobs from one address), one worker.
ln -s "$PWD"/Tests/Fixtures/repo/* "$data/models/"
echo "models: ['a1c0ffee']" > "$data/models/htdemucs.yaml"
cp Tests/Fixtures/repo/htft_small.yaml "$data/models/htdemucs_ft.yaml"
STEMIFY_PORT=$port STEMIFY_DATA_DIR=$data DEMUCS_MODEL_PATH=$data/models RATE_LIMIT=1000000 \
    MODEL_DOWNLOAD=false STEMIFY_THREADS=1 LOG_LEVEL=warning "$binary" serve > "$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

status=0
# Every request names the tus version (the Swift tests cover tus requests that do not: each would
# stop at 412 before reaching the upload logic); chunk bodies come from tools/schemathesis_hooks.py.
PYTHONPATH=tools SCHEMATHESIS_HOOKS=schemathesis_hooks schemathesis run "http://127.0.0.1:$port/openapi.yaml" --url "http://127.0.0.1:$port" -H "Tus-Resumable: 1.0.0" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --max-time "$seconds" -w 2 --suppress-health-check all --request-timeout 30 --no-color || status=$?

if ! kill -0 "$server" 2>/dev/null; then
    echo "the server died during the API fuzz run; its log:" >&2
    tail -50 "$log" >&2
    exit 1
fi
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "the server is not healthy after the run" >&2; exit 1; }
echo "server alive and healthy after the run"
exit $status
