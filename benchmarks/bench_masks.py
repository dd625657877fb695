"""Benchmark: how a footprint becomes a mask, scored on simulations (truth masks) and on neurofinder_dev's labels.

    python benchmarks/bench_masks.py [--real benchmarks/work/demix_suite2p] [--out benchmarks/results/masks.json]

Every demix result is scored three ways, each mask rule applied to the same footprints (``DemixResult.masks``
with ``shape`` "threshold", "ellipse" -- the 2p and 1p default since session 7 -- and "cell"), IoU >= 0.3 and
Hungarian matching as ``pmd evaluate``:

- **simulations** (made, compressed and demixed here once, in ``benchmarks/work/masks/``): the sparse
  neurofinder-like regimes of ``bench_demix.py`` (typical, dim, small, large somata; seed 1), a standard 2p
  movie, ``2p-dense``, ``2p-real``, ``1p`` (two seeds) and ``1p-correlated``; against the truth masks (above
  0.2 of each true footprint's peak, the simulator's convention) and, for reference, against the truth above
  half its peak (a cell's edge);
- **neurofinder_dev** stores (the demix results ``bench_demix_suite2p.py --stores --zoom 1.5 --bin 2`` leaves
  in its work folder: five stores, the 2x2-binned and the 1.5x-zoomed movie), against the labels, on the whole
  field and its development (left) and held-out (right) halves. As a diagnostic only (never used to draw a mask),
  also against the labels moved by (-1, -1) px: the matched masks of both kinds sit about one pixel up-left of
  these labels (see docs/demix.md, session 7), and the raw movie's mean and 99th-percentile images put the
  labels' best fit there too (``label_offset``).

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "masks"
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():  # a worktree under /work/wt/
    SHARED = Path("/work/shared/data")
SHAPES = ("threshold", "ellipse", "cell")

sys.path.insert(0, str(HERE))


def simulations() -> dict:
    """name -> (movie, demix result path, kind); made and demixed once."""
    from bench_demix import SPARSE, SPARSE_BASE

    import pmdcompress
    import pmdcompress.demix as dm
    from pmdcompress.simulate import simulate_movie

    WORK.mkdir(parents=True, exist_ok=True)
    specs = {f"sparse_{name}": dict(n_frames=600, shape=(240, 240), n_neurons=120, photons=photons, fs=7.0, seed=1,
                                    regime={**SPARSE_BASE, **over}) for name, (over, photons) in SPARSE.items()}
    specs["2p"] = dict(n_frames=1000, shape=(192, 192), n_neurons=60, seed=0, fs=30.0)
    for kind in ("2p-dense", "2p-real", "1p", "1p-correlated"):
        specs[kind] = dict(n_frames=1000, shape=(128, 128), n_neurons=30, seed=1, kind=kind)
    specs["1p_seed2"] = dict(n_frames=1000, shape=(128, 128), n_neurons=30, seed=2, kind="1p")
    out = {}
    for name, spec in specs.items():
        movie = WORK / f"{name}.tif"
        if not movie.exists():
            simulate_movie(movie, **spec)
        store = WORK / f"{name}.pmd.zarr"
        if not store.exists():
            pmdcompress.compress(movie, store, overwrite=True)
        kind = "1p" if spec.get("kind", "").startswith("1p") else "2p"
        result = WORK / f"{name}.demix.zarr"
        if not result.exists():
            dm.demix(store, result, kind=kind, fs=spec.get("fs", 30.0), figures=False)
        out[name] = (movie, result, kind)
    return out


def _moved(masks: sp.csc_matrix, dims, dy: int, dx: int) -> sp.csc_matrix:
    height, width = dims
    coo = masks.tocoo()
    y, x = np.divmod(coo.row, width)
    y, x = y + dy, x + dx
    ok = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    return sp.csc_matrix((np.ones(ok.sum(), np.float32), (y[ok] * width + x[ok], coo.col[ok])), shape=masks.shape)


def _score(pred: sp.csc_matrix, true: sp.csc_matrix, dims, fixed) -> dict:
    from pmdcompress.demix.matching import match

    r, c, ious = match(pred, true, dims)
    iou = ious[r, c]
    f = np.asarray(fixed, bool)[r]
    n_pred, n_true = pred.shape[1], true.shape[1]
    return {"tp": int(r.size), "f1": 2 * r.size / max(n_pred + n_true, 1),
            "mean_iou": float(iou.mean()) if iou.size else None,
            "mean_iou_active": float(iou[~f].mean()) if (~f).any() else None, "n_active": int((~f).sum()),
            "mean_iou_mean_image": float(iou[f].mean()) if f.any() else None, "n_mean_image": int(f.sum())}


def _halves(masks: sp.csc_matrix, true: sp.csc_matrix, dims, fixed) -> dict:
    width = dims[1]

    def cx(m):
        m = m.tocsc()
        return np.array([np.mean(m.indices[m.indptr[j]:m.indptr[j + 1]] % width) if m.indptr[j + 1] > m.indptr[j]
                         else np.nan for j in range(m.shape[1])])

    px, tx = cx(masks), cx(true)
    out = {}
    for part, pk, tk in (("whole", np.ones(px.size, bool), np.ones(tx.size, bool)),
                         ("dev_left_half", px < width / 2, tx < width / 2),
                         ("heldout_right_half", px >= width / 2, tx >= width / 2)):
        out[part] = _score(masks[:, np.flatnonzero(pk)], true[:, np.flatnonzero(tk)], dims, np.asarray(fixed)[pk])
    return out


def label_offset(folder: Path) -> dict:
    """The shift of the labels that best fits the raw movie's high-passed mean and 99th-percentile images."""
    import tifffile
    from scipy import ndimage

    movie = tifffile.imread(folder / "movie.tif").astype(np.float32)
    labels = np.zeros(movie.shape[1:])
    for region in json.loads((folder / "regions.json").read_text()):
        rows, cols = np.asarray(region["coordinates"]).T
        labels[rows, cols] += 1
    out = {}
    for name, image in (("mean", movie.mean(axis=0)), ("p99", np.percentile(movie, 99, axis=0))):
        hp = image - ndimage.gaussian_filter(image, 6.0)
        fit = {(dy, dx): float((hp * np.roll(labels, (dy, dx), axis=(0, 1))).sum() / labels.sum())
               for dy in range(-3, 4) for dx in range(-3, 4)}
        best = max(fit, key=fit.get)
        out[name] = {"best_shift_yx": list(best), "fit_at_best": fit[best], "fit_unshifted": fit[(0, 0)]}
    return out


