"""Benchmark: ``pmd demix`` on held-out labelled regions of neurofinder_dev's own recording.

    PMD_NUM_WORKERS=1 python benchmarks/bench_demix_heldout.py [--repo PATH] [--work DIR] [--crops dev,low,right]
        [--fs 7] [--baseline TREE] [--reuse-stores] [--stores] [--diagnose] [--suite2p-python PATH]
        [--out benchmarks/results/demix_heldout.json]

neurofinder_dev (``../shared/data/neurofinder_dev``) is a crop, rows 1:232 and columns 28:308, of a 512x512x600
field whose frames and 330 labels sit in the git history of the public repository
neuhofmo/calcium-imaging-neuron-detection (frames ``images/imageNNNNN.tiff`` at bc3757c, labels
``regions/regions.json`` at 1f86d92; see neurofinder_dev's PROVENANCE.md).  Every demix decision so far was judged
on that crop; this benchmark rebuilds the whole field from a local clone (``--repo``, by default the mirror path
below; the script says so in one line and stops when it is absent: it is not part of CI), checks that the
``dev`` crop equals ``movie.tif`` and ``regions.json`` of neurofinder_dev, and cuts two held-out crops:

- ``low``: rows 232:512, columns 16:512 (280x496, the field's lower part, clear of the dark left band);
- ``right``: rows 1:232, columns 308:512 (231x204, right of neurofinder_dev);
- ``full`` (only when named in ``--crops``): the whole 512x512 field, all 330 labels (it holds ``dev``, and the
  16 dark columns at its left).

Labels follow neurofinder_dev's rule: a label is kept when at least 50 % of its pixels lie inside the crop, its
pixels outside are dropped.  "Visibly active" labels: the label's mean trace minus 0.7 x the mean of a ring 3-8
pixels out (binary dilations 2 and 8) that avoids every label, smoothed over 3 frames, peaks more than ``z`` robust
SDs (1.4826 MAD) above its median; ``z`` is calibrated once so that the same function marks as many labels of the
``dev`` crop as ``active_cells.json`` does (53; neurofinder_dev's own rule uses another ring, so its z of 6 does not
carry over).  ``dev`` is scored against ``active_cells.json`` itself.

Each crop runs through ``pmd compress`` and ``pmd demix --fs 7 --export suite2p`` with the defaults, each command in
a fresh process (CPU time and peak RSS measured), and every ROI of the exported ``stat.npy`` (its ``ypix``/``xpix``)
is scored against the labels as issue 14's evaluation does (IoU >= 0.3, Hungarian; ``pmd evaluate``'s reader of
suite2p folders): F1, precision, recall, recall of the visibly active labels, mean IoU of matched pairs, and per
detection source (an active component, or a mean-image component: ``seeded_from_mean``), and how many false
detections lie farther than two median label diameters from every label (``far``: where the labellers marked
nothing, so label sparsity rather than our error).

With ``--baseline TREE`` another checkout runs the same crops side by side (its own stores and results).  With
``--stores`` each crop is also compressed the four other ways of ``bench_demix_suite2p.py --stores`` (seeds 1 and
2, no temporal filter, ``--method svd``) and the five stores' means are printed: one store's F1 moves by about 0.02
with any change to it.  With ``--diagnose`` this tree's default stores are also demixed in-process with the stages
recorded; every unmatched detection is classified as ``bench_demix_falsepos.py`` does, every missed visibly active
label as ``bench_demix_misses.py`` does, and each detection and label is put in a mean-image brightness class (the
crop's vignetting: the smoothed raw mean image at its centroid over the crop's median).

With ``--suite2p-python PATH`` (the python of a venv with ``pip install torch==2.13.0 suite2p``) suite2p runs on
each crop too, as ``bench_demix_suite2p.py`` runs it (``run_suite2p``: ``default_settings()`` plus ``fs``, CPU, one
fresh process from registration to deconvolution; its CPU time, wall time and peak RSS), one crop at a time, and
is scored the same way twice: the ROIs its classifier accepts (``iscell.npy``) and every ROI of ``stat.npy``; the
spatial scale it chose (``spatscale_pix``) is recorded, and ``--suite2p-set KEY=VALUE`` changes a setting (e.g.
``detection.sparsery_settings.spatial_scale=2`` fixes it at 12 px).  The two tools are also matched to each other
(``agreement``): how many of pmd's labelled and false detections suite2p also found, and the reverse (a false
detection that an independent method also finds is more likely an unlabelled cell).  A missing python, or one
that cannot import suite2p, is said in one line and the pmd rows still run.  Results then go to
``benchmarks/results/demix_heldout_suite2p.json`` unless ``--out`` says otherwise.

The data are never written to git: the crops live in ``--work`` (default ``benchmarks/work/demix_heldout/``,
git-ignored).  Results: ``benchmarks/results/demix_heldout.json``.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIRROR = Path("/work/.mirror/neuhofmo+calcium-imaging-neuron-detection/repo")
FRAMES_COMMIT = "bc3757c"
LABELS_COMMIT = "1f86d92"
#: (rows, columns) of the field, 0-based, end-exclusive.
CROPS = {"dev": ((1, 232), (28, 308)), "low": ((232, 512), (16, 512)), "right": ((1, 232), (308, 512)),
         "full": ((0, 512), (0, 512))}
KEEP_INSIDE = 0.5  # neurofinder_dev's rule: a label is kept when at least half its pixels are inside


def _git(repo: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, check=True, **kwargs)


def read_field(repo: Path, frames_commit: str = FRAMES_COMMIT,
               labels_commit: str = LABELS_COMMIT) -> tuple[np.ndarray, list[dict]]:
    """The 600 frames (T, 512, 512) uint16 and the 330 labels of the full field, from the repository's history
    (frames ``images/*.tiff`` in name order, one ``git cat-file --batch`` for all of them)."""
    import tifffile

    listing = _git(repo, "ls-tree", frames_commit, "images/").stdout.decode().splitlines()
    blobs = sorted((line.split("\t")[1], line.split()[2]) for line in listing if line.endswith(".tiff"))
    batch = _git(repo, "cat-file", "--batch", input="\n".join(sha for _, sha in blobs).encode() + b"\n").stdout
    frames, pos = [], 0
    for _ in blobs:
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        frames.append(tifffile.imread(io.BytesIO(batch[header_end + 1 : header_end + 1 + size])))
        pos = header_end + 1 + size + 1
    labels = json.loads(_git(repo, "show", f"{labels_commit}:regions/regions.json").stdout)
    return np.stack(frames), labels


def crop_labels(labels: list[dict], rows: tuple[int, int], cols: tuple[int, int]) -> list[dict]:
    """neurofinder_dev's rule: labels with >= half their pixels inside, clipped, ids 1..K, ``source_id`` kept."""
    out = []
    for lab in labels:
        c = np.asarray(lab["coordinates"], np.int64).reshape(-1, 2)
        inside = (c[:, 0] >= rows[0]) & (c[:, 0] < rows[1]) & (c[:, 1] >= cols[0]) & (c[:, 1] < cols[1])
        if c.size and inside.mean() >= KEEP_INSIDE:
            kept = c[inside] - [rows[0], cols[0]]
            out.append({"id": len(out) + 1, "source_id": lab["id"], "coordinates": kept.tolist()})
    return out


def visible_z(movie: np.ndarray, regions_path: Path) -> np.ndarray:
    """Per label: peak of (mean trace - 0.7 x ring trace), 3-frame smoothed, in robust SDs above its median; the
    ring is 3-8 px out (dilations 2 and 8) and avoids every label (``bench_demix_diagnose.visible_activity``)."""
    from bench_demix_diagnose import visible_activity

    from pmdcompress.demix.matching import load_regions

    masks = load_regions(regions_path, dims=movie.shape[1:]).masks.tocsc()
    avoid = np.asarray(masks.sum(axis=1)).ravel() > 0
    return visible_activity(movie.astype(np.float32), masks, avoid)


def prepare(repo: Path, work: Path, names: list[str], dev_folder: Path) -> dict:
    """Cut the crops into ``work/NAME/`` (movie.tif, regions.json, active.json) unless there; check dev."""
    import tifffile

    work.mkdir(parents=True, exist_ok=True)
    needed = ["dev", *[n for n in names if n != "dev"]]  # dev calibrates the activity threshold
    info = {}
    if not all((work / n / "active.json").exists() for n in needed):
        field, labels = read_field(repo)
        movies = {}
        for name in needed:
            (r0, r1), (c0, c1) = CROPS[name]
            folder = work / name
            folder.mkdir(exist_ok=True)
            movies[name] = np.ascontiguousarray(field[:, r0:r1, c0:c1])
            tifffile.imwrite(folder / "movie.tif", movies[name])
            (folder / "regions.json").write_text(json.dumps(crop_labels(labels, (r0, r1), (c0, c1))))
        del field
        dev_movie = tifffile.imread(dev_folder / "movie.tif")
        same_movie = bool(np.array_equal(movies["dev"], dev_movie))
        same_labels = (json.loads((work / "dev" / "regions.json").read_text())
                       == json.loads((dev_folder / "regions.json").read_text()))
        if not (same_movie and same_labels):
            raise SystemExit(f"{repo}: the dev crop differs from {dev_folder} (movie equal: {same_movie}, labels "
                             f"equal: {same_labels}); not the recording this benchmark expects")
        official = json.loads((dev_folder / "active_cells.json").read_text())["active"]
        z = {name: visible_z(movies[name], work / name / "regions.json") for name in needed}
        threshold = float(np.sort(z["dev"])[::-1][len(official) - 1])
        for name in needed:
            active = sorted(official) if name == "dev" else np.flatnonzero(z[name] >= threshold).tolist()
            (work / name / "active.json").write_text(json.dumps({
                "threshold": threshold, "calibrated_on": "dev", "active": active, "z": z[name].round(3).tolist(),
                "rule_on_dev": np.flatnonzero(z["dev"] >= threshold).tolist() if name == "dev" else None}))
    for name in needed:
        a = json.loads((work / name / "active.json").read_text())
        n_labels = len(json.loads((work / name / "regions.json").read_text()))
        info[name] = {"rows": list(CROPS[name][0]), "cols": list(CROPS[name][1]), "n_labels": n_labels,
                      "n_active": len(a["active"]), "active_threshold_z": a["threshold"]}
        if name == "dev":
            info[name]["rule_agrees_with_active_cells_json"] = len(set(a["rule_on_dev"]) & set(a["active"]))
    return info


def run_tree(tree: Path, folder: Path, out: Path, fs: float, reuse: bool, compress_args=(), name=None) -> dict:
    """``pmd compress`` + ``pmd demix --fs FS --export suite2p`` of ``folder/movie.tif`` with ``tree``'s code."""
    sys.path.insert(0, str(HERE))
    from bench_demix_suite2p import measured

    out.mkdir(parents=True, exist_ok=True)
    name = name or folder.name
    store, result = out / f"{name}.pmd.zarr", out / f"{name}.demix.zarr"
    pmd = [sys.executable, str(tree / "bin" / "pmd")]
    if reuse and store.exists():
        comp = {"reused": True, "cpu_s": float("nan"), "peak_rss_bytes": 0}
    else:
        comp = measured([*pmd, "compress", str(folder / "movie.tif"), "-o", str(store), "--overwrite",
                         *compress_args])
    dem = measured([*pmd, "demix", str(store), "-o", str(result), "--fs", str(fs), "--export", "suite2p",
                    "--no-figures", "--overwrite"])
    return {"store": str(store), "result": str(result), "suite2p": str(out / f"{name}.demix.suite2p"),
            "compress_cpu_s": comp["cpu_s"], "demix_cpu_s": dem["cpu_s"],
            "compress_peak_rss_mb": comp["peak_rss_bytes"] / 2**20, "demix_peak_rss_mb": dem["peak_rss_bytes"] / 2**20}


def score(run: dict, folder: Path) -> dict:
    """pmd's exported stat.npy against the crop's labels: ``score_regions`` and the split by detection source."""
    from pmdcompress.demix.result import read_result

    out, matched_pred = score_regions(Path(run["suite2p"]), folder)
    fixed = np.asarray(read_result(run["result"]).metrics["seeded_from_mean"], bool)
    for name, sel in (("active_components", ~fixed), ("mean_image", fixed)):
        idx = np.flatnonzero(sel)
        out[name] = {"n": int(idx.size), "matched": int(sum(j in matched_pred for j in idx))}
    return out


def score_regions(pred_source: Path, folder: Path) -> tuple[dict, set]:
    """Any tool's ROIs (a suite2p folder, or whatever ``pmd evaluate`` reads) against the crop's labels: totals,
    visibly active recall, false detections far from every label; and the indices of the matched ROIs."""
    from pmdcompress.demix.matching import evaluate_regions, load_regions

    pred = load_regions(pred_source)  # a suite2p folder's ops.npy gives the image size
    true = load_regions(folder / "regions.json", dims=pred.dims)
    s = evaluate_regions(pred, true)
    active = json.loads((folder / "active.json").read_text())["active"]
    matched_pred = {p["pred"] for p in s["pairs"]}
    matched_true = {p["true"] for p in s["pairs"]}
    out = {k: s[k] for k in ("n_true", "n_pred", "tp", "f1", "precision", "recall", "mean_iou")}
    out["n_active"] = len(active)
    out["active_found"] = len(set(active) & matched_true)
    out["recall_active"] = out["active_found"] / max(len(active), 1)
    # Label sparsity: an unmatched detection farther than two median label diameters from every label lies where
    # the labellers marked nothing at all (a vignetted corner, an unlabelled patch), not beside a labelled cell.
    far = unlabelled_area(true.masks.tocsc(), true.dims)
    cy, cx = centroids(pred.masks.tocsc(), true.dims)
    unmatched = np.setdiff1d(np.arange(pred.n), list(matched_pred))
    out["false_far_from_labels"] = int(sum(far[int(round(cy[j])), int(round(cx[j]))] for j in unmatched
                                           if np.isfinite(cy[j])))
    return out, matched_pred


def centroids(masks, dims) -> tuple[np.ndarray, np.ndarray]:
    """Row and column centroid of each mask column (NaN for an empty one)."""
    n = masks.shape[1]
    cy, cx = np.full(n, np.nan), np.full(n, np.nan)
    for j in range(n):
        y, x = np.divmod(masks.indices[masks.indptr[j] : masks.indptr[j + 1]], dims[1])
        if y.size:
            cy[j], cx[j] = y.mean(), x.mean()
    return cy, cx


def unlabelled_area(labels, dims) -> np.ndarray:
    """Pixels farther than two median label diameters (equivalent discs) from every label's pixels."""
    from scipy import ndimage

    area = np.diff(labels.indptr)
    if not area.size:
        return np.ones(dims, bool)
    diameter = 2 * np.sqrt(np.median(area) / np.pi)
    covered = (np.asarray(labels.sum(axis=1)).ravel() > 0).reshape(dims)
    return ndimage.distance_transform_edt(~covered) > 2 * diameter


def line(name: str, tree: str, s: dict, run: dict) -> str:
    """One table row; a tool without pmd's detection sources (suite2p) gets dashes there and its one process's
    CPU-s under "demix"."""
    sources = "  ".join(f"{s[k]['matched']:3d}/{s[k]['n']:<3d}" if k in s else "    -  "
                        for k in ("active_components", "mean_image"))
    return (f"{name:6s} {tree:9s} {s['f1']:.3f} {s['precision']:.3f} {s['recall']:.3f} "
            f"{s['active_found']:3d}/{s['n_active']:<3d} {s['mean_iou'] or 0:.3f} {s['tp']:4d}/{s['n_true']:<4d} "
            f"{s['n_pred'] - s['tp']:5d} {s['false_far_from_labels']:4d}  {sources}      "
            f"{run.get('compress_cpu_s', float('nan')):6.1f} {run.get('demix_cpu_s', run.get('cpu_s')):6.1f}")


#: Imports suite2p (as a run would: its torch and cellpose must load) and prints its version.
SUITE2P_VERSION = "import importlib.metadata, suite2p; print(importlib.metadata.version('suite2p'))"


def suite2p_python(path: str | None) -> tuple[str | None, str | None]:
    """The python of suite2p's venv when it can import suite2p, else None and the one line that says why."""
    if not path:
        return None, None
    exe = Path(path)
    if not exe.is_file():
        return None, f"suite2p skipped: {path} does not exist (pass --suite2p-python of a venv with suite2p)"
    probe = subprocess.run([str(exe), "-c", SUITE2P_VERSION], capture_output=True, text=True)
    if probe.returncode:
        return None, f"suite2p skipped: {path} cannot import suite2p"
    return str(exe), None


def agreement(ours: Path, other: Path, folder: Path) -> dict:
    """How many of one tool's detections the other tool also found (IoU >= 0.3, Hungarian, between the two tools'
    ROIs), split by whether they match a label: a false detection that an independent method also finds is more
    likely an unlabelled cell than one that it does not."""
    from pmdcompress.demix.matching import evaluate_regions, load_regions

    _, matched_ours = score_regions(ours, folder)
    a, b = load_regions(ours), load_regions(other)
    both = {p["pred"] for p in evaluate_regions(a, b)["pairs"]}
    unmatched = set(range(a.n)) - matched_ours
    return {"labelled": {"n": len(matched_ours), "also_found": len(matched_ours & both)},
            "false": {"n": len(unmatched), "also_found": len(unmatched & both)}}


def parse_settings(items: list[str]) -> dict:
    """``KEY=VALUE`` strings (VALUE read as JSON when it parses, else kept as text) as a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--suite2p-set: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_suite2p_crop(python: str, folder: Path, out: Path, fs: float, settings: dict | None = None) -> dict:
    """suite2p (defaults plus ``fs`` and ``settings``, CPU, a fresh process: ``bench_demix_suite2p.run_suite2p``)
    on one crop, scored on its classifier's cells (``iscell.npy``) and on every ROI of ``stat.npy``; the spatial
    scale it used (``ops["spatscale_pix"]``, chosen from the movie at the default ``spatial_scale`` 0)."""
    sys.path.insert(0, str(HERE))
    from bench_demix_suite2p import all_rois_folder, run_suite2p

    from pmdcompress.io.safe_pickle import load_npy

    work = out / folder.name
    r = run_suite2p(folder / "movie.tif", fs, python, work=work, settings=settings)
    plane = Path(r["folder"])
    r["run"].pop("stderr_tail", None)
    version = subprocess.run([python, "-c", SUITE2P_VERSION], capture_output=True, text=True).stdout.strip()
    every = all_rois_folder(plane, work / "all_rois")
    ops = load_npy(plane / "ops.npy")
    stat = load_npy(plane / "stat.npy")
    return {"version": version, "settings": settings or {}, "folder": str(plane), **r["run"],
            "spatscale_pix": int(ops["spatscale_pix"]) if "spatscale_pix" in ops else None,
            "median_roi_pixels": float(np.median([len(s["ypix"]) for s in stat])) if len(stat) else None,
            "iscell": score_regions(plane, folder)[0],
            "all_rois_folder": str(every), "all_rois": score_regions(every, folder)[0]}


def brightness(movie: np.ndarray, sigma: float) -> np.ndarray:
    """The raw mean image smoothed at ``sigma`` over its median: the crop's vignetting and uneven staining."""
    from scipy import ndimage

    mean = movie.mean(axis=0)
    return ndimage.gaussian_filter(mean, sigma) / np.median(mean)


#: Brightness classes (smoothed mean image over the crop's median) for the diagnosis.
BRIGHT_EDGES = (0.0, 0.6, 0.8, 1.2, np.inf)


def diagnose(run: dict, folder: Path, fs: float) -> dict:
    """This tree's store demixed in-process: unmatched detections classified (``bench_demix_falsepos``), missed
    visibly active labels given a cause (``bench_demix_misses``), both by brightness class."""
    import tifffile
    from bench_demix_falsepos import classify
    from bench_demix_misses import miss_causes, run_store

    raw = tifffile.imread(folder / "movie.tif").astype(np.float32)
    active = json.loads((folder / "active.json").read_text())["active"]
    demixed = run_store(Path(run["store"]), folder / "regions.json", fs)
    soma_radius = float(demixed["nucleus_radius"] or 4.4)
    rows = classify(demixed, raw, active, soma_radius)
    misses = miss_causes(demixed, active)
    level = brightness(raw, 2.2 * soma_radius)
    true = demixed["true"].masks.tocsc()
    width = demixed["dims"][1]

    def bright_class(y, x):
        v = level[int(round(y)), int(round(x))]
        k = int(np.searchsorted(BRIGHT_EDGES, v, side="right")) - 1
        return f"{BRIGHT_EDGES[k]:.1f}-{BRIGHT_EDGES[k + 1]:.1f}"

    label_bright = []
    for t in range(true.shape[1]):
        y, x = np.divmod(true.indices[true.indptr[t] : true.indptr[t + 1]], width)
        label_bright.append(bright_class(y.mean(), x.mean()))
    matched_true = {p["true"] for p in demixed["pairs"]}
    for r in rows:
        r["brightness"] = bright_class(r["cy"], r["cx"])
    for m in misses:
        m["brightness"] = label_bright[m["label"]]
    by_bright = {}
    for b in sorted(set(label_bright) | {r["brightness"] for r in rows}):
        det = [r for r in rows if r["brightness"] == b]
        labs = [t for t in range(true.shape[1]) if label_bright[t] == b]
        lo, hi = (float(v) for v in b.split("-"))
        by_bright[b] = {"kpx": float(((level >= lo) & (level < hi)).sum() / 1000), "detections": len(det),
                        "matched": sum(r["matched_label"] is not None for r in det),
                        "discs": sum(r["source"] == "disc" for r in det),
                        "discs_matched": sum(r["source"] == "disc" and r["matched_label"] is not None for r in det),
                        "labels": len(labs), "labels_found": sum(t in matched_true for t in labs),
                        "active_labels": sum(t in set(active) for t in labs),
                        "active_found": sum(t in set(active) and t in matched_true for t in labs)}
    classes = collections.Counter((r["source"], r["class"]) for r in rows if r["matched_label"] is None)
    keep = ("index", "source", "class", "brightness", "matched_label", "best_label", "best_label_iou", "peak_z",
            "raw_mean_contrast", "raw_max_contrast", "raw_corr_inside", "mean_contrast", "snr", "r_value", "area",
            "cy", "cx", "edge_distance", "overlap_other")
    return {"soma_radius": soma_radius,
            "unmatched_by_source_and_class": {f"{a} | {b}": n for (a, b), n in sorted(classes.items())},
            "matched_by_source": dict(collections.Counter(r["source"] for r in rows if r["matched_label"] is not None)),
            "misses_by_cause": dict(collections.Counter(m["cause"] for m in misses).most_common()),
            "by_brightness": by_bright,
            "unmatched": [{k: (round(r[k], 3) if isinstance(r.get(k), float) else r.get(k)) for k in keep}
                          for r in rows if r["matched_label"] is None],
            "misses": misses}


def main() -> None:
    sys.path.insert(0, str(HERE))
    from bench_demix_suite2p import _shared

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(MIRROR), help="git directory of a clone of "
                        "neuhofmo/calcium-imaging-neuron-detection (a bare mirror or a clone's .git)")
    parser.add_argument("--work", default=str(HERE / "work" / "demix_heldout"))
    parser.add_argument("--crops", default="dev,low,right")
    parser.add_argument("--fs", type=float, default=7.0)
    parser.add_argument("--baseline", default=None, metavar="TREE", help="another checkout run side by side")
    parser.add_argument("--reuse-stores", action="store_true",
                        help="demix the stores an earlier run left in --work instead of compressing again")
    parser.add_argument("--stores", action="store_true",
                        help="also the other four stores of bench_demix_suite2p.py --stores (seed 1, seed 2, no "
                             "temporal filter, svd) per crop and their five-store means: one store moves +-0.02")
    parser.add_argument("--diagnose", action="store_true",
                        help="classify this tree's unmatched detections and missed active labels")
    parser.add_argument("--suite2p-python", default=None, metavar="PATH",
                        help="python of a venv with suite2p (pip install torch==2.13.0 suite2p): also run suite2p "
                             "with its defaults plus --fs on each crop and score it the same way")
    parser.add_argument("--suite2p-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a suite2p setting to change from its default (dotted, VALUE as JSON), e.g. "
                             "detection.sparsery_settings.spatial_scale=2; repeatable")
    parser.add_argument("--out", default=None, help="default benchmarks/results/demix_heldout.json, or "
                        "demix_heldout_suite2p.json with --suite2p-python")
    args = parser.parse_args()
    s2p_settings = parse_settings(args.suite2p_set)
    s2p_python, s2p_skipped = suite2p_python(args.suite2p_python)
    if s2p_skipped:
        print(s2p_skipped)
    if args.out is None:
        args.out = str(HERE / "results" / ("demix_heldout_suite2p.json" if args.suite2p_python
                                           else "demix_heldout.json"))
    repo = Path(args.repo)
    if not (repo / "objects").is_dir() and (repo / ".git").is_dir():
        repo = repo / ".git"
    try:
        _git(repo, "cat-file", "-e", f"{FRAMES_COMMIT}^{{commit}}")
    except (subprocess.CalledProcessError, FileNotFoundError):
        print(f"skipped: {repo} is not a clone of neuhofmo/calcium-imaging-neuron-detection with commit "
              f"{FRAMES_COMMIT} (pass --repo)")
        return
    names = args.crops.split(",")
    unknown = set(names) - set(CROPS)
    if unknown:
        raise SystemExit(f"--crops: unknown crop(s) {', '.join(sorted(unknown))}; known: {', '.join(CROPS)}")
    work = Path(args.work)
    info = prepare(repo, work, names, _shared() / "neurofinder_dev")
    trees = {"this": ROOT} | ({"baseline": Path(args.baseline).resolve()} if args.baseline else {})
    results = {"fs": args.fs, "crops": {n: info[n] for n in names}, "trees": {k: str(v) for k, v in trees.items()},
               "runs": {}}
    print("crop   tree      F1    P     R     active  IoU   found     false  far  active-comp mean-image  "
          "compress demix CPU-s   (far: false detections > 2 label diameters from every label)")
    for name in names:
        for tree_name, tree in trees.items():
            run = run_tree(tree, work / name, work / tree_name, args.fs, args.reuse_stores)
            run["scores"] = score(run, work / name)
            results["runs"].setdefault(name, {})[tree_name] = run
            print(line(name, tree_name, run["scores"], run), flush=True)
        if s2p_python:
            s2p = run_suite2p_crop(s2p_python, work / name, work / "suite2p", args.fs, s2p_settings)
            for key, plane in (("iscell", Path(s2p["folder"])), ("all_rois", Path(s2p["all_rois_folder"]))):
                s2p[f"pmd_found_by_suite2p_{key}"] = agreement(Path(results["runs"][name]["this"]["suite2p"]), plane,
                                                               work / name)
                s2p[f"suite2p_{key}_found_by_pmd"] = agreement(plane, Path(results["runs"][name]["this"]["suite2p"]),
                                                               work / name)
            results.setdefault("suite2p", {})[name] = s2p
            for label, key in (("s2p cell", "iscell"), ("s2p all", "all_rois")):
                print(line(name, label, s2p[key], s2p), flush=True)
            print(f"{name:6s} suite2p {s2p['version']}: {s2p['cpu_s']:.1f} CPU-s, {s2p['wall_s']:.0f} s wall, peak "
                  f"RSS {s2p['peak_rss_bytes'] / 2**20:.0f} MiB (one process: registration to deconvolution); "
                  f"spatial scale {s2p['spatscale_pix']} px, median ROI {s2p['median_roi_pixels']} px",
                  flush=True)
            for key in ("iscell", "all_rois"):
                g, h = s2p[f"pmd_found_by_suite2p_{key}"], s2p[f"suite2p_{key}_found_by_pmd"]
                print(f"{name:6s} also found by the other tool (suite2p {key}): pmd's labelled "
                      f"{g['labelled']['also_found']}/{g['labelled']['n']}, pmd's false {g['false']['also_found']}/"
                      f"{g['false']['n']}; suite2p's labelled {h['labelled']['also_found']}/{h['labelled']['n']}, "
                      f"suite2p's false {h['false']['also_found']}/{h['false']['n']}", flush=True)
    if args.stores:
        from bench_demix_suite2p import STORES

        keys = ("f1", "precision", "recall", "recall_active", "mean_iou", "n_pred", "false_far_from_labels")
        results["stores"] = {"args": {k: list(v) for k, v in STORES.items()}}
        print("\nfive stores (default, seed1, seed2, no_temporal_filter, svd): F1 per store, and the means")
        for name in names:
            for tree_name, tree in trees.items():
                scores = {"default": results["runs"][name][tree_name]["scores"]}
                for store, compress_args in STORES.items():
                    if store != "default":
                        run = run_tree(tree, work / name, work / tree_name, args.fs, args.reuse_stores,
                                       compress_args, name=f"{name}_{store}")
                        scores[store] = score(run, work / name)
                mean = {k: float(np.mean([s[k] for s in scores.values()])) for k in keys}
                results["stores"].setdefault(name, {})[tree_name] = {"scores": scores, "mean": mean}
                print(f"{name:6s} {tree_name:9s} " + " ".join(f"{s['f1']:.3f}" for s in scores.values())
                      + f"  mean F1 {mean['f1']:.3f} P {mean['precision']:.3f} R {mean['recall']:.3f} "
                        f"active {mean['recall_active']:.3f} IoU {mean['mean_iou']:.3f}", flush=True)
    if args.diagnose:
        results["diagnosis"] = {}
        for name in names:
            d = diagnose(results["runs"][name]["this"], work / name, args.fs)
            results["diagnosis"][name] = d
            print(f"\n{name}: unmatched detections by source | class")
            for k, n in d["unmatched_by_source_and_class"].items():
                print(f"  {n:4d}  {k}")
            print(f"{name}: missed visibly active labels by cause")
            for k, n in d["misses_by_cause"].items():
                print(f"  {n:4d}  {k}")
            print(f"{name}: by brightness (smoothed mean image / crop median): area kpx, detections matched (discs "
                  "matched), labels found, active found; detections and labels per kpx")
            for b, v in d["by_brightness"].items():
                kpx = max(v["kpx"], 1e-9)
                print(f"  {b:8s} {v['kpx']:5.1f}  {v['matched']:3d}/{v['detections']:<3d} ({v['discs_matched']}/"
                      f"{v['discs']})  {v['labels_found']:3d}/{v['labels']:<3d} {v['active_found']:3d}/"
                      f"{v['active_labels']:<3d}  {v['detections'] / kpx:.2f} {v['labels'] / kpx:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
