"""Benchmark: pmd (compress + demix) against suite2p on a labelled real movie (neurofinder_dev).

    python benchmarks/bench_demix_suite2p.py [--suite2p-python /work/peers/suite2p-venv/bin/python]
        [--movie ../shared/data/neurofinder_dev] [--fs 7] [--skip suite2p|pmd] [--stores] [--bin 2] [--zoom 1.5]
        [--border 16] [--reuse-stores] [--out benchmarks/results/demix_suite2p.json]

Both tools run with their defaults plus the frame rate, each in a fresh process
(wall time, CPU time of the process and its children, peak RSS = ru_maxrss):

- pmd: ``pmd compress movie.tif`` then ``pmd demix --fs 7 --export suite2p``;
  the exported ``stat.npy`` (``ypix``/``xpix``) is what is scored, as an outside
  evaluation would score it.
- suite2p 1.1.0 (its own venv: ``pip install torch==2.13.0 suite2p``; run on the CPU.  Where a CPU-only torch
  wheel is found first, cellpose 4.2's torchvision 0.28 from PyPI cannot load (``libc10_cuda.so``), so suite2p
  does not import: install PyPI's own torch 2.13.0 wheel, which runs on a machine without a GPU):
  ``run_s2p`` with ``default_settings()`` and ``fs``, ``torch_device="cpu"``;
  registration, detection, extraction, classification and deconvolution all run.
  Scored twice: every ROI of ``stat.npy``, and those its classifier accepts (``iscell.npy``).

Scores (``pmd evaluate``'s readers and matching: IoU >= 0.3, Hungarian):
F1, precision, recall, recall of the visibly active labelled cells
(``active_cells.json``), mean IoU of matched pairs; on the whole field and on
its left half (columns < width/2, where pmd's defaults were developed) and
right half (held out), each ROI assigned to the half of its centroid.

With ``--bin N``, pmd runs on the movie binned N x N in space (a real movie at 1/N of the zoom: somata of
1/N the radius, more photons per pixel), scored against the labels binned the same way (a label keeps a
binned pixel when it covers at least half of it); results under ``pmd_binned``.  Every threshold of
demixing must hold at any zoom, so a change is judged there too.

With ``--border W``, pmd runs on the movie with W dark columns added at its left (the full Neurofinder frames
have a dark band of 16 on one side; the crop here is clear of it), labels moved alike; results under
``pmd_bordered``.

Every part's scores also hold ``vs_active_labels``: F1, precision and recall against the visibly active labels
only (``active_cells.json``), as if the labels marked only cells that fire, a style other labelled movies may
have; every silent-soma detection then counts false.

With ``--zoom F`` (F > 1), pmd runs on a zoomed-in movie: the default store's denoised movie upsampled F
times in space (cubic) plus independent Gaussian noise of the raw movie's per-pixel level (the SD of raw
minus denoised; upsampling the raw movie would correlate neighbouring pixels' noise, which a microscope's
zoom does not), against the labels upsampled alike; results under ``pmd_zoomed``.

With ``--stores``, pmd also runs on five stores of the same movie (default,
``--seed 1``, ``--seed 2``, ``--no-temporal-filter``, ``--method svd``) and the JSON gets their scores and means
(``pmd_stores``): one store's score moves by a few hundredths with small changes
to the store, so changes to demixing are judged by those means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "demix_suite2p"


def _shared() -> Path:
    rel = ROOT.parent / "shared" / "data"
    return rel if rel.is_dir() else Path("/work/shared/data")


MEASURE = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "peak_rss_bytes": ru.ru_maxrss * 1024, "stderr_tail": proc.stderr[-2000:]}))
"""

