"""Benchmark: compression and decompression speed on real movies, per CPU-second, before vs after.

    python benchmarks/bench_speed.py [--baseline REV] [--repeats N] [--movies a,b] [--profile N] [--breakdown]
                                     [--stages N] [--solver] [--tv] [--warm-process]
                                     [--out benchmarks/results/speed.json]

For every movie (default: ../shared/data/neurofinder_dev and optinist_mouse2p) and every tree (this
checkout, and with ``--baseline`` the git revision REV checked out into a temporary worktree) it runs,
each in a fresh process with one worker thread and BLAS limited to one thread:

- compress (default method pmd) once to fill the numba and null caches (and the bytecode of the package and its
  dependencies, written to this run's temporary folder), then ``--repeats`` measured
  runs, interleaved between the trees: process CPU time of the ``compress`` call, its fit time, the
  total rank, and MB of input per CPU-second;
- decompress of this checkout's store (the same store for both trees): full frames to uint16 in
  blocks of 256 frames, CPU time best of 3, GB of output per CPU-second.

CPU time, not wall time, and trees side by side in one run: the machine is shared and noisy.
With ``--simulated`` it also simulates a movie with ground truth (``pmd simulate``, 1000x128x128,
80 neurons, seeds 0 and 1 of the compression) and reports, per tree, the total rank, the ranks per
patch and the RMS error of the decompressed movie against the clean truth: a speed-up must keep
what is kept (the spread between seeds is the yardstick).  With ``--yardstick`` it also compresses each real
movie with the baseline tree (or this one) at seed 1 and reports the ranks per patch of seed 0 against seed 1:
the method's own spread, against which a change's rank differences are read (the greedy rank test is chaotic:
a float32-rounding perturbation of the input already moves a few patches by 2-3).  With ``--profile N`` it also
profiles one compress of each movie with this checkout (cProfile with CPU time as its clock, in a fresh process with
the caches filled): CPU-s per pipeline stage, imports, numba cache loads, and the N functions of most self time.
With ``--solver`` it also times the per-patch solver alone, the load-independent part of the comparison: one
compress of each movie with this checkout records every patch's standardised fit data, null thresholds and
random state, then each tree fits those same patches (``PMDSolver.fit``, warm, interleaved, ``--repeats``
times) and the table gives its CPU-s, the total rank, the patches whose kept components are bit-identical to
this checkout's and the ranks per patch against it (a solver change that keeps the floats keeps every patch).
With ``--tv`` it times the 2-D TV spatial searches alone the same way: one compress with this checkout records
every ``tv2d_search`` call (image, budget, warm start), each tree replays them (warm, interleaved, ``--repeats``
times), and the table gives the CPU-s, the answers bit-identical to this checkout's, and their accuracy: the
distance of each answer to the exact solution at its own lam, over ``||y - mean(y)||`` (mean over every third
call, per kind of step), beside the mean residual / budget.  The compressed movie's error against simulated truth
follows that accuracy (session 11), so a faster 2-D TV must not be a less accurate one.
With ``--warm-process`` every measured compress is also run as the second compression of its process (the first,
untimed, to another store): the throughput without the ~1 CPU-s that every command pays once (the lazy imports of
numba, zarr and scipy, numba's cache loads), as every movie after the first of a ``pmd batch`` or a notebook runs.
With ``--breakdown`` it times one compress of each movie in place instead (each stage and solver function wrapped
in a CPU-time counter: cProfile's per-call cost inflates the Python between kernels 2-5x) and reports the rank
test's margins (statistic / threshold; a component is kept at <= 1) of every tested component.
With ``--stages N`` it times the stages outside the solver in place too, per tree (statistics, fit, neighbour
correlation, factors, re-fit, writing, opening the store, the fit buffer's reads and writes, the movie's reads, the
noise accumulator), each tree in N fresh processes interleaved with the other's, and gives the best and the median of
each: a change of 0.05 CPU-s in one stage is lost in the whole compression's spread under load, not in the stage's.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = next((p for p in (ROOT.parent / "shared" / "data", Path("/work/shared/data")) if p.exists()),
              ROOT.parent / "shared" / "data")

COMPRESS = r"""
import json, os, sys, time
import pmdcompress
seed = {"seed": int(sys.argv[4])} if len(sys.argv) > 4 else {}
if os.environ.get("PMD_BENCH_WARM_PROCESS"):
    # a first compression in this process (its own store, untimed) pays the imports and numba's cache loads, as
    # the first movie of a `pmd batch` or a notebook does; the timed one then measures the throughput alone
    pmdcompress.compress(sys.argv[1], sys.argv[2] + ".first", overwrite=True, workers=1, method=sys.argv[3], **seed)
