"""Diagnosis: what the unmatched detections of ``pmd demix`` on a labelled movie are.

    PMD_NUM_WORKERS=1 python benchmarks/bench_demix_falsepos.py [--stores default,seed1,seed2,no_temporal_filter,svd]
        [--movie ../shared/data/neurofinder_dev] [--fs 7] [--out benchmarks/results/demix_falsepos.json]

Runs on the stores that ``bench_demix_suite2p.py --skip suite2p --stores`` leaves in its work folder (it compresses
none), demixed in this process as ``bench_demix_misses.py`` does; the exported masks (suite2p ``ypix``/``xpix``) are
scored as the benchmark scores them (IoU >= 0.3, Hungarian).  Every detection gets its source (an active component
of the first pass or of the residual pass, a mean-image blob, a dark-nucleus disc) and what it looks like in the
**raw** movie (no pmd output involved): the labels' own "visibly active" peak z (``bench_demix_diagnose``'s
``visible_activity``), its contrast in the high-passed mean image and in the maximum-minus-mean image (mask minus a
ring around it, in robust SDs of the image), the share of its transient excess (max-minus-mean, clipped at 0)
held by its 3 brightest pixels (a hot spot: a bouton or a dendrite crossing), the raw 8-neighbour correlation image
inside, its distance to the frame's edge, its overlap with other detections and with labels.  Each unmatched one
then gets one class, the first that holds:

- *duplicate*: half or more of its mask lies under another detection's mask (two components on one structure);
- *near miss*: a label overlaps it at IoU 0.1-0.3 (``held`` when that label is matched to another detection);
- *edge*: its centroid within a soma radius of the frame's edge;
- *active soma, unlabelled*: visibly active by the labels' criterion, compact, brighter than its surround in the
  mean image (a cell the labels leave out, most likely);
- *active, no soma in the mean image*: visibly active but not brighter than its surround (a dendrite or neuropil
  fragment, or a soma under a dark surround);
- *silent*: not visibly active (for discs and blobs: a quiet soma-like spot the labels leave out or texture).

The matched detections get the same measures, so each class's look can be set against the true positives' of the
same source.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent


def raw_images(movie: np.ndarray, sigma: float):
    """The raw movie's high-passed mean image, max-minus-mean image (3-frame smoothed) and 8-neighbour
    correlation image, each in units of its robust SD (1.4826 MAD)."""
    from scipy import ndimage

    mean = movie.mean(axis=0)
    smooth = ndimage.uniform_filter1d(movie, 3, axis=0)
    peak = smooth.max(axis=0) - mean
    centred = movie - mean
    norm = np.sqrt((centred**2).sum(axis=0)) + 1e-12
    corr = np.zeros(mean.shape)
    count = np.zeros(mean.shape)
    h, w = mean.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        ya, yb = slice(0, h - dy), slice(dy, h)
        xa, xb = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        c = (centred[:, ya, xa] * centred[:, yb, xb]).sum(axis=0) / (norm[ya, xa] * norm[yb, xb])
        corr[ya, xa] += c
        corr[yb, xb] += c
        count[ya, xa] += 1
        count[yb, xb] += 1
    corr /= count

    def z(image):
        hp = image - ndimage.gaussian_filter(image, sigma)
        med = np.median(hp)
        return (hp - med) / (1.4826 * np.median(np.abs(hp - med)))

    return z(mean), z(peak), corr


def mask_measures(masks: sp.csc_matrix, dims, images: dict, ring_px=(2, 6)) -> dict:
    """Per mask: each image's mean inside minus its mean on a ring (``ring_px`` dilations), the centroid, area."""
    from scipy import ndimage

    height, width = dims
    n = masks.shape[1]
    out = {f"raw_{k}_contrast": np.full(n, np.nan) for k in images} | {f"raw_{k}_inside": np.full(n, np.nan)
                                                                        for k in images}
    out["cy"], out["cx"], out["area"] = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    for j in range(n):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        if not pix.size:
            continue
        inside = np.zeros(height * width, bool)
        inside[pix] = True
        image = inside.reshape(dims)
        ring = ndimage.binary_dilation(image, iterations=ring_px[1]) & ~ndimage.binary_dilation(image,
                                                                                               iterations=ring_px[0])
        y, x = np.divmod(pix, width)
        out["cy"][j], out["cx"][j], out["area"][j] = y.mean(), x.mean(), pix.size
        if "max" in images:
            # A hot spot: a few pixels hold most of the mask's transient excess (a bouton or a dendrite crossing).
            excess = np.sort(np.clip(images["max"][image], 0, None))[::-1]
            out.setdefault("raw_max_top3_share", np.full(n, np.nan))[j] = excess[:3].sum() / max(excess.sum(), 1e-12)
        for k, img in images.items():
            out[f"raw_{k}_inside"][j] = img[image].mean()
            out[f"raw_{k}_contrast"][j] = img[image].mean() - (img[ring].mean() if ring.any() else 0.0)
    return out


