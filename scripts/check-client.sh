#!/usr/bin/env bash
# The TypeScript client: type-checks it (Debian's tsc), checks that the committed build the page
# serves (Sources/StemifyServer/Public/lib) is what the sources compile to, then uses it as an
# application would: `npm pack`, the tarball installed into an empty project (offline: the
# package has no dependencies), the README's `ts` examples compiled there under `strict`, and
# the Node example run against a real `stemify serve` (.build/release/stemify, the fixture
# models).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
tsc -p clients/typescript --noEmit
out="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT
tsc -p clients/typescript --outDir "$out/lib"
if ! diff -r "$out/lib" Sources/StemifyServer/Public/lib >/dev/null; then
    diff -r "$out/lib" Sources/StemifyServer/Public/lib | head -20
    echo "the committed client build is stale: run 'tsc -p clients/typescript' and commit Sources/StemifyServer/Public/lib" >&2
    exit 1
fi

# Packed and installed into an empty project.
(cd clients/typescript && npm pack --silent --pack-destination "$out" >/dev/null)
tarball="$(ls "$out"/stemify-client-*.tgz)"
if tar -tzf "$tarball" | grep -v '^package/' | grep -q .; then
    echo "the package holds paths outside package/" >&2
    exit 1
fi
app="$out/app"
mkdir -p "$app"
cd "$app"
printf '{ "name": "client-check", "private": true, "type": "module" }\n' > package.json
npm install --offline --no-audit --no-fund --silent "$tarball"

# The README's `ts` blocks, each a module, compiled as an application compiles them.
python3 - "$root/clients/typescript/README.md" <<'PY'
import re, sys
blocks = re.findall(r"```ts\n(.*?)```", open(sys.argv[1]).read(), re.S)
assert blocks, "the README has no ts examples"
for i, block in enumerate(blocks):
    open(f"example{i}.ts", "w").write(block)
print(f"{len(blocks)} README examples")
PY
cat > tsconfig.json <<'JSON'
{ "compilerOptions": { "strict": true, "target": "ES2022", "module": "node16", "moduleResolution": "node16",
                       "lib": ["ES2022", "DOM"], "noEmit": true, "skipLibCheck": false },
  "include": ["example*.ts"] }
JSON
tsc -p .

# The Node example, as written, against a real server.
port=18799
DEMUCS_MODEL_PATH="$root/Tests/Fixtures/repo" MODEL_DOWNLOAD=false RATE_LIMIT=0 \
    STEMIFY_WORKERS=1 STEMIFY_THREADS=2 LOG_LEVEL=warning \
    "$root/.build/release/stemify" serve --port "$port" --data-dir "$out/data" > "$out/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
done
STEMIFY_URL="http://127.0.0.1:$port" timeout 120 node node_modules/@stemify/client/examples/separate.mjs \
    "$root/Tests/Fixtures/audio/long.wav" ht_small > "$out/example.log" 2>&1 || {
    cat "$out/example.log" "$out/server.log" >&2
    echo "the Node example failed against the server" >&2
    exit 1
}
for stem in drums bass other vocals; do
    grep -q "^$stem: http://127.0.0.1:$port/" "$out/example.log" || {
        cat "$out/example.log" >&2
        echo "the Node example did not print the $stem stem" >&2
        exit 1
    }
done
echo "TypeScript client: types check, committed build up to date, package installs, README examples compile, Node example separates a song"
