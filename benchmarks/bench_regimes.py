"""Calibration of the real-like simulated regimes against the real two-photon movies in ../shared/data.

    python benchmarks/bench_regimes.py [--seeds 0,1] [--out benchmarks/results/regimes.json]

For each real movie (neurofinder_dev, optinist_mouse2p) and each simulation that stands for it
(``2p-real`` at 600 x 231 x 280, ``2p-real-bright`` at 2000 x 128 x 128, their defaults), runs
``pmd compress`` at its defaults (``PMD_NUM_WORKERS=1``, no sha256) and prints:

- the components per 32 x 32 patch (10/25/50/75/90 % and mean);
- photons per pixel per frame, from the photon-transfer curve (frame-pair variance against
  mean: ``(mean - offset) / gain`` per pixel, median and mean over pixels), and the fitted gain
  (20 ADU per photon in the simulations);
- "activity": the median (and 90 %) over pixels of ``var / noise^2 - 1`` (clipped at 0), the
  movie's variance over time beyond its noise (the store's per-pixel noise level).

docs/simulate.md holds the table.  The real movies are skipped, with a message, when
../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

REAL = {"neurofinder_dev": "2p-real", "optinist_mouse2p": "2p-real-bright"}
SIM = {"2p-real": dict(n_frames=600, shape=(231, 280)), "2p-real-bright": dict(n_frames=2000, shape=(128, 128))}


def data_dir() -> Path | None:
    for base in (HERE.parent.parent / "shared" / "data", Path("/work/shared/data")):
        if base.is_dir():
            return base
    return None


def movie_metrics(movie_path, store) -> dict:
    """Components per patch, photons per pixel per frame and activity of MOVIE_PATH and its STORE."""
    import tifffile

    from pmdcompress.report.photon_transfer import fit_photon_transfer, integer_range, photon_pairs

    y = tifffile.imread(movie_path)
    lo, hi = integer_range(y.dtype)
    sums = photon_pairs(y, 400, lo, out=np.zeros((2, 2 * (hi - lo) + 1)))
    transfer = fit_photon_transfer(sums, lo)
    ranks = np.asarray(store.patch_ranks)
    noise, mean = np.asarray(store.noise, np.float64), np.asarray(store.mean, np.float64)
    excess = np.maximum(y.astype(np.float32).var(axis=0) / np.maximum(noise, 1e-12) ** 2 - 1.0, 0.0)
    out = {"shape": list(y.shape), "total_rank": int(ranks.sum()), "patches": len(ranks),
           "rank_per_patch_pct_10_25_50_75_90": np.percentile(ranks, [10, 25, 50, 75, 90]).round(1).tolist(),
           "rank_per_patch_mean": round(float(ranks.mean()), 2),
           "activity_median": round(float(np.median(excess)), 3),
           "activity_p90": round(float(np.percentile(excess, 90)), 3)}
    if transfer["ok"]:
        photons = (mean - transfer["offset"]) / transfer["gain"]
        out.update(gain=round(transfer["gain"], 2), offset=round(transfer["offset"], 1),
                   photons_median=round(float(np.median(photons)), 3), photons_mean=round(float(photons.mean()), 3))
    else:
        out["photon_transfer"] = transfer["reason"]
    return out


def compress(movie, folder: Path):
    import pmdcompress

    cpu = time.process_time()
    store = pmdcompress.compress(movie, folder / "m.pmd.zarr", hash_input=False, overwrite=True)
    return store, time.process_time() - cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default=str(HERE / "results" / "regimes.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("PMD_NUM_WORKERS", "1")
    from pmdcompress.simulate import simulate_movie

    rows = []
    data = data_dir()
    with tempfile.TemporaryDirectory(prefix="pmd-regimes-") as tmp:
        tmp = Path(tmp)
        for name, kind in REAL.items():
            if data is None:
                print(f"{name}: skipped (no ../shared/data)")
            else:
                store, cpu = compress(data / name / "movie.tif", tmp)
                rows.append(dict(movie=name, real=True, compress_cpu_s=round(cpu, 1),
                                 **movie_metrics(data / name / "movie.tif", store)))
                print(json.dumps(rows[-1]), flush=True)
            for seed in (int(s) for s in args.seeds.split(",")):
                info = simulate_movie(tmp / "m.tif", kind=kind, seed=seed, overwrite=True, truth=False, **SIM[kind])
                store, cpu = compress(info["movie"], tmp)
                rows.append(dict(movie=kind, real=False, seed=seed, n_neurons=info["attrs"]["n_neurons"],
                                 compress_cpu_s=round(cpu, 1), **movie_metrics(info["movie"], store)))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'movie':<18}{'T x Y x X':<16}{'rank per patch 10/25/50/75/90 % (mean)':<44}"
          f"{'photons med (mean)':<20}{'activity med (90 %)'}")
    for r in rows:
        label = r["movie"] + ("" if r["real"] else f" s{r['seed']}")
        pct = " / ".join(f"{v:g}" for v in r["rank_per_patch_pct_10_25_50_75_90"]) + f" ({r['rank_per_patch_mean']})"
        ph = f"{r.get('photons_median', float('nan')):.2f} ({r.get('photons_mean', float('nan')):.2f})"
        print(f"{label:<18}{'x'.join(map(str, r['shape'])):<16}{pct:<44}{ph:<20}"
              f"{r['activity_median']} ({r['activity_p90']})")
    Path(args.out).write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                          "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
