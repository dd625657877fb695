"""Dense simulated fields: which firing cells ``pmd demix`` finds, side by side with another tree.

    PMD_NUM_WORKERS=1 python benchmarks/bench_demix_dense.py [--baseline /work/wt/base] [--kinds 2p-real,2p-dense]
        [--frames 600,3000] [--seeds 0,1,2] [--long-seeds 0] [--shape 128x128] [--diagnose]
        [--out benchmarks/results/demix_dense.json]

Each movie is ``pmd simulate --kind KIND --shape SHAPE --frames N --seed S`` (``2p-real``: calibrated to the rank per
patch of real two-photon movies, 106 sources on 128 x 128 of which about 40 are simulated *dendrites*; also 20000
frames for ``--long-seeds``; ``2p-dense``: a zebrafish-like dense field, 1000 frames at its 30 Hz), compressed once
with this tree's ``pmd compress`` (the store is shared, so both trees demix the same factors), then demixed with the
defaults (``--fs`` the kind's) by this tree and, with ``--baseline``, by that tree (its ``bin/pmd`` in a fresh
process). Scored against the simulation's truth (IoU >= 0.3, Hungarian, masks as ``pmd evaluate`` draws them):

- ``all``: every simulated source, as ``pmd evaluate --truth X.truth.zarr`` prints it (dendrites count as cells);
- ``somata``: the sources the truth records as somata (``source_kind``; a version-1 truth: those whose truth mask
  has elongation < 2, ``bench_demix.score_somata``): detections on a dendrite
  left out, precision over the rest;
- ``firing``: recall of the somata with at least one true spike (``spikes`` of the truth), of the *visibly* firing
  ones (``bench_demix.visibility`` > 6: peak transient times the footprint's norm over the photon noise, a clear
  transient by eye), and of all firing sources.

With ``--diagnose`` every firing soma missed by this tree gets one cause (the stages followed as
``bench_demix_misses.py`` follows them): no seed (which seed test fails at the soma's core, or spacing: within
``min_distance`` of a seed / not a local maximum), seeded and lost (at which stage), refused by the quality tests
(which), or found but held by a neighbour (its detection matched to an overlapping soma).  The core of a soma is
where its truth footprint is above half its peak and the largest of all (relative to their peaks).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "demix_dense"
DEFAULT_FRAMES = {"2p-dense": (1000,)}  # the kinds whose length is not --frames
TESTS = (("snr", "min_snr", "<"), ("r_value", "min_r_value", "<"), ("skew", "min_skew", "<"),
         ("compactness", "min_compactness", "<"), ("elongation", "max_elongation", ">"),
         ("mean_contrast", "min_mean_contrast", "<"))


def _pmd(tree: Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, str(tree / "bin" / "pmd"), *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def movie(kind: str, shape: str, frames: int, seed: int) -> Path:
    """Simulated and compressed once (this tree); the stem of ``STEM.pmd.zarr`` and ``STEM.truth.zarr``."""
    WORK.mkdir(parents=True, exist_ok=True)
    stem = WORK / f"{kind}_{shape}_{frames}_s{seed}"
    if not Path(f"{stem}.pmd.zarr").exists():
        _pmd(ROOT, "simulate", f"{stem}.tif", "--kind", kind, "--shape", shape, "--frames", str(frames),
             "--seed", str(seed), "--overwrite")
        _pmd(ROOT, "compress", f"{stem}.tif", "-o", f"{stem}.pmd.zarr", "--overwrite")
        Path(f"{stem}.tif").unlink()
    return stem


def truth_classes(stem: Path) -> dict:
    """Per source: soma (as the truth records it; truth mask elongation < 2 in a version-1 truth) and firing (at least
    one true spike)."""
    import zarr

    from pmdcompress.demix.metrics import _shape
    from pmdcompress.formats.truth import SOMA

    g = zarr.open_group(f"{stem}.truth.zarr", mode="r")
    a = np.asarray(g["footprints"])
    n = a.shape[0]
    inside = a > 0.2 * a.reshape(n, -1).max(axis=1)[:, None, None]
    compact = np.array([_shape(inside[j][None])[2][0] < 2.0 for j in range(n)])
    soma = np.asarray(g["source_kind"]) == SOMA if "source_kind" in g else compact
    if (soma != compact).any():
        print(f"{stem}: {(soma != compact).sum()} of {n} recorded kinds differ from the elongation guess")
    firing = np.asarray(g["spikes"]).sum(axis=1) > 0
    sys.path.insert(0, str(HERE))
    from bench_demix import VISIBLE, visibility

    from pmdcompress.simulate import load_truth

    visible = visibility(load_truth(Path(f"{stem}.truth.zarr"))) > VISIBLE
    return {"soma": soma, "firing": firing, "visible": visible & firing, "fs": float(g.attrs["fs"]), "footprints": a}


def score(result_path: Path, stem: Path, classes: dict) -> dict:
    from pmdcompress.demix.matching import Regions, evaluate_regions, iou_matrix, load_regions

    pred, true = load_regions(result_path), load_regions(Path(f"{stem}.truth.zarr"))
    every = evaluate_regions(pred, true)
    soma, firing = classes["soma"], classes["firing"]
    masks = true.masks.tocsc()
    iou = iou_matrix(pred.masks, true.masks)
    on_dendrite = iou[:, ~soma].max(axis=1) >= 0.3 if (~soma).any() else np.zeros(pred.n, bool)
    keep = np.flatnonzero(~on_dendrite)
    somata = evaluate_regions(Regions(pred.masks.tocsc()[:, keep], pred.dims), Regions(masks[:, np.flatnonzero(soma)],
                                                                                          true.dims))
    found = {p["true"] for p in every["pairs"]}
    soma_idx = np.flatnonzero(soma)
    found_soma = {int(soma_idx[p["true"]]) for p in somata["pairs"]}
    return {
        "all": {k: every[k] for k in ("f1", "precision", "recall", "tp", "n_pred", "n_true", "mean_iou")},
        "somata": {k: somata[k] for k in ("f1", "precision", "recall", "tp", "n_pred", "n_true", "mean_iou")},
        "n_on_dendrites": int(on_dendrite.sum()),
        "firing_somata": int((soma & firing).sum()),
        "firing_somata_found": len(found_soma & set(np.flatnonzero(soma & firing).tolist())),
        "visible_somata": int((soma & classes["visible"]).sum()),
        "visible_somata_found": len(found_soma & set(np.flatnonzero(soma & classes["visible"]).tolist())),
        "firing_sources": int(firing.sum()),
        "firing_sources_found": len(found & set(np.flatnonzero(firing).tolist())),
    }


def diagnose(stem: Path, classes: dict) -> dict:
    """One cause per firing soma this tree misses (module docstring)."""
    sys.path.insert(0, str(HERE))
    from bench_demix_misses import run_store

    from pmdcompress.demix.matching import iou_matrix

    run = run_store(Path(f"{stem}.pmd.zarr"), Path(f"{stem}.truth.zarr"), classes["fs"])
    opts = run["opts"]
    a = classes["footprints"]
    n = a.shape[0]
    rel = a / np.maximum(a.reshape(n, -1).max(axis=1), 1e-30)[:, None, None]
    owner = np.argmax(rel, axis=0)
    seeds = run["calls"]["find_seeds"][0]
    residual = run["residual_seeds"][0] if run["residual_seeds"] else np.zeros((0, 2), int)
    smooth, contrast = run["calls"]["seed_score"][0]
    activity = run["calls"]["_activity_z"][0]
    names = [s[0] for s in run["stages"]]
    true = run["true"].masks.tocsc().astype(bool)
    stage_iou = {name: iou_matrix(m, true) if m.shape[1] else np.zeros((0, n)) for name, m, _ in run["stages"]}
    final = iou_matrix(run["pred"].masks.tocsc().astype(bool), true)
    matched = {p["true"] for p in run["pairs"]}
    held = {p["pred"] for p in run["pairs"]}
    quality = run["stages"][names.index("quality")][2]
    causes = collections.Counter()
    for t in np.flatnonzero(classes["soma"] & classes["firing"]):
        if t in matched:
            continue
        core = (owner == t) & (rel[t] > 0.5)
        seeded = [s for s in seeds if core[s[0], s[1]]] or [s for s in residual if core[s[0], s[1]]]
        best = {name: float(v[:, t].max()) if v.shape[0] else 0.0 for name, v in stage_iou.items()}
        if not seeded:
            yy, xx = np.nonzero(core)
            if not yy.size:
                causes["no seed: no core of its own"] += 1
                continue
            k = int(np.argmax(smooth[yy, xx]))
            y, x = yy[k], xx[k]
            fails = [name for name, bad in (("correlation", smooth[y, x] < opts.corr_threshold),
                                            ("contrast", contrast[y, x] < opts.contrast_threshold),
                                            ("activity", activity[y, x] < opts.min_activity)) if bad]
            if fails:
                cause = "no seed: " + "+".join(fails)
            else:
                near = np.abs(seeds - [y, x]).max(axis=1).min() if len(seeds) else np.inf
                cause = ("no seed: spacing (within min_distance of a seed)" if near <= opts.min_distance
                         else "no seed: spacing (not a local maximum)")
        elif best["quality"] >= 0.3:
            accepted = quality["accept"].astype(bool)
            if (stage_iou["quality"][accepted, t] >= 0.3).any():
                j = int(np.argmax(final[:, t])) if final.shape[0] else -1
                cause = ("found, held by a neighbour" if j >= 0 and final[j, t] >= 0.3 and j in held
                         else "found, IoU under 0.3 after export")
            else:
                k = int(np.argmax(np.where(accepted, -1.0, stage_iou["quality"][:, t])))
                fails = [m for m, o, op in TESTS if (quality[m][k] < getattr(opts, o) if op == "<"
                                                     else quality[m][k] > getattr(opts, o))]
                cause = "quality tests: " + ("+".join(fails) or "size")
        else:
            kept = [name for name in names if best[name] >= 0.3]
            cause = ("seeded, never at IoU 0.3" if not kept
                     else f"seeded, lost at {names[names.index(kept[-1]) + 1]}")
        causes[cause] += 1
    return dict(causes.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="another tree (e.g. /work/wt/base) demixing the same stores")
    parser.add_argument("--kinds", default="2p-real,2p-dense")
    parser.add_argument("--frames", default="600,3000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dense-seeds", default="0,1", help="seeds of 2p-dense")
    parser.add_argument("--long-seeds", default="0", help="seeds of 2p-real at 20000 frames ('' for none)")
    parser.add_argument("--shape", default="128x128")
    parser.add_argument("--diagnose", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "demix_dense.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    trees = {"this": ROOT}
    if args.baseline:
        trees = {"baseline": Path(args.baseline).resolve(), "this": ROOT}
    rows = []
    causes = collections.Counter()
    for kind in args.kinds.split(","):
        seeds = args.dense_seeds if kind == "2p-dense" else args.seeds
        lengths = [(f, seeds) for f in DEFAULT_FRAMES.get(kind, [int(f) for f in args.frames.split(",")])]
        if kind == "2p-real" and args.long_seeds:
            lengths.append((20000, args.long_seeds))
        for frames, seeds in lengths:
            for seed in [int(s) for s in seeds.split(",")]:
                stem = movie(kind, args.shape, frames, seed)
                classes = truth_classes(stem)
                row = {"kind": kind, "frames": frames, "seed": seed}
                for name, tree in trees.items():
                    out = Path(f"{stem}.{name}.demix.zarr")
                    _pmd(tree, "demix", f"{stem}.pmd.zarr", "-o", str(out), "--fs", str(classes["fs"]),
                         "--no-figures", "--overwrite")
                    row[name] = score(out, stem, classes)
                if args.diagnose:
                    row["this_missed_firing_somata"] = diagnose(stem, classes)
                    causes.update(row["this_missed_firing_somata"])
                rows.append(row)
                print(" ".join(f"{name}: firing somata {row[name]['firing_somata_found']}/{row[name]['firing_somata']}"
                               f" somata F1 {row[name]['somata']['f1']:.3f} P {row[name]['somata']['precision']:.3f}"
                               f" | all F1 {row[name]['all']['f1']:.3f}" for name in trees)
                      + f"  {kind} {frames} s{seed}", flush=True)
    summary = {}
    for name in trees:
        for key in ("firing_somata", "firing_somata_found", "visible_somata", "visible_somata_found", "firing_sources",
                    "firing_sources_found"):
            summary.setdefault(name, {})[key] = int(sum(r[name][key] for r in rows))
        for part in ("somata", "all"):
            summary[name][f"{part}_f1_mean"] = float(np.mean([r[name][part]["f1"] for r in rows]))
            summary[name][f"{part}_precision_mean"] = float(np.mean([r[name][part]["precision"] for r in rows]))
    heads = " | ".join(f"{n}: firing somata found | somata F1 (P) | all sources F1" for n in trees)
    print(f"\n| movie | {heads} |")
    print("|---|" + "---|---|---|" * len(trees))
    for r in rows:
        print(f"| {r['kind']} {r['frames']} s{r['seed']} | " + " | ".join(
            f"{r[n]['firing_somata_found']}/{r[n]['firing_somata']} | {r[n]['somata']['f1']:.3f} "
            f"({r[n]['somata']['precision']:.3f}) | {r[n]['all']['f1']:.3f}" for n in trees) + " |")
    for n in trees:
        s = summary[n]
        print(f"{n}: firing somata {s['firing_somata_found']}/{s['firing_somata']} (visibly firing "
              f"{s['visible_somata_found']}/{s['visible_somata']}), firing sources (dendrites too) "
              f"{s['firing_sources_found']}/{s['firing_sources']}, mean somata F1 {s['somata_f1_mean']:.3f} "
              f"(P {s['somata_precision_mean']:.3f}), mean all-sources F1 {s['all_f1_mean']:.3f}")
    if args.diagnose:
        print("missed firing somata (this tree), by cause:")
        for cause, count in causes.most_common():
            print(f"  {count:4d}  {cause}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary,
                                          "causes": dict(causes.most_common())}, indent=1))


if __name__ == "__main__":
    main()
