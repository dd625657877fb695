"""Benchmark: demixing's CPU time against the compression's, side by side, on neurofinder_dev at three zooms.

    python benchmarks/bench_demix_time.py [--repeat 2] [--baseline /path/to/other/checkout]
        [--movie ../shared/data/neurofinder_dev] [--fs 7] [--stages] [--out benchmarks/results/demix_time.json]
        [--only native zoom1.5 binned2 | none] [--store PATH[=COMPRESS_CPU_S] ...] [--tif [NAME=]PATH ...] [--startup]
        [--stages]

Issue 14 asks that demixing take at most half the compression time (aim: 0.4), in bounded memory.  For each
movie (neurofinder_dev natively, zoomed 1.5x and binned 2x2: ``bench_demix_suite2p.py``'s movies, made once
under its work folder), ``pmd compress`` then ``pmd demix --fs 7 --export suite2p`` run as fresh processes,
interleaved (compress, demix, with ``--baseline`` the other checkout's demix of the same store, the two taking
turns going first, next repeat ...)
so that the machine's load, which moves CPU times by 10-20 % on a shared machine, falls on all of them alike.
``--store`` adds an existing store (a large simulation, compressed once elsewhere: its compression's CPU seconds
given after ``=`` make the ratio), demixed by both checkouts the same way.  ``--tif`` adds a movie that is
compressed (by this checkout) and demixed each repeat as the neurofinder movies are: the whole 512 x 512 x 600
Neurofinder field of session 14 (``/tmp/nfull/full.tif``, rebuilt by ``bench_demix_heldout.py``), where session 15
measured the ratio (``--only none --tif /tmp/nfull/full.tif``).
Reported per run: CPU time (user + system, the process and its children), peak RSS, and the ratio of each demix
to the compression beside it; the table gives the medians.  ``PMD_NUM_WORKERS=1`` unless set.

The fixed cost of a command is measured beside each demix: ``pmd info STORE`` of the same checkout (the start-up
every store command pays: Python, numpy, scipy, zarr, numba and its first cached kernel, the store's metadata and
codes); on the binned movie it is about half of the demix.

With ``--stages``, one more demix of each store runs in this process with a CPU timer around each stage of the
fit (correlation images, alternating updates, background, write, export, ...): where the time goes.

With ``--startup``, the fixed cost is taken apart in fresh processes of each checkout (medians of ``--repeat``):
the bare interpreter, then, one after the other in one process, the imports a demix makes (numpy, scipy's sparse
and ndimage, zarr, numba, pmd's store reader and demix modules) and numba's first dispatch of a cached kernel
(its typing and target contexts are built then: every numba-using command pays it once).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_demix_suite2p import WORK, _shared, binned_movie, run_pmd, zoomed_movie  # noqa: E402

MEASURE = r"""
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True, cwd=sys.argv[1])
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": proc.returncode, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "peak_rss_mib": ru.ru_maxrss / 1024, "stderr_tail": proc.stderr[-2000:]}))
"""


def measured(tree: Path, args: list[str]) -> dict:
    """``pmd ARGS`` of the checkout ``tree`` in a fresh process: its CPU time and peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.setdefault("PMD_NUM_WORKERS", "1")
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(tree), sys.executable, str(tree / "bin" / "pmd"),
                           *args], capture_output=True, text=True, check=True, env=env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["returncode"]:
        raise RuntimeError(f"pmd {args[:2]} ({tree}) failed: {out['stderr_tail']}")
    return out


def movies(folder: Path, fs: float) -> dict[str, Path]:
    """The three movies: native, zoomed 1.5x, binned 2x2 (made once, as bench_demix_suite2p makes them)."""
    store = WORK / "movie.pmd.zarr"
    if not store.exists():
        run_pmd(folder / "movie.tif", fs)
    return {"native": folder / "movie.tif", "zoom1.5": zoomed_movie(folder, 1.5, store) / "movie.tif",
            "binned2": binned_movie(folder, 2) / "movie.tif"}