t0 = time.process_time()
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, method=sys.argv[3], **seed)
cpu = time.process_time() - t0
print(json.dumps({"cpu_s": cpu, "timings": store.metadata.timings, "total_rank": store.metadata.total_rank,
                  "ranks": [int(r) for r in store.patch_ranks]}))
"""

DECOMPRESS = r"""
import json, sys, time
import numpy as np
import pmdcompress
from pmdcompress.parallel import blas_threads
store = pmdcompress.open(sys.argv[1])
t_len, y_len, x_len = store.shape
chunk = 256
buf = np.empty((chunk, y_len, x_len), np.uint16)
best = float("inf")
with blas_threads(1):
    store.read(0, min(chunk, t_len), dtype=np.uint16, out=buf[: min(chunk, t_len)])  # compile + cell plan
    for _ in range(3):
        t0 = time.process_time()
        for a in range(0, t_len, chunk):
            b = min(a + chunk, t_len)
            store.read(a, b, dtype=np.uint16, out=buf[: b - a])
        best = min(best, time.process_time() - t0)
print(json.dumps({"cpu_s": best, "gb_per_cpu_s": t_len * y_len * x_len * 2 / best / 1e9}))
"""


PROFILE = r"""
import cProfile, json, pstats, sys, time
import pmdcompress
prof = cProfile.Profile(time.process_time)
t0 = time.process_time()
prof.enable()
pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, method=sys.argv[3])
prof.disable()
cpu = time.process_time() - t0
stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
def label(key):
    path, line, name = key
    return f"{path.split('site-packages/')[-1].split('pmdcompress/')[-1]}:{name}"
top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:int(sys.argv[4])]
stages = {label(k): round(v[3], 3) for k, v in stats.items()
          if k[0].endswith("pipeline/compress.py") and k[2].startswith("_") and k[2].endswith(("_stage", "_task"))}
imports = max((v[3] for k, v in stats.items() if k[2] == "_find_and_load"), default=0.0)
numba_load = sum(v[3] for k, v in stats.items() if k[0].endswith("numba/core/dispatcher.py") and k[2] == "compile")
print(json.dumps({"cpu_s_profiled": cpu, "imports_cum_s": round(imports, 3), "numba_load_cum_s": round(numba_load, 3),
                  "stages_cum_s": stages,
                  "top_self_s": [{"function": label(k), "calls": v[1], "self_s": round(v[2], 3),
                                  "cum_s": round(v[3], 3)} for k, v in top]}))
"""


#: The children's in-place timer: ``timed(owner, name, label)`` wraps ``owner.name`` (when it exists) so that its
#: process CPU and calls add up in ``cpu[label]`` and ``calls[label]``.
TIMED = r"""
cpu, calls = defaultdict(float), defaultdict(int)
def timed(owner, name, label):
    if not hasattr(owner, name):
        return
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            cpu[label] += time.process_time() - start
            calls[label] += 1
    setattr(owner, name, wrapper)
"""

BREAKDOWN = r"""
import json, sys, time
from collections import defaultdict
import numpy as np
t0 = time.process_time()
import pmdcompress
import pmdcompress.pipeline.compress as compress_module
from pmdcompress.solver import pmd as pmd_module
import numba, scipy.fft, scipy.linalg, scipy.ndimage, scipy.special, zarr  # noqa: F401  (what compress loads)
imports = time.process_time() - t0
"""
BREAKDOWN += TIMED + r"""
for name in ("_statistics_stage", "_fit_stage", "_neighbour_task", "strong_components", "_factors_stage",
             "_refit_stage", "_write_stage"):
    if hasattr(compress_module, name):
        timed(compress_module, name, "pipeline:" + name.strip("_"))
