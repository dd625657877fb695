"""CPU time of ``pmd compress`` in two source trees, interleaved, and whether their stores are bit-identical.

For a change that must not move a bit (a faster statistics pass, a cheaper neighbour correlation): each movie is
compressed by the baseline tree and by this one in turn (base, this, base, this, ...; the machine's load drifts),
with ``PMD_NUM_WORKERS=1``, and each run's CPU time (user + system of the child, imports and numba cache loads
included) is recorded.  Then every array of the two stores is compared with ``np.array_equal``.  Usage (from this
tree's root)::

    PMD_NUM_WORKERS=1 python benchmarks/bench_identical_speed.py --baseline /work/wt/base --pairs 3

Prints one line per movie (median CPU-s each, MB per CPU-s, the arrays that differ) and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def compress_cpu(tree: Path, movie: Path, out: Path) -> float:
    """CPU-s (user + system) of one ``pmd -q compress`` run with TREE's package."""
    env = dict(os.environ, PYTHONPATH=str(tree), PMD_NUM_WORKERS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, str(tree / "bin" / "pmd"), "-q", "compress", str(movie), "-o", str(out),
                    "--overwrite"], env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def differing_arrays(a: Path, b: Path) -> list[str]:
    """Names of the arrays of store A that store B lacks or holds with other values."""
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    arrays_b = dict(gb.arrays())
    out = []
    for name, arr in ga.arrays():
        other = arrays_b.pop(name, None)
        if other is None or not np.array_equal(arr[...], other[...], equal_nan=arr.dtype.kind in "fc"):
            out.append(name)
    return out + sorted(arrays_b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="root of the baseline source tree")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved (baseline, this) runs per movie")
    ap.add_argument("--movies", default="neurofinder_dev,optinist_mouse2p,inscopix_1p_part2,sima_ca1_example")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=HERE / "work" / "identical_speed")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "identical_speed.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {"baseline": args.baseline.resolve(), "this": ROOT}
    results = {}
    print(f"{'movie':22s} {'base CPU-s':>10s} {'this CPU-s':>10s} {'base MB/s':>9s} {'this MB/s':>9s}  differ")
    for name in args.movies.split(","):
        movie = args.data / name / "movie.tif"
        cpu = {tree: [] for tree in trees}
        for _ in range(max(args.pairs, 1)):
            for tree, root in trees.items():
                cpu[tree].append(compress_cpu(root, movie, args.work / f"{name}.{tree}.pmd.zarr"))
        differ = differing_arrays(args.work / f"{name}.baseline.pmd.zarr", args.work / f"{name}.this.pmd.zarr")
        mb = movie.stat().st_size / 1e6
        med = {tree: float(np.median(v)) for tree, v in cpu.items()}
        results[name] = {"movie_mb": mb, "cpu_s": cpu, "median_cpu_s": med,
                         "mb_per_cpu_s": {tree: mb / v for tree, v in med.items()}, "differing_arrays": differ}
        print(f"{name:22s} {med['baseline']:10.2f} {med['this']:10.2f} {mb / med['baseline']:9.2f} "
              f"{mb / med['this']:9.2f}  {','.join(differ) or 'none'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"baseline": str(trees["baseline"]), "pairs": args.pairs,
                                    "load_before": os.getloadavg(), "movies": results}, indent=1))


if __name__ == "__main__":
    main()
