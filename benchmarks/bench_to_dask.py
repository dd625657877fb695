"""Crops and frames through ``store.to_dask()`` versus ``store[...]`` (CPU seconds, best of 3, one thread).

The old default chunked whole frames (time chunks of the store), so any crop reconstructed whole frames;
the default now is (256 frames, 64 x 64 pixels).  The napari reader uses (8, Y, X).  Run side by side on
one simulated store so the ratios compare like with like:

    python benchmarks/bench_to_dask.py [--frames 3000 --size 256]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dask
import numpy as np

import pmdcompress
from pmdcompress.simulate import simulate_movie

RESULTS = Path(__file__).resolve().parent / "results" / "to_dask.json"


def cpu_best(fn, repeats=3) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return float(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    t, n = args.frames, args.size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        movie = Path(tmp) / "m.tif"
        simulate_movie(movie, n_frames=t, shape=(n, n), n_neurons=max(10, n * n // 650), seed=0)
        store = pmdcompress.compress(movie, Path(tmp) / "m.pmd.zarr", workers=1, method="svd")
        crop = (slice(None), slice(n // 2, n // 2 + 10), slice(n // 2, n // 2 + 10))
        store[:, 0:1, 0:1]  # compile the kernels first
        old = (store.temporal.chunks[1], n, n)
        cases = [("store[...]", None), ("to_dask(old chunks: whole frames)", old),
                 ("to_dask() default", "default"), ("to_dask((8, Y, X)) napari", (8, n, n))]
        with dask.config.set(scheduler="synchronous"):
            for label, chunks in cases:
                if chunks is None:
                    crop_s = cpu_best(lambda: store[crop])
                    frame_s = cpu_best(lambda: store[t // 2])
                    full_s = cpu_best(lambda: store[:], repeats=1)
                    size = "-"
                else:
                    d = store.to_dask() if chunks == "default" else store.to_dask(chunks=chunks)
                    crop_s = cpu_best(lambda d=d: d[crop].compute())
                    frame_s = cpu_best(lambda d=d: d[t // 2].compute())
                    full_s = cpu_best(lambda d=d: d.compute(), repeats=1)
                    size = "x".join(map(str, d.chunksize))
                rows.append({"case": label, "chunks": size, "crop_10x10_all_frames_cpu_s": crop_s,
                             "one_frame_cpu_s": frame_s, "whole_movie_cpu_s": full_s})
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"movie": f"pmd simulate {t}x{n}x{n}, svd store", "rows": rows}, indent=2) + "\n")
    print(f"movie {t}x{n}x{n}; CPU seconds, best of 3 (whole movie: 1 run)")
    print("| case | chunks | 10x10 crop, all frames | one frame | whole movie |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['chunks']} | {r['crop_10x10_all_frames_cpu_s']:.3f} | "
              f"{r['one_frame_cpu_s']:.4f} | {r['whole_movie_cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
