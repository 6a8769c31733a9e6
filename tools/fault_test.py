#!/usr/bin/env python3
"""Many machines, with faults: one API process and worker processes on a shared PostgreSQL or
Redis queue, and a shared folder or an S3-compatible bucket (stdlib only; `scripts/test.sh`
runs it after the unit tests).

    swift build -c release
    python3 tools/fault_test.py --postgres "$(scripts/postgres.sh)"
    python3 tools/fault_test.py --redis        # its own redis-server, AOF everysec, on a spare port
    python3 tools/fault_test.py --redis --s3 "$(scripts/s3.sh)"   # no shared folder at all
    python3 tools/fault_test.py --postgres URL --measure 40 --workers 1   # throughput only
    python3 tools/fault_test.py --postgres URL --measure 40 --workers 2

Checks, against the real processes:
  1. SIGKILL of the worker in the middle of a separation: another worker takes the job over,
     resumes from the dead one's checkpoint (its log says so), and the stems are bit-identical
     to an uninterrupted run of the same audio.
  2. The queue's server restarted while jobs run (PostgreSQL `pg_ctl restart -m fast`, Redis
     `SHUTDOWN` then the same command line again): the API and the workers reconnect; nothing
     is lost.
  3. 100+ jobs submitted at once: every one accepted and finished exactly once (one "job done"
     across all worker logs), none failed.
  4. With --s3 (each process then has a data folder of its own, and the bucket is reached
     through a TCP relay of this script): the store unreachable for 6 s while jobs run (the
     relay refuses and drops every connection); every job still finishes. Check 1 then
     resumes from the checkpoint in the bucket, on another "machine".
Exits non-zero with the reason on the first failed check.
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import signal
import socket
import threading
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fail(why):
    print(f"FAIL: {why}", file=sys.stderr)
    raise SystemExit(1)


def log(message):
    print(f"[fault_test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_wav(path, seconds, freq, seed):
    """A deterministic stereo 16-bit test signal (two partials and a little noise)."""
    rate = 44100
    n = int(seconds * rate)
    state = seed * 2654435761 % 2**32
    frames = bytearray()
    for i in range(n):
        state = (1103515245 * state + 12345) % 2**31
        noise = (state / 2**31 - 0.5) * 0.05
        t = i / rate
        left = 0.3 * math.sin(2 * math.pi * freq * t) + 0.2 * math.sin(2 * math.pi * 3.1 * freq * t) + noise
        right = 0.3 * math.sin(2 * math.pi * freq * 1.01 * t + 1) + noise
        frames += struct.pack("<hh", int(left * 32000), int(right * 32000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


class Redis:
    """A redis-server of the fault script's own, persisted as docs/deployment.md says to run it
    (append-only file, fsync every second), so that a restart is a real one."""

    def __init__(self, folder, port):
        self.folder, self.port = folder, port
        folder.mkdir(parents=True)
        self.start()

    def start(self):
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "yes",
                        "--logfile", str(self.folder / "redis.log"), "--pidfile", str(self.folder / "redis.pid")], check=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        fail("redis-server did not start")

    def restart(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)
        deadline = time.time() + 20
        while (self.folder / "redis.pid").exists() and time.time() < deadline:
            time.sleep(0.1)
        self.start()

    def stop(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def create_database(admin):
    name = f"stemify_fault_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    return re.sub(r"/[^/]*$", f"/{name}", admin)


class Relay:
    """A TCP relay to the object store that can play dead: while blocked it accepts nothing
    and has dropped every connection it carried, as a store that went away would."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.blocked = False
        self.open = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            if self.blocked:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def block(self, seconds):
        self.blocked = True
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open.clear()
        time.sleep(seconds)
        self.blocked = False


