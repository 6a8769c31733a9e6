#!/usr/bin/env python3
"""Times the engine's matrix products on each CPU kernel library, at each ISA level it can run.

The shapes are the ones `stemify separate` calls: record them from a real run with

    tools/kernel_libraries.py record --out shapes.json -- \\
        .build/release/stemify separate -n htdemucs --repo DIR --shifts 0 -j 1 -o OUT song.wav

(gdb prints each `cblas_sgemm` call's shape; one chunk is enough), then time them:

    tools/kernel_libraries.py time --shapes shapes.json [--mkl /path/libmkl_rt.so.3]

Each library runs in its own process, one thread (the engine calls sgemm single-threaded inside
its own blocks), at each level by its environment variable: OpenBLAS
(`OPENBLAS_CORETYPE`), MKL (`MKL_ENABLE_INSTRUCTIONS`, a ceiling
only), oneDNN (`ONEDNN_MAX_CPU_ISA`, through `dnnl_sgemm`), and once with the library's own
choice ("own", those variables unset), which for a CPU newer than its tables may be a lower
one. Debian's BLIS 0.9.0 aborts on every `BLIS_ARCH_TYPE`, so it runs at its own choice only. Every library's product is checked against
OpenBLAS's before it is timed, so a library that computes something else cannot win.
Libraries: Debian `libopenblas0-pthread`, `libblis4-serial`, `libdnnl2`; MKL from PyPI `mkl`.
"""
import argparse, collections, ctypes, json, os, re, subprocess, sys, time

import numpy as np

LIBRARIES = {
    "openblas": "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "blis": "/usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4",
    "onednn": "/usr/lib/x86_64-linux-gnu/libdnnl.so.2",
    "mkl": None,  # --mkl
}
# What makes each library run a level whatever its own CPU tables say ("own": nothing).
FORCE = {
    "avx512": {"openblas": {"OPENBLAS_CORETYPE": "SkylakeX"},
               "mkl": {"MKL_ENABLE_INSTRUCTIONS": "AVX512"}, "onednn": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}},
    "avx2": {"openblas": {"OPENBLAS_CORETYPE": "Haswell"},
             "mkl": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "onednn": {"ONEDNN_MAX_CPU_ISA": "AVX2"}},
}
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "BLIS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OMP_NUM_THREADS": "1", "MKL_DYNAMIC": "FALSE"}

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


# ---------------------------------------------------------------------------------------- record

LINE = re.compile(r"^SGEMM (\d+) (\d+) (\d+) (\d+) (\d+)$")

# gdb prints each call's shape (System V: transA in rsi, transB in rdx, m, n, k in rcx, r8, r9)
# without stopping; OpenBLAS is loaded by the engine at run time, so the breakpoint is pending.
GDB = """set pagination off
set breakpoint pending on
set print thread-events off
dprintf cblas_sgemm,"SGEMM %d %d %d %d %d\\n",$rsi,$rdx,$rcx,$r8,$r9
run
"""


def record(args):
    """Runs the command under gdb and counts each (transA, transB, m, n, k) it multiplies."""
    script = args.out + ".gdb"
    with open(script, "w") as f:
        f.write(GDB)
    trace = subprocess.run(["gdb", "-batch", "-x", script, "--args"] + args.command,
                           check=True, capture_output=True, text=True).stdout
    os.remove(script)
    counts = collections.Counter()
    for line in trace.splitlines():
        hit = LINE.search(line)
        if hit:
            ta, tb, m, n, k = map(int, hit.groups())
            counts[(ta == TRANS, tb == TRANS, m, n, k)] += 1
    shapes = [{"transA": ta, "transB": tb, "m": m, "n": n, "k": k, "calls": c}
              for (ta, tb, m, n, k), c in counts.items()]
    shapes.sort(key=lambda s: -s["calls"] * s["m"] * s["n"] * s["k"])
    total = sum(s["calls"] * s["m"] * s["n"] * s["k"] for s in shapes)
    with open(args.out, "w") as f:
        json.dump({"command": args.command, "multiply_adds": total, "shapes": shapes}, f, indent=1)
    print(f"{len(shapes)} shapes, {sum(counts.values())} calls, {2 * total / 1e9:.1f} GFLOP -> {args.out}")


# ------------------------------------------------------------------------------------------ time

