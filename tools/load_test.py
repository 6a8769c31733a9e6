#!/usr/bin/env python3
"""Load and crash test of `stemify serve` on the embedded default (stdlib only).

    swift build -c release && python3 tools/load_test.py --jobs 100

Starts the real server with the small fixture model, sends N concurrent submissions of a short
mp3, SIGKILLs the server while the queue is still full, starts it again on the same data
folder, and waits until every accepted job has finished. Prints accepted / finished / failed,
5xx count, p50/p99 submit latency and the server's peak RSS (VmHWM, both runs).
"""
import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start(binary, port, data, models):
    env = dict(os.environ, DEMUCS_MODEL_PATH=str(models), RATE_LIMIT="0", STEMIFY_WORKERS="1", LOG_LEVEL="warning")
    proc = subprocess.Popen([str(binary), "serve", "--port", str(port), "--data-dir", str(data)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except Exception:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def peak_rss_mb(proc):
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# The owner of every job this script makes (the server answers anyone else 404).
OWNER = {"Authorization": f"Bearer sto_{uuid.uuid4().hex}{uuid.uuid4().hex}"}


def submit(port, audio):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nht_small\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"output_format\"\r\n\r\nmp3\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"quality\"\r\n\r\nfast\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n").encode()
    body += audio + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/stemify", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **OWNER})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response).get("job_id"), time.perf_counter() - start
    except urllib.error.HTTPError as error:
        return error.code, None, time.perf_counter() - start


def status(port, job):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/jobs/{job}", headers=OWNER)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["status"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--port", type=int, default=18123)
    p.add_argument("--binary", type=Path, default=ROOT / ".build" / "release" / "stemify")
    args = p.parse_args()

    data = Path(tempfile.mkdtemp(prefix="stemify-load-"))
    audio_path = data / "in.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:duration=3", "-ac", "2",
                    str(audio_path)], check=True)
    audio = audio_path.read_bytes()
    models = ROOT / "Tests" / "Fixtures" / "repo"

    server = start(args.binary, args.port, data / "srv", models)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda _: submit(args.port, audio), range(args.jobs)))
    codes = [r[0] for r in results]
    accepted = [r[1] for r in results if r[0] == 202]
    latencies = sorted(r[2] for r in results)
    rss_first = peak_rss_mb(server)

    # Crash mid-queue.
    while sum(status(args.port, j) == "done" for j in accepted) < len(accepted) // 4:
        time.sleep(0.5)
    server.send_signal(signal.SIGKILL)
    server.wait()
    server = start(args.binary, args.port, data / "srv", models)
    deadline = time.time() + 1800
    while time.time() < deadline:
        states = [status(args.port, j) for j in accepted]
        if all(s in ("done", "failed", "cancelled") for s in states):
            break
        time.sleep(1)
    rss_second = peak_rss_mb(server)
    server.send_signal(signal.SIGTERM)
    server.wait()

    print(f"submitted {args.jobs}, accepted {len(accepted)}, 5xx {sum(c >= 500 for c in codes)}, other {sorted(set(codes))}")
    print(f"finished {states.count('done')}, failed {states.count('failed')}, lost {len(accepted) - len(states)}")
    print(f"submit latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms")
    print(f"server peak RSS: {rss_first:.0f} MB before the SIGKILL, {rss_second:.0f} MB after the restart")
    ok = len(accepted) == args.jobs and states.count("done") == len(accepted)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