class Cluster:
    """The API process and the worker processes, each logging JSON lines to its own file. With
    `storage` (environment for a bucket) every process gets a data folder of its own."""

    def __init__(self, binary, queue_url, data, logs, port, storage=None):
        self.binary, self.data, self.logs, self.port, self.storage = binary, data, logs, port, storage
        self.env = dict(os.environ, **(storage or {}), STEMIFY_QUEUE_URL=queue_url, STEMIFY_DATA_DIR=str(data),
                        DEMUCS_MODEL_PATH=str(ROOT / "Tests" / "Fixtures" / "repo"), MODEL_DOWNLOAD="false",
                        RATE_LIMIT="0", STEMIFY_LEASE="3", STEMIFY_RETRY_BACKOFF="0.5",
                        STEMIFY_CHECKPOINT_INTERVAL="0", STEMIFY_THREADS="1", LOG_LEVEL="info")
        self.api = None
        self.workers = []

    def spawn(self, name, args):
        out = open(self.logs / f"{name}.log", "ab")
        env = dict(self.env, STEMIFY_DATA_DIR=str(self.data / name)) if self.storage else self.env
        return subprocess.Popen([str(self.binary)] + args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def start_api(self):
        self.api = self.spawn("api", ["serve", "--no-workers", "--port", str(self.port)])
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        fail("the API did not start")

    def start_worker(self):
        index = len(self.workers)
        proc = self.spawn(f"worker{index}", ["worker", "--workers", "1"])
        self.workers.append(proc)
        return proc

    def worker_events(self):
        """(log index, event dict) for every JSON line the workers wrote."""
        out = []
        for path in sorted(self.logs.glob("worker*.log")):
            index = int(path.stem[len("worker"):])
            for line in path.read_text(errors="replace").splitlines():
                try:
                    out.append((index, json.loads(line)))
                except ValueError:
                    pass
        return out

    def stop(self):
        procs = [p for p in self.workers + [self.api] if p and p.poll() is None]
        names = {p.pid: ("api" if p is self.api else f"worker{self.workers.index(p)}") for p in procs}
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.time() + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self.report_stuck(p, names[p.pid])
                p.kill()
                fail(f"process {names[p.pid]} (pid {p.pid}) did not stop within 30 s of SIGTERM")

    def report_stuck(self, proc, name):
        """What a process that ignores SIGTERM was doing: its last log lines and, where gdb is
        installed, every thread's stack."""
        lines = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        print(f"--- last lines of {name}.log", file=sys.stderr)
        print("\n".join(lines[-25:]), file=sys.stderr)
        if shutil.which("gdb"):
            stacks = subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-ex", "thread apply all bt 25"],
                                    capture_output=True, text=True, timeout=120)
            print(f"--- threads of {name} (pid {proc.pid})", file=sys.stderr)
            print("\n".join(l for l in stacks.stdout.splitlines() if l.startswith(("Thread", "#"))), file=sys.stderr)


# The owner of every job this script makes (the server answers anyone else 404).
OWNER = {"Authorization": f"Bearer sto_{uuid.uuid4().hex}{uuid.uuid4().hex}"}


def request(port, path, method="GET", body=None, headers=None, attempts=30):
    """An HTTP request as this script's owner, retried while the server or its database is briefly unavailable."""
    for attempt in range(attempts):
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers={**OWNER, **(headers or {})})
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            if e.code >= 500 and attempt + 1 < attempts:
                time.sleep(0.5)
                continue
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if attempt + 1 == attempts:
                raise
            time.sleep(0.5)


def submit(port, path, quality="fast"):
    boundary = uuid.uuid4().hex
    fields = {"model": "ht_small", "output_format": "wav", "quality": quality}
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                    for k, v in fields.items())
    body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n\r\n".encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, reply = request(port, "/api/stemify", "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    if status != 202:
        fail(f"submission of {path.name} answered {status}: {reply[:200]!r}")
    return json.loads(reply)["job_id"]


def job(port, job_id):
    status, body = request(port, f"/api/jobs/{job_id}")
    return json.loads(body) if status == 200 else None


def wait_done(port, ids, timeout):
    deadline = time.time() + timeout
    pending = set(ids)
    while pending and time.time() < deadline:
        for job_id in list(pending):
            j = job(port, job_id)
            if j is None:
                fail(f"job {job_id} vanished")
            if j["status"] == "failed":
                fail(f"job {job_id} failed: {j.get('error')}")
            if j["status"] == "done":
                pending.discard(job_id)
        time.sleep(0.5)
    if pending:
        fail(f"{len(pending)} jobs not done after {timeout} s")