def first_pass(run: dict) -> np.ndarray:
    """Which final components come from the first pass: IoU >= 0.5 (at 0.2 of the peak) with a component kept by
    the first pass's deletion (the residual pass appends its own after it)."""
    from bench_demix_diagnose import _masks  # noqa: F401  (same threshold rule as the stages)

    from pmdcompress.demix.matching import iou_matrix
    from pmdcompress.demix.result import threshold_columns

    names = [name for name, _, _ in run["stages"]]
    deleted = run["stages"][names.index("delete")][1].tocsc().astype(bool)
    final = threshold_columns(sp.csc_matrix(run["footprints"]), 0.2).astype(bool).tocsc()
    if not deleted.shape[1]:
        return np.zeros(final.shape[1], bool)
    return iou_matrix(final, deleted).max(axis=1) >= 0.5


def classify(run: dict, raw: np.ndarray, active_labels, soma_radius: float) -> list[dict]:
    """One row per detection: source, measures, matched label, and for unmatched ones a class."""
    from bench_demix_diagnose import VISIBLE_Z, visible_activity

    from pmdcompress.demix.matching import iou_matrix

    dims = run["dims"]
    pred, true = run["pred"].masks.tocsc().astype(bool), run["true"].masks.tocsc().astype(bool)
    n = pred.shape[1]
    iou = iou_matrix(pred, true)
    matched = {p["pred"]: p["true"] for p in run["pairs"]}
    matched_true = {p["true"]: p["pred"] for p in run["pairs"]}
    avoid = (np.asarray(pred.sum(axis=1)).ravel() > 0) | (np.asarray(true.sum(axis=1)).ravel() > 0)
    peak_z = visible_activity(raw, pred, avoid)
    mean_z, peak_img, corr = raw_images(raw, 2.2 * soma_radius)
    meas = mask_measures(pred, dims, {"mean": mean_z, "max": peak_img, "corr": corr})
    area = np.asarray(pred.sum(axis=0)).ravel().astype(float)
    inter = (pred.T.astype(np.int32) @ pred.astype(np.int32)).toarray().astype(float)
    np.fill_diagonal(inter, 0)
    covered = inter / np.maximum(area[:, None], 1)  # fraction of row's mask under column's
    first = first_pass(run)
    src = run["source"]
    rows = []
    for j in range(n):
        source = ("active" if first[j] else "residual") if src[j] == 0 else ("blob" if src[j] == 1 else "disc")
        k = int(np.argmax(covered[j])) if n > 1 else -1
        t = int(np.argmax(iou[j])) if iou.shape[1] else -1
        row = {"index": j, "source": source, "matched_label": matched.get(j),
               "active_label": matched.get(j) in set(active_labels) if j in matched else None,
               "peak_z": float(peak_z[j]), "overlap_other": float(covered[j, k]) if k >= 0 else 0.0,
               "other": k, "other_matched": k in matched, "best_label_iou": float(iou[j, t]) if t >= 0 else 0.0,
               "best_label": t, "edge_distance": float(min(meas["cy"][j], meas["cx"][j], dims[0] - 1 - meas["cy"][j],
                                                            dims[1] - 1 - meas["cx"][j])),
               **{k2: float(v[j]) for k2, v in meas.items()}}
        row.update({m: float(run["metrics"][m][j]) for m in ("snr", "r_value", "compactness", "elongation",
                                                              "mean_contrast", "size")})
        if j not in matched:
            visible = peak_z[j] > VISIBLE_Z
            if covered[j, k] >= 0.5 if k >= 0 else False:
                cls = "duplicate of a matched detection" if k in matched else "duplicate of an unmatched detection"
            elif row["best_label_iou"] >= 0.1:
                cls = "near miss, label held by another" if t in matched_true else "near miss, label unmatched"
            elif row["edge_distance"] < soma_radius:
                cls = "edge"
            elif visible and row["mean_contrast"] > 0:
                cls = "active soma, unlabelled"
            elif visible:
                cls = "active, no soma in the mean image"
            else:
                cls = "silent"
            row["class"] = cls
        rows.append(row)
    return rows


