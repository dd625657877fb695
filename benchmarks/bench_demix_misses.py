"""Diagnosis: why each visibly active labelled cell is missed, and how the matched masks differ from the labels.

    PMD_NUM_WORKERS=1 python benchmarks/bench_demix_misses.py [--stores default,seed1,seed2,no_temporal_filter,svd]
        [--movie ../shared/data/neurofinder_dev] [--fs 7] [--out benchmarks/results/demix_misses.json]

Runs on the stores that ``bench_demix_suite2p.py --skip suite2p --stores`` leaves in its work folder (it
compresses none): each is demixed with the defaults in this process, the fit's stages followed through
``demix.pipeline.STAGE_HOOK`` and its seed images (``seed_score``, ``_activity_z``, ``find_seeds``) recorded by
wrapping them; the exported masks (suite2p ``ypix``/``xpix``) are scored as the benchmark scores them (IoU >= 0.3,
Hungarian).  Every visibly active label (``active_cells.json``) left unmatched gets one cause, the first that holds:

- *near miss*: an exported mask overlaps it at IoU 0.1-0.3; ``overgrown`` (area over 1.6 x the label's),
  ``undersized`` (under 0.6 x) or ``offset`` (the size is right, the place or shape is not); ``held by a
  neighbour`` when that mask is matched to another label;
- *lost in the fit*: a first-pass seed lies inside the label, and its footprint, after the alternating rounds,
  has ``collapsed`` (under half the label's area: a few hot pixels at the soma's edge took it), ``overgrown``
  (over twice), ``drifted`` (its centroid over 3 px away) or was fine there and lost at a later stage (merge,
  deletion, residual pass, soma shape, quality tests: the failing tests named); ``small basin``: the seed's
  region was under ``min_size`` and the seed was dropped;
- *residual seed only*: seeded by the residual pass alone and lost;
- *no seed*: at the label's best correlation pixel, which seed test fails (correlation, contrast, activity), or
  ``suppressed`` (all pass: not a local maximum, or within ``min_distance`` of a seed).

For the matched pairs, per source of detection (active seed, mean-image blob, dark-nucleus disc): the mask's
area over the label's, the mean IoU, and the centroid offset (mask minus label, pixels); and the mean IoU and F1
with the active components' masks redrawn at other areas (the same moment ellipse): 0.8 x, and the area above
half the peak over a sharp soma edge's ratio (``min(a_0.2, a_0.5 / rho)``), which leaves a sharp-edged
(simulated) footprint's mask as it is and shrinks a soft-edged (real) one.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
TESTS = (("snr", "min_snr", "<"), ("r_value", "min_r_value", "<"), ("skew", "min_skew", "<"),
         ("compactness", "min_compactness", "<"), ("elongation", "max_elongation", ">"),
         ("mean_contrast", "min_mean_contrast", "<"))


def _centroid(masks: sp.csc_matrix, j: int, width: int) -> np.ndarray:
    pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
    if not pix.size:
        return np.array([np.nan, np.nan])
    y, x = np.divmod(pix, width)
    return np.array([y.mean(), x.mean()])


def run_store(store_path: Path, truth: Path, fs: float) -> dict:
    """Demix ``store_path`` with the stages and seed images recorded; the exported masks and the labels."""
    from bench_demix_diagnose import _masks

    import pmdcompress
    from pmdcompress.demix import pipeline
    from pmdcompress.demix.export import suite2p_stat
    from pmdcompress.demix.matching import _from_coordinates, evaluate_regions, load_regions
    from pmdcompress.options import DemixOptions

    record: dict = {"stages": [], "calls": {}}
    pending: dict = {}

    def hook(name, fp, fixed, met):
        if name == "seeds":  # a pass redone at another radius starts over: keep the last
            record["stages"] = []
            record["calls"] = dict(pending)
            pending.clear()
        record["stages"].append((name, _masks(fp), None if met is None else {k: np.asarray(v) for k, v in met.items()}))

    originals = {name: getattr(pipeline, name) for name in ("find_seeds", "seed_score", "_activity_z")}

    def wrapped(name):
        def call(*args, **kwargs):
            out = originals[name](*args, **kwargs)
            pending.setdefault(name, []).append(out)
            return out
        return call

    pipeline.STAGE_HOOK = hook
    for name in originals:
        setattr(pipeline, name, wrapped(name))
    try:
        store = pmdcompress.open(store_path)
        model, fac, opts = pipeline.fit(store, DemixOptions.create(kind="2p", fs=fs))
        result = pipeline.to_result(model, fac, opts, store)
    finally:
        pipeline.STAGE_HOOK = None
        for name, fn in originals.items():
            setattr(pipeline, name, fn)
    coords = [np.stack([s["ypix"], s["xpix"]], axis=1).astype(np.int64) for s in suite2p_stat(result)]
    pred = _from_coordinates(coords, result.dims)
    true = load_regions(truth, dims=result.dims)
    return {"pred": pred, "true": true, "pairs": evaluate_regions(pred, true)["pairs"], "source": model.source,
            "stages": record["stages"], "calls": record["calls"], "residual_seeds": pending.get("find_seeds", []),
            "footprints": result.footprints, "opts": opts, "dims": result.dims,
            "metrics": {k: np.asarray(v) for k, v in result.metrics.items()}, "nucleus_radius": model.nucleus_radius,
            "result": result}


def miss_causes(run: dict, active) -> list[dict]:
    """One cause per unmatched visibly active label (see the module's docstring)."""
    from pmdcompress.demix.matching import iou_matrix

    dims = run["dims"]
    width = dims[1]
    pred, true = run["pred"].masks.tocsc().astype(bool), run["true"].masks.tocsc().astype(bool)
    opts = run["opts"]
    iou = iou_matrix(pred, true)
    matched_true = {p["true"] for p in run["pairs"]}
    matched_pred = {p["pred"]: p["true"] for p in run["pairs"]}
    label_area = np.asarray(true.sum(axis=0)).ravel()
    pred_area = np.asarray(pred.sum(axis=0)).ravel()
    stages = run["stages"]
    order = [name for name, _, _ in stages]
    stage_iou = {name: iou_matrix(m, true) if m.shape[1] else np.zeros((0, true.shape[1])) for name, m, _ in stages}
    seeds = run["calls"]["find_seeds"][0]
    smooth, contrast = run["calls"]["seed_score"][0]
    activity = run["calls"]["_activity_z"][0]
    seed_masks = stages[order.index("seeds")][1].tocsc()
    fit_masks = stages[order.index("fit")][1].tocsc()
    residual_seeds = run["residual_seeds"][0] if run["residual_seeds"] else np.zeros((0, 2), int)
    out = []
    for t in sorted(set(int(a) for a in active) - matched_true):
        inside = np.zeros(dims[0] * width, bool)
        inside[true.indices[true.indptr[t] : true.indptr[t + 1]]] = True
        entry = {"label": t, "area": int(label_area[t])}
        best = int(np.argmax(iou[:, t])) if iou.shape[0] else -1
        first = [k for k, s in enumerate(seeds) if inside[int(s[0]) * width + int(s[1])]]
        if best >= 0 and iou[best, t] >= 0.1:
            ratio = pred_area[best] / label_area[t]
            kind = "overgrown" if ratio > 1.6 else "undersized" if ratio < 0.6 else "offset"
            held = best in matched_pred
            entry.update(cause=f"near miss: {kind}" + (", held by a neighbour" if held else ""),
                         iou=float(iou[best, t]), area_ratio=float(ratio),
                         source=int(run["source"][best]))
        elif first:
            pixel = int(seeds[first[0]][0]) * width + int(seeds[first[0]][1])
            cols = [j for j in range(seed_masks.shape[1])
                    if pixel in seed_masks.indices[seed_masks.indptr[j] : seed_masks.indptr[j + 1]]]
            if not cols:
                entry["cause"] = "lost in the fit: small basin"
            else:
                j = cols[0]
                area = fit_masks.indptr[j + 1] - fit_masks.indptr[j]
                ratio = area / label_area[t]
                dist = float(np.hypot(*(_centroid(fit_masks, j, width) - _centroid(true, t, width))))
                entry.update(seed_iou=float(stage_iou["seeds"][j, t]), fit_iou=float(stage_iou["fit"][j, t]),
                             fit_area_ratio=float(ratio), fit_offset=dist)
                if ratio < 0.5:
                    entry["cause"] = "lost in the fit: collapsed"
                elif ratio > 2.0:
                    entry["cause"] = "lost in the fit: overgrown"
                elif dist > 3.0 or stage_iou["fit"][j, t] < 0.3:
                    entry["cause"] = "lost in the fit: drifted"
                else:
                    best_by_stage = {name: float(v[:, t].max()) if v.shape[0] else 0.0 for name, v in stage_iou.items()}
                    kept = [name for name in order if best_by_stage[name] >= 0.3]
                    lost_at = order[order.index(kept[-1]) + 1] if kept and kept[-1] != order[-1] else "export"
                    if "quality" in kept and kept[-1] == "quality":
                        met = stages[order.index("quality")][2]
                        k = int(np.argmax(stage_iou["quality"][:, t]))
                        fails = [m for m, o, op in TESTS
                                 if (met[m][k] < getattr(opts, o) if op == "<" else met[m][k] > getattr(opts, o))]
                        entry["cause"] = "rejected by the quality tests: " + ("+".join(fails) or "size")
                    else:
                        entry["cause"] = f"lost in the fit: at {lost_at}"
        elif any(inside[int(s[0]) * width + int(s[1])] for s in residual_seeds):
            entry["cause"] = "residual seed only, lost"
        else:
            from scipy import ndimage

            grown = ndimage.binary_dilation(inside.reshape(dims))
            yy, xx = np.nonzero(grown)
            k = int(np.argmax(smooth[yy, xx]))
            y, x = yy[k], xx[k]
            fails = [name for name, bad in (("correlation", smooth[y, x] < opts.corr_threshold),
                                            ("contrast", contrast[y, x] < opts.contrast_threshold),
                                            ("activity", activity[y, x] < opts.min_activity)) if bad]
            entry.update(cause="no seed: " + ("+".join(fails) or "suppressed"), correlation=float(smooth[y, x]),
                         contrast=float(contrast[y, x]), activity=float(activity[y, x]))
        out.append(entry)
    return out


def mask_rules(run: dict, rules: dict) -> dict:
    """F1 and mean IoU with the active components' masks redrawn at other areas (the same moment ellipse)."""
    from pmdcompress.demix.matching import Regions, evaluate_regions
    from pmdcompress.demix.result import fill_mask_holes, moment_ellipse, threshold_columns

    dims = run["dims"]
    width = dims[1]
    pred = run["pred"].masks.tocsc()
    a = sp.csc_matrix(run["footprints"])
    at_02 = fill_mask_holes(threshold_columns(a, 0.2), dims)
    at_05 = threshold_columns(a, 0.5)
    active = run["source"] == 0
    out = {}
    for name, rule in rules.items():
        rows, cols = [], []
        for j in range(pred.shape[1]):
            pix = pred.indices[pred.indptr[j] : pred.indptr[j + 1]]
            if active[j] and rule is not None:
                base = at_02.indices[at_02.indptr[j] : at_02.indptr[j + 1]]
                size = rule(base.size, at_05.indptr[j + 1] - at_05.indptr[j])
                pix = moment_ellipse(*np.divmod(base, width), dims, size=max(int(size), 1))
            rows.append(pix)
            cols.append(np.full(pix.size, j))
        r = np.concatenate(rows)
        masks = sp.csc_matrix((np.ones(r.size, bool), (r, np.concatenate(cols))), shape=pred.shape)
        s = evaluate_regions(Regions(masks, dims), run["true"])
        out[name] = {"f1": s["f1"], "mean_iou": s["mean_iou"],
                     "mean_iou_active_components": float(np.mean([p["iou"] for p in s["pairs"] if active[p["pred"]]]
                                                                 or [np.nan]))}
    return out


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    from bench_demix_suite2p import STORES, WORK, _shared

    from pmdcompress.demix.pipeline import SOURCES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--movie", default=str(_shared() / "neurofinder_dev"))
    parser.add_argument("--fs", type=float, default=7.0)
    parser.add_argument("--out", default=str(HERE / "results" / "demix_misses.json"))
    args = parser.parse_args()
    folder = Path(args.movie)
    active = json.loads((folder / "active_cells.json").read_text())["active"]
    rules = {"as exported": None, "0.8 x area": lambda a02, a05: round(0.8 * a02)}
    for rho in (0.65, 0.75):
        rules[f"min(a_0.2, a_0.5 / {rho})"] = (lambda r: lambda a02, a05: min(a02, round(a05 / r)))(rho)
    results = {"movie": str(folder), "n_active_labels": len(active), "stores": {}}
    causes = collections.Counter()
    pairs = []
    for name in args.stores.split(","):
        store = WORK / f"store_{name}.pmd.zarr"
        if not store.exists():
            raise SystemExit(f"{store}: missing; run bench_demix_suite2p.py --skip suite2p --stores first")
        run = run_store(store, folder / "regions.json", args.fs)
        misses = miss_causes(run, active)
        causes.update(m["cause"] for m in misses)
        true = run["true"].masks.tocsc()
        pred = run["pred"].masks.tocsc()
        width = run["dims"][1]
        for p in run["pairs"]:
            j, t = p["pred"], p["true"]
            pairs.append({"store": name, "source": SOURCES[int(run["source"][j])], "active_label": t in active,
                          "iou": p["iou"], "area_ratio": (pred.indptr[j + 1] - pred.indptr[j])
                          / (true.indptr[t + 1] - true.indptr[t]),
                          "offset": (_centroid(pred, j, width) - _centroid(true, t, width)).tolist()})
        results["stores"][name] = {"misses": misses, "mask_rules": mask_rules(run, rules)}
        print(f"{name}: {len(misses)} visibly active labels missed", flush=True)
    results["causes"] = dict(causes.most_common())
    by_source = {}
    for src in SOURCES:
        rows = [p for p in pairs if p["source"] == src]
        if rows:
            ratio = np.array([p["area_ratio"] for p in rows])
            off = np.array([p["offset"] for p in rows])
            by_source[src] = {"n": len(rows), "area_ratio_median": float(np.median(ratio)),
                              "area_ratio_q25_q75": np.percentile(ratio, [25, 75]).tolist(),
                              "mean_iou": float(np.mean([p["iou"] for p in rows])),
                              "mean_offset_yx": off.mean(axis=0).tolist()}
    results["matched_pairs"] = by_source
    results["mask_rules_mean"] = {
        rule: {k: float(np.mean([s["mask_rules"][rule][k] for s in results["stores"].values()]))
               for k in ("f1", "mean_iou", "mean_iou_active_components")} for rule in rules}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    n = len(results["stores"])
    print(f"missed visibly active labels over {n} stores ({n * len(active)} label-stores), by cause:")
    for cause, count in causes.most_common():
        print(f"  {count:4d}  {cause}")
    print("matched pairs, by source: n, area ratio median (q25-q75), mean IoU, mean offset (y, x) px")
    for src, b in by_source.items():
        print(f"  {src:10s} {b['n']:4d}  {b['area_ratio_median']:.2f} ({b['area_ratio_q25_q75'][0]:.2f}-"
              f"{b['area_ratio_q25_q75'][1]:.2f})  {b['mean_iou']:.3f}  ({b['mean_offset_yx'][0]:+.2f}, "
              f"{b['mean_offset_yx'][1]:+.2f})")
    print("active components' masks redrawn (mean of stores): F1, mean IoU, mean IoU of the active components")
    for rule, m in results["mask_rules_mean"].items():
        print(f"  {rule:24s} {m['f1']:.3f}  {m['mean_iou']:.3f}  {m['mean_iou_active_components']:.3f}")


if __name__ == "__main__":
    main()
