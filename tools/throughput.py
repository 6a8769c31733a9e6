#!/usr/bin/env python3
"""Songs per hour on C cores: one separation at a time on C threads, or W at once on C / W each.

A service with a queue of songs can spend its cores on one song at a time (`workers: 1`,
`threads: C`, which runs `lanes` chunks at once) or on several songs at once (`workers: W`,
`threads: C / W`). This runs `--songs` separations of the same input both ways (every divisor W
of C), each worker a `stemify separate` process taking its share of the songs one after the
other, and prints wall time, songs per hour and the largest single process's peak RSS:

    python3 tools/throughput.py --repo DIR --model htdemucs --input DIR/bench60.wav --cores 2 --songs 4

(full-size models from `.reference/bin/python tools/make_fixtures.py --full DIR`).
"""
import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args, workers):
    threads = args.cores // workers
    share = [args.songs // workers + (1 if w < args.songs % workers else 0) for w in range(workers)]
    with tempfile.TemporaryDirectory() as out:
        commands = [" && ".join(
            f"{args.stemify} separate -n {args.model} --repo {args.repo} -o {out}/{w}-{i} --shifts 1 -j {threads} --quiet {args.input}"
            for i in range(share[w])) for w in range(workers) if share[w]]
        start = time.perf_counter()
        children = [subprocess.Popen(["bash", "-c", command]) for command in commands]
        peak = 0
        for child in children:
            _, status, usage = os.wait4(child.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"a worker failed ({args.model}, {workers} workers)")
            # A bash child's ru_maxrss is the largest of the processes it waited for.
            peak = max(peak, usage.ru_maxrss / 1024)
        wall = time.perf_counter() - start
    return threads, wall, peak


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--model", default="htdemucs")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--songs", type=int, default=4)
    p.add_argument("--stemify", type=Path, default=ROOT / ".build" / "release" / "stemify")
    args = p.parse_args()
    print(f"{args.model}, {args.songs} songs of {args.input.name}, {args.cores} cores, shifts 1")
    print("| workers × threads | wall | songs / hour | peak RSS of one process |")
    print("|---|---|---|---|")
    for workers in (w for w in range(1, args.cores + 1) if args.cores % w == 0):
        threads, wall, peak = run(args, workers)
        print(f"| {workers} × {threads} | {wall:.1f} s | {args.songs * 3600 / wall:.0f} | {peak:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