def main() -> None:
    import pmdcompress.demix as dm
    from pmdcompress.demix.matching import load_regions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=str(HERE / "work" / "demix_suite2p"))
    parser.add_argument("--out", default=str(HERE / "results" / "masks.json"))
    args = parser.parse_args()
    results = {"simulations": {}, "neurofinder_dev": {}}
    for name, (movie, path, kind) in simulations().items():
        res = dm.open_demix(path)
        fixed = res.metrics["seeded_from_mean"]
        truths = {"truth": load_regions(movie, dims=res.dims).masks,
                  "truth_half_peak": load_regions(movie, dims=res.dims, threshold=0.5).masks}
        entry = {"kind": kind, "n_components": res.n_components}
        for shape in SHAPES:
            masks = res.masks(shape=shape)
            entry[shape] = {t: _score(masks, true.tocsc(), res.dims, fixed) for t, true in truths.items()}
        results["simulations"][name] = entry
        print(f"{name:16s} vs truth: " + "  ".join(
            f"{s} F1 {entry[s]['truth']['f1']:.3f} IoU {entry[s]['truth']['mean_iou'] or 0:.4f}" for s in SHAPES)
            + f" | vs half-peak truth: cell IoU {entry['cell']['truth_half_peak']['mean_iou'] or 0:.4f}", flush=True)
    real = Path(args.real)
    folder = SHARED / "neurofinder_dev"
    cases = {name: (real / f"store_{name}.demix.zarr", folder / "regions.json")
             for name in ("default", "seed1", "seed2", "no_temporal_filter", "svd")}
    cases["bin2"] = (real / "bin2.demix.zarr", real / "bin2" / "regions.json")
    cases["zoom1.5"] = (real / "zoom1.5.demix.zarr", real / "zoom1.5" / "regions.json")
    for name, (path, truth) in cases.items():
        if not (path.exists() and truth.exists()):
            print(f"{name}: no demix result at {path} (run bench_demix_suite2p.py --stores --zoom 1.5 --bin 2)")
            continue
        res = dm.open_demix(path)
        fixed = res.metrics["seeded_from_mean"]
        true = load_regions(truth, dims=res.dims).masks.tocsc()
        entry = {}
        for shape in SHAPES:
            masks = res.masks(shape=shape).tocsc()
            entry[shape] = _halves(masks, true, res.dims, fixed)
            entry[shape]["diagnostic_labels_moved_-1_-1"] = _score(masks, _moved(true, res.dims, -1, -1), res.dims,
                                                                   fixed)
        results["neurofinder_dev"][name] = entry
        print(f"nf {name:18s} " + "  ".join(
            f"{s} F1 {entry[s]['whole']['f1']:.3f} IoU {entry[s]['whole']['mean_iou']:.4f} "
            f"(dev {entry[s]['dev_left_half']['mean_iou']:.4f} held {entry[s]['heldout_right_half']['mean_iou']:.4f}"
            f"; labels moved {entry[s]['diagnostic_labels_moved_-1_-1']['mean_iou']:.4f})" for s in SHAPES), flush=True)
    stores = [results["neurofinder_dev"][k] for k in ("default", "seed1", "seed2", "no_temporal_filter", "svd")
              if k in results["neurofinder_dev"]]
    if stores:
        results["neurofinder_dev_mean_of_stores"] = {
            s: {part: float(np.mean([e[s][part]["mean_iou"] for e in stores]))
                for part in ("whole", "dev_left_half", "heldout_right_half")} for s in SHAPES}
        for s in SHAPES:
            m = results["neurofinder_dev_mean_of_stores"][s]
            print(f"nf mean of {len(stores)} stores, {s:9s}: IoU {m['whole']:.4f} (dev {m['dev_left_half']:.4f}, "
                  f"held-out {m['heldout_right_half']:.4f})")
    results["label_offset"] = label_offset(folder)
    print("labels' best shift against the raw movie (y, x):", {k: v["best_shift_yx"]
                                                              for k, v in results["label_offset"].items()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
