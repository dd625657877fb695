"""Diagnosis: do a movie's labels sit on its cells?  Judged from the raw movie alone, no pmd output involved.

    python benchmarks/bench_label_offset.py [--movie ../shared/data/neurofinder_dev/movie.tif]
        [--labels ../shared/data/neurofinder_dev/regions.json] [--reach 2]
        [--out benchmarks/results/label_offset.json]

For every shift (dy, dx) within ``--reach`` pixels, the labels' union is moved by it and two raw images are
averaged inside it, each in units of its own SD over the frame: the max-minus-mean image (3-frame smoothed; active
cells are bright in it) and the absolute high-passed mean image (sigma 10 px; somata, bright or with a dark nucleus,
stand out of the neuropil in it).  Labels drawn on the cells peak at (0, 0); labels written in another coordinate
convention (1-based coordinates) peak one pixel away.  ``pmd evaluate`` reports the same offset from the matched
pairs (``median_centroid_offset``); this says whether the labels or the detections carry it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "neurofinder_dev"


def raw_images(movie: np.ndarray) -> dict[str, np.ndarray]:
    from scipy import ndimage

    mean = movie.mean(axis=0)
    peak = ndimage.uniform_filter1d(movie, 3, axis=0).max(axis=0) - mean
    highpassed = np.abs(mean - ndimage.gaussian_filter(mean, 10))
    return {name: (img - img.mean()) / img.std() for name, img in
            (("max_minus_mean", peak), ("abs_highpassed_mean", highpassed))}


def shift_scores(image: np.ndarray, union: np.ndarray, reach: int) -> np.ndarray:
    """``out[dy + reach, dx + reach]``: mean of ``image`` inside ``union`` moved by (dy, dx) (pixels moved out of the
    image are dropped; :func:`pmdcompress.demix.matching.shift_masks`, as ``pmd evaluate`` moves a truth)."""
    import scipy.sparse as sp

    from pmdcompress.demix.matching import shift_masks

    mask = sp.csc_matrix(union.reshape(-1, 1))
    flat = image.ravel()
    out = np.full((2 * reach + 1, 2 * reach + 1), np.nan)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            out[dy + reach, dx + reach] = flat[shift_masks(mask, image.shape, dy, dx).indices].mean()
    return out


def main(argv=None) -> dict:
    import tifffile

    from pmdcompress.demix.matching import load_regions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movie", type=Path, default=DATA / "movie.tif")
    parser.add_argument("--labels", type=Path, default=DATA / "regions.json")
    parser.add_argument("--reach", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "label_offset.json")
    args = parser.parse_args(argv)
    if not args.movie.exists():
        print(f"skipped: {args.movie} not found (../shared beside the checkout)")
        return {}
    movie = tifffile.imread(args.movie).astype(np.float32)
    regions = load_regions(args.labels, dims=movie.shape[1:])
    union = (np.asarray(regions.masks.sum(axis=1)).ravel() > 0).reshape(movie.shape[1:])
    result = {"movie": str(args.movie), "labels": str(args.labels), "n_labels": regions.n, "images": {}}
    for name, image in raw_images(movie).items():
        scores = shift_scores(image, union, args.reach)
        best = np.unravel_index(np.nanargmax(scores), scores.shape)
        best = [int(best[0]) - args.reach, int(best[1]) - args.reach]
        result["images"][name] = {"best_shift": best, "scores": np.round(scores, 4).tolist()}
        print(f"{name:20s} labels agree best moved by (dy, dx) = ({best[0]:+d}, {best[1]:+d}); "
              f"at (0, 0) {scores[args.reach, args.reach]:.3f}, at best {np.nanmax(scores):.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