timed(pmd_module.PMDSolver, "fit", "fit:PMDSolver.fit")
for name in ("randomized_svd", "localized", "tv2d_search", "trend_filter_search", "noise_std_vector", "_deflate"):
    timed(pmd_module, name, "fit:" + name.strip("_"))
margins = []
fit = pmd_module.PMDSolver.fit
def fit_with_margins(self, data, patch_shape, thresholds, rng):
    out = fit(self, data, patch_shape, thresholds, rng)
    sp = np.asarray(out.spatial_stats) / thresholds.spatial
    tp = np.asarray(out.temporal_stats) / thresholds.temporal
    margins.append(np.fmin(sp, tp))  # fmin: a component kept on its temporal statistic alone has no spatial one (NaN)
    return out
pmd_module.PMDSolver.fit = fit_with_margins
start = time.process_time()
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, method=sys.argv[3])
total = time.process_time() - start
m = np.concatenate(margins) if margins else np.zeros(0)
kept, rejected = m[m <= 1], m[m > 1]
# the rejections that end each patch (consecutive_failures in a row): what a cheaper stop could spare
tail = sum(int(np.argmax(np.r_[True, x <= 1][::-1])) for x in margins)
quant = lambda x: [round(float(q), 4) for q in np.quantile(x, [0.0, 0.1, 0.5, 0.9, 1.0])] if x.size else []
print(json.dumps({"imports_cpu_s": round(imports, 3), "compress_cpu_s": round(total, 3),
                  "cpu_s": {k: round(v, 3) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
                  "calls": dict(calls), "total_rank": store.metadata.total_rank,
                  "rank_test": {"tested": int(m.size), "kept": int(kept.size), "rejected": int(rejected.size),
                                "rejected_ending_a_patch": tail,
                                "margin_quantiles_kept": quant(kept), "margin_quantiles_rejected": quant(rejected)}}))
"""


STAGES = r"""
import json, sys, time
from collections import defaultdict
t0 = time.process_time()
import pmdcompress
import pmdcompress.pipeline.compress as compress_module
from pmdcompress import preprocess
from pmdcompress.io import readers
from pmdcompress.pipeline import scratch
import numba, scipy.fft, scipy.linalg, scipy.ndimage, scipy.special, zarr  # noqa: F401  (what compress loads)
imports = time.process_time() - t0
"""
STAGES += TIMED + r"""
for name in ("_statistics_stage", "_fit_stage", "_neighbour_task", "_factors_stage", "_refit_stage", "_write_stage",
             "finish_store", "PMDStore", "check_sampled_frames"):
    timed(compress_module, name, name.strip("_"))
timed(scratch.FitBuffer, "write_rows", "fit buffer: write_rows")
timed(scratch.FitBuffer, "patch", "fit buffer: patch")
timed(readers.Movie, "view", "movie: view")
timed(preprocess.NoiseAccumulator, "add", "noise: NoiseAccumulator.add")
start = time.process_time()
pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, method=sys.argv[3])
total = time.process_time() - start
print(json.dumps({"imports_cpu_s": imports, "compress_cpu_s": total, "total_cpu_s": imports + total,
                  "cpu_s": dict(cpu)}))
"""


CAPTURE = r"""
import pickle, sys
import numpy as np
import pmdcompress
from pmdcompress.solver import pmd as pmd_module
patches = []
fit = pmd_module.PMDSolver.fit
def recording_fit(self, data, patch_shape, thresholds, rng):
    patches.append((np.array(data, np.float32), tuple(patch_shape), thresholds, rng.bit_generator.state))
    return fit(self, data, patch_shape, thresholds, rng)
pmd_module.PMDSolver.fit = recording_fit
pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, method="pmd")
with open(sys.argv[3], "wb") as f:
    pickle.dump(patches, f, protocol=pickle.HIGHEST_PROTOCOL)
print("{}")
"""

SOLVER = r"""
import hashlib, json, pickle, sys, time
import numpy as np
from pmdcompress.solver.pmd import PMDSolver
with open(sys.argv[1], "rb") as f:
    patches = pickle.load(f)  # written by this benchmark's CAPTURE child, in this run
