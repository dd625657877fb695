"""Benchmark: store size against the input file, and the error the factor quantization adds (issue 13).

    python benchmarks/bench_store_size.py [--out benchmarks/results/store_size.json] [--only NAME]

For every real movie in ../shared/data (``*/movie.tif``) and three simulated ones (two-photon uint16,
1000x96x96 and 100x64x64; an 8-bit movie shaped like the issue's zebrafish recording, 240x76x87), with
default options: input file bytes, store bytes, their ratio, and the error that quantizing the factors adds.
The reference is the same compression with every step at 1/4096 of the noise (the finest), whose
rounding is negligible; ``added_mse_over_noise`` is the mean squared difference of the two
reconstructions over the mean noise variance of the movie.  The denoised movie's own error is unknown
on real movies, so the table gives the added error over two stand-ins: the noise that the store
passes (``added_over_passed_noise``: the report's error model, per-pixel degrees of freedom of the
projections and temporal filter times the noise variance, plus the mean's own noise, 1/T of it, which
every frame keeps (less where the store smooths its mean: ``report.noise.mean_kept_fraction``); a lower
bound of the error, as it leaves out lost signal, so the ratio is an upper bound), and the error a
100x error reduction would leave
(``added_at_100x``: 100 * added_mse_over_noise; the issue measured 69x by photon splitting on
neurofinder_dev).  On the simulated movies the error against the ground truth is measured
directly: ``truth_rms_reference`` and ``truth_rms_quantized`` (targets: within 1 %).

Targets: every store of a movie of >= 100 frames >= 3x smaller than its input file and none larger;
real two-photon movies of >= 600 frames >= 20x smaller; quantization adds < 1 % to the error.
CPU seconds are of this process (the machine is shared; wall time is noisy).
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
import tifffile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import pmdcompress  # noqa: E402
from pmdcompress.formats import store as store_format  # noqa: E402
from pmdcompress.report.noise import filter_fractions, hat_diagonal, mean_kept_fraction  # noqa: E402
from pmdcompress.simulate import load_truth, simulate_movie  # noqa: E402
from pmdcompress.store.zarr_store import directory_bytes  # noqa: E402

SHARED = next((p for p in (ROOT.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()), None)
REFERENCE_ROUNDING_ERROR = 1e-9  # every step clipped to the finest, 1/4096 of the noise


def compress(movie: Path, out: Path, rounding_error: float | None = None):
    saved = dict(store_format.ROUNDING_ERROR)
    if rounding_error is not None:
        store_format.ROUNDING_ERROR["float32"] = rounding_error
    try:
        cpu = time.process_time()
        store = pmdcompress.compress(movie, out, overwrite=True)
        return pmdcompress.open(out), time.process_time() - cpu
    finally:
        store_format.ROUNDING_ERROR.update(saved)
        del store


def measure(name: str, movie: Path, work: Path, truth=None) -> dict:
    quantized, cpu = compress(movie, work / f"{name}.pmd.zarr")
    reference, _ = compress(movie, work / f"{name}.ref.pmd.zarr", REFERENCE_ROUNDING_ERROR)
    t = quantized.shape[0]
    diff = err_q = err_r = 0.0
    for t0 in range(0, t, 100):
        q = quantized.read(t0, min(t0 + 100, t)).astype(np.float64)
        r = reference.read(t0, min(t0 + 100, t)).astype(np.float64)
        diff += float(np.sum((q - r) ** 2))
        if truth is not None:
            clean = truth.read(t0, min(t0 + 100, t)).astype(np.float64)
            err_q += float(np.sum((q - clean) ** 2))
            err_r += float(np.sum((r - clean) ** 2))
    n = quantized.shape[0] * quantized.shape[1] * quantized.shape[2]
    noise_var = float(np.mean(quantized.noise.astype(np.float64) ** 2))
    # the noise the factors pass, and the mean's own (1/T of the noise; version 4 rounds the mean too)
    passed = float(np.mean(quantized.noise.astype(np.float64) ** 2
                           * (hat_diagonal(reference, fractions=filter_fractions(reference))
                              + mean_kept_fraction(reference) / t)))
    input_bytes = movie.stat().st_size
    store_bytes = directory_bytes(work / f"{name}.pmd.zarr")
    entry = {
        "shape": list(quantized.shape), "dtype": quantized.metadata.input_dtype,
        "input_bytes": input_bytes, "store_bytes": store_bytes, "ratio": input_bytes / store_bytes,
        "reference_store_bytes": directory_bytes(work / f"{name}.ref.pmd.zarr"),
        "total_rank": quantized.metadata.total_rank,
        "added_mse_over_noise": diff / n / noise_var, "added_at_100x": 100 * diff / n / noise_var,
        "passed_noise_over_noise": passed / noise_var, "added_over_passed_noise": diff / n / passed,
        "compress_cpu_s": cpu,
    }
    if truth is not None:
        entry["truth_rms_reference"] = (err_r / n) ** 0.5
        entry["truth_rms_quantized"] = (err_q / n) ** 0.5
        entry["truth_rms_change"] = (err_q / err_r) ** 0.5 - 1
    return entry


def census(store: Path) -> dict:
    """Bytes of each array's chunk files in STORE (largest first), and of the zarr metadata files together."""
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.name != "zarr.json")
             for p in store.iterdir() if p.is_dir()}
    out = dict(sorted(sizes.items(), key=lambda item: -item[1]))
    out["zarr.json"] = sum(f.stat().st_size for f in store.rglob("zarr.json"))
    return out