def load(name, path):
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    f = ctypes.c_float
    p = ctypes.c_void_p
    i = ctypes.c_int
    if name == "onednn":
        fn = lib.dnnl_sgemm  # row-major, transposes as 'N'/'T'
        fn.argtypes = [ctypes.c_char, ctypes.c_char, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                       f, p, ctypes.c_int64, p, ctypes.c_int64, f, p, ctypes.c_int64]

        def sgemm(ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
            fn(b"T" if ta else b"N", b"T" if tb else b"N", m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc)
    else:
        fn = lib.cblas_sgemm
        fn.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]

        def sgemm(ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
            fn(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k,
               1.0, a, lda, b, ldb, 0.0, c, ldc)
    return lib, sgemm


def describe(name, lib):
    """What the library says it runs on this CPU."""
    try:
        if name == "openblas":
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        if name == "blis":
            lib.bli_arch_query_id.restype = ctypes.c_int
            lib.bli_arch_string.restype = ctypes.c_char_p
            return lib.bli_arch_string(lib.bli_arch_query_id()).decode()
        if name == "onednn":
            isa = {0x0: "all", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni",
                   0x27: "avx512_core", 0x67: "avx512_core_vnni", 0xe7: "avx512_core_bf16",
                   0x3e7: "avx512_core_amx"}
            lib.dnnl_get_effective_cpu_isa.restype = ctypes.c_int
            v = lib.dnnl_get_effective_cpu_isa()
            return isa.get(v, hex(v))
    except AttributeError:
        pass
    return ""


def operands(s, seed=0):
    g = np.random.default_rng(seed)
    m, n, k = s["m"], s["n"], s["k"]
    a = g.standard_normal((k, m) if s["transA"] else (m, k), dtype=np.float32)
    b = g.standard_normal((n, k) if s["transB"] else (k, n), dtype=np.float32)
    return a, b, np.zeros((m, n), np.float32)


def child(args):
    """One library at one level: prints a JSON line of seconds per shape."""
    lib, sgemm = load(args.library, args.path)
    shapes = json.load(open(args.shapes))["shapes"][: args.top]
    out = {"library": args.library, "runs": describe(args.library, lib), "seconds": [], "error": []}
    reference = None
    if args.library != "openblas":
        _, reference = load("openblas", LIBRARIES["openblas"])
    for s in shapes:
        a, b, c = operands(s)
        call = lambda sg, cc: sg(s["transA"], s["transB"], s["m"], s["n"], s["k"],
                                 a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1],
                                 cc.ctypes.data, cc.shape[1])
        call(sgemm, c)
        if reference is not None:
            expect = np.zeros_like(c)
            call(reference, expect)
            out["error"].append(float(np.abs(c - expect).max() / max(np.abs(expect).max(), 1e-30)))
        # Repeat small products until a timing covers ~20 ms, best of `rounds`.
        work = s["m"] * s["n"] * s["k"]
        reps = max(1, int(2e6 * 10 / max(work, 1)))
        best = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(reps):
                call(sgemm, c)
            best = min(best, (time.perf_counter() - t) / reps)
        out["seconds"].append(best)
    print(json.dumps(out))


def label(s):
    t = ("ᵀ" if s["transA"] else "") , ("ᵀ" if s["transB"] else "")
    return f'{s["m"]}×{s["k"]}{t[0]} · {s["k"]}×{s["n"]}{t[1]}'


def time_all(args):
    paths = dict(LIBRARIES)
    paths["mkl"] = args.mkl
    data = json.load(open(args.shapes))
    shapes = data["shapes"][: args.top]
    total = data["multiply_adds"]
    columns = []
    for name in args.libraries.split(","):
        if not paths.get(name) or not os.path.exists(paths[name]):
            print(f"# {name}: not installed, skipped", file=sys.stderr)
            continue
        for level in args.levels.split(","):
            if level != "own" and name not in FORCE.get(level, {}):
                continue
            env = dict(os.environ, **ONE_THREAD)
            for forced in FORCE.values():
                for variable in forced.get(name, {}):
                    env.pop(variable, None)
            env.update(FORCE.get(level, {}).get(name, {}))
            cmd = [sys.executable, __file__, "child", "--library", name, "--path", paths[name],
                   "--shapes", args.shapes, "--top", str(args.top), "--rounds", str(args.rounds)]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"# {name} {level}: failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            column = json.loads(result.stdout.strip().splitlines()[-1])
            column["level"] = level
            bad = [e for e in column["error"] if e > 1e-4]
            if bad:
                print(f"# {name} {level}: products differ from OpenBLAS (max rel {max(bad):.1e}), dropped",
                      file=sys.stderr)
                continue
            columns.append(column)
            print(f"# {name} {level}: runs {column['runs']}", file=sys.stderr)
    heads = [f'{c["library"]} {c["level"]}' + (f' ({c["runs"]})' if c["runs"] else "") for c in columns]
    print("| product (m×k · k×n) | calls | share |", " | ".join(heads), "|")
    print("|---|---|---|" + "---|" * len(columns))
    sums = [0.0] * len(columns)
    for i, s in enumerate(shapes):
        work = s["m"] * s["n"] * s["k"]
        gf = [2 * work / c["seconds"][i] / 1e9 for c in columns]
        win = max(range(len(gf)), key=lambda j: gf[j])
        cells = [f"**{g:.0f}**" if j == win else f"{g:.0f}" for j, g in enumerate(gf)]
        for j, c in enumerate(columns):
            sums[j] += s["calls"] * c["seconds"][i]
        print(f'| {label(s)} | {s["calls"]} | {100 * s["calls"] * work / total:.1f} % |', " | ".join(cells), "|")
    covered = sum(s["calls"] * s["m"] * s["n"] * s["k"] for s in shapes) / total
    print(f"| time for these products ({100 * covered:.0f} % of the run's multiply-adds), s | | |",
          " | ".join(f"{t:.2f}" for t in sums), "|")
    print("\nGFLOP/s on one thread (best of", args.rounds, "rounds); bold: the fastest for the product.")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("command", nargs=argparse.REMAINDER)
    t = sub.add_parser("time")
    t.add_argument("--shapes", required=True)
    t.add_argument("--mkl", help="path of libmkl_rt.so (PyPI mkl puts it in the venv's lib/)")
    t.add_argument("--libraries", default="openblas,blis,mkl,onednn")
    t.add_argument("--levels", default="own,avx512,avx2", help="own: the library's choice")
    t.add_argument("--top", type=int, default=24, help="the products with the most multiply-adds")
    t.add_argument("--rounds", type=int, default=3)
    c = sub.add_parser("child")
    for name in ("--library", "--path", "--shapes"):
        c.add_argument(name, required=True)
    c.add_argument("--top", type=int, default=24)
    c.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if args.verb == "record":
        if args.command and args.command[0] == "--":
            args.command = args.command[1:]
        record(args)
    elif args.verb == "time":
        time_all(args)
    else:
        child(args)


if __name__ == "__main__":
    main()