solver = PMDSolver()
def fit_all():
    fits = []
    for data, patch_shape, thresholds, state in patches:
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        fits.append(solver.fit(data, patch_shape, thresholds, rng))
    return fits
fit_all()  # numba caches loaded, BLAS warm
t0 = time.process_time()
fits = fit_all()
cpu = time.process_time() - t0
print(json.dumps({"cpu_s": cpu, "total_rank": sum(f.rank for f in fits), "tested": sum(f.n_tested for f in fits),
                  "ranks": [f.rank for f in fits],
                  "digests": [hashlib.sha256(np.ascontiguousarray(f.spatial).tobytes()).hexdigest() for f in fits]}))
"""


CAPTURE_TV = r"""
import pickle, sys
import numpy as np
import pmdcompress
from pmdcompress.solver import pmd as pmd_module
calls = []
search = pmd_module.tv2d_search
def recording_search(img, delta, *, lam0, rtol, tol, dual, steer_tol=None):
    calls.append((np.array(img), float(delta), lam0, rtol, tol, None if dual is None else dual.copy(), steer_tol))
    return search(img, delta, lam0=lam0, rtol=rtol, tol=tol, dual=dual, steer_tol=steer_tol)
pmd_module.tv2d_search = recording_search
pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, method="pmd")
with open(sys.argv[3], "wb") as f:
    pickle.dump(calls, f, protocol=pickle.HIGHEST_PROTOCOL)
print("{}")
"""

TV = r"""
import hashlib, json, pickle, sys, time
import numpy as np
from pmdcompress.solver import tv2d
with open(sys.argv[1], "rb") as f:
    calls = pickle.load(f)  # written by this benchmark's CAPTURE_TV child, in this run
def replay():
    out = []
    for img, delta, lam0, rtol, tol, dual, steer_tol in calls:
        out.append(tv2d.tv2d_search(img, delta, lam0=lam0, rtol=rtol, tol=tol,
                                    dual=None if dual is None else dual.copy(), steer_tol=steer_tol))
    return out
replay()  # numba caches loaded
t0 = time.process_time()
answers = replay()
cpu = time.process_time() - t0
accuracy = {}
for i in range(0, len(calls), 3):  # every third call (draft and final steps alternate): the exact solution at its lam
    img, delta, _, rtol, tol, _, _ = calls[i]
    x, lam = answers[i]
    if lam <= 0.0:
        continue
    exact, dual = np.empty_like(img), np.zeros_like(img)
    tv2d._tv2d_kernel(img, lam, dual, exact, 20000, 1e-7)
    kind = accuracy.setdefault(f"rtol={rtol:g} tol={tol:g}", {"calls": 0, "distance": 0.0, "residual_over_budget": 0.0})
    kind["calls"] += 1
    kind["distance"] += float(np.linalg.norm(x - exact) / np.linalg.norm(img - img.mean()))
    kind["residual_over_budget"] += float(np.sum((img - x) ** 2) / delta)
for kind in accuracy.values():
    kind["distance"] /= kind["calls"]
    kind["residual_over_budget"] /= kind["calls"]
print(json.dumps({"cpu_s": cpu, "calls": len(calls), "accuracy": accuracy,
                  "digests": [hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.float64(lam).tobytes()).hexdigest()
                              for x, lam in answers]}))
"""


QUALITY = r"""
import json, sys
import numpy as np
import zarr
import pmdcompress
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, workers=1, seed=int(sys.argv[3]))
clean = np.asarray(zarr.open_group(sys.argv[4], mode="r")["clean"][...], np.float64)
err = float(np.sqrt(np.mean((store[:].astype(np.float64) - clean) ** 2)))
print(json.dumps({"total_rank": store.metadata.total_rank, "ranks": [int(r) for r in store.patch_ranks],
                  "rms_error_vs_truth": err}))