def simulated(work: Path) -> list[tuple[str, Path, object]]:
    out = []
    for name, frames, shape in (("sim_2p_1000x96x96", 1000, (96, 96)), ("sim_2p_100x64x64", 100, (64, 64))):
        path = work / f"{name}.tif"
        simulate_movie(path, n_frames=frames, shape=shape, n_neurons=20, seed=1, overwrite=True)
        out.append((name, path, load_truth(path)))
    # An 8-bit movie (the zebrafish recording is uint8, 240x76x87): a simulation scaled to 0-255.
    path = work / "sim_uint8_240x76x87.tif"
    simulate_movie(path, n_frames=240, shape=(76, 87), n_neurons=12, seed=2, overwrite=True)
    raw = tifffile.imread(path).astype(np.float64)
    lo, hi = np.percentile(raw, [0.1, 99.9])
    tifffile.imwrite(work / "sim_uint8.tif", np.clip(np.rint((raw - lo) * 255 / (hi - lo)), 0, 255).astype(np.uint8))
    out.append(("sim_uint8_240x76x87", work / "sim_uint8.tif", None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "store_size.json"))
    parser.add_argument("--only", default=None, help="measure only the movies whose name contains this")
    parser.add_argument("--census", action="store_true", help="also print each array's bytes in each store")
    args = parser.parse_args()
    os.environ.setdefault("PMD_NUM_WORKERS", "1")
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "store_format_version": store_format.FORMAT_VERSION,
               "rounding_error": store_format.ROUNDING_ERROR["float32"],
               "reference_rounding_error": REFERENCE_ROUNDING_ERROR, "movies": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        movies = [(p.parent.name, p, None) for p in sorted(SHARED.glob("*/movie.tif"))] if SHARED else []
        if SHARED is None:
            print("../shared/data is absent: real movies skipped", file=sys.stderr)
        movies += simulated(work)
        for name, path, truth in movies:
            if args.only and args.only not in name:
                continue
            results["movies"][name] = entry = measure(name, path, work, truth)
            entry["array_bytes"] = census(work / f"{name}.pmd.zarr")
            if args.census:
                print("    " + ", ".join(f"{k} {v}" for k, v in entry["array_bytes"].items()), flush=True)
            print(f"{name:24s} {'x'.join(map(str, entry['shape'])):>14s} {entry['dtype']:8s} "
                  f"input {entry['input_bytes'] / 1e6:7.2f} MB  store {entry['store_bytes'] / 1e6:6.3f} MB  "
                  f"{entry['ratio']:6.1f}x  added MSE/noise {entry['added_mse_over_noise']:.1e} "
                  f"= {100 * entry['added_over_passed_noise']:.2f} % of the passed noise, "
                  f"{100 * entry['added_at_100x']:.2f} % of the error at 100x"
                  + (f"  truth RMS {entry['truth_rms_change'] * 100:+.3f} %" if truth is not None else ""),
                  flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
