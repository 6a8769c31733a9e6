#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of every parser of outside bytes:
#   multipart   request bodies, header parameters, Range, X-Forwarded-For, tus headers (StemifyServer)
#   checkpoint  torch zip, restricted unpickler, safetensors + JSON header, DiffQ, model build (StemifyEngine)
#   config      a RoFormer's YAML configuration and state dict (.ckpt), then the network built on them
#   wav         the WAV reader (StemifyCore)
#   resp        the Redis client's reply parser (StemifyCore)
#   s3xml       the object-storage client's reader of S3's XML answers (StemifyCore)
# The parser sources are compiled into the harnesses as they are (Fuzz/*.swift holds only the
# entry points; checkpoint and wav share one binary, FuzzFiles). Seeds: Fuzz/corpus/TARGET
# (committed). A crash is written to .build/fuzz/crashes;
# copy it to Fuzz/regressions/TARGET/ (the tests replay that folder) once it is fixed.
#
#   scripts/fuzz.sh              # every target, 30 minutes each (by hand)
#   scripts/fuzz.sh --ci         # every target, 40 s each (scripts/test.sh)
#   scripts/fuzz.sh multipart 600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=1800
targets=(multipart checkpoint config wav resp s3xml)
if [ "${1:-}" = "--ci" ]; then seconds=40; shift; fi
if [ $# -ge 1 ]; then targets=("$1"); fi
if [ $# -ge 2 ]; then seconds=$2; fi

out=.build/fuzz
mkdir -p "$out/crashes"
# The C targets as clang modules (SwiftPM makes these maps itself for the package build).
for c in CStemifySystem CStemifyKernels; do
    mkdir -p "$out/modules/$c"
    echo "module $c { header \"$PWD/Sources/$c/include/$c.h\" export * }" > "$out/modules/$c/module.modulemap"
    for f in Sources/$c/*.c; do
        clang -c -O1 -fsanitize=address "$f" -I Sources/$c/include -o "$out/$c-$(basename "$f" .c).o"
    done
done

# Yams (the engine reads model configurations with it) as a module of its own, from the
# checkout SwiftPM resolved; its C parser with the sanitizer too.
yams=.build/checkouts/Yams/Sources
if [ ! -f "$out/yams/Yams.o" ] || [ -n "$(find "$yams" -newer "$out/yams/Yams.o" | head -1)" ]; then
    mkdir -p "$out/yams"
    for c in "$yams"/CYaml/src/*.c; do
        clang -c -O1 -fsanitize=address -DYAML_DECLARE_STATIC -I "$yams/CYaml/include" "$c" -o "$out/yams/$(basename "$c" .c).o"
    done
    swiftc -O -parse-as-library -wmo -module-name Yams -sanitize=address -DSWIFT_PACKAGE -Xcc -DYAML_DECLARE_STATIC -I "$yams/CYaml/include" \
        -emit-module -emit-module-path "$out/yams/Yams.swiftmodule" -c "$yams"/Yams/*.swift -o "$out/yams/Yams.o" \
        > "$out/build-yams.log" 2>&1 || { cat "$out/build-yams.log" >&2; exit 1; }
fi

flags=(-O -parse-as-library -package-name stemify -sanitize=fuzzer,address -swift-version 6 -I "$out/modules/CStemifySystem"
       -I "$out/modules/CStemifyKernels"
       -I "$out/yams" -I "$yams/CYaml/include" -Xcc -DYAML_DECLARE_STATIC)
[ "$(uname -m)" = x86_64 ] && flags+=(-target-cpu haswell)
engine=$(find Sources/StemifyEngine -name '*.swift' | sort)

build() {
    local name=$1; shift
    if [ ! -x "$out/fuzz-$name" ] || [ -n "$(find "$@" -newer "$out/fuzz-$name" 2>/dev/null | head -1)" ]; then
        echo "building fuzz-$name"
        # gold warns about every ASan helper symbol: keep the log, show it only on failure.
        if ! swiftc "${flags[@]}" -module-name "Fuzz$name" "$@" "$out"/CStemify*-*.o "$out"/yams/*.o -o "$out/fuzz-$name" \
            > "$out/build-$name.log" 2>&1; then
            grep -v "Cannot export local symbol" "$out/build-$name.log" >&2
            exit 1
        fi
    fi
}

# Swift's own crash handler would catch the trap before libFuzzer can report and save the input.
export SWIFT_BACKTRACE=enable=no
status=0
for target in "${targets[@]}"; do
    case $target in
        multipart) build multipart Fuzz/FuzzMultipart.swift Sources/StemifyServer/Uploads/MultipartReader.swift Sources/StemifyServer/HeaderParsing.swift ;;
        resp) build resp Fuzz/FuzzRESP.swift Sources/StemifyCore/Jobs/Redis/RESP.swift ;;
        s3xml) build s3xml Fuzz/FuzzS3XML.swift Sources/StemifyCore/Storage/S3XML.swift ;;
        checkpoint|config|wav)
            # WAV.swift imports StemifyEngine, which is compiled into the same module here.
            sed '/import StemifyEngine/d' Sources/StemifyCore/Audio/WAV.swift > "$out/WAV.swift.new"
            cmp -s "$out/WAV.swift.new" "$out/WAV.swift" || mv "$out/WAV.swift.new" "$out/WAV.swift"
            build files Fuzz/FuzzFiles.swift "$out/WAV.swift" $engine ;;
        *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    work="$out/corpus-$target"
    mkdir -p "$work"
    regressions=()
    [ -d "Fuzz/regressions/$target" ] && regressions=("Fuzz/regressions/$target")
    echo "fuzzing $target for ${seconds}s"
    binary=$out/fuzz-files
    [ "$target" = multipart ] && binary=$out/fuzz-multipart
    [ "$target" = resp ] && binary=$out/fuzz-resp
    [ "$target" = s3xml ] && binary=$out/fuzz-s3xml
    if ! STEMIFY_FUZZ_TARGET=$target "$binary" "$work" "Fuzz/corpus/$target" "${regressions[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=65536 \
        -artifact_prefix="$out/crashes/$target-" -print_final_stats=1 2> "$out/$target.log"; then
        tail -40 "$out/$target.log" >&2
        echo "fuzz target $target failed; inputs in $out/crashes" >&2
        status=1
    else
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$out/$target.log" | tr '\n' ' '
        echo "($target: no crash)"
    fi
done
exit $status
