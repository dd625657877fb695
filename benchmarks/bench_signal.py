"""Benchmark: where the signal that compression removes goes, on real movies (photon splitting) and simulations.

    python benchmarks/bench_signal.py [--seeds 0 1 2] [--movies neurofinder_dev optinist_mouse2p]
                                      [--variants default ...] [--no-whole] [--out benchmarks/results/signal.json]

Issue 13 asks for at most 10 % of the most active pixels' signal removed without losing error reduction.  This
script measures, side by side in one run:

* **variants** on the report's crop (:func:`pmdcompress.report.photon_split.report_crops`: the central 128-px
  region, denoised with one patch of margin, scored on the region) of each real movie, for each split seed: the
  error reduction (all pixels, most active 10 %), the signal removed (all, active), the signal removed on the
  active pixels (and on all pixels) where patches overlap (``Tiling.coverage() > 1``) and in the patches'
  interiors, with the mean signal variance of the active pixels of each set, the total rank and the
  compression's CPU seconds.  Variants: the defaults; no temporal filter; the rank test's false-pass rate
  0.1 and 0.2; 5 consecutive failures; overlap 12 and 16; and a second fit on the residual over a grid shifted by
  half a patch (what trefide's offset tilings do), keeping only what passes the same rank test;
* **parts** of the default's removed signal on the active pixels (seed 0): the share left after a 1-px Gaussian
  blur of the residual and of ``B`` (what is spatially smooth), after a 10-frame box filter (what is slow), and
  what a per-16-px-block fit of the residual on the mean image's gradients holds (motion-like);
* **whole movie** (``--no-whole`` skips it): neurofinder_dev denoised whole, the same columns, per seed;
* **simulation** (ground truth): the ``2p-dense`` regime, the true share of the clean signal's variance that the
  residual holds, on the most active pixels, where patches overlap and inside them.

Prints tables and writes JSON (means over seeds, and every seed's row).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")

VARIANTS = {
    "default": {},
    "no_temporal_filter": {"temporal_filter": False},
    "false_pass_0.1": {"false_pass": 0.1},
    "false_pass_0.2": {"false_pass": 0.2},
    "consecutive_failures_5": {"consecutive_failures": 5},
    "overlap_12": {"overlap": 12},
    "overlap_16": {"overlap": 16},
    "residual_pass_shifted": {"residual_shift": 16},
}
#: The four nearest neighbours (photon_split.shared_signal_removed's default is the pixels above and below).
NEIGHBOUR_LAGS = ((1, 0), (-1, 0), (0, 1), (0, -1))
COLUMNS = ("er_all", "er_active", "removed_all", "removed_active", "shared_removed_all", "shared_removed_active",
           "shared4_removed_active", "removed_active_overlap",
           "removed_active_interior", "removed_all_overlap", "removed_all_interior", "signal_active_overlap",
           "signal_active_interior", "rank", "cpu_s")


def denoise(a: np.ndarray, options: dict) -> tuple[np.ndarray, int]:
    """Compress A in memory (one worker) with OPTIONS and reconstruct it; a ``residual_shift`` adds a second fit of
    the residual on the frames cropped by that many pixels at the top and left (a grid shifted by as much)."""
    import pmdcompress

    options = dict(options)
    shift = options.pop("residual_shift", 0)
    store = pmdcompress.compress(a, None, workers=1, hash_input=False, **options)
    out = store.read(0, a.shape[0])
    rank = store.metadata.total_rank
    if shift:
        residual = np.ascontiguousarray(a[:, shift:, shift:] - out[:, shift:, shift:])
        second = pmdcompress.compress(residual, None, workers=1, hash_input=False, **options)
        out[:, shift:, shift:] += second.read(0, a.shape[0])
        rank += second.metadata.total_rank
    return out, rank


def score_row(a, b, den, region, options, rank, cpu) -> dict:
    from pmdcompress.report import photon_split as ps
    from pmdcompress.tiling import Tiling

    (y0, y1), (x0, x1) = region
    inner = (slice(None), slice(y0, y1), slice(x0, x1))
    A, B, D = a[inner], b[inner], den[inner]
    sc = ps.score(A, B, D)
    # the score's own active set: each half of the frames on the pixels chosen on B's other half
    folds = ps.active_folds(B)
    active = np.any([m for _, m in folds], axis=0)
    tiling = Tiling.create(a.shape[1:], options.get("patch_shape", 32), options.get("overlap", 8))
    overlap = tiling.coverage()[y0:y1, x0:x1] > 1
    # B's signal variance per pixel, (var_t - mean_t): which of the two sets holds the brighter cells
    signal = B.astype(np.float64).var(axis=0) - B.astype(np.float64).mean(axis=0)
    return {"er_all": sc["all"]["error_reduction"], "er_active": sc["active"]["error_reduction"],
            "removed_all": sc["all"]["signal_removed"], "removed_active": sc["active"]["signal_removed"],
            "shared_removed_all": ps.shared_signal_removed(A, B, D, np.ones(A.shape[1:], bool)),
            "shared_removed_active": ps.shared_signal_removed(A, B, D, folds),
            "shared4_removed_active": ps.shared_signal_removed(A, B, D, folds, lags=NEIGHBOUR_LAGS),
            "removed_active_overlap": ps.signal_removed(A, B, D, [(f, m & overlap) for f, m in folds]),
            "removed_active_interior": ps.signal_removed(A, B, D, [(f, m & ~overlap) for f, m in folds]),
            "removed_all_overlap": ps.signal_removed(A, B, D, overlap),
            "removed_all_interior": ps.signal_removed(A, B, D, ~overlap),
            "signal_active_overlap": float(signal[active & overlap].mean()) if (active & overlap).any() else None,
            "signal_active_interior": float(signal[active & ~overlap].mean()) if (active & ~overlap).any() else None,
            "rank": int(rank), "cpu_s": cpu}


def removed_parts(a, b, den, region) -> dict:
    """Parts of the active pixels' removed signal, each over their whole signal variance (see the docstring)."""
    from scipy.ndimage import gaussian_filter, uniform_filter1d

    from pmdcompress.report import photon_split as ps

    (y0, y1), (x0, x1) = region
    inner = (slice(None), slice(y0, y1), slice(x0, x1))
    A = np.asarray(a, np.float64)
    B = np.asarray(b, np.float64)
    R = A - np.asarray(den, np.float64)
    # chosen on A (all frames): a decomposition of the residual, not the score's active set (ps.active_folds)
    active = ps.active_pixels(A[inner])
    signal = _signal(B[inner], active)
    out = {"removed_active": _cov(R[inner], B[inner], active) / signal}
    # blurred over the whole crop (the margin feeds the region's edge), then cut to the region
    out["spatially_smooth_part"] = _cov(gaussian_filter(R, (0, 1, 1))[inner], gaussian_filter(B, (0, 1, 1))[inner],
                                        active) / signal
    out["slow_part"] = _cov(uniform_filter1d(R[inner], 10, axis=0), uniform_filter1d(B[inner], 10, axis=0),
                            active) / signal
    mean = A.mean(axis=0)
    gy, gx = np.gradient(mean)
    fitted = np.zeros_like(R)
    block = 16
    for i in range(0, mean.shape[0], block):
        for j in range(0, mean.shape[1], block):
            cell = (slice(i, i + block), slice(j, j + block))
            g = np.stack([gy[cell].ravel(), gx[cell].ravel()], axis=1)
            g -= g.mean(axis=0)
            r = R[:, cell[0], cell[1]].reshape(len(R), -1)
            fitted[:, cell[0], cell[1]] = ((r @ np.linalg.pinv(g).T) @ g.T).reshape(len(R), *mean[cell].shape)
    out["motion_like_part"] = _cov(fitted[inner], B[inner], active) / signal
    return out


