"""Benchmark: pmd demix on the simulated 256x256x3000 movie (with truth), the real optinist movie,
and short, sparse neurofinder-like simulations.

    python benchmarks/bench_demix.py [--repeat 3] [--out benchmarks/results/demix.json] [--skip-sparse]

For each movie: compress it (fresh process), then demix the store (fresh process,
3 repeats by default; wall time, CPU time and peak RSS = that process's
ru_maxrss), figures included and excluded.  On the simulated movie the result
is scored against the ground truth (``pmd evaluate``: F1 at IoU 0.3, Hungarian
matching; median trace correlation of matched pairs).  The machine is shared,
so wall times are noisy: CPU times are reported beside them, and the medians
of the repeats.

The sparse set imitates a labelled two-photon movie of the neurofinder kind:
240x240x600 frames at 7 Hz, 120 somata with GCaMP6s-like decay (1-2 s), 45% of
them silent (visible only in the mean image), 80% with a darker nucleus.  Four
regimes (``SPARSE``: typical, dim, small cells, large cells) times two seeds.
Each movie is compressed with both methods and demixed with the defaults (which
seed silent somata from the mean image), and with ``--no-seed-from-mean`` on the
pmd store.  Reported: F1 at IoU 0.3 against all somata, precision, recall of the
visibly active somata (peak transient times the footprint's norm over the photon
noise > 6, about a clear transient by eye), recall of the silent somata, and the mean IoU of matched pairs.

With ``--kinds``, the dense simulated kinds calibrated to real movies (``2p-real`` 256x256x1000 seeds 1 and 2,
256x256x3000 seed 3, ``2p-dense`` and ``2p-real-bright`` 192x192x1000 seed 1; default store, default demix) are
scored on their **somata only**: the simulated dendrite sources (the truth's ``source_kind``; truth masks with
elongation >= 2 in a version-1 truth, which does not record it) are left out of the truth, and so are the
detections on them (IoU >= 0.3); results under ``kinds``, with the precision over every detection beside it
(``precision_all_detections``: one on a dendrite counts false).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():  # a worktree under /work/wt/
    SHARED = Path("/work/shared/data")

COMPRESS = r"""
import json, resource, sys, time
t = time.perf_counter(); c = time.process_time()
import pmdcompress
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "timings": store.metadata.timings, "total_rank": store.metadata.total_rank}))
"""

DEMIX = r"""
import json, resource, sys, time
import pmdcompress.demix as dm
t = time.perf_counter(); c = time.process_time()
res = dm.demix(sys.argv[1], sys.argv[2], overwrite=True, figures=sys.argv[3] == "1", fs=float(sys.argv[4]))
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "n_components": res.n_components, "timings": res.metadata["timings"]}))
"""


def child(code: str, *args) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          check=False, env=dict(os.environ))
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def simulated_movie() -> Path:
    movie = WORK / "sim256x256x3000.tif"
    if not movie.exists():
        from pmdcompress.simulate import simulate_movie

        WORK.mkdir(parents=True, exist_ok=True)
        simulate_movie(movie, n_frames=3000, shape=(256, 256), n_neurons=100, seed=0)
    return movie


def bench(name: str, movie: Path, fs: float, repeat: int, truth: Path | None) -> dict:
    store = WORK / f"{name}.demix-bench.pmd.zarr"
    out = WORK / f"{name}.demix.zarr"
    comp = child(COMPRESS, movie, store)
    runs = [child(DEMIX, store, out, 0, fs) for _ in range(repeat)]
    with_figs = child(DEMIX, store, out, 1, fs)
    entry = {
        "compress": comp,
        "demix_runs": runs,
        "demix_wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "demix_cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
        "demix_peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "demix_with_figures": with_figs,
        "n_components": runs[-1]["n_components"],
    }
    if truth is not None:
        import pmdcompress.demix as dm

        scores = dm.evaluate(out, truth, iou=0.3)
        scores.pop("pairs")
        entry["evaluate"] = scores
    return entry


# Regime overrides and mean photons per pixel per frame (see pmdcompress.simulate).
SPARSE_BASE = {"tau_decay_s": (1.0, 2.0), "silent_fraction": 0.45, "nucleus_fraction": 0.8, "radius": (4.5, 7.0)}
SPARSE = {
    "typical": ({}, 1.0),
    "dim": ({"baseline": 3.0, "dff_per_spike": (0.15, 0.6), "spike_rate_hz": (0.02, 0.2)}, 0.5),
    "small": ({"radius": (3.0, 4.5), "baseline": 4.0, "dff_per_spike": (0.2, 0.8), "spike_rate_hz": (0.02, 0.3)},
              0.7),
    "large": ({"radius": (6.5, 9.0), "baseline": 3.0, "dff_per_spike": (0.15, 0.6), "spike_rate_hz": (0.02, 0.3)},
              0.5),
}
VISIBLE = 6.0


def visibility(truth):
    """Peak transient x footprint norm / photon noise at baseline, per soma (the matched filter's peak SNR)."""
    import numpy as np

    amp = truth.traces.max(axis=1) - np.median(truth.traces, axis=1)
    norm = np.sqrt((truth.footprints.astype(np.float64) ** 2).sum(axis=(1, 2)))
    level = np.median(truth.traces, axis=1) + float(np.mean(truth.neuropil_spatial.sum(axis=0)))
    return amp * norm / np.sqrt(level)


def score_sparse(result, movie) -> dict:
    import numpy as np

    import pmdcompress.demix as dm
    from pmdcompress.demix.matching import load_regions, match
    from pmdcompress.simulate import load_truth

    truth = load_truth(movie)
    scores = dm.evaluate(result, movie, iou=0.3)
    pred, true = load_regions(result), load_regions(movie)
    _, matched, _ = match(pred.masks, true.masks, pred.dims, iou=0.3)
    found = np.isin(np.arange(true.n), matched)
    visible = visibility(truth) > VISIBLE
    silent = truth.spikes.sum(axis=1) == 0
    return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
            "n_pred": scores["n_pred"], "n_true": scores["n_true"], "n_visible": int(visible.sum()),
            "recall_visible": float(found[visible].mean()) if visible.any() else None,
            "n_silent": int(silent.sum()), "recall_silent": float(found[silent].mean()) if silent.any() else None,
            "mean_iou": scores["mean_iou"], "cell_radius": result.metadata["parameters"]["cell_radius"]}