def stage_times(store: Path, out: Path, fs: float) -> dict:
    """CPU seconds per stage of one demix in this process (timers wrapped around the stages' functions)."""
    import pmdcompress.pipeline.demix as job
    from pmdcompress.demix import export, hals, result
    from pmdcompress.demix import pipeline as fit

    spent: dict[str, float] = {}
    originals = []

    def timed(module, name, key):
        func = getattr(module, name)
        originals.append((module, name, func))

        @functools.wraps(func)
        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return func(*a, **k)
            finally:
                spent[key] = spent.get(key, 0.0) + time.process_time() - t

        setattr(module, name, wrapper)

    for key, (module, name) in {
        "load factors": (fit, "load_factors"), "high-pass": (fit, "highpass_spatial"),
        "correlation images": (fit, "correlation_image"), "radius guess": (fit, "seed_radius"),
        "background init": (hals, "init_background_lowpass"), "alternating updates": (fit, "_iterate"),
        "quality metrics": (fit, "compute_metrics"), "mean-image seeds": (fit, "_mean_footprints"),
        "nucleus seeds": (fit, "_nucleus_footprints"), "result (traces, dF/F, spikes)": (fit, "to_result"),
        "write result": (result, "write_result"), "suite2p export": (export, "write_suite2p"),
    }.items():
        timed(module, name, key)
    try:
        t = time.process_time()
        job.demix(store, out, fs=fs, export="suite2p", overwrite=True)
        total = time.process_time() - t
    finally:
        for module, name, func in originals:
            setattr(module, name, func)
    return {"total_cpu_s": total, "stages_cpu_s": dict(sorted(spent.items(), key=lambda kv: -kv[1]))}


STARTUP = r"""
import json, sys, time
cpu = time.process_time
spent, t = {"interpreter": cpu()}, cpu()
def step(name):
    global t
    now = cpu(); spent[name] = now - t; t = now
import numpy; step("numpy")
import scipy.sparse, scipy.ndimage; step("scipy sparse + ndimage")
import zarr; step("zarr")
import numba; step("numba")
import pmdcompress.cli, pmdcompress.reconstruct; step("pmd cli + store reader")
import pmdcompress.pipeline.demix, pmdcompress.demix.pipeline, pmdcompress.demix.export; step("pmd demix modules")
from pmdcompress.demix.factors import bin_frames, _tile_columns_kernel
_tile_columns_kernel(numpy.zeros(2, numpy.int32), numpy.zeros(0, numpy.int32), numpy.zeros(1, numpy.int64),
                     numpy.full(1, -1, numpy.int64))
step("numba first dispatch (cached kernel)")
print(json.dumps(spent))
"""