def draw_crops(run: dict, raw: np.ndarray, rows: list[dict], soma_radius: float, path_stem: Path, *,
               half: int = 14, per_page: int = 8) -> list[Path]:
    """PNG pages of the unmatched detections: the raw movie's high-passed mean, max-minus-mean and correlation
    images around each (the detection's mask red, labels cyan, other detections yellow), labelled by source and
    class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = run["dims"]
    pred, true = run["pred"].masks.tocsc(), run["true"].masks.tocsc()
    labels = np.asarray(true.sum(axis=1)).ravel().reshape(dims) > 0
    detections = np.asarray(pred.sum(axis=1)).ravel().reshape(dims) > 0
    images = list(zip(raw_images(raw, 2.2 * soma_radius), ((-4, 8), (-3, 8), (0, 0.3)), strict=True))
    unmatched = sorted((r for r in rows if r["matched_label"] is None), key=lambda r: (r["source"], r["class"]))
    pages = []
    for start in range(0, len(unmatched), per_page):
        chunk = unmatched[start : start + per_page]
        fig, axes = plt.subplots(len(chunk), 3, figsize=(7.5, 2.5 * len(chunk)), squeeze=False)
        for i, r in enumerate(chunk):
            cy, cx = int(round(r["cy"])), int(round(r["cx"]))
            ys, xs = slice(max(cy - half, 0), cy + half + 1), slice(max(cx - half, 0), cx + half + 1)
            mine = np.zeros(dims[0] * dims[1], bool)
            mine[pred.indices[pred.indptr[r["index"]] : pred.indptr[r["index"] + 1]]] = True
            mine = mine.reshape(dims)
            for k, (image, (lo, hi)) in enumerate(images):
                ax = axes[i, k]
                ax.imshow(image[ys, xs], cmap="gray", vmin=lo, vmax=hi)
                for mask, colour in ((mine, "r"), (labels, "c"), (detections & ~mine, "y")):
                    if mask[ys, xs].any() and not mask[ys, xs].all():
                        ax.contour(mask[ys, xs], [0.5], colors=colour, linewidths=0.7)
                ax.set_xticks([])
                ax.set_yticks([])
            label = f"{r['source']}\n{r['class']}\nz {r['peak_z']:.0f}, contrast {r['mean_contrast']:.1f}"
            axes[i, 0].set_ylabel(label, fontsize=6)
        fig.tight_layout()
        page = Path(f"{path_stem}_{start // per_page}.png")
        fig.savefig(page, dpi=55)
        plt.close(fig)
        pages.append(page)
    return pages


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    import tifffile
    from bench_demix_misses import run_store
    from bench_demix_suite2p import STORES, WORK, _shared

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--movie", default=str(_shared() / "neurofinder_dev"))
    parser.add_argument("--fs", type=float, default=7.0)
    parser.add_argument("--out", default=str(HERE / "results" / "demix_falsepos.json"))
    parser.add_argument("--variants", default="",
                        help="Comma-separated variants of the movie from bench_demix_suite2p.py (bin2, zoom1.5): each "
                             "store WORK/NAME.pmd.zarr with its movie and labels in WORK/NAME/, instead of --stores.")
    parser.add_argument("--crops", default=None, metavar="DIR",
                        help="Also draw the unmatched detections' crops of the raw mean, max and correlation images "
                             "(DIR/falsepos_STORE_PAGE.png; needs matplotlib).")
    args = parser.parse_args()
    folder = Path(args.movie)
    active = json.loads((folder / "active_cells.json").read_text())["active"]
    # (name, store, folder of movie.tif and regions.json)
    jobs = ([(v, WORK / f"{v}.pmd.zarr", WORK / v) for v in args.variants.split(",")] if args.variants else
            [(name, WORK / f"store_{name}.pmd.zarr", folder) for name in args.stores.split(",")])
    results = {"movie": str(folder), "stores": {}}
    raws = {}
    for name, store, movie_folder in jobs:
        if not store.exists():
            raise SystemExit(f"{store}: missing; run bench_demix_suite2p.py --skip suite2p --stores first")
        if movie_folder not in raws:
            raws.clear()
            raws[movie_folder] = tifffile.imread(movie_folder / "movie.tif").astype(np.float32)
        raw = raws[movie_folder]
        run = run_store(store, movie_folder / "regions.json", args.fs)
        soma_radius = float(run["nucleus_radius"] or 4.4)
        rows = classify(run, raw, active, soma_radius)
        if args.crops:
            Path(args.crops).mkdir(parents=True, exist_ok=True)
            draw_crops(run, raw, rows, soma_radius, Path(args.crops) / f"falsepos_{name}")
        results["stores"][name] = {"soma_radius": soma_radius, "width": int(run["dims"][1]), "detections": rows}
        fp = [r for r in rows if r["matched_label"] is None]
        print(f"{name}: {len(rows)} detections, {len(rows) - len(fp)} matched, {len(fp)} unmatched: "
              + ", ".join(f"{c} {k}" for c, k in collections.Counter(r["class"] for r in fp).most_common()),
              flush=True)
    summarise(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(compact(results)))


#: What the JSON keeps per detection (the rest is recomputed by a rerun).
KEPT = ("index", "source", "class", "matched_label", "best_label", "best_label_iou", "other", "overlap_other",
        "peak_z", "raw_mean_contrast", "raw_max_contrast", "raw_corr_inside", "raw_max_top3_share", "mean_contrast",
        "snr", "r_value",
        "compactness", "area", "cy", "cx", "edge_distance")


def compact(results: dict) -> dict:
    """``results`` with the unmatched detections only (the matched ones are summarised in ``measures_by_source``),
    each cut to :data:`KEPT`, floats to 3 decimals."""
    out = dict(results)
    out["stores"] = {name: {**{k: v for k, v in s.items() if k != "detections"},
                            "n_matched": sum(r["matched_label"] is not None for r in s["detections"]),
                            "unmatched": [{k: round(r[k], 3) if isinstance(r.get(k), float) else r.get(k)
                                           for k in KEPT if k in r}
                                          for r in s["detections"] if r["matched_label"] is None]}
                     for name, s in results["stores"].items()}
    return out


def summarise(results: dict) -> None:
    """Per store and over the stores: unmatched detections by source x class; measures of TP vs FP per source."""
    stores = results["stores"]
    n = len(stores)
    table = collections.Counter()
    for s in stores.values():
        for r in s["detections"]:
            if r["matched_label"] is None:
                table[(r["source"], r["class"])] += 1
    halves = collections.Counter()
    for s in stores.values():
        width = s["width"]
        for r in s["detections"]:
            half = "development (left)" if r["cx"] < width / 2 else "held-out (right)"
            halves[(half, r["source"], "matched" if r["matched_label"] is not None else "unmatched")] += 1
    results["by_half_mean"] = {" | ".join(k): v / n for k, v in sorted(halves.items())}
    print(f"detections by half, source and match, mean over {n} stores:")
    for key, v in results["by_half_mean"].items():
        print(f"  {v:6.1f}  {key}")
    results["unmatched_by_source_and_class_mean"] = {f"{a} | {b}": v / n for (a, b), v in sorted(table.items())}
    print(f"unmatched detections, mean over {n} stores, by source | class:")
    for key, v in results["unmatched_by_source_and_class_mean"].items():
        print(f"  {v:6.1f}  {key}")
    keys = ("peak_z", "raw_mean_contrast", "raw_max_contrast", "raw_corr_inside", "raw_max_top3_share",
            "mean_contrast", "snr", "r_value", "compactness", "area")
    print("medians, matched / unmatched, per source (raw_*: the raw movie's images, mask minus ring, robust SDs):")
    summary = {}
    for source in ("active", "residual", "blob", "disc"):
        rows = [r for s in stores.values() for r in s["detections"] if r["source"] == source]
        tp = [r for r in rows if r["matched_label"] is not None]
        fp = [r for r in rows if r["matched_label"] is None]
        summary[source] = {"n_matched": len(tp) / n, "n_unmatched": len(fp) / n}
        line = []
        for k in keys:
            a = float(np.median([r[k] for r in tp])) if tp else float("nan")
            b = float(np.median([r[k] for r in fp])) if fp else float("nan")
            summary[source][k] = [a, b]
            line.append(f"{k} {a:.2f}/{b:.2f}")
        print(f"  {source:9s} {len(tp) / n:5.1f} / {len(fp) / n:5.1f}: " + ", ".join(line))
    results["measures_by_source"] = summary


if __name__ == "__main__":
    main()
