"""``pmd demix`` at its defaults on motion-corrected movies whose shifted-in edges are filled with 0.

Per simulation seed and kind (``1p``: 600x64x64, 15 neurons; ``2p``: 600x64x64, 20 neurons), the movie's edges
are zeroed by per-frame shifts of 0-6 px a side (``bench_new_user._zero_edges``, the new-user sweep's case
``1p-zero-edges``), compressed at the defaults, and demixed with ``pmd demix --kind KIND`` by this tree and, with
``--base``, by another checkout side by side; the same movie compressed with ``--crop 6:58,6:58`` (clear of every
border) is the ceiling, and the movie without the zeroed edges the reference.  Cells found (IoU >= 0.3, Hungarian)
and F1 against the simulation's truth over the whole 64 x 64 field (a cropped result's masks placed back in it),
and the demix's CPU seconds (children's user + system, ``PMD_NUM_WORKERS=1``).  With ``--real``, the same for
``neurofinder_dev`` (its 115 labelled somata, ``regions.json``; ``--fs 7``): a real field 231 x 280 px, where a
6 px border holds few of the cells.

    PMD_NUM_WORKERS=1 python benchmarks/bench_demix_edges.py --base /work/wt/base [--real ../shared/data]

Writes ``benchmarks/results/demix_edges.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_new_user import _zero_edges  # noqa: E402

from pmdcompress.demix.matching import Regions, evaluate_regions, load_regions  # noqa: E402
from pmdcompress.simulate import simulate_movie  # noqa: E402

CROP = (6, 58, 6, 58)
NEURONS = {"1p": 15, "2p": 20}


def _pmd(tree: Path, *args) -> float:
    """Run ``pmd`` of ``tree``; its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(tree), "PMD_NUM_WORKERS": os.environ.get("PMD_NUM_WORKERS", "1")}
    subprocess.run([sys.executable, str(tree / "bin" / "pmd"), *map(str, args)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _score(result: Path, truth: Path, crop=None, dims=None) -> dict:
    true = load_regions(truth, dims=dims)
    pred = load_regions(result)
    if crop is not None:  # the cropped field's masks, placed back in the whole one
        y0, y1, x0, x1 = crop
        height, width = true.dims
        grid = np.arange(height * width).reshape(height, width)[y0:y1, x0:x1].ravel()
        m = pred.masks.tocoo()
        masks = sp.csc_matrix((m.data, (grid[m.row], m.col)), shape=(height * width, m.shape[1]))
        pred = Regions(masks, true.dims)
    out = evaluate_regions(pred, true)
    return {"found": int(out["tp"]), "false": int(out["fp"]), "n_true": int(out["n_true"]),
            "f1": round(float(out["f1"]), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--kinds", default="1p,2p")
    ap.add_argument("--base", type=Path, help="another checkout, demixed side by side")
    ap.add_argument("--real", type=Path, help="the folder of neurofinder_dev (../shared/data): score it too")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demix_edges.json")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="demix_edges_"))
    work.mkdir(parents=True, exist_ok=True)
    trees = {"this": ROOT, **({"base": args.base.resolve()} if args.base else {})}
    rows = []
    for kind in args.kinds.split(","):
        for seed in map(int, args.seeds.split(",")):
            stem = work / f"{kind}_s{seed}"
            clean = Path(f"{stem}.tif")
            truth = Path(f"{stem}.truth.zarr")
            if not clean.exists():
                simulate_movie(clean, n_frames=600, shape=(64, 64), kind=kind, seed=seed, n_neurons=NEURONS[kind])
            movie = tifffile.imread(clean)
            edged = Path(f"{stem}_zero_edges.tif")
            data = _zero_edges(movie.astype(np.float64), np.random.default_rng(seed + 1)).astype(movie.dtype)
            tifffile.imwrite(edged, data)
            y0, y1, x0, x1 = CROP
            stores = {"clean": (clean, ()), "zero_edges": (edged, ()),
                      "zero_edges_cropped": (edged, ("--crop", f"{y0}:{y1},{x0}:{x1}"))}
            for case, (src, extra) in stores.items():
                store = Path(f"{stem}.{case}.pmd.zarr")
                _pmd(ROOT, "compress", src, "-o", store, "--overwrite", *extra)
                for tree_name, tree in trees.items():
                    result = Path(f"{stem}.{case}.{tree_name}.demix.zarr")
                    cpu = _pmd(tree, "demix", store, "-o", result, "--kind", kind, "--overwrite")
                    row = {"kind": kind, "seed": seed, "case": case, "tree": tree_name, "demix_cpu_s": round(cpu, 2),
                           **_score(result, truth, CROP if case.endswith("cropped") else None)}
                    rows.append(row)
                    print(f"{kind} seed {seed} {case:20s} {tree_name:5s} found {row['found']:2d}/{row['n_true']} "
                          f"false {row['false']:2d} F1 {row['f1']:.3f}  demix {cpu:.1f} CPU-s", flush=True)
    if args.real:
        source = args.real / "neurofinder_dev"
        movie = tifffile.imread(source / "movie.tif")
        edged = work / "neurofinder_dev_zero_edges.tif"
        tifffile.imwrite(edged, _zero_edges(movie.astype(np.float64), np.random.default_rng(1)).astype(movie.dtype))
        height, width = movie.shape[1:]
        crop = (6, height - 6, 6, width - 6)
        stores = {"clean": (source / "movie.tif", ()), "zero_edges": (edged, ()),
                  "zero_edges_cropped": (edged, ("--crop", f"6:{height - 6},6:{width - 6}"))}
        for case, (src, extra) in stores.items():
            store = work / f"neurofinder_dev.{case}.pmd.zarr"
            _pmd(ROOT, "compress", src, "-o", store, "--overwrite", *extra)
            for tree_name, tree in trees.items():
                result = work / f"neurofinder_dev.{case}.{tree_name}.demix.zarr"
                cpu = _pmd(tree, "demix", store, "-o", result, "--fs", "7", "--overwrite")
                row = {"kind": "neurofinder_dev", "seed": None, "case": case, "tree": tree_name,
                       "demix_cpu_s": round(cpu, 2), **_score(result, source / "regions.json",
                                                              crop if case.endswith("cropped") else None,
                                                              dims=(height, width))}
                rows.append(row)
                print(f"neurofinder_dev {case:20s} {tree_name:5s} found {row['found']:3d}/{row['n_true']} "
                      f"false {row['false']:2d} F1 {row['f1']:.3f}  demix {cpu:.1f} CPU-s", flush=True)
    print("\nmean F1 (found/true summed over seeds)")
    for kind in args.kinds.split(","):
        for case in ("clean", "zero_edges", "zero_edges_cropped"):
            for tree_name in trees:
                sel = [r for r in rows if r["kind"] == kind and r["case"] == case and r["tree"] == tree_name]
                print(f"  {kind} {case:20s} {tree_name:5s} F1 {np.mean([r['f1'] for r in sel]):.3f} "
                      f"found {sum(r['found'] for r in sel)}/{sum(r['n_true'] for r in sel)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "trees": {k: str(v) for k, v in trees.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
