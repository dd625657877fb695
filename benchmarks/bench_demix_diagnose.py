"""Diagnosis: where each detection of ``pmd demix`` comes from and at which stage each missed label is lost.

    python benchmarks/bench_demix_diagnose.py STORE.pmd.zarr --truth regions.json [--active active_cells.json]
        [--movie movie.tif] [--fs 7] [--out benchmarks/results/demix_diagnose.json]

Demixes the store with the defaults in this process (the fit's stages are followed through
``demix.pipeline.STAGE_HOOK``: seeds, the rounds, the merge, the deletion, the residual pass, the
soma-shape step, the quality tests), scores the exported masks (suite2p ``ypix``/``xpix``, as the
benchmarks and an outside evaluation do: IoU >= 0.3, Hungarian), then prints

- per source of detection (an active seed, a mean-image blob, a dark-nucleus disc): how many, how
  many match a label, and the median quality metrics of the matched and unmatched ones;
- per missed label (marked ACT when listed in ``--active``): the best IoU of any footprint with it
  after each stage (where it was never seeded, collapsed, grew past it or was rejected), and, where a
  component on it reached the quality tests, the metrics that rejected it.

With ``--movie`` (the raw movie), every detection's exported mask is also scored by the labels' own
"visibly active" criterion (:func:`visible_activity`, the one ``active_cells.json`` records for the labels):
an unmatched detection that is soma-shaped and visibly active by the criterion the labels are held to is
most likely a cell the labels leave out; one that is not is neuropil, a fragment, or a silent soma.

The JSON holds the same, per detection and per label.  Labels are often not exhaustive: look at the
unmatched detections (their metrics, the movie's maximum and mean images) before calling them errors.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
METRICS = ("snr", "skew", "r_value", "compactness", "elongation", "mean_contrast", "size")


def _masks(fp, threshold=0.2) -> sp.csc_matrix:
    """Footprints above ``threshold`` of their peaks as a (pixels, n) boolean matrix."""
    height, width = fp.dims
    top = fp.values.reshape(fp.n, -1).max(axis=1) if fp.n else np.zeros(0)
    inside = fp.values > threshold * np.maximum(top, 1e-30)[:, None, None]
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for j, (y, x) in enumerate(fp.origins):
        yy, xx = np.nonzero(inside[j])
        rows.append((yy + y) * width + xx + x)
        cols.append(np.full(yy.size, j))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csc_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(height * width, fp.n))


#: ``active_cells.json``'s criterion (neurofinder_dev's PROVENANCE.md): the ROI's mean trace minus 0.7 x the mean of an
#: 8-px ring that avoids every ROI, smoothed over 3 frames, peaks more than 6 robust SDs above its median.
VISIBLE_Z = 6.0


def visible_activity(movie: np.ndarray, masks: sp.csc_matrix, avoid: np.ndarray) -> np.ndarray:
    """Peak z of each mask's neuropil-corrected trace in the raw ``movie`` (T, Y, X), by the criterion the labels'
    ``active_cells.json`` uses (:data:`VISIBLE_Z`); ``avoid``: the pixels (Y*X bool) every ring leaves out."""
    from scipy import ndimage

    n_frames, height, width = movie.shape
    flat = movie.reshape(n_frames, -1)
    out = np.zeros(masks.shape[1])
    for j in range(masks.shape[1]):
        inside = np.zeros(height * width, bool)
        inside[masks.indices[masks.indptr[j] : masks.indptr[j + 1]]] = True
        image = inside.reshape(height, width)
        ring = (ndimage.binary_dilation(image, iterations=8) & ~ndimage.binary_dilation(image, iterations=2)).ravel()
        ring &= ~avoid
        if not inside.any() or not ring.any():
            continue
        trace = flat[:, inside].mean(axis=1) - 0.7 * flat[:, ring].mean(axis=1)
        trace = np.convolve(trace, np.ones(3) / 3.0, mode="valid")
        median = np.median(trace)
        spread = 1.4826 * np.median(np.abs(trace - median))
        out[j] = (trace.max() - median) / max(spread, 1e-12)
    return out


def diagnose(store_path, truth, active=(), fs=7.0, movie=None) -> dict:
    import pmdcompress
    from pmdcompress.demix import pipeline
    from pmdcompress.demix.export import suite2p_stat
    from pmdcompress.demix.matching import _from_coordinates, evaluate_regions, iou_matrix, load_regions
    from pmdcompress.options import DemixOptions

    stages = []

    def hook(name, fp, fixed, met):
        if name == "seeds":  # a refit starts over: keep the last pass only
            stages.clear()
        stages.append((name, _masks(fp), None if met is None else {k: np.asarray(v) for k, v in met.items()}))

    pipeline.STAGE_HOOK = hook
    try:
        store = pmdcompress.open(store_path)
        model, fac, opts = pipeline.fit(store, DemixOptions.create(kind="2p", fs=fs))
        result = pipeline.to_result(model, fac, opts, store)
    finally:
        pipeline.STAGE_HOOK = None
    coords = [np.stack([s["ypix"], s["xpix"]], axis=1).astype(np.int64) for s in suite2p_stat(result)]
    pred = _from_coordinates(coords, result.dims)
    true = load_regions(truth, dims=result.dims)
    scores = evaluate_regions(pred, true)
    matched_pred = {p["pred"]: p["true"] for p in scores["pairs"]}
    matched_true = {p["true"] for p in scores["pairs"]}
    active = set(int(a) for a in active)
    source = model.source
    detections = [{"source": pipeline.SOURCES[int(source[j])], "matched_label": matched_pred.get(j),
                   **{k: float(result.metrics[k][j]) for k in METRICS}} for j in range(result.n_components)]
    if movie is not None:
        import tifffile

        raw = tifffile.imread(movie).astype(np.float32)
        avoid = (np.asarray(pred.masks.sum(axis=1)).ravel() > 0) | (np.asarray(true.masks.sum(axis=1)).ravel() > 0)
        peak_z = visible_activity(raw, pred.masks.tocsc(), avoid)
        for d, z in zip(detections, peak_z, strict=True):
            d["peak_z"] = float(z)
    best = {name: (iou_matrix(m, true.masks).max(axis=0) if m.shape[1] else np.zeros(true.n)) for name, m, _ in stages}
    quality = next(((m, met) for name, m, met in stages if name == "quality"), None)
    missed = []
    for t in range(true.n):
        if t in matched_true:
            continue
        entry = {"label": t, "active": t in active, "best_iou_by_stage": {k: float(v[t]) for k, v in best.items()}}
        if quality is not None and quality[0].shape[1]:
            ious = iou_matrix(quality[0], true.masks[:, [t]])[:, 0]
            j = int(np.argmax(ious))
            if ious[j] >= 0.3:
                entry["at_quality_tests"] = {"accepted": bool(quality[1]["accept"][j]),
                                             **{k: float(quality[1][k][j]) for k in METRICS}}
        missed.append(entry)
    by_source = {}
    for name in pipeline.SOURCES:
        mine = [d for d in detections if d["source"] == name]
        by_source[name] = {"n": len(mine), "matched": sum(d["matched_label"] is not None for d in mine)}
        if movie is not None:
            by_source[name]["visibly_active"] = {
                kind: sum((d["matched_label"] is not None) == on and d["peak_z"] > VISIBLE_Z for d in mine)
                for kind, on in (("matched", True), ("unmatched", False))}
        for kind, rows in (("matched", [d for d in mine if d["matched_label"] is not None]),
                           ("unmatched", [d for d in mine if d["matched_label"] is None])):
            by_source[name][f"median_{kind}"] = {k: float(np.median([d[k] for d in rows])) if rows else None
                                                 for k in METRICS}
    return {"store": str(store_path), "truth": str(truth), "cell_radius_estimate": model.cell_radius_estimate,
            "nucleus_radius": model.nucleus_radius,
            "scores": {k: scores[k] for k in ("n_true", "n_pred", "tp", "precision", "recall", "f1", "mean_iou")},
            "by_source": by_source, "detections": detections, "missed_labels": missed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--truth", required=True)
    parser.add_argument("--active", default=None, help="active_cells.json (its 'active' list of label indices)")
    parser.add_argument("--movie", default=None, help="the raw movie: score each detection's visible activity")
    parser.add_argument("--fs", type=float, default=7.0)
    parser.add_argument("--out", default=str(HERE / "results" / "demix_diagnose.json"))
    args = parser.parse_args()
    active = json.loads(Path(args.active).read_text())["active"] if args.active else []
    out = diagnose(args.store, args.truth, active, args.fs, args.movie)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    s = out["scores"]
    print(f"F1 {s['f1']:.3f} P {s['precision']:.3f} R {s['recall']:.3f} ({s['tp']} of {s['n_true']} labels, "
          f"{s['n_pred']} detections)")
    for name, b in out["by_source"].items():
        print(f"{name:10s} {b['n']:4d} detections, {b['matched']:3d} on a label; medians matched / unmatched: "
              + ", ".join(f"{k} {b['median_matched'][k] or 0:.2f}/{b['median_unmatched'][k] or 0:.2f}"
                          for k in ("snr", "r_value", "mean_contrast", "size"))
              + ("; visibly active (z > {:g}) matched {matched} / unmatched {unmatched}".format(
                  VISIBLE_Z, **b["visibly_active"]) if "visibly_active" in b else ""))
    for m in out["missed_labels"]:
        line = f"label {m['label']:3d} {'ACT' if m['active'] else '   '} " + " ".join(
            f"{k} {v:.2f}" for k, v in m["best_iou_by_stage"].items())
        if "at_quality_tests" in m:
            q = m["at_quality_tests"]
            line += " | at the tests: " + ", ".join(f"{k} {v:.2f}" for k, v in q.items() if k != "accepted")
        print(line)


if __name__ == "__main__":
    main()