SUITE2P = r"""
import json, sys
from suite2p import run_s2p
from suite2p.parameters import default_db, default_settings
settings = default_settings()
settings["fs"] = float(sys.argv[3])
settings["torch_device"] = "cpu"
for key, value in json.loads(sys.argv[4] if len(sys.argv) > 4 else "{}").items():  # "detection.x.y": value
    *path, last = key.split(".")
    node = settings
    for part in path:
        node = node[part]
    if last not in node:
        raise SystemExit(f"suite2p has no setting {key}")
    node[last] = value
db = default_db()
db["data_path"] = [sys.argv[1]]
db["save_path0"] = sys.argv[2]
run_s2p(db=db, settings=settings)
"""


def measured(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh process; its wall time, CPU time and peak RSS."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["returncode"]:
        raise RuntimeError(f"{cmd[:3]} failed: {out['stderr_tail']}")
    return out


def halves_scores(pred_source, truth_json: Path, active: list[int]) -> dict:
    """Scores on the whole field, its left half (development) and right half (held out)."""
    from pmdcompress.demix.matching import evaluate_regions, load_regions

    pred = load_regions(pred_source)
    true = load_regions(truth_json, dims=pred.dims)
    if pred.dims is None:
        pred = load_regions(pred_source, dims=true.dims)
    width = true.dims[1]

    def centroid_x(masks):
        out = np.full(masks.shape[1], np.nan)
        for j in range(masks.shape[1]):
            pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
            if pix.size:
                out[j] = np.mean(pix % width)
        return out

    px, tx = centroid_x(pred.masks.tocsc()), centroid_x(true.masks.tocsc())
    active = np.asarray(active, np.int64)
    out = {}
    for name, p_keep, t_keep in (("whole", np.ones(px.size, bool), np.ones(tx.size, bool)),
                                 ("dev_left_half", px < width / 2, tx < width / 2),
                                 ("heldout_right_half", px >= width / 2, tx >= width / 2)):
        t_idx = np.flatnonzero(t_keep)
        sub_p = type(pred)(pred.masks.tocsc()[:, np.flatnonzero(p_keep)], pred.dims)
        sub_t = type(true)(true.masks.tocsc()[:, t_idx], true.dims)
        s = evaluate_regions(sub_p, sub_t)
        matched_true = t_idx[[p["true"] for p in s["pairs"]]] if s["pairs"] else np.zeros(0, np.int64)
        act = active[np.isin(active, t_idx)]
        out[name] = {k: s[k] for k in ("n_true", "n_pred", "tp", "precision", "recall", "f1", "mean_iou")}
        out[name]["n_active"] = int(act.size)
        out[name]["recall_active"] = float(np.isin(act, matched_true).mean()) if act.size else None
        # Scored as if the labels marked only the cells that fire (a label style some datasets use): every
        # silent-soma detection then counts false.
        s_act = evaluate_regions(sub_p, type(true)(true.masks.tocsc()[:, act], true.dims))
        out[name]["vs_active_labels"] = {k: s_act[k] for k in ("f1", "precision", "recall")}
    return out


# --reuse-stores: demix the stores an earlier run left in WORK instead of compressing again (a change to demixing
# judged on identical stores; compression's time is then not measured: NaN).
REUSE_STORES = False


def run_pmd(movie: Path, fs: float, compress_args=(), name="movie") -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    store = WORK / f"{name}.pmd.zarr"
    out = WORK / f"{name}.demix.zarr"
    pmd = [sys.executable, str(ROOT / "bin" / "pmd")]
    if REUSE_STORES and store.exists():
        comp = {"returncode": 0, "reused": True, "wall_s": float("nan"), "cpu_s": float("nan"), "peak_rss_bytes": 0}
    else:
        comp = measured([*pmd, "compress", str(movie), "-o", str(store), "--overwrite", *compress_args])
    dem = measured([*pmd, "demix", str(store), "-o", str(out), "--fs", str(fs), "--export", "suite2p",
                    "--no-figures", "--overwrite"])
    return {"compress": comp, "demix": dem, "suite2p_folder": str(WORK / f"{name}.demix.suite2p")}


# The score moves by a few hundredths with small changes to the store (another seed of the random draws, the
# temporal filter off): judge demixing by the mean over such stores and over both halves, never one number.
STORES = {"default": (), "seed1": ("--seed", "1"), "seed2": ("--seed", "2"),
          "no_temporal_filter": ("--no-temporal-filter",), "svd": ("--method", "svd")}
PARTS = ("whole", "dev_left_half", "heldout_right_half")
KEYS = ("f1", "precision", "recall", "recall_active", "mean_iou", "n_pred")


def run_stores(movie: Path, fs: float, truth: Path, active: list[int]) -> dict:
    """pmd on each store of :data:`STORES`; per-store scores and their means (per part, and over the halves)."""
    runs = {}
    for name, args in STORES.items():
        r = run_pmd(movie, fs, args, name=f"store_{name}")
        r["scores"] = halves_scores(Path(r["suite2p_folder"]), truth, active)
        r["demix_over_compress_cpu"] = r["demix"]["cpu_s"] / r["compress"]["cpu_s"]
        runs[name] = r
    mean = {part: {k: float(np.mean([r["scores"][part][k] or 0.0 for r in runs.values()])) for k in KEYS}
            for part in PARTS}
    mean["halves"] = {k: float(np.mean([mean[p][k] for p in PARTS[1:]])) for k in KEYS}
    ratio = float(np.mean([r["demix_over_compress_cpu"] for r in runs.values()]))
    return {"stores": {k: list(v) for k, v in STORES.items()}, "runs": runs, "mean": mean,
            "demix_over_compress_cpu_mean": ratio}


def binned_movie(folder: Path, factor: int) -> Path:
    """The movie and its labels binned ``factor`` x ``factor`` in space, in ``WORK/binN/`` (made once)."""
    import tifffile

    out = WORK / f"bin{factor}"
    if (out / "regions.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    movie = tifffile.imread(folder / "movie.tif").astype(np.float32)
    t_len, height, width = movie.shape
    h, w = height // factor * factor, width // factor * factor

    def binned(a):
        return a[..., :h, :w].reshape(*a.shape[:-2], h // factor, factor, w // factor, factor).mean(axis=(-3, -1))

    tifffile.imwrite(out / "movie.tif", np.clip(np.round(binned(movie)), 0, 65535).astype(np.uint16))
    regions = []
    for k, region in enumerate(json.loads((folder / "regions.json").read_text())):
        mask = np.zeros((height, width), np.float32)
        rows, cols = np.asarray(region["coordinates"]).T
        mask[rows, cols] = 1.0
        regions.append({"id": k + 1, "coordinates": np.argwhere(binned(mask) >= 0.5).tolist()})
    (out / "regions.json").write_text(json.dumps(regions))
    return out


def run_binned(folder: Path, fs: float, factor: int, active: list[int]) -> dict:
    """pmd (default store) on the movie binned ``factor`` x ``factor``, scored against the binned labels."""
    binned = binned_movie(folder, factor)
    r = run_pmd(binned / "movie.tif", fs, name=f"bin{factor}")
    r["scores"] = halves_scores(Path(r["suite2p_folder"]), binned / "regions.json", active)
    r["factor"] = factor
    return r


def bordered_movie(folder: Path, width: int) -> Path:
    """The movie with ``width`` dark columns added at its left and its labels moved alike, in ``WORK/borderW/``
    (made once, seeded noise): the dark band of a scanner's flyback that the full Neurofinder frames have (16
    columns; neurofinder_dev is cropped clear of it), near 0 as in their offset-subtracted data."""
    import tifffile

    out = WORK / f"border{width}"
    if (out / "regions.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    movie = tifffile.imread(folder / "movie.tif")
    rng = np.random.default_rng(0)
    band = np.clip(np.round(rng.normal(3.0, 6.0, (*movie.shape[:2], width))), 0, None).astype(movie.dtype)
    tifffile.imwrite(out / "movie.tif", np.concatenate([band, movie], axis=2))
    regions = json.loads((folder / "regions.json").read_text())
    for region in regions:
        region["coordinates"] = [[row, col + width] for row, col in region["coordinates"]]
    (out / "regions.json").write_text(json.dumps(regions))
    return out


def run_bordered(folder: Path, fs: float, width: int, active: list[int]) -> dict:
    """pmd (default store) on the movie with a dark band of ``width`` columns at its left (:func:`bordered_movie`),
    scored against its labels (the halves split at the middle of the wider frame)."""
    bordered = bordered_movie(folder, width)
    r = run_pmd(bordered / "movie.tif", fs, name=bordered.name)
    r["scores"] = halves_scores(Path(r["suite2p_folder"]), bordered / "regions.json", active)
    r["width"] = width
    return r


def zoomed_movie(folder: Path, factor: float, store: Path, *, photons: bool = False) -> Path:
    """A ``factor`` x zoom-in of the movie and its labels, in ``WORK/zoomF/`` (made once, seeded noise).

    With ``photons``, in ``WORK/zoomF_photons/``: the noise added is ``factor`` times the raw movie's per-pixel SD,
    as a microscope's zoom at the same frame rate spreads each cell's photons over ``factor``^2 as many pixels
    (shot noise: each pixel's SNR falls by ``factor``, a whole cell's stays).  Without it each cell's SNR grows
    ``factor``-fold with its pixel count, and structures too weak to pass natively pass at the zoom."""
    import tifffile
    from scipy import ndimage

    import pmdcompress

    out = WORK / (f"zoom{factor:g}" + ("_photons" if photons else ""))
    if (out / "regions.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    raw = tifffile.imread(folder / "movie.tif").astype(np.float32)
    denoised = pmdcompress.open(store).read()
    noise_sd = (raw - denoised).std(axis=0)
    del raw
    rng = np.random.default_rng(0)
    frames = []
    noise = ndimage.zoom(noise_sd, factor, order=1) * (factor if photons else 1.0)
    for frame in denoised:
        up = ndimage.zoom(frame, factor, order=3)
        frames.append(np.clip(np.round(up + noise * rng.standard_normal(up.shape)), 0, 65535).astype(np.uint16))
    tifffile.imwrite(out / "movie.tif", np.stack(frames))
    height, width = denoised.shape[1:]
    regions = []
    for k, region in enumerate(json.loads((folder / "regions.json").read_text())):
        mask = np.zeros((height, width), np.float32)
        rows, cols = np.asarray(region["coordinates"]).T
        mask[rows, cols] = 1.0
        regions.append({"id": k + 1, "coordinates": np.argwhere(ndimage.zoom(mask, factor, order=1) >= 0.5).tolist()})
    (out / "regions.json").write_text(json.dumps(regions))
    return out


def run_zoomed(folder: Path, fs: float, factor: float, active: list[int], *, photons: bool = False) -> dict:
    """pmd (default store) on a ``factor`` x zoom-in of the movie (:func:`zoomed_movie`), scored against its labels."""
    store = WORK / "movie.pmd.zarr"
    if not store.exists():
        run_pmd(folder / "movie.tif", fs)
    zoomed = zoomed_movie(folder, factor, store, photons=photons)
    r = run_pmd(zoomed / "movie.tif", fs, name=zoomed.name)
    r["scores"] = halves_scores(Path(r["suite2p_folder"]), zoomed / "regions.json", active)
    r["factor"] = factor
    return r


def run_suite2p(movie: Path, fs: float, python: str, work: Path | None = None,
                settings: dict | None = None) -> dict:
    """suite2p's defaults plus ``fs`` (and ``settings``, dotted keys such as
    ``detection.sparsery_settings.spatial_scale``) on ``movie`` in a fresh process of ``python``; data and output
    under ``work`` (default this benchmark's work folder), both emptied first."""
    work = WORK if work is None else work
    data = work / "s2p_data"
    save = work / "s2p_out"
    for d in (data, save):
        if d.exists():
            subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir(parents=True)
    (data / movie.name).symlink_to(movie.resolve())
    run = measured([python, "-c", SUITE2P, str(data), str(save), str(fs), json.dumps(settings or {})])
    return {"run": run, "folder": str(save / "suite2p" / "plane0")}


def all_rois_folder(plane: Path, folder: Path) -> Path:
    """``folder`` with links to ``plane``'s stat.npy and ops.npy only: without its iscell.npy, ``pmd evaluate``'s
    suite2p reader takes every ROI rather than those suite2p's classifier accepts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("stat.npy", "ops.npy", "iscell.npy"):
        target = folder / name
        if target.exists() or target.is_symlink():
            target.unlink()
        if name != "iscell.npy":
            target.symlink_to((plane / name).resolve())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite2p-python", default="/work/peers/suite2p-venv/bin/python")
    parser.add_argument("--movie", default=str(_shared() / "neurofinder_dev"))
    parser.add_argument("--fs", type=float, default=7.0)
    parser.add_argument("--skip", choices=("suite2p", "pmd"), default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "demix_suite2p.json"))
    parser.add_argument("--stores", action="store_true",
                        help="Also score pmd on five stores (default, --seed 1 and 2, --no-temporal-filter, "
                             "--method svd) and their means.")
    parser.add_argument("--bin", type=int, default=None, metavar="N",
                        help="Also score pmd on the movie binned N x N in space (another zoom), labels binned alike.")
    parser.add_argument("--zoom", type=float, default=None, metavar="F",
                        help="Also score pmd on an F x zoom-in (denoised movie upsampled, fresh noise), labels alike.")
    parser.add_argument("--border", type=int, default=None, metavar="W",
                        help="Also score pmd on the movie with W dark columns added at its left (a scanner's dark "
                             "band, as the full Neurofinder frames have 16); results under pmd_bordered.")
    parser.add_argument("--zoom-photons", action="store_true",
                        help="With --zoom: also the zoom-in whose fresh noise is F x the raw per-pixel SD (the same "
                             "photons per cell over F^2 as many pixels); results under pmd_zoomed_photons.")
    parser.add_argument("--reuse-stores", action="store_true",
                        help="Demix the stores an earlier run left in benchmarks/work/demix_suite2p (compress only "
                             "those missing): a demixing change judged on identical stores.")
    args = parser.parse_args()
    global REUSE_STORES
    REUSE_STORES = args.reuse_stores
    folder = Path(args.movie)
    movie, truth = folder / "movie.tif", folder / "regions.json"
    active = json.loads((folder / "active_cells.json").read_text())["active"]
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
               "movie": str(movie), "fs": args.fs, "tools": previous.get("tools", {})}
    if args.skip != "pmd":
        r = run_pmd(movie, args.fs)
        r["scores"] = halves_scores(Path(r["suite2p_folder"]), truth, active)
        r["demix_over_compress_wall"] = r["demix"]["wall_s"] / r["compress"]["wall_s"]
        r["demix_over_compress_cpu"] = r["demix"]["cpu_s"] / r["compress"]["cpu_s"]
        results["tools"]["pmd"] = r
    if args.stores and args.skip != "pmd":
        results["pmd_stores"] = run_stores(movie, args.fs, truth, active)
    elif "pmd_stores" in previous:
        results["pmd_stores"] = previous["pmd_stores"]
    if args.bin and args.skip != "pmd":
        results["pmd_binned"] = run_binned(folder, args.fs, args.bin, active)
    elif "pmd_binned" in previous:
        results["pmd_binned"] = previous["pmd_binned"]
    if args.border and args.skip != "pmd":
        results["pmd_bordered"] = run_bordered(folder, args.fs, args.border, active)
    elif "pmd_bordered" in previous:
        results["pmd_bordered"] = previous["pmd_bordered"]
    if args.zoom and args.skip != "pmd":
        results["pmd_zoomed"] = run_zoomed(folder, args.fs, args.zoom, active)
    elif "pmd_zoomed" in previous:
        results["pmd_zoomed"] = previous["pmd_zoomed"]
    if args.zoom and args.zoom_photons and args.skip != "pmd":
        results["pmd_zoomed_photons"] = run_zoomed(folder, args.fs, args.zoom, active, photons=True)
    elif "pmd_zoomed_photons" in previous:
        results["pmd_zoomed_photons"] = previous["pmd_zoomed_photons"]
    if args.skip != "suite2p":
        r = run_suite2p(movie, args.fs, args.suite2p_python)
        plane = Path(r["folder"])
        r["scores_iscell"] = halves_scores(plane, truth, active)
        r["scores_all_rois"] = halves_scores(all_rois_folder(plane, WORK / "s2p_all"), truth, active)
        results["tools"]["suite2p"] = r
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    rows = []
    if "pmd" in results["tools"]:
        t = results["tools"]["pmd"]
        rows.append(("pmd (defaults, exported stat.npy)", t["scores"],
                     t["compress"]["wall_s"] + t["demix"]["wall_s"], t["compress"]["cpu_s"] + t["demix"]["cpu_s"],
                     max(t["compress"]["peak_rss_bytes"], t["demix"]["peak_rss_bytes"])))
    if "suite2p" in results["tools"]:
        t = results["tools"]["suite2p"]
        for label, key in (("suite2p 1.1.0 defaults, iscell", "scores_iscell"),
                           ("suite2p, all ROIs", "scores_all_rois")):
            rows.append((label, t[key], t["run"]["wall_s"], t["run"]["cpu_s"], t["run"]["peak_rss_bytes"]))
    for label, s, wall, cpu, rss in rows:
        for part in ("whole", "dev_left_half", "heldout_right_half"):
            p = s[part]
            print(f"{label:36s} {part:18s} F1 {p['f1']:.3f} P {p['precision']:.3f} R {p['recall']:.3f} "
                  f"active {p['recall_active']:.3f} IoU {p['mean_iou'] or 0:.3f} ({p['n_pred']} ROIs)")
        print(f"{label:36s} wall {wall:.1f} s, cpu {cpu:.1f} s, peak RSS {rss / 2**20:.0f} MiB")
    if "pmd_stores" in results:
        for part, p in results["pmd_stores"]["mean"].items():
            print(f"{'pmd, mean of ' + str(len(results['pmd_stores']['runs'])) + ' stores':36s} {part:18s} "
                  f"F1 {p['f1']:.3f} P {p['precision']:.3f} R {p['recall']:.3f} active {p['recall_active']:.3f} "
                  f"IoU {p['mean_iou']:.3f} ({p['n_pred']:.1f} ROIs)")
    for key, label in (("pmd_binned", "pmd, movie binned {f}x{f}"), ("pmd_zoomed", "pmd, movie zoomed {f}x"),
                       ("pmd_zoomed_photons", "pmd, zoomed {f}x, photons")):
        if key not in results:
            continue
        b = results[key]
        for part, p in b["scores"].items():
            print(f"{label.format(f=b['factor']):36s} {part:18s} F1 {p['f1']:.3f} "
                  f"P {p['precision']:.3f} R {p['recall']:.3f} active {p['recall_active'] or 0:.3f} "
                  f"IoU {p['mean_iou'] or 0:.3f} ({p['n_pred']} ROIs)")
    if "pmd" in results["tools"]:
        t = results["tools"]["pmd"]
        print(f"pmd demix / compress: wall {t['demix_over_compress_wall']:.2f}, cpu {t['demix_over_compress_cpu']:.2f}")


if __name__ == "__main__":
    main()