def bench_sparse(seeds=(1, 2)) -> dict:
    import time

    import pmdcompress
    import pmdcompress.demix as dm
    from pmdcompress.simulate import simulate_movie

    folder = WORK / "sparse"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (over, photons) in SPARSE.items():
        for seed in seeds:
            movie = folder / f"{name}_s{seed}.tif"
            if not movie.exists():
                simulate_movie(movie, n_frames=600, shape=(240, 240), n_neurons=120, photons=photons, fs=7.0,
                               seed=seed, regime={**SPARSE_BASE, **over})
            entry = {}
            for method in ("pmd", "svd"):
                store_path = folder / f"{name}_s{seed}.{method}.pmd.zarr"
                t = time.perf_counter()
                store = pmdcompress.compress(movie, store_path, method=method, overwrite=True)
                entry[f"compress_{method}_s"] = time.perf_counter() - t
                entry[f"rank_{method}"] = store.metadata.total_rank
                variants = [("default", {})] + ([("active_only", {"seed_from_mean": False})]
                                                 if method == "pmd" else [])
                for label, kw in variants:
                    t = time.perf_counter()
                    res = dm.demix(store, folder / f"{name}_s{seed}.{method}.{label}.demix.zarr", fs=7.0,
                                   overwrite=True, figures=False, **kw)
                    entry[f"{method}_{label}"] = dict(score_sparse(res, movie), demix_s=time.perf_counter() - t)
            out[f"{name}_s{seed}"] = entry
            m, d, v = entry["pmd_default"], entry["pmd_active_only"], entry["svd_default"]
            print(f"{name}_s{seed:<3d} pmd: F1 {m['f1']:.2f} P {m['precision']:.2f} silent {m['recall_silent']:.2f} "
                  f"IoU {m['mean_iou']:.2f} | no mean seeds: F1 {d['f1']:.2f} visible {d['recall_visible']:.2f} "
                  f"IoU {d['mean_iou']:.2f} | svd store: F1 {v['f1']:.2f} visible {v['recall_visible']:.2f}",
                  flush=True)
    return out


def summarize_sparse(runs: dict) -> dict:
    import numpy as np

    keys = ("f1", "precision", "recall_visible", "recall_silent", "mean_iou")
    return {variant: {k: float(np.mean([r[variant][k] for r in runs.values()])) for k in keys}
            for variant in ("pmd_default", "pmd_active_only", "svd_default")}


KINDS = (("2p-real", (256, 256), 1000, 1), ("2p-real", (256, 256), 1000, 2), ("2p-real", (256, 256), 3000, 3),
         ("2p-dense", (192, 192), 1000, 1), ("2p-real-bright", (192, 192), 1000, 1))


