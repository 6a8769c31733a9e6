#!/usr/bin/env bash
# Starts a throwaway Redis for the tests (Debian's package, loopback only, a password so AUTH
# is exercised, no persistence) and prints its URL. Idempotent: a server already answering on
# the port is reused.
#   REDIS_PORT (default 6390)
set -euo pipefail
PORT="${REDIS_PORT:-6390}"
PASSWORD=stemify-test
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v redis-server >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if ! redis-cli -p "$PORT" -a "$PASSWORD" --no-auth-warning ping >/dev/null 2>&1; then
    redis-server --port "$PORT" --bind 127.0.0.1 --requirepass "$PASSWORD" --save '' --appendonly no \
        --daemonize yes --logfile /tmp/stemify-redis.log --pidfile /tmp/stemify-redis.pid >/dev/null
    for _ in $(seq 50); do
        redis-cli -p "$PORT" -a "$PASSWORD" --no-auth-warning ping >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
echo "redis://:$PASSWORD@127.0.0.1:$PORT/0"
