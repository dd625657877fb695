"""Benchmark: the long-row temporal filter against the ground truth of long simulated movies.

    python benchmarks/bench_long_rows.py [--frames 12000] [--kinds 2p-real,2p,voltage,1p]
                                         [--workdir /tmp/pmd-long-rows] [--out benchmarks/results/long_rows.json]

Rows longer than ``temporal.BUDGET_WINDOW_FRAMES`` (4000) are decided on their central window and fitted
once on all frames (``temporal.long_row_filter``).  For each kind, simulates (once, kept in ``--workdir``)
a movie of ``--frames`` frames with its truth, compresses it at default settings on one worker with the
tree this script belongs to, and records the noise RMS reduction and median trace correlation against the
truth, the rank, and the CPU seconds of the compression and of its temporal filter stage.  Run it with two
trees (e.g. ``git worktree``) and compare their JSON files: the movies are the same (seeded).
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--workdir", default="/tmp/pmd-long-rows")
    ap.add_argument("--out", default=str(HERE / "results" / "long_rows.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("PMD_NUM_WORKERS", "1")
    import pmdcompress
    from pmdcompress.io.readers import open_movie
    from pmdcompress.simulate import simulate_movie
    from pmdcompress.simulate.groundtruth import evaluate_against_truth
    from pmdcompress.solver import temporal

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "frames": args.frames,
              "budget_window_frames": temporal.BUDGET_WINDOW_FRAMES, "load_average": os.getloadavg()[0], "cases": {}}
    print(f"{'kind':<10}{'RMS reduction':>15}{'trace corr':>12}{'rank':>6}{'CPU s':>8}{'filter CPU s':>14}")
    for kind in args.kinds.split(","):
        shape, sources = CASES[kind]
        movie = work / f"{kind}-{args.frames}.tif"
        if not movie.exists():
            simulate_movie(movie, kind=kind, n_frames=args.frames, shape=shape, seed=0, overwrite=True,
                           **({} if sources is None else {"n_neurons": sources}))
        stages = {}

        class Bar:
            def __init__(self, label, total, stages=stages):
                self.label, self.cpu, self.stages = label, time.process_time(), stages

            def update(self, n=1):
                pass

            def close(self):
                self.stages[self.label] = time.process_time() - self.cpu

        cpu = time.process_time()
        store = pmdcompress.compress(movie, work / f"{kind}-{args.frames}.pmd.zarr", workers=1, overwrite=True,
                                     progress=Bar)
        cpu = time.process_time() - cpu
        with open_movie(movie) as raw:
            q = evaluate_against_truth(raw, store, movie.with_name(movie.stem + ".truth.zarr"))
        case = {"shape": list(shape), "sources": sources, "noise_rms_reduction": q["noise_rms_reduction"],
                "median_trace_corr": q["median_trace_corr_denoised"], "total_rank": int(store.metadata.total_rank),
                "cpu_s": cpu, "filter_cpu_s": stages.get("temporal filter")}
        result["cases"][kind] = case
        print(f"{kind:<10}{case['noise_rms_reduction']:>14.2f}x{case['median_trace_corr']:>12.4f}"
              f"{case['total_rank']:>6}{cpu:>8.1f}{case['filter_cpu_s'] or 0:>14.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
