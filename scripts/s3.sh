#!/usr/bin/env bash
# Starts a throwaway S3-compatible server for the tests (moto in server mode, from PyPI, on
# loopback) and prints its endpoint. Idempotent: a server already answering on the port is
# reused. moto keeps objects in memory and does not check signatures (SigV4Tests checks the
# signer against AWS's published vectors instead).
#   S3_PORT (default 9390)
set -euo pipefail
PORT="${S3_PORT:-9390}"
if ! command -v moto_server >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "moto[server]" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "moto[server]"
fi
if ! curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
    nohup moto_server -H 127.0.0.1 -p "$PORT" >/tmp/stemify-s3.log 2>&1 &
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.1
    done
fi
echo "http://127.0.0.1:$PORT"