def _cov(x, y, mask) -> float:
    x, y = x[:, mask], y[:, mask]
    return float(np.sum((x * y).mean(axis=0) - x.mean(axis=0) * y.mean(axis=0)))


def _signal(b, mask) -> float:
    b = b[:, mask]
    return float(np.sum(b.var(axis=0) - b.mean(axis=0)))


def crop_case(path: Path, seeds, variants) -> dict:
    import tifffile

    from pmdcompress.report import photon_split as ps

    raw = tifffile.imread(path)
    scored, crop = ps.report_crops(raw.shape[1:], (32, 32))
    (y0, y1), (x0, x1) = crop
    frames = np.ascontiguousarray(raw[: ps.REPORT_FRAMES, y0:y1, x0:x1], np.float32)
    region = tuple((s0 - c0, s1 - c0) for (s0, s1), (c0, _) in zip(scored, crop, strict=True))
    rows = {name: [] for name in variants}
    parts = None
    for seed in seeds:
        counts = ps.prepare_counts(frames, seed=seed)
        if not counts.ok:
            return {"movie": path.parent.name, "reason": counts.reason}
        a, b = ps.split(counts, seed)
        a = a.astype(np.float32)
        for name in variants:
            cpu = time.process_time()
            den, rank = denoise(a, VARIANTS[name])
            row = score_row(a, b, den, region, VARIANTS[name], rank, time.process_time() - cpu)
            rows[name].append(dict(row, seed=seed))
            print(f"{path.parent.name} seed {seed} {name}: " + ", ".join(f"{k} {_fmt(row[k])}" for k in COLUMNS),
                  flush=True)
            if name == "default" and parts is None:
                parts = removed_parts(a, b, den, region)
    return {"movie": path.parent.name, "crop": [y0, y1, x0, x1], "scored": [*scored[0], *scored[1]],
            "frames": int(frames.shape[0]), "split": counts.method, "seeds": list(seeds),
            "variants": {name: {"mean": _mean(r), "per_seed": r} for name, r in rows.items()},
            "default_removed_parts_seed0": parts}