def stems(port, job_id):
    # Through the API whatever the storage (stem URLs may point at the bucket).
    out = {}
    for stem in job(port, job_id)["stems"]:
        status, body = request(port, f"/api/jobs/{job_id}/stems/{stem['name']}.{stem['format']}")
        if status != 200:
            fail(f"stem {stem['name']} answered {status}")
        if stem["url"].startswith("http"):
            # A presigned URL: the same bytes straight from the bucket, as a browser gets them.
            with urllib.request.urlopen(stem["url"], timeout=30) as r:
                if r.read() != body:
                    fail(f"the presigned URL of {stem['name']} serves other bytes than the API")
        out[stem["name"]] = body
    return out


def restart_postgres():
    data = os.environ.get("PGDATA", "/tmp/stemify-pg")
    binary = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".")])[-1]
    cmd = [str(binary / "pg_ctl"), "-D", data, "-w", "-m", "fast", "restart"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def check_kill_and_resume(cluster, audio):
    log("1. SIGKILL a worker in the middle of a separation")
    long = audio / "long.wav"
    job_id = submit(cluster.port, long, quality="balanced")
    deadline = time.time() + 120
    while time.time() < deadline:
        j = job(cluster.port, job_id)
        if j["status"] == "separating" and j["progress"] >= 0.35:
            break
        if j["status"] == "done":
            fail("the long job finished before it could be interrupted")
        time.sleep(0.1)
    else:
        fail("the long job never got to 35 %")
    holders = {i for i, e in cluster.worker_events() if e.get("message") == "job started" and e.get("job.id") == job_id}
    if len(holders) != 1:
        fail(f"expected one worker to hold {job_id}, found {holders}")
    victim = holders.pop()
    cluster.workers[victim].send_signal(signal.SIGKILL)
    cluster.workers[victim].wait()
    log(f"   killed worker{victim} at {j['progress']:.0%}; starting a replacement")
    cluster.start_worker()
    wait_done(cluster.port, [job_id], 180)
    resumed = [(i, e) for i, e in cluster.worker_events() if e.get("message") == "job resumed" and e.get("job.id") == job_id]
    if not resumed or int(resumed[0][1]["job.resumed_frames"]) <= 0:
        fail("the job was taken over but not resumed from the dead worker's checkpoint")
    log(f"   worker{resumed[0][0]} resumed at frame {resumed[0][1]['job.resumed_frames']} of {resumed[0][1]['job.frames']}")
    interrupted = stems(cluster.port, job_id)
    # The same audio again, uninterrupted (the first job deleted, so no cached result).
    request(cluster.port, f"/api/jobs/{job_id}", "DELETE")
    again = submit(cluster.port, long, quality="balanced")
    wait_done(cluster.port, [again], 180)
    if job(cluster.port, again)["metrics"]["cache_hit"]:
        fail("the uninterrupted run was served from a cache")
    uninterrupted = stems(cluster.port, again)
    if interrupted.keys() != uninterrupted.keys():
        fail(f"stem names differ: {sorted(interrupted)} vs {sorted(uninterrupted)}")
    for name in interrupted:
        if interrupted[name] != uninterrupted[name]:
            fail(f"stem {name} of the resumed job differs from the uninterrupted run")
    log(f"   resumed stems bit-identical to an uninterrupted run ({len(interrupted)} stems"
        + (", downloaded from presigned URLs too)" if cluster.storage else ")"))


def check_database_restart(cluster, clips, restart, name):
    log(f"2. restart {name} while jobs run")
    ids = [submit(cluster.port, clip) for clip in clips]
    time.sleep(1.5)
    restart()
    log(f"   {name} restarted")
    wait_done(cluster.port, ids, 300)
    status, _ = request(cluster.port, "/readyz")
    if status != 200:
        fail(f"the API is not ready after the restart ({status})")
    log(f"   {len(ids)} jobs done across the restart")


def check_store_outage(cluster, clips, relay):
    log("4. the object store unreachable for 6 s while jobs run")
    ids = [submit(cluster.port, clip) for clip in clips]
    time.sleep(1.5)
    relay.block(6)
    log("   the store is back")
    wait_done(cluster.port, ids, 300)
    log(f"   {len(ids)} jobs done across the outage")


def check_burst(cluster, clips):
    log(f"3. {len(clips)} jobs submitted at once")
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        ids = list(pool.map(lambda c: submit(cluster.port, c), clips))
    if len(set(ids)) != len(clips):
        fail("job ids are not unique")
    wait_done(cluster.port, ids, 900)
    elapsed = time.time() - started
    done = {}
    for _, e in cluster.worker_events():
        if e.get("message") == "job done":
            done[e.get("job.id")] = done.get(e.get("job.id"), 0) + 1
    twice = [i for i in ids if done.get(i, 0) > 1]
    missing = [i for i in ids if done.get(i, 0) == 0]
    if twice or missing:
        fail(f"{len(twice)} jobs finished more than once, {len(missing)} never reported done")
    log(f"   {len(ids)} accepted, {len(ids)} finished exactly once, 0 failed, 0 lost "
        f"({elapsed:.0f} s, {len(ids) / elapsed * 60:.1f} jobs/min)")
    return len(ids) / elapsed * 60


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    queue = p.add_mutually_exclusive_group(required=True)
    queue.add_argument("--postgres", help="admin URL of the PostgreSQL server (scripts/postgres.sh)")
    queue.add_argument("--redis", action="store_true", help="start a redis-server of its own for the queue")
    p.add_argument("--redis-port", type=int, default=16391)
    p.add_argument("--s3", metavar="ENDPOINT", help="keep job files in a fresh bucket on this S3-compatible server (scripts/s3.sh)")
    p.add_argument("--stemify", type=Path, default=ROOT / ".build" / "release" / "stemify")
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--port", type=int, default=18731)
    p.add_argument("--measure", type=int, metavar="N", help="only submit N jobs at once and report jobs per minute")
    p.add_argument("--keep", action="store_true", help="keep the shared folder and logs")
    args = p.parse_args()
    if not args.stemify.exists():
        fail(f"{args.stemify} is missing: swift build -c release")

    base = Path(tempfile.mkdtemp(prefix="stemify-fault-"))
    audio, logs = base / "audio", base / "logs"
    audio.mkdir()
    logs.mkdir()
    count = args.measure or args.jobs
    # Distinct audio per job, or the dedupe cache would answer most of them.
    clips = []
    for i in range(count + 20):
        clip = audio / f"clip{i}.wav"
        write_wav(clip, 2.0, 110 + 7 * i, seed=i)
        clips.append(clip)
    write_wav(audio / "long.wav", 60.0, 97, seed=999)

    redis = Redis(base / "redis", args.redis_port) if args.redis else None
    queue_url = redis.url if redis else create_database(args.postgres)
    restart, server = (redis.restart, "Redis") if redis else (restart_postgres, "PostgreSQL")
    relay, storage = None, None
    if args.s3:
        relay = Relay(int(args.s3.rsplit(":", 1)[1].strip("/")))
        storage = {"STEMIFY_STORAGE_URL": f"s3://stemify-fault-{uuid.uuid4().hex[:8]}/jobs",
                   "AWS_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}",
                   "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    cluster = Cluster(args.stemify, queue_url, base / "shared", logs, args.port, storage)
    cluster.start_api()
    for _ in range(args.workers):
        cluster.start_worker()
    where = f"bucket {storage['STEMIFY_STORAGE_URL']}, a data folder per process" if storage else f"shared folder {base / 'shared'}"
    log(f"API on :{args.port}, {args.workers} workers, {server} queue, {where}")
    try:
        if args.measure:
            rate = check_burst(cluster, clips[:count])
            print(f"throughput with {args.workers} worker processes: {rate:.1f} jobs/min")
        else:
            check_kill_and_resume(cluster, audio)
            check_database_restart(cluster, clips[count:count + 10], restart, server)
            if relay:
                check_store_outage(cluster, clips[count + 10:], relay)
            check_burst(cluster, clips[:count])
        cluster.stop()
        log("all checks passed; every process stopped on SIGTERM")
    finally:
        for proc in cluster.workers + [cluster.api]:
            if proc and proc.poll() is None:
                proc.kill()
        if redis:
            redis.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
