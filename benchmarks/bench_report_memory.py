"""Benchmark: peak memory (RSS) and CPU of ``pmd report``, this tree beside a baseline checkout, and whether their
numbers are the same floats.

    PMD_NUM_WORKERS=1 python benchmarks/bench_report_memory.py --base /work/wt/base [--real] [--long] \
        [--out benchmarks/results/report_memory_s13.json]

Movies: ``pmd simulate --kind 2p-real`` at 128 x 128 with 2000 and 20000 frames (``--long``: also 20000 frames of
256 x 256, 2.6 GB, ``--no-truth``), made once in ``benchmarks/work/`` and compressed once (by the baseline, so
both trees report the same store); ``--real``: every movie in ``../shared/data``.  Each report runs in a fresh
process (``pmd report MOVIE STORE -o FOLDER``, held-out fits and both photon splits on), baseline and this tree
interleaved; its peak resident set (``wait4``'s ``ru_maxrss``, which counts the pages of mapped files it touched,
as ``/usr/bin/time`` does) and CPU seconds (user + system) are recorded.  Then ``report.json``'s ``photon_split``,
``photon_split_whole``, ``metrics``, ``curves`` and ``regions`` of the two trees are compared: ``identical`` where
every value is the same, else the number of values that differ and the largest relative difference.

Until session 13 the report's photon split held its crop's movies (raw, counts, halves, A, denoised A) whole in
memory: the report's peak grew with the crop's frames (up to REPORT_FRAMES = 2000) and pixels (up to
REPORT_BYTES = 320 MB per movie), to 3.2 GB for a 256 x 256 movie, against the compression's 0.4 GB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "report_memory"
SHARED = ROOT.parent / "shared" / "data"
COMPARED = ("photon_split", "photon_split_whole", "metrics", "curves", "regions")


def run(tree: Path, args: list[str]) -> dict:
    """``pmd ARGS`` of TREE in a fresh process: wall and CPU seconds and peak RSS (MB), from ``wait4``."""
    env = dict(os.environ, PYTHONPATH=str(tree), PMD_NUM_WORKERS=os.environ.get("PMD_NUM_WORKERS", "1"))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(tree / "bin" / "pmd"), "-q", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode:
        raise SystemExit(f"pmd {' '.join(args)} ({tree}) failed: {err[-2000:]}")
    return {"wall_s": round(time.perf_counter() - start, 2), "cpu_user_s": round(usage.ru_utime, 2),
            "cpu_sys_s": round(usage.ru_stime, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def differences(a, b, path="", out=None) -> list:
    """``(path, a, b)`` for every value of A and B (nested dicts and lists) that differs."""
    out = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            differences(a.get(key), b.get(key), f"{path}/{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            differences(x, y, f"{path}[{i}]", out)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        out.append((path, a, b))
    return out


def compare(first: Path, second: Path) -> dict:
    ra, rb = (json.loads((p / "report.json").read_text()) for p in (first, second))
    diffs = [d for key in COMPARED for d in differences(ra.get(key), rb.get(key), key)]
    rel = 0.0
    for _, x, y in diffs:
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            rel = max(rel, abs(x - y) / max(abs(x), abs(y), 1e-300))
        else:
            rel = math.inf
    return {"identical": not diffs, "n_differences": len(diffs), "max_relative_difference": rel,
            "first": [list(map(str, d)) for d in diffs[:5]]}


def simulated(frames: int, shape: str, base: Path, truth: bool = True) -> tuple[Path, Path]:
    """``pmd simulate --kind 2p-real`` movie and its store (compressed once by BASE), in WORK."""
    WORK.mkdir(parents=True, exist_ok=True)
    stem = WORK / f"sim_{frames}x{shape}"
    movie, store = stem.with_suffix(".tif"), stem.with_suffix(".pmd.zarr")
    if not movie.exists():
        run(base, ["simulate", str(movie), "--kind", "2p-real", "--frames", str(frames), "--shape", shape,
                   *([] if truth else ["--no-truth"])])
    if not store.exists():
        run(base, ["compress", str(movie), "-o", str(store)])
    return movie, store


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="baseline checkout (its bin/pmd)")
    ap.add_argument("--real", action="store_true", help="also every real movie in ../shared/data")
    ap.add_argument("--long", action="store_true", help="also 20000 frames of 256 x 256 (2.6 GB)")
    ap.add_argument("--only-real", action="store_true", help="the real movies only")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "report_memory.json")
    args = ap.parse_args(argv)
    base, this = args.base.resolve(), ROOT
    cases = []
    if not args.only_real:
        cases += [(f"2p-real {f}x128x128", *simulated(f, "128x128", base)) for f in (2000, 20000)]
        if args.long:
            cases.append(("2p-real 20000x256x256", *simulated(20000, "256x256", base, truth=False)))
    if args.real or args.only_real:
        for folder in sorted(p for p in SHARED.iterdir() if (p / "movie.tif").exists()):
            WORK.mkdir(parents=True, exist_ok=True)
            store = WORK / f"{folder.name}.pmd.zarr"
            if not store.exists():
                run(base, ["compress", str(folder / "movie.tif"), "-o", str(store)])
            cases.append((folder.name, folder / "movie.tif", store))
    rows = []
    for name, movie, store in cases:
        row = {"movie": name, "movie_mb": round(movie.stat().st_size / 2**20)}
        folders = {}
        for label, tree in (("base", base), ("this", this)):
            folders[label] = WORK / f"{name.replace(' ', '_')}.{label}.report"
            row[label] = run(tree, ["report", str(movie), str(store), "-o", str(folders[label]), "--overwrite"])
            print(f"  {name:24s} {label:4s} {row[label]['cpu_s']:7.1f} CPU-s {row[label]['peak_rss_mb']:6d} MB",
                  flush=True)
        row["numbers"] = compare(folders["base"], folders["this"])
        rows.append(row)
    print(f"\n{'movie':24s} {'MB':>6s} {'base CPU-s':>11s} {'this CPU-s':>11s} {'base RSS MB':>12s} "
          f"{'this RSS MB':>12s}  numbers")
    for r in rows:
        n = r["numbers"]
        same = ("identical" if n["identical"]
                else f"{n['n_differences']} differ (max rel {n['max_relative_difference']:.1e})")
        print(f"{r['movie']:24s} {r['movie_mb']:6d} {r['base']['cpu_s']:11.1f} {r['this']['cpu_s']:11.1f} "
              f"{r['base']['peak_rss_mb']:12d} {r['this']['peak_rss_mb']:12d}  {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"base": str(base), "this": str(this), "host": platform.node(),
                                    "cpus": os.cpu_count(), "workers": os.environ.get("PMD_NUM_WORKERS", "1"),
                                    "rows": rows}, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
