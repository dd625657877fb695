"""Benchmark: the long-row temporal filter against the ground truth of long simulated movies.

    python benchmarks/bench_long_rows.py [--frames 12000] [--kinds 2p-real,2p,voltage,1p] [--seeds 0]
                                         [--set NAME=VALUE[|VALUE...]] [--workdir /tmp/pmd-long-rows]
                                         [--out benchmarks/results/long_rows.json]

Rows longer than ``temporal.BUDGET_WINDOW_FRAMES`` (4000) are decided on their central window and fitted
once on all frames (``temporal.long_row_filter``).  For each kind, simulates (once, kept in ``--workdir``)
a movie of ``--frames`` frames with its truth, compresses it at default settings on one worker with the
tree this script belongs to, and records the noise RMS reduction and median trace correlation against the
truth, the rank, and the CPU seconds of the compression and of its temporal filter stage.  Run it with two
trees (e.g. ``git worktree``) and compare their JSON files: the movies are the same (seeded).

``--seeds``: the compression seeds (the movie is always simulated with seed 0), each a separate run: a change
to the filter is judged against the spread between them.  ``--set NAME=V1|V2``: a constant of
``pmdcompress.solver.temporal`` (a Python literal per value) set to each value in turn, in one process, the
variants interleaved per kind and seed (e.g. ``--set LONG_SKIP_REFITS_OVER=None|2.5``): the same numba
caches and the same load for both.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: kind -> (frame shape, sources; None: the kind's own density)
CASES = {"2p-real": ((96, 96), None), "2p": ((96, 96), 15), "voltage": ((64, 64), 8), "1p": ((64, 64), 10)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=12000)
    ap.add_argument("--kinds", default=",".join(CASES))
    ap.add_argument("--seeds", default="0", help="compression seeds, comma-separated (default 0)")
    ap.add_argument("--set", default=None, metavar="NAME=V1|V2",
                    help="a constant of pmdcompress.solver.temporal set to each value in turn (Python literals)")
    ap.add_argument("--workdir", default="/tmp/pmd-long-rows")
    ap.add_argument("--out", default=str(HERE / "results" / "long_rows.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("PMD_NUM_WORKERS", "1")
    import pmdcompress
    from pmdcompress.io.readers import open_movie
    from pmdcompress.simulate import simulate_movie
    from pmdcompress.simulate.groundtruth import evaluate_against_truth
    from pmdcompress.solver import temporal

    seeds = [int(s) for s in args.seeds.split(",")]
    name, values = None, [None]
    if args.set is not None:
        name, _, text = args.set.partition("=")
        if not hasattr(temporal, name):
            ap.error(f"--set: pmdcompress.solver.temporal has no constant {name!r}")
        try:
            values = [ast.literal_eval(v) for v in text.split("|")]
        except (ValueError, SyntaxError):
            ap.error(f"--set: values must be Python literals separated by '|', got {text!r}")
    default = getattr(temporal, name) if name else None
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "frames": args.frames,
              "budget_window_frames": temporal.BUDGET_WINDOW_FRAMES, "load_average": os.getloadavg()[0],
              "seeds": seeds, "set": name, "runs": []}
    print(f"{'kind':<10}{'seed':>5}{'setting':>28}{'RMS reduction':>15}{'trace corr':>12}{'rank':>6}{'CPU s':>8}"
          f"{'filter CPU s':>14}")
    for kind in args.kinds.split(","):
        shape, sources = CASES[kind]
        movie = work / f"{kind}-{args.frames}.tif"
        if not movie.exists():
            simulate_movie(movie, kind=kind, n_frames=args.frames, shape=shape, seed=0, overwrite=True,
                           **({} if sources is None else {"n_neurons": sources}))
        for seed in seeds:
            for value in values:
                if name:
                    setattr(temporal, name, value)
                stages = {}

                class Bar:
                    def __init__(self, label, total, stages=stages):
                        self.label, self.cpu, self.stages = label, time.process_time(), stages

                    def update(self, n=1):
                        pass

                    def close(self):
                        self.stages[self.label] = time.process_time() - self.cpu

                cpu = time.process_time()
                store = pmdcompress.compress(movie, work / f"{kind}-{args.frames}.pmd.zarr", workers=1,
                                             overwrite=True, progress=Bar, seed=seed)
                cpu = time.process_time() - cpu
                with open_movie(movie) as raw:
                    q = evaluate_against_truth(raw, store, movie.with_name(movie.stem + ".truth.zarr"))
                run = {"kind": kind, "seed": seed, "shape": list(shape), "sources": sources,
                       "noise_rms_reduction": q["noise_rms_reduction"],
                       "median_trace_corr": q["median_trace_corr_denoised"],
                       "total_rank": int(store.metadata.total_rank), "cpu_s": cpu,
                       "filter_cpu_s": stages.get("temporal filter")}
                setting = "default"
                if name:
                    run["value"] = repr(value)
                    setting = f"{name}={value!r}"
                result["runs"].append(run)
                print(f"{kind:<10}{seed:>5}{setting[-27:]:>28}{run['noise_rms_reduction']:>14.2f}x"
                      f"{run['median_trace_corr']:>12.4f}{run['total_rank']:>6}{cpu:>8.1f}"
                      f"{run['filter_cpu_s'] or 0:>14.2f}", flush=True)
    if name:
        setattr(temporal, name, default)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