def startup_costs(tree: Path, repeat: int) -> dict:
    """CPU seconds of a fresh process's start-up steps (:data:`STARTUP`) with checkout ``tree``, medians."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.setdefault("PMD_NUM_WORKERS", "1")
    rows = []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True, env=env,
                              cwd=str(tree))
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def _print_row(name: str, rep: int, row: dict, trees: dict) -> None:
    print(f"{name:8s} repeat {rep + 1}: compress {row['compress']['cpu_s']:6.2f} CPU-s; "
          + "; ".join(f"demix ({t}) {row[t]['cpu_s']:5.2f} = {row[t]['over_compress']:.3f}, "
                      f"{row[t]['peak_rss_mib']:.0f} MiB, info {row[t]['info_cpu_s']:.2f}" for t in trees),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movie", default=str(_shared() / "neurofinder_dev"))
    parser.add_argument("--fs", type=float, default=7.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", default=None, help="Another checkout whose demix runs beside this one's.")
    parser.add_argument("--only", nargs="*", default=None, choices=("native", "zoom1.5", "binned2", "none"),
                        help="Which neurofinder movies (none: only the --store stores).")
    parser.add_argument("--stages", action="store_true", help="Also time the stages of one demix per movie.")
    parser.add_argument("--store", action="append", default=[], metavar="PATH[=COMPRESS_CPU_S]",
                        help="Also demix this existing store (not compressed again: a large simulation), with the "
                             "compression's CPU seconds, if given, for the ratio; repeatable.")
    parser.add_argument("--tif", action="append", default=[], metavar="[NAME=]PATH",
                        help="Also compress and demix this movie each repeat (named NAME, else by its file name); "
                             "repeatable.")
    parser.add_argument("--startup", action="store_true", help="Also take the fixed start-up cost apart.")
    parser.add_argument("--out", default=str(HERE / "results" / "demix_time.json"))
    args = parser.parse_args()
    trees = {"this": ROOT}
    if args.baseline:
        trees["baseline"] = Path(args.baseline).resolve()
    work = WORK / "time"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list] = {}
    chosen = {}
    if args.only != ["none"]:
        chosen = {k: v for k, v in movies(Path(args.movie), args.fs).items() if not args.only or k in args.only}
    for spec in args.tif:
        name, _, path = spec.rpartition("=")
        chosen[name or Path(path).stem] = Path(path)
    for rep in range(args.repeat):
        for name, movie in chosen.items():
            store = work / f"{name}.pmd.zarr"
            row = {"compress": measured(ROOT, ["compress", str(movie), "-o", str(store), "--overwrite"])}
            # the trees take turns going first, so that whatever the first demix after a compress pays falls on both
            for tree_name, tree in (list(trees.items()) if rep % 2 == 0 else list(trees.items())[::-1]):
                out = work / f"{name}.{tree_name}.demix.zarr"
                row[tree_name] = measured(tree, ["demix", str(store), "-o", str(out), "--fs", str(args.fs),
                                                 "--export", "suite2p", "--overwrite"])
                row[tree_name]["over_compress"] = row[tree_name]["cpu_s"] / row["compress"]["cpu_s"]
                row[tree_name]["info_cpu_s"] = measured(tree, ["info", str(store)])["cpu_s"]
            runs.setdefault(name, []).append(row)
            _print_row(name, rep, row, trees)
        for spec in args.store:
            path, _, compress_cpu = spec.partition("=")
            name = Path(path).name.removesuffix(".pmd.zarr")
            row = {"compress": {"cpu_s": float(compress_cpu) if compress_cpu else float("nan"),
                                "peak_rss_mib": float("nan"), "given": True}}
            for tree_name, tree in (list(trees.items()) if rep % 2 == 0 else list(trees.items())[::-1]):
                out = work / f"{name}.{tree_name}.demix.zarr"
                row[tree_name] = measured(tree, ["demix", path, "-o", str(out), "--fs", str(args.fs), "--export",
                                                 "suite2p", "--overwrite"])
                row[tree_name]["over_compress"] = row[tree_name]["cpu_s"] / row["compress"]["cpu_s"]
                row[tree_name]["info_cpu_s"] = measured(tree, ["info", path])["cpu_s"]
            runs.setdefault(name, []).append(row)
            _print_row(name, rep, row, trees)
    summary = {}
    for name, rows in runs.items():
        summary[name] = {"compress_cpu_s": statistics.median(r["compress"]["cpu_s"] for r in rows)}
        for t in trees:
            summary[name][t] = {key: statistics.median(r[t][src] for r in rows)
                                for key, src in (("demix_cpu_s", "cpu_s"), ("demix_over_compress", "over_compress"),
                                                 ("peak_rss_mib", "peak_rss_mib"), ("info_cpu_s", "info_cpu_s"))}
    header = " ".join(f"{'demix ' + t:>15s} {'ratio':>6s} {'MiB':>5s} {'info':>5s}" for t in trees)
    print(f"\n{'movie':8s} {'compress':>9s} {header}")
    for name, s in summary.items():
        cells = " ".join(f"{s[t]['demix_cpu_s']:15.2f} {s[t]['demix_over_compress']:6.3f} {s[t]['peak_rss_mib']:5.0f}"
                         f" {s[t]['info_cpu_s']:5.2f}" for t in trees)
        print(f"{name:8s} {s['compress_cpu_s']:9.2f} {cells}")
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": os.getloadavg()},
              "movie": args.movie, "fs": args.fs, "repeat": args.repeat,
              "trees": {k: str(v) for k, v in trees.items()}, "runs": runs, "median": summary}
    if args.startup:
        result["startup_cpu_s"] = {}
        for tree_name, tree in trees.items():
            costs = startup_costs(tree, max(args.repeat, 3))
            result["startup_cpu_s"][tree_name] = costs
            print(f"\nstart-up ({tree_name}), CPU-s, medians: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in costs.items()) + f"; total {sum(costs.values()):.3f}")
    if args.stages:
        result["stages"] = {}
        for name in chosen:
            s = stage_times(work / f"{name}.pmd.zarr", work / f"{name}.stages.demix.zarr", args.fs)
            result["stages"][name] = s
            print(f"\n{name}: demix {s['total_cpu_s']:.2f} CPU-s in this process (imports excluded)")
            for key, value in s["stages_cpu_s"].items():
                print(f"  {key:32s} {value:6.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
