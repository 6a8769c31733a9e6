#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests (Debian's package, loopback only, fsync off) and
# prints its URL. Idempotent: a cluster already running on the port is reused.
#   PGPORT (default 5433), PGDATA (default /tmp/stemify-pg)
set -euo pipefail
PORT="${PGPORT:-5433}"
DATA="${PGDATA:-/tmp/stemify-pg}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
# initdb refuses to run as root: run the server as the postgres user then.
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
    if [ ! -f "$DATA/PG_VERSION" ]; then
        $SUDO mkdir -p "$DATA"
        [ "$(id -u)" -eq 0 ] && chown postgres "$DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
    fi
    as_owner "$BIN/pg_ctl" -D "$DATA" -w -l "$DATA/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c fsync=off -c max_connections=300" start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