def whole_case(path: Path, seeds) -> dict:
    import tifffile

    from pmdcompress.report import photon_split as ps

    raw = tifffile.imread(path).astype(np.float32)
    rows = []
    for seed in seeds:
        counts = ps.prepare_counts(raw, seed=seed)
        a, b = ps.split(counts, seed)
        a = a.astype(np.float32)
        cpu = time.process_time()
        den, rank = denoise(a, {})
        row = score_row(a, b, den, ((0, a.shape[1]), (0, a.shape[2])), {}, rank, time.process_time() - cpu)
        rows.append(dict(row, seed=seed))
        print(f"{path.parent.name} whole seed {seed}: " + ", ".join(f"{k} {_fmt(row[k])}" for k in COLUMNS),
              flush=True)
    return {"movie": path.parent.name, "shape": list(raw.shape), "mean": _mean(rows), "per_seed": rows}


def _dense_simulation(path: Path, seed: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``2p-dense`` movie of ``n_frames`` x 128 x 128 with 60 sources: (raw float32, clean float64)."""
    import tifffile
    import zarr

    from pmdcompress.simulate import simulate_movie

    info = simulate_movie(path, kind="2p-dense", n_frames=n_frames, shape=(128, 128), n_neurons=60, seed=seed)
    raw = tifffile.imread(info["movie"]).astype(np.float32)
    return raw, zarr.open_group(str(info["truth"]), mode="r")["clean"][...].astype(np.float64)


def simulation_case(seeds=(2, 3)) -> dict:
    from pmdcompress.report import photon_split as ps
    from pmdcompress.tiling import Tiling

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            raw, clean = _dense_simulation(Path(tmp) / f"dense{seed}.tif", seed, 1000)
            clean = clean.astype(np.float32)
            cpu = time.process_time()
            den, rank = denoise(raw, {})
            cpu = time.process_time() - cpu
            var = clean.var(axis=0)
            active = var >= np.sort(var.ravel())[::-1][int(0.1 * var.size) - 1]
            overlap = Tiling.create(raw.shape[1:]).coverage() > 1
            noise = raw.astype(np.float64) - clean
            row = {"seed": seed, "noise_rms_reduction": float(np.sqrt(np.mean(noise**2)
                                                                     / np.mean((den - clean.astype(np.float64)) ** 2))),
                   "true_removed_all": ps.true_signal_removed(raw, clean, den, np.ones_like(active)),
                   "true_removed_active": ps.true_signal_removed(raw, clean, den, active),
                   "true_removed_active_overlap": ps.true_signal_removed(raw, clean, den, active & overlap),
                   "true_removed_active_interior": ps.true_signal_removed(raw, clean, den, active & ~overlap),
                   "true_removed_all_overlap": ps.true_signal_removed(raw, clean, den, overlap),
                   "true_removed_all_interior": ps.true_signal_removed(raw, clean, den, ~overlap),
                   "rank": int(rank), "cpu_s": cpu}
            rows.append(row)
            print("2p-dense sim: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items()), flush=True)
    return {"regime": "2p-dense", "shape": [1000, 128, 128], "n_neurons": 60, "mean": _mean(rows), "per_seed": rows}


def split_simulation_case(seeds=(2, 3, 4), methods=("correlated", "binomial")) -> dict:
    """The photon-split measures against their ground truth on simulations (the same A, the same folds).

    ``2p-dense`` movies (600 x 128 x 128, about 1.2 photons per pixel per frame, neurofinder_dev's level), split
    both ways (``"correlated"``: the Gaussian fission both real two-photon movies here take), denoised by the
    defaults, a 3-frame temporal Gaussian and a 1.5-px spatial Gaussian: ``signal_removed`` on the active folds
    (lag 0) and :func:`shared_signal_removed` (rows above/below, and the 4 neighbours), each from ``B`` and from
    the clean movie of ``A`` (the truth of the same number).
    """
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    from pmdcompress.report import photon_split as ps

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            raw, clean = _dense_simulation(Path(tmp) / f"split{seed}.tif", seed, 600)
            for method in methods:
                counts = ps.prepare_counts(raw, seed=seed)
                counts.method = method
                a, b = ps.split(counts, seed)
                a = a.astype(np.float32)
                clean_a = (clean - counts.offsets) / counts.gain / 2  # A's (and B's) clean movie, in counts
                folds = ps.active_folds(b)
                for name in ("pmd", "temporal_gauss_3", "spatial_gauss_1.5"):
                    if name == "pmd":
                        den, _ = denoise(a, {})
                    elif name == "temporal_gauss_3":
                        den = gaussian_filter1d(a, 3, axis=0)
                    else:
                        den = gaussian_filter(a, (0, 1.5, 1.5))
                    row = {"seed": seed, "split": method, "denoiser": name,
                           "removed_active": ps.signal_removed(a, b, den, folds),
                           "true_removed_active": ps.true_signal_removed(a, clean_a, den, folds),
                           "shared_removed_active": ps.shared_signal_removed(a, b, den, folds),
                           "true_shared_removed_active": ps.shared_signal_removed(a, clean_a, den, folds),
                           "shared4_removed_active": ps.shared_signal_removed(a, b, den, folds, lags=NEIGHBOUR_LAGS),
                           "true_shared4_removed_active": ps.shared_signal_removed(a, clean_a, den, folds,
                                                                               lags=NEIGHBOUR_LAGS)}
                    rows.append(row)
                    print("2p-dense split: " + ", ".join(f"{k} {_fmt(v) if not isinstance(v, str) else v}"
                                                         for k, v in row.items()), flush=True)
    return {"regime": "2p-dense", "shape": [600, 128, 128], "n_neurons": 60, "rows": rows}


def _mean(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "seed"]
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r[k] is not None and np.isfinite(r[k])]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def table(results: dict) -> list[str]:
    lines = []
    for case in results["crops"]:
        if "variants" not in case:
            lines.append(f"{case['movie']}: no split ({case.get('reason')})")
            continue
        lines += [f"\n{case['movie']} (report crop, split {case['split']}, seeds {case['seeds']}; means)",
                  "| variant | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for name, v in case["variants"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(v["mean"][k]) for k in COLUMNS) + " |")
        if case.get("default_removed_parts_seed0"):
            lines.append("default, seed 0, parts of the active pixels' removed signal: "
                         + ", ".join(f"{k} {_fmt(v)}" for k, v in case["default_removed_parts_seed0"].items()))
    for case in results.get("whole", []):
        lines.append(f"{case['movie']} whole movie (means): "
                     + ", ".join(f"{k} {_fmt(case['mean'][k])}" for k in COLUMNS))
    if results.get("simulation"):
        lines.append("2p-dense simulation (means): "
                     + ", ".join(f"{k} {_fmt(v)}" for k, v in results["simulation"]["mean"].items()))
    if results.get("split_simulation"):
        keys = ("removed_active", "true_removed_active", "shared_removed_active", "true_shared_removed_active",
                "shared4_removed_active", "true_shared4_removed_active")
        lines += ["\n2p-dense 600x128x128 photon split vs truth (same A, same active folds)",
                  "| seed | split | denoiser | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
        for r in results["split_simulation"]["rows"]:
            lines.append(f"| {r['seed']} | {r['split']} | {r['denoiser']} | " + " | ".join(_fmt(r[k]) for k in keys)
                         + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--movies", nargs="*", default=["neurofinder_dev", "optinist_mouse2p"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-movie split of neurofinder_dev")
    parser.add_argument("--no-simulation", action="store_true")
    parser.add_argument("--no-split-simulation", action="store_true",
                        help="skip the photon-split measures against ground truth on simulations")
    parser.add_argument("--out", default=str(HERE / "results" / "signal.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("PMD_NUM_WORKERS", "1")
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "command": "python benchmarks/bench_signal.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "crops": [], "whole": []}
    for name in args.movies:
        path = SHARED / name / "movie.tif"
        if not path.exists():
            print(f"{name}: not found under {SHARED}; skipped")
            continue
        results["crops"].append(crop_case(path, args.seeds, args.variants))
    nf = SHARED / "neurofinder_dev" / "movie.tif"
    if not args.no_whole and nf.exists():
        results["whole"].append(whole_case(nf, args.seeds))
    if not args.no_simulation:
        results["simulation"] = simulation_case()
    if not args.no_split_simulation:
        results["split_simulation"] = split_simulation_case()
    lines = table(results)
    results["table"] = lines
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