def score_somata(result, movie) -> dict:
    """F1, precision, recall against the simulated somata (as the truth records them; truth masks with elongation
    < 2 in a version-1 truth), detections on the dendrite sources left out."""
    import numpy as np

    from pmdcompress.demix.matching import evaluate_regions, iou_matrix, load_regions
    from pmdcompress.demix.metrics import _shape
    from pmdcompress.formats.truth import SOMA

    pred, true = load_regions(result), load_regions(movie)
    masks = true.masks.tocsc()
    height, width = true.dims
    compact = np.zeros(true.n, bool)
    for j in range(true.n):
        inside = np.zeros(height * width, bool)
        inside[masks.indices[masks.indptr[j] : masks.indptr[j + 1]]] = True
        compact[j] = _shape(inside.reshape(1, height, width))[2][0] < 2.0
    soma = compact if true.kinds is None else true.kinds == SOMA
    iou = iou_matrix(pred.masks, true.masks)
    on_dendrite = iou[:, ~soma].max(axis=1) >= 0.3 if (~soma).any() else np.zeros(pred.n, bool)
    keep = np.flatnonzero(~on_dendrite)
    s = evaluate_regions(type(pred)(pred.masks.tocsc()[:, keep], pred.dims),
                         type(true)(masks[:, np.flatnonzero(soma)], true.dims))
    out = {k: s[k] for k in ("f1", "precision", "recall", "mean_iou", "n_pred", "n_true")}
    out["n_on_dendrites"] = int(on_dendrite.sum())
    out["n_kind_not_shape"] = int((soma != compact).sum())  # recorded kinds that the elongation guess gets wrong
    # A detection on a dendrite is no cell to a user either: the precision over every detection counts it false.
    out["precision_all_detections"] = s["tp"] / pred.n if pred.n else 0.0
    out["n_detections"] = int(pred.n)
    return out


def bench_kinds() -> dict:
    import pmdcompress
    import pmdcompress.demix as dm
    from pmdcompress.simulate import simulate_movie

    folder = WORK / "kinds"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, shape, frames, seed in KINDS:
        name = f"{kind}_{shape[0]}x{shape[1]}x{frames}_s{seed}"
        movie = folder / f"{name}.tif"
        if not movie.exists():
            simulate_movie(movie, n_frames=frames, shape=shape, seed=seed, kind=kind)
        store = folder / f"{name}.pmd.zarr"
        if not store.exists():
            pmdcompress.compress(movie, store)
        fs = pmdcompress.open(store).metadata.frame_rate or 30.0
        res = dm.demix(store, folder / f"{name}.demix.zarr", fs=fs, overwrite=True, figures=False)
        out[name] = score_somata(res, movie)
        r = out[name]
        print(f"{name:32s} somata F1 {r['f1']:.3f} P {r['precision']:.3f} (all detections "
              f"{r['precision_all_detections']:.3f}, {r['n_on_dendrites']} on dendrites) R {r['recall']:.3f} "
              f"IoU {r['mean_iou'] or 0:.3f} ({r['n_pred']} detections, {r['n_true']} somata)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "demix.json"))
    parser.add_argument("--skip-sparse", action="store_true", help="Leave out the neurofinder-like set.")
    parser.add_argument("--kinds", action="store_true",
                        help="Only the dense simulated kinds (2p-real, 2p-dense, 2p-real-bright), scored on somata.")
    args = parser.parse_args()
    if args.kinds:
        previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        previous["kinds"] = bench_kinds()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(previous, indent=2))
        return
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "movies": {},
    }
    sim = simulated_movie()
    results["movies"]["simulated"] = bench("sim256x256x3000", sim, 30.0, args.repeat, sim)
    real = SHARED / "optinist_mouse2p" / "movie.tif"
    if real.exists():
        results["movies"]["optinist_mouse2p"] = bench("optinist_mouse2p", real, 30.0, args.repeat, None)
    if not args.skip_sparse:
        runs = bench_sparse()
        results["sparse"] = {"runs": runs, "mean": summarize_sparse(runs), "visible_threshold": VISIBLE}
        for variant, m in results["sparse"]["mean"].items():
            print(f"sparse mean {variant:20s} " + " ".join(f"{k} {v:.3f}" for k, v in m.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    for name, r in results["movies"].items():
        line = (f"{name:18s} compress {r['compress']['wall_s']:.2f} s (cpu {r['compress']['cpu_s']:.2f}) | "
                f"demix {r['demix_wall_s_median']:.2f} s (cpu {r['demix_cpu_s_median']:.2f}), "
                f"+figures {r['demix_with_figures']['wall_s']:.2f} s, peak RSS "
                f"{r['demix_peak_rss_bytes'] / 2**20:.0f} MiB, {r['n_components']} components")
        if "evaluate" in r:
            e = r["evaluate"]
            line += (f" | F1 {e['f1']:.3f} (P {e['precision']:.3f}, R {e['recall']:.3f}), "
                     f"median trace r {e['median_trace_corr']:.3f}, mean IoU {e['mean_iou']:.3f}")
        print(line)


if __name__ == "__main__":
    main()