"""


def simulated_quality(trees: dict, folder: Path) -> dict:
    movie = folder / "sim.tif"
    subprocess.run([sys.executable, str(ROOT / "bin" / "pmd"), "simulate", str(movie), "--frames", "1000",
                    "--shape", "128x128", "--neurons", "80", "--seed", "7"], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    truth = folder / "sim.truth.zarr"
    out = {"movie": "pmd simulate --frames 1000 --shape 128x128 --neurons 80 --seed 7"}
    for tag, tree in trees.items():
        out[tag] = {f"seed{seed}": child(tree, QUALITY, movie, folder / f"sim-{tag}.pmd.zarr", seed, truth)
                    for seed in (0, 1)}
    return out


#: Where the children keep their compiled bytecode (a folder of this run, set by main): see child.
PYCACHE: Path | None = None


def child(tree: Path, code: str, *args, warm_process: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), PMD_NUM_WORKERS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PMD_BENCH_WARM_PROCESS", None)
    if warm_process:
        env["PMD_BENCH_WARM_PROCESS"] = "1"
    if PYCACHE is not None:
        # A warm run reads the package's bytecode, as an installed package does: with PYTHONDONTWRITEBYTECODE set
        # (as on the development machine) every child compiled pmdcompress's sources again, 0.06-0.1 CPU-s of each
        # measured compress.  The bytecode goes to this run's folder, not into the trees.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=tree, check=False)
    if proc.returncode:
        raise RuntimeError(f"{tree}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rank_difference(a, b) -> dict:
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True)]
    return {"max": max(diffs, default=0), "patches_differing": sum(d > 0 for d in diffs),
            "patches_differing_by_more_than_one": sum(d > 1 for d in diffs)}


def solver_only(trees: dict, movie: Path, folder: Path, name: str, repeats: int) -> dict:
    """The solver alone, per tree, on the patches (data, thresholds, random state) of one compress with this
    checkout: CPU-s (median), total rank, and per patch rank and bit-identity against this checkout's fit."""
    recorded = folder / f"{name}-patches.pkl"
    child(ROOT, CAPTURE, movie, folder / f"{name}-capture.pmd.zarr", recorded)
    runs = {tag: [] for tag in trees}
    for _ in range(max(repeats, 1)):
        for tag, tree in trees.items():
            runs[tag].append(child(tree, SOLVER, recorded))
    recorded.unlink()
    mine = runs["current"][-1]
    out = {}
    for tag, rs in runs.items():
        last = rs[-1]
        out[tag] = {"cpu_s": statistics.median(r["cpu_s"] for r in rs), "cpu_s_runs": [r["cpu_s"] for r in rs],
                    "total_rank": last["total_rank"], "tested": last["tested"], "patches": len(last["ranks"])}
        if tag != "current":
            out[tag]["bit_identical_patches"] = sum(a == b for a, b in zip(last["digests"], mine["digests"],
                                                                            strict=True))
            out[tag]["rank_difference"] = rank_difference(mine["ranks"], last["ranks"])
    return out


def tv_only(trees: dict, movie: Path, folder: Path, name: str, repeats: int) -> dict:
    """The 2-D TV searches alone, per tree, on the calls recorded in one compress with this checkout: CPU-s
    (median), answers bit-identical to this checkout's, and their distance to the exact solution."""
    recorded = folder / f"{name}-tv-calls.pkl"
    child(ROOT, CAPTURE_TV, movie, folder / f"{name}-tv-capture.pmd.zarr", recorded)
    runs = {tag: [] for tag in trees}
    for _ in range(max(repeats, 1)):
        for tag, tree in trees.items():
            runs[tag].append(child(tree, TV, recorded))
    recorded.unlink()
    mine = runs["current"][-1]["digests"]
    out = {}
    for tag, rs in runs.items():
        last = rs[-1]
        out[tag] = {"cpu_s": statistics.median(r["cpu_s"] for r in rs), "cpu_s_runs": [r["cpu_s"] for r in rs],
                    "calls": last["calls"], "accuracy": last["accuracy"],
                    "bit_identical_answers": sum(a == b for a, b in zip(last["digests"], mine, strict=True))}
    return out


