"""Benchmark: photon splitting against ground truth on sima-like simulations (short movies, shared noise).

    python benchmarks/bench_short_split.py [--frames 20 160] [--seeds 0 1 2] [--amplitude 0.3]
                                           [--out benchmarks/results/short_split.json]

Issue 13 asks whether sima_ca1_example's (20 x 128 x 256) reading of about 30 % of its most active pixels' shared
signal removed is the estimator or real loss.  The simulation copies that movie: its mean image (in photons, by
the real movie's photon transfer) is the baseline, 300 cells of 3-px Gaussian footprints sit where it is
bright, calcium events (8 % of frames, exponential amplitudes, 4-frame decay) raise their rate by
``amplitude`` x the baseline, counts are Poisson, blurred along rows (``[0.075, 0.85, 0.075]``: a neighbour
correlation of 0.17, as the real movie's 0.176) and read out with a gain of 50 ADU and 15 ADU of read noise.
Each movie is split (``pmdcompress.report.photon_split``), half A is compressed with the defaults, and every
number is printed beside the same number computed against the clean half (the truth): the error reduction (all
pixels, most active 10 %) and the shared signal removed, with the most active pixels chosen both ways
(``shared_active_pixels``, the default since session 7, and the earlier ``var_t - mean_t``).  Since session 10
the whole movie is compressed too and scored against its truth on the same pixels (``whole_*``): the report's
split measures the denoiser on half the photons, the user's store is made from all of them.
Needs ../shared/data/sima_ca1_example.  Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
SIMA = SHARED / "sima_ca1_example" / "movie.tif"
SIMA_GAIN, SIMA_OFFSET = 486.5, -619.6  # the real movie's photon transfer (report.json counts)


def sima_like_maps(seed: int, frames: int, amplitude: float, n_cells: int = 300, blur: float = 0.075):
    """:func:`sima_like` that also returns each cell's dynamic spatial map
    (photons per unit of its trace, after the row blur) and its trace: (raw ADU, clean ADU, maps (k, h, w), traces
    (k, T))."""
    import tifffile
    from scipy import ndimage

    raw = tifffile.imread(SIMA).astype(np.float64)
    base = np.clip((raw.mean(axis=0) - SIMA_OFFSET) / SIMA_GAIN, 0.05, None)
    rng = np.random.default_rng(seed)
    h, w = base.shape
    yy, xx = np.mgrid[:h, :w]
    weight = ndimage.gaussian_filter(base, 3).ravel() ** 2
    centres = rng.choice(h * w, n_cells, p=weight / weight.sum(), replace=False)
    feet = np.array([np.exp(-((yy - c // w) ** 2 + (xx - c % w) ** 2) / (2 * 3.0**2)) for c in centres])
    kernel = np.exp(-np.arange(frames) / 4.0)
    traces = np.array([np.convolve((rng.random(frames + 10) < 0.08) * rng.exponential(1.0, frames + 10),
                                   kernel)[10 : frames + 10] for _ in range(n_cells)])
    rate = base[None] * (1 + amplitude * np.einsum("kt,kij->tij", traces, feet))
    counts = rng.poisson(rate).astype(np.float64)
    mix = np.array([[blur, 1 - 2 * blur, blur]])[None]
    counts, rate = ndimage.convolve(counts, mix, mode="nearest"), ndimage.convolve(rate, mix, mode="nearest")
    adu = np.round(200.0 + 50.0 * counts + rng.normal(0, 15.0, counts.shape))
    maps = ndimage.convolve(amplitude * base[None] * feet, mix, mode="nearest")
    return adu.astype(np.float32), 200.0 + 50.0 * rate, maps, traces


def sima_like(seed: int, frames: int, amplitude: float, n_cells: int = 300, blur: float = 0.075):
    """(raw ADU float32 movie, clean ADU movie) copying sima_ca1_example's photon level and noise correlation."""
    adu, clean, _, _ = sima_like_maps(seed, frames, amplitude, n_cells, blur)
    return adu, clean


