#!/usr/bin/env bash
# Installs what Stemify needs and is missing: OpenBLAS (loaded at run time), ffmpeg/ffprobe (audio in and
# out) from Debian, yt-dlp (YouTube input) from PyPI. With --test, also what only the tests
# need: tsc (Debian's node-typescript), Chromium and its driver, Firefox ESR, WebKitGTK's driver,
# Xvfb and PulseAudio, gdb, clang's libFuzzer runtime
# (ships with Swift), Selenium, schemathesis and moto (an S3-compatible server) from PyPI.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -E"
export DEBIAN_FRONTEND=noninteractive
missing=()
ldconfig -p | grep -q "libopenblas.so.0 " || missing+=(libopenblas0)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
if [ "${1:-}" = "--test" ]; then
    command -v curl >/dev/null || missing+=(curl)
    command -v tsc >/dev/null || missing+=(node-typescript)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    # The fault script prints the stacks of a process that does not stop on SIGTERM.
    command -v gdb >/dev/null || missing+=(gdb)
    # The mixer in the other two engines (tools/engine_test.py): Firefox (WebDriver BiDi),
    # WebKitGTK's driver under Xvfb, and an audio sink for them to play into.
    command -v firefox-esr >/dev/null || missing+=(firefox-esr)
    command -v WebKitWebDriver >/dev/null || missing+=(webkit2gtk-driver)
    command -v Xvfb >/dev/null || missing+=(xvfb)
    command -v pulseaudio >/dev/null || missing+=(pulseaudio)
    command -v pactl >/dev/null || missing+=(pulseaudio-utils)
fi
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v yt-dlp >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check yt-dlp 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages yt-dlp
fi
if [ "${1:-}" = "--test" ] && ! python3 -c "import selenium" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check selenium 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages selenium
fi
if [ "${1:-}" = "--test" ] && ! command -v schemathesis >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check schemathesis 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages schemathesis
fi
if [ "${1:-}" = "--test" ] && ! command -v moto_server >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "moto[server]" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "moto[server]"
fi