def stages(trees: dict, movie: Path, folder: Path, name: str, method: str, repeats: int) -> dict:
    """CPU-s of each stage timed in place (the STAGES child), per tree, the trees interleaved REPEATS times in fresh
    processes: best and median of each (on a shared machine the best moves least with the load)."""
    runs = {tag: [] for tag in trees}
    for _ in range(max(repeats, 1)):
        for tag, tree in trees.items():
            runs[tag].append(child(tree, STAGES, movie, folder / f"{name}-stages-{tag}.pmd.zarr", method))
    out = {}
    for tag, rs in runs.items():
        labels = ["total_cpu_s", "imports_cpu_s", "compress_cpu_s"]
        values = {k: [r[k] for r in rs] for k in labels}
        for r in rs:
            for label in r["cpu_s"]:
                values.setdefault(label, [])
        for label in values:
            if label not in labels:
                values[label] = [r["cpu_s"].get(label, 0.0) for r in rs]
        out[tag] = {k: {"best": min(v), "median": statistics.median(v), "runs": v} for k, v in values.items()}
    return out


def baseline_tree(rev: str, folder: Path) -> Path:
    path = folder / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="git revision to compare against (checked out in a temporary worktree)")
    ap.add_argument("--repeats", type=int, default=1, help="measured compress runs per tree (median reported)")
    ap.add_argument("--movies", default="neurofinder_dev,optinist_mouse2p")
    ap.add_argument("--method", default="pmd")
    ap.add_argument("--simulated", action="store_true", help="also check ranks and error on a simulated movie")
    ap.add_argument("--yardstick", action="store_true",
                    help="also the ranks per patch of seed 0 vs seed 1 on each real movie (the method's own spread)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile one compress of each movie with this checkout (cProfile on CPU time, in a "
                         "fresh process, caches filled): the stages and the N functions of most self time")
    ap.add_argument("--breakdown", action="store_true",
                    help="also one compress of each movie with this checkout, CPU per stage and per solver function "
                         "timed in place (no profiler: cProfile inflates the Python between kernels 2-5x), and the "
                         "rank test's margins (statistic / threshold) of every tested component")
    ap.add_argument("--stages", type=int, default=0, metavar="N",
                    help="also CPU per stage (statistics, fit, neighbour, factors, re-fit, write, the fit buffer's "
                         "reads and writes, the movie's reads, ...) timed in place in fresh processes, per tree, the "
                         "trees interleaved N times: best and median of each")
    ap.add_argument("--solver", action="store_true",
                    help="also time the per-patch solver alone on each movie's recorded patches, per tree "
                         "(interleaved, --repeats times), with the patches kept bit-identically")
    ap.add_argument("--tv", action="store_true",
                    help="also time the 2-D TV spatial searches alone on each movie's recorded calls, per tree "
                         "(interleaved, --repeats times), with their answers' accuracy and bit-identity")
    ap.add_argument("--warm-process", action="store_true",
                    help="also time each measured compress as the second one in its process (the first, untimed, "
                         "pays the imports and numba's cache loads, as the first movie of `pmd batch` does): the "
                         "throughput without the fixed start-up of a command")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed.json")
    args = ap.parse_args()

    global PYCACHE
    with tempfile.TemporaryDirectory(prefix="pmd-bench-speed-") as tmp:
        tmp = Path(tmp)
        PYCACHE = tmp / "pycache"
        trees = {"current": ROOT}
        if args.baseline:
            trees["baseline"] = baseline_tree(args.baseline, tmp)
        # the load average beside the numbers: on a shared machine CPU seconds still move with the load
        # (caches, memory bandwidth, hyperthreads), so ratios between trees mean more than the absolute values
        results = {"machine": platform.node(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                   "baseline": args.baseline, "method": args.method, "movies": {}}
        try:
            for name in filter(None, args.movies.split(",")):
                movie = SHARED / name / "movie.tif"
                if not movie.exists():
                    print(f"skipping {name}: {movie} not found", file=sys.stderr)
                    continue
                mb = movie.stat().st_size / 1e6
                entry = results["movies"][name] = {"input_mb": mb}
                stores = {tag: tmp / f"{name}-{tag}.pmd.zarr" for tag in trees}
                for tag, tree in trees.items():  # warm-up: numba and null caches
                    child(tree, COMPRESS, movie, stores[tag], args.method)
                runs = {tag: [] for tag in trees}
                warm_runs = {tag: [] for tag in trees}
                for _ in range(args.repeats):
                    for tag, tree in trees.items():
                        runs[tag].append(child(tree, COMPRESS, movie, stores[tag], args.method))
                        if args.warm_process:
                            warm_runs[tag].append(child(tree, COMPRESS, movie, stores[tag], args.method,
                                                        warm_process=True))
                for tag, rs in runs.items():
                    cpu = statistics.median(r["cpu_s"] for r in rs)
                    entry[tag] = {
                        "compress_cpu_s": cpu, "compress_mb_per_cpu_s": mb / cpu,
                        "compress_cpu_s_runs": [r["cpu_s"] for r in rs],
                        "fit_s": statistics.median(r["timings"]["fit_s"] for r in rs),
                        "total_rank": rs[-1]["total_rank"], "ranks": rs[-1]["ranks"],
                        "decompress": child(trees[tag], DECOMPRESS, stores["current"]),
                    }
                    if warm_runs[tag]:
                        warm_cpu = statistics.median(r["cpu_s"] for r in warm_runs[tag])
                        entry[tag].update(warm_process_cpu_s=warm_cpu, warm_process_mb_per_cpu_s=mb / warm_cpu,
                                          warm_process_cpu_s_runs=[r["cpu_s"] for r in warm_runs[tag]],
                                          warm_process_total_rank=warm_runs[tag][-1]["total_rank"])
                if "baseline" in entry:
                    entry["rank_difference"] = rank_difference(entry["current"]["ranks"], entry["baseline"]["ranks"])
                if args.profile:
                    # cProfile's own cost inflates Python-heavy code: read the shares, and cpu_s_profiled against
                    # compress_cpu_s for the overhead
                    entry["profile"] = child(ROOT, PROFILE, movie, tmp / f"{name}-profile.pmd.zarr", args.method,
                                             args.profile)
                if args.solver:
                    entry["solver"] = solver_only(trees, movie, tmp, name, args.repeats)
                if args.tv:
                    entry["tv"] = tv_only(trees, movie, tmp, name, args.repeats)
                if args.breakdown:
                    entry["breakdown"] = child(ROOT, BREAKDOWN, movie, tmp / f"{name}-breakdown.pmd.zarr", args.method)
                if args.stages:
                    entry["stages"] = stages(trees, movie, tmp, name, args.method, args.stages)
                if args.yardstick:
                    tag = "baseline" if "baseline" in trees else "current"
                    seed1 = child(trees[tag], COMPRESS, movie, tmp / f"{name}-seed1.pmd.zarr", args.method, 1)
                    entry["seed_spread"] = {"tree": tag, "total_rank_seed1": seed1["total_rank"],
                                            **rank_difference(entry[tag]["ranks"], seed1["ranks"])}
            if args.simulated:
                results["simulated"] = simulated_quality(trees, tmp)
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["baseline"])],
                               check=False, capture_output=True)

    if results["movies"]:
        print(f"{'movie':<18} {'tree':<9} {'rank':>5} {'compress CPU s':>15} {'MB/CPU-s':>9} {'fit s':>6} "
              f"{'decompress GB/CPU-s':>20}")
    for name, entry in results["movies"].items():
        for tag in trees:
            r = entry[tag]
            print(f"{name:<18} {tag:<9} {r['total_rank']:>5} {r['compress_cpu_s']:>15.2f} "
                  f"{r['compress_mb_per_cpu_s']:>9.2f} {r['fit_s']:>6.2f} {r['decompress']['gb_per_cpu_s']:>20.2f}")
            if "warm_process_cpu_s" in r:
                print(f"{'':<18} {'':<9} {r['warm_process_total_rank']:>5} {r['warm_process_cpu_s']:>15.2f} "
                      f"{r['warm_process_mb_per_cpu_s']:>9.2f}   (second compression in a warm process)")
        if "rank_difference" in entry:
            print(f"{'':<18} ranks per patch, current vs baseline: {entry['rank_difference']}")
        if "seed_spread" in entry:
            spread = entry["seed_spread"]
            print(f"{'':<18} ranks per patch, seed 0 vs seed 1 ({spread['tree']}): {spread}")
    for name, entry in results["movies"].items():
        solver = entry.get("solver")
        if solver:
            for tag, r in solver.items():
                same = (f", {r['bit_identical_patches']}/{r['patches']} patches bit-identical to current, ranks "
                        f"{r['rank_difference']}" if "bit_identical_patches" in r else "")
                print(f"{name}: solver alone ({tag}) {r['cpu_s']:.2f} CPU-s over {r['patches']} patches, rank "
                      f"{r['total_rank']} of {r['tested']} tested{same}")
    for name, entry in results["movies"].items():
        for tag, r in entry.get("tv", {}).items():
            kinds = "; ".join(f"{kind}: distance to exact {a['distance']:.5f}, residual/budget "
                              f"{a['residual_over_budget']:.4f}" for kind, a in r["accuracy"].items())
            print(f"{name}: 2-D TV searches alone ({tag}) {r['cpu_s']:.2f} CPU-s over {r['calls']} calls, "
                  f"{r['bit_identical_answers']} answers bit-identical to current; {kinds}")
    for name, entry in results["movies"].items():
        prof = entry.get("profile")
        if prof:
            print(f"{name}: profiled compress {prof['cpu_s_profiled']:.2f} CPU-s (imports {prof['imports_cum_s']:.2f}, "
                  f"numba cache loads {prof['numba_load_cum_s']:.2f}); stages: "
                  + ", ".join(f"{k.split(':')[-1]} {v:.2f}" for k, v in prof["stages_cum_s"].items()))
            for row in prof["top_self_s"]:
                print(f"  {row['self_s']:>7.3f} s self {row['cum_s']:>7.3f} s cum {row['calls']:>7} calls  "
                      f"{row['function']}")
    for name, entry in results["movies"].items():
        brk = entry.get("breakdown")
        if brk:
            total = brk["compress_cpu_s"]
            print(f"{name}: compress {total:.2f} CPU-s after imports ({brk['imports_cpu_s']:.2f} CPU-s), "
                  "timed in place:")
            for label, seconds in brk["cpu_s"].items():
                print(f"  {seconds:>7.3f} s {100 * seconds / total:>5.1f} % {brk['calls'][label]:>6} calls  {label}")
            test = brk["rank_test"]
            print(f"  rank test: {test['tested']} tested, {test['kept']} kept, {test['rejected']} rejected "
                  f"({test['rejected_ending_a_patch']} ending a patch); margin (statistic / threshold) quantiles "
                  f"0/10/50/90/100 %: kept {test['margin_quantiles_kept']}, "
                  f"rejected {test['margin_quantiles_rejected']}")
    for name, entry in results["movies"].items():
        st = entry.get("stages")
        if st:
            tags = list(st)
            print(f"{name}: CPU-s per stage, timed in place, best / median of {len(st[tags[0]]['total_cpu_s']['runs'])}"
                  " interleaved runs per tree")
            print(f"  {'stage':<34}" + "".join(f"{tag:>20}" for tag in tags))
            labels = sorted(st[tags[0]], key=lambda k: -st[tags[0]][k]["best"])
            for label in labels:
                cells = "".join(f"{st[t][label]['best']:>11.3f} / {st[t][label]['median']:<6.3f}" if label in st[t]
                                else f"{'-':>20}" for t in tags)
                print(f"  {label:<34}{cells}")
    sim = results.get("simulated")
    if sim:
        print(f"simulated ({sim['movie']}): total rank and RMS error vs the clean truth, seeds 0 / 1")
        for tag in trees:
            r0, r1 = sim[tag]["seed0"], sim[tag]["seed1"]
            print(f"  {tag:<9} rank {r0['total_rank']} / {r1['total_rank']}   "
                  f"error {r0['rms_error_vs_truth']:.4f} / {r1['rms_error_vs_truth']:.4f}")
        sim["current"]["seed0_vs_seed1"] = rank_difference(sim["current"]["seed0"]["ranks"],
                                                           sim["current"]["seed1"]["ranks"])
        if "baseline" in sim:
            sim["current_vs_baseline_seed0"] = rank_difference(sim["current"]["seed0"]["ranks"],
                                                               sim["baseline"]["seed0"]["ranks"])
            print(f"  ranks per patch, seed 0 vs 1 (current): {sim['current']['seed0_vs_seed1']}")
            print(f"  ranks per patch, current vs baseline (seed 0): {sim['current_vs_baseline_seed0']}")
    for entry in results["movies"].values():
        for tag in trees:
            entry[tag].pop("ranks")
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
