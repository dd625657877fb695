"""Benchmark: pmd demix on the simulated 256x256x3000 movie (with truth) and the real optinist movie.

    python benchmarks/bench_demix.py [--repeat 3] [--out benchmarks/results/demix.json]

For each movie: compress it (fresh process), then demix the store (fresh process,
3 repeats by default; wall time, CPU time and peak RSS = that process's
ru_maxrss), figures included and excluded.  On the simulated movie the result
is scored against the ground truth (``pmd evaluate``: F1 at IoU 0.3, Hungarian
matching; median trace correlation of matched pairs).  The machine is shared,
so wall times are noisy: CPU times are reported beside them, and the medians
of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
SHARED = ROOT.parent / "shared" / "data"

COMPRESS = r"""
import json, resource, sys, time
t = time.perf_counter(); c = time.process_time()
import pmdcompress
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "timings": store.metadata.timings, "total_rank": store.metadata.total_rank}))
"""

DEMIX = r"""
import json, resource, sys, time
import pmdcompress.demix as dm
t = time.perf_counter(); c = time.process_time()
res = dm.demix(sys.argv[1], sys.argv[2], overwrite=True, figures=sys.argv[3] == "1", fs=float(sys.argv[4]))
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "n_components": res.n_components, "timings": res.metadata["timings"]}))
"""


def child(code: str, *args) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          check=False, env=dict(os.environ))
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def simulated_movie() -> Path:
    movie = WORK / "sim256x256x3000.tif"
    if not movie.exists():
        from pmdcompress.simulate import simulate_movie

        WORK.mkdir(parents=True, exist_ok=True)
        simulate_movie(movie, n_frames=3000, shape=(256, 256), n_neurons=100, seed=0)
    return movie


def bench(name: str, movie: Path, fs: float, repeat: int, truth: Path | None) -> dict:
    store = WORK / f"{name}.demix-bench.pmd.zarr"
    out = WORK / f"{name}.demix.zarr"
    comp = child(COMPRESS, movie, store)
    runs = [child(DEMIX, store, out, 0, fs) for _ in range(repeat)]
    with_figs = child(DEMIX, store, out, 1, fs)
    entry = {
        "compress": comp,
        "demix_runs": runs,
        "demix_wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "demix_cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
        "demix_peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "demix_with_figures": with_figs,
        "n_components": runs[-1]["n_components"],
    }
    if truth is not None:
        import pmdcompress.demix as dm

        scores = dm.evaluate(out, truth, iou=0.3)
        scores.pop("pairs")
        entry["evaluate"] = scores
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "demix.json"))
    args = parser.parse_args()
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "movies": {},
    }
    sim = simulated_movie()
    results["movies"]["simulated"] = bench("sim256x256x3000", sim, 30.0, args.repeat, sim)
    real = SHARED / "optinist_mouse2p" / "movie.tif"
    if real.exists():
        results["movies"]["optinist_mouse2p"] = bench("optinist_mouse2p", real, 30.0, args.repeat, None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    for name, r in results["movies"].items():
        line = (f"{name:18s} compress {r['compress']['wall_s']:.2f} s (cpu {r['compress']['cpu_s']:.2f}) | "
                f"demix {r['demix_wall_s_median']:.2f} s (cpu {r['demix_cpu_s_median']:.2f}), "
                f"+figures {r['demix_with_figures']['wall_s']:.2f} s, peak RSS "
                f"{r['demix_peak_rss_bytes'] / 2**20:.0f} MiB, {r['n_components']} components")
        if "evaluate" in r:
            e = r["evaluate"]
            line += (f" | F1 {e['f1']:.3f} (P {e['precision']:.3f}, R {e['recall']:.3f}), "
                     f"median trace r {e['median_trace_corr']:.3f}, mean IoU {e['mean_iou']:.3f}")
        print(line)


if __name__ == "__main__":
    main()
