"""Benchmark: the one-photon background model of ``pmd demix --kind 1p``: low rank (rank 6) vs the ring model.

    python benchmarks/bench_demix_1p.py [--out benchmarks/results/demix_1p.json]

Simulations (``pmd simulate --kind 1p``, 128x128x1000 at 30 Hz, 30 cells, seeds 1
and 2) in two regimes: the simulator's own (a rank-3 diffuse background, which
the low-rank model can represent exactly) and a "local" one with ten background
modes down to 3 px scale, closer to the out-of-focus structure the ring model
was designed for.  Scored with ``pmd evaluate`` (F1 at IoU 0.3, median trace
correlation with the truth) and timed.  The real Inscopix clip in ../shared
(63 frames, no labels) is demixed with both models for the component count and
the median quality metrics; it is too short to rank them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "demix_1p"
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():  # a worktree under /work/wt/
    SHARED = Path("/work/shared/data")

LOCAL = {"neuropil_sigma": (64.0, 24.0, 12.0, 8.0, 6.0, 5.0, 4.0, 4.0, 3.0, 3.0),
         "neuropil_level": (4.0, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4),
         "neuropil_tau_s": (10.0, 3.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
         "neuropil_swing": (0.1, 0.3, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4)}
MODELS = ("lowrank", "ring")


def main() -> None:
    import pmdcompress
    import pmdcompress.demix as dm
    from pmdcompress.simulate import simulate_movie

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "demix_1p.json"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    out = {"simulations": {}, "inscopix": {}}
    for regime, over in (("simulator_rank3", None), ("local_background", LOCAL)):
        for seed in (1, 2):
            movie = WORK / f"{regime}_{seed}.tif"
            if not movie.exists():
                simulate_movie(movie, n_frames=1000, shape=(128, 128), n_neurons=30, kind="1p", seed=seed,
                               regime=over)
            store = pmdcompress.compress(movie, WORK / f"{regime}_{seed}.pmd.zarr", overwrite=True)
            for model in MODELS:
                t = time.perf_counter()
                res = dm.demix(store, WORK / f"{regime}_{seed}.{model}.demix.zarr", kind="1p", fs=30.0,
                               background_model=model, overwrite=True, figures=False)
                wall = time.perf_counter() - t
                s = dm.evaluate(res, movie)
                out["simulations"][f"{regime}_s{seed}_{model}"] = {
                    "f1": s["f1"], "precision": s["precision"], "recall": s["recall"], "mean_iou": s["mean_iou"],
                    "median_trace_corr": s.get("median_trace_corr"), "demix_wall_s": wall}
                print(f"{regime:17s} seed {seed} {model:8s} F1 {s['f1']:.3f} R {s['recall']:.3f} "
                      f"trace r {s.get('median_trace_corr') or 0:.3f} {wall:.1f} s", flush=True)
    movie = SHARED / "inscopix_1p_part2" / "movie.tif"
    if movie.exists():
        store = pmdcompress.compress(movie, WORK / "inscopix.pmd.zarr", overwrite=True)
        for model in MODELS:
            t = time.perf_counter()
            res = dm.demix(store, WORK / f"inscopix.{model}.demix.zarr", kind="1p", fs=10.0, background_model=model,
                           overwrite=True, figures=True)
            n = res.n_components
            out["inscopix"][model] = {
                "n_components": n, "demix_wall_s": time.perf_counter() - t,
                "median_snr": float(np.median(res.metrics["snr"])) if n else None,
                "median_r_value": float(np.median(res.metrics["r_value"])) if n else None}
            print(f"inscopix {model:8s} {out['inscopix'][model]}", flush=True)
    for model in MODELS:
        rows = [v for k, v in out["simulations"].items() if k.endswith(model)]
        out[f"mean_{model}"] = {k: float(np.mean([r[k] for r in rows])) for k in
                                ("f1", "recall", "median_trace_corr", "demix_wall_s")}
        print(f"mean {model:8s} " + " ".join(f"{k} {v:.3f}" for k, v in out[f"mean_{model}"].items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
