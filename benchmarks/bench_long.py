"""Benchmark: one long real-rank movie compressed with local threads, CPU and wall per stage, peak memory.

    python benchmarks/bench_long.py [--frames 20000] [--shape 512x512] [--kind 2p-real] [--movie PATH]
                                    [--workdir /tmp/pmd-long] [--keep] [--out benchmarks/results/long.json]

Simulates ``pmd simulate --kind 2p-real --no-truth`` (the regime calibrated to the rank per
patch of real two-photon movies, docs/simulate.md) unless ``--movie`` names an existing one,
then compresses it in a fresh process at default settings (all cores as threads, 1000 fit
frames, the sha256 on) and records:

- wall and CPU seconds (user + system) of the simulation and of the compression, and each
  process's peak RSS (``ru_maxrss``);
- per stage (statistics, null, fit, re-fit, factors): wall seconds from the store's timings and
  CPU seconds of the process, read at each stage's start and end through the progress
  callbacks (the sha256 thread runs beside the statistics pass and is counted there);
- the rank per patch (min, quartiles, max) and the throughput: MB/s of wall time and MB per
  CPU second (the figure to compare on this shared machine).

Run it ``nice``d on a shared machine; the movie (2 bytes per pixel per frame: 10.5 GB at
20000 x 512 x 512) is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
import pmdcompress

cfg = json.loads(sys.argv[1])

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

stages = []

class Bar:
    def __init__(self, label, total):
        self.label, self.t0, self.c0 = label, time.perf_counter(), cpu()
    def update(self, n=1):
        pass
    def close(self):
        stages.append({"stage": self.label, "wall_s": time.perf_counter() - self.t0, "cpu_s": cpu() - self.c0,
                       "start_s": self.t0 - T0})

T0 = time.perf_counter()
c0 = cpu()
store = pmdcompress.compress(cfg["movie"], cfg["output"], overwrite=True, progress=Bar)
wall, total_cpu = time.perf_counter() - T0, cpu() - c0
ranks = np.asarray(store.patch_ranks if hasattr(store, "patch_ranks") else store.group["patch_ranks"][...])
print("RESULT " + json.dumps({
    "wall_s": wall, "cpu_s": total_cpu, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "stages": stages, "timings": store.metadata.timings, "total_rank": store.metadata.total_rank,
    "rank_per_patch": {"min": int(ranks.min()), "q25": float(np.percentile(ranks, 25)),
                       "median": float(np.median(ranks)), "mean": float(ranks.mean()),
                       "q75": float(np.percentile(ranks, 75)), "max": int(ranks.max()), "patches": len(ranks)},
    "workers": store.metadata.parameters.get("workers"),
    "fit_frames_used": store.metadata.parameters.get("fit_frames_used"),
}))
"""


def _child_usage():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


def run_measured(args: list[str], env=None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ARGS to completion; its wall, user and system CPU seconds and peak RSS (this process's children)."""
    u0, s0 = _child_usage()
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    u1, s1 = _child_usage()
    if out.returncode:
        raise RuntimeError(f"{args[:3]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: each step runs in order, the largest is reported
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return out, {"wall_s": wall, "user_s": u1 - u0, "system_s": s1 - s0, "cpu_s": u1 - u0 + s1 - s0,
                 "peak_rss_bytes_children_so_far": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--shape", default="512x512")
    ap.add_argument("--kind", default="2p-real")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--movie", default=None, help="an existing movie (no simulation)")
    ap.add_argument("--workdir", default=None, help="where the movie and the store go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the simulated movie")
    ap.add_argument("--out", default=str(HERE / "results" / "long.json"))
    args = ap.parse_args(argv)

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pmd-long-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": [os.getloadavg()[0]],
              "cores": len(os.sched_getaffinity(0))}
    movie = Path(args.movie) if args.movie else workdir / f"{args.kind}-{args.frames}.tif"
    made = False
    try:
        if args.movie is None:
            cmd = [sys.executable, str(ROOT / "bin" / "pmd"), "simulate", str(movie), "--kind", args.kind,
                   "--frames", str(args.frames), "--shape", args.shape, "--seed", str(args.seed), "--no-truth",
                   "--overwrite"]
            made = True
            _, result["simulate"] = run_measured(cmd, env)
            result["simulate"]["command"] = " ".join(["pmd", *cmd[2:]])
            print(f"simulated {movie}: {result['simulate']['wall_s']:.0f} s wall, "
                  f"{result['simulate']['cpu_s']:.0f} CPU s", flush=True)
        store = workdir / "long.pmd.zarr"
        out, usage = run_measured([sys.executable, "-c", CHILD, json.dumps({"movie": str(movie),
                                                                            "output": str(store)})], env)
        line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
        compress = json.loads(line[7:])
        compress.update(process=usage)
        result["compress"] = compress
        result["input_bytes"] = movie.stat().st_size
        result["store_bytes"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        result["load_average"].append(os.getloadavg()[0])
    finally:
        if made and not args.keep:
            movie.unlink(missing_ok=True)
        if args.workdir is None:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            import shutil

            shutil.rmtree(workdir / "long.pmd.zarr", ignore_errors=True)
    c = result["compress"]
    mb = result["input_bytes"] / 1e6
    c["mb_per_s"] = mb / c["wall_s"]
    c["mb_per_cpu_s"] = mb / c["cpu_s"]
    print(f"rank {c['total_rank']} over {c['rank_per_patch']['patches']} patches "
          f"(per patch median {c['rank_per_patch']['median']:.0f}, {c['rank_per_patch']['min']}-"
          f"{c['rank_per_patch']['max']}); {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} CPU s: "
          f"{c['mb_per_s']:.0f} MB/s, {c['mb_per_cpu_s']:.0f} MB/CPU-s; peak RSS {c['peak_rss_bytes'] / 2**30:.2f} GiB")
    print(f"{'stage':<18}{'wall s':>9}{'CPU s':>9}{'CPU/wall':>10}")
    for s in c["stages"]:
        print(f"{s['stage']:<18}{s['wall_s']:>9.1f}{s['cpu_s']:>9.1f}{s['cpu_s'] / max(s['wall_s'], 1e-9):>10.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
