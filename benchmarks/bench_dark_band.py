"""Does a dark edge band change how the rest of the field is denoised?  (issue 13; session 10)

Full Neurofinder frames (and many ScanImage frames) carry ~16 columns of scanner flyback, offset-subtracted and
near 0.  neurofinder_dev is cropped clear of it.  This script photon-splits neurofinder_dev once (the same halves A
and B for every layout) and denoises A laid out four ways, always scoring the native 231 x 280 field against B:

- ``native``: A as it is;
- ``band_left`` / ``band_right``: A with 16 dark columns added (``clip(round(N(3, 6)), 0)`` ADU, as
  ``bench_demix_suite2p.bordered_movie`` builds, in A's photon units);
- ``mirror_left``: A with its own first 16 columns mirrored on the left: real-looking tissue, the same frame
  width and patch grid as ``band_left`` (what a grid shift alone does);
- ``crop_left``: A without its first 16 columns (a grid shift the other way; scored on the 231 x 264 left).

It also records the store's global decisions (rank-test thresholds, noise correlation) and the total rank that
the patches give the native field (each patch's rank spread over its pixels by its blending weights).

    PMD_NUM_WORKERS=1 python benchmarks/bench_dark_band.py [--movie NAME] [--layouts native,band_left,...]
        [--seed N] [--tree=PATH] [--out FILE]

``--movie``: another movie of ``../shared/data`` (sima_ca1_example: 20 frames, where the mean image's smoothing
is decided).  ``--tree``: run the package of another checkout (the baseline, side by side).

Prints a table and writes ``benchmarks/results/dark_band_s10.json`` (layouts measured in separate runs merge).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_TREE = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--tree=")), str(HERE.parent))
sys.path.insert(0, _TREE)

from pmdcompress.pipeline.compress import compress  # noqa: E402
from pmdcompress.report.photon_split import photon_split, prepare_counts  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"
WIDTH = 16
LAYOUTS = ("native", "band_left", "band_right", "mirror_left", "crop_left")


def dark_band(shape, gain: float, seed: int = 0) -> np.ndarray:
    """``clip(round(N(3, 6)), 0)`` ADU in photons of one half (``/ gain / 2``): a flyback band near 0."""
    rng = np.random.default_rng(seed)
    return (np.clip(np.round(rng.normal(3.0, 6.0, shape)), 0, None) / gain / 2.0).astype(np.float32)


def lay_out(a: np.ndarray, layout: str, gain: float) -> tuple[np.ndarray, slice, slice]:
    """A laid out as ``layout``, the columns of the laid-out frame that hold A's scored field, and those of A."""
    t, h, w = a.shape
    every = slice(0, w)
    if layout == "native":
        return a, every, every
    if layout == "band_left":
        return np.concatenate([dark_band((t, h, WIDTH), gain), a], axis=2), slice(WIDTH, WIDTH + w), every
    if layout == "band_right":
        return np.concatenate([a, dark_band((t, h, WIDTH), gain)], axis=2), every, every
    if layout == "mirror_left":
        return np.concatenate([a[:, :, WIDTH:0:-1], a], axis=2), slice(WIDTH, WIDTH + w), every
    if layout == "crop_left":
        return np.ascontiguousarray(a[:, :, WIDTH:]), slice(0, w - WIDTH), slice(WIDTH, w)
    raise ValueError(layout)


def native_rank(store, columns: slice) -> float:
    """The patches' ranks spread over their pixels by their blending weights, summed over ``columns``."""
    py, px = store.patch_shape
    density = np.zeros(store.shape[1:])
    for (y0, x0), r, wy, wx in zip(store.patch_origins, store.patch_ranks, store.weights_y, store.weights_x,
                                   strict=True):
        w = np.outer(wy, wx)
        density[y0 : y0 + py, x0 : x0 + px] += r * w / w.sum()
    return float(density[:, columns].sum())


def run(layout: str, frames: np.ndarray, counts, seed: int = 0) -> dict:
    record: dict = {}

    def denoise(a):
        laid, columns, kept = lay_out(a, layout, counts.gain)
        store = compress(laid, None, hash_input=False, seed=seed)
        p = store.metadata.parameters
        record.update(total_rank=int(store.metadata.total_rank), native_rank=round(native_rank(store, columns), 1),
                      thresholds=p["thresholds"], noise_correlation=p["noise_correlation"],
                      mean_smoothing=p.get("mean_smoothing"))
        out = np.zeros_like(a)
        out[:, :, kept] = store.read(0, a.shape[0])[:, :, columns]
        return out

    t0 = time.process_time()
    region = None if layout != "crop_left" else ((0, frames.shape[1]), (WIDTH, frames.shape[2]))
    result = photon_split(frames, denoise, counts=counts, region=region)
    record["cpu_s"] = round(time.process_time() - t0, 1)
    for part in ("all", "active"):
        s = result.get(part, {})
        record[part] = {k: s.get(k) for k in ("error_reduction", "error_reduction_low", "error_reduction_high",
                                               "signal_removed", "pixels")}
    return record


def main() -> None:
    import tifffile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movie", default="neurofinder_dev")
    parser.add_argument("--tree", default=str(HERE.parent), help="checkout whose package runs (--tree=PATH)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--seed", type=int, default=0, help="compression seed (the spread a layout is judged by)")
    parser.add_argument("--out", default=str(HERE / "results" / "dark_band_s10.json"))
    args = parser.parse_args()
    frames = tifffile.imread(DATA / args.movie / "movie.tif").astype(np.float32)
    counts = prepare_counts(frames, seed=0)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    key = f"{args.movie} ({Path(args.tree).name})"
    results.setdefault(key, {}).setdefault("layouts", {})
    results[key]["movie"] = f"{args.movie} {'x'.join(map(str, frames.shape))}"
    results[key]["counts"] = counts.summary()
    for layout in args.layouts.split(","):
        r = run(layout, frames, counts, args.seed)
        layout = layout if args.seed == 0 else f"{layout}_seed{args.seed}"
        print(f"{key} {layout:12s} rank {r['total_rank']:4d} native {r['native_rank']:7.1f}  "
              f"ER all {r['all']['error_reduction']:.2f} active {r['active']['error_reduction']:.2f}  "
              f"removed all {r['all']['signal_removed']:.3f} active {r['active']['signal_removed']:.3f}  "
              f"corr {r['noise_correlation']}", flush=True)
        # re-read before writing: layouts measured by parallel runs merge
        merged = json.loads(out.read_text()) if out.exists() else results
        merged.setdefault(key, results[key]).setdefault("layouts", {})[layout] = r
        merged[key]["movie"], merged[key]["counts"] = results[key]["movie"], results[key]["counts"]
        out.write_text(json.dumps(merged, indent=1) + "\n")


if __name__ == "__main__":
    main()