def case(seed: int, frames: int, amplitude: float) -> dict:
    import pmdcompress
    from pmdcompress.report import photon_split as ps

    raw, clean = sima_like(seed, frames, amplitude)
    counts = ps.prepare_counts(raw, seed=seed)
    a, b = ps.split(counts, seed)
    cpu = time.process_time()
    store = pmdcompress.compress(np.ascontiguousarray(a, np.float32), None, workers=1, hash_input=False)
    den = store.read(0, frames).astype(np.float32)
    cpu = time.process_time() - cpu
    truth = ((clean - counts.offsets) / counts.gain / 2).astype(np.float32)
    row = {"seed": seed, "frames": frames, "split": counts.method, "rank": int(store.metadata.total_rank),
           "cpu_s": cpu}
    everything = np.ones(a.shape[1:], bool)
    row["er_all"] = ps.score(a, b, den, active=everything)["all"]["error_reduction"]
    row["true_er_all"] = float(np.mean((a - truth) ** 2) / np.mean((den - truth) ** 2))
    row["removed_all"] = ps.shared_signal_removed(a, b, den, everything)
    row["true_removed_all"] = ps.shared_signal_removed(a, truth, den, everything)
    for name, shared in (("shared_choice", True), ("variance_choice", False)):
        folds = ps.active_folds(b, shared=shared)
        scores = _fold_scores(ps, a, b, den, folds)
        num = sum(float(np.sum((a[f][:, m] - truth[f][:, m]) ** 2)) for f, m in folds)
        err = sum(float(np.sum((den[f][:, m] - truth[f][:, m]) ** 2)) for f, m in folds)
        row[f"er_active_{name}"] = scores
        row[f"true_er_active_{name}"] = num / err
        row[f"removed_active_{name}"] = ps.shared_signal_removed(a, b, den, folds)
        row[f"true_removed_active_{name}"] = ps.shared_signal_removed(a, truth, den, folds)
    # What the report's split measures is the denoiser on half the photons; the user's store is made from all of
    # them.  The same truth numbers for the whole movie compressed (same pixels: the shared choice's folds).
    store = pmdcompress.compress(np.ascontiguousarray(raw, np.float32), None, workers=1, hash_input=False)
    whole = store.read(0, frames).astype(np.float64)
    folds = ps.active_folds(b, shared=True)
    row["whole_rank"] = int(store.metadata.total_rank)
    row["whole_true_er_all"] = float(np.mean((raw - clean) ** 2) / np.mean((whole - clean) ** 2))
    row["whole_true_removed_all"] = ps.shared_signal_removed(raw, clean, whole, everything)
    row["whole_true_removed_active"] = ps.shared_signal_removed(raw, clean, whole, folds)
    return row


def _fold_scores(ps, a, b, den, folds) -> float | None:
    """The error reduction of the active folds as :func:`photon_split.score` computes it (Poisson counts)."""
    mse = raw = 0.0
    for f, m in folds:
        B = b[f][:, m].astype(np.float64)
        mse += float(np.sum((den[f][:, m] - B) ** 2 - B))
        raw += float(np.sum((a[f][:, m] - B) ** 2 - B))
    return raw / mse if mse > 0 else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[20, 160])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--amplitude", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "short_split.json")
    args = parser.parse_args(argv)
    if not SIMA.exists():
        sys.exit(f"{SIMA}: not found (needs ../shared/data)")
    rows = []
    for frames in args.frames:
        for seed in args.seeds:
            rows.append(case(seed, frames, args.amplitude))
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
                  flush=True)
    means = {}
    for frames in args.frames:
        sel = [r for r in rows if r["frames"] == frames]
        means[frames] = {k: float(np.nanmean([np.nan if r[k] is None else r[k] for r in sel]))
                         for k in sel[0] if k not in ("seed", "frames", "split")}
        m = means[frames]
        print(f"{frames} frames (means over {len(sel)} seeds): ER all {m['er_all']:.1f} (true {m['true_er_all']:.1f}), "
              f"active {m['er_active_shared_choice']:.1f} (true {m['true_er_active_shared_choice']:.1f}; variance "
              f"choice {m['er_active_variance_choice']:.1f}, true {m['true_er_active_variance_choice']:.1f}); "
              f"shared signal removed all {m['removed_all']:.3f} (true {m['true_removed_all']:.3f}), active "
              f"{m['removed_active_shared_choice']:.3f} (true {m['true_removed_active_shared_choice']:.3f}); the whole "
              f"movie compressed: true ER all {m['whole_true_er_all']:.1f}, true signal removed all "
              f"{m['whole_true_removed_all']:.3f}, active {m['whole_true_removed_active']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "amplitude": args.amplitude, "means": means,
                                    "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
