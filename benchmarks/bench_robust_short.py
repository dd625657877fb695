"""Benchmark: can a 20-frame movie keep its weak cells' signal without losing error reduction?  (issue 13)

    PYTHONPATH=. python benchmarks/bench_robust_short.py [--frames 20] [--seeds 0 1 2] [--amplitudes 0.3 0.6]
                                                         [--parts short real correlated]
                                                         [--out benchmarks/results/robust_short.json]

sima_ca1_example (20 x 128 x 256, two-photon) reads about 33 % of its most active pixels' shared signal removed
by photon splitting, and ``bench_short_split.py`` showed that this is real loss on a simulation copying it (its
photon level, noise correlation and mean image).  This benchmark asks whether any decision could keep that
signal *without* giving up error reduction, on the same simulation (``bench_short_split.sima_like``, half A of
the photon split against the clean half), with the truth:

* **the rank test's own lever**: the defaults, a looser false-pass rate (0.15, 0.3), more failures before a patch
  stops (6), no temporal filter: each a point on the trade-off between error reduction and signal removed;
* **oracles** (references, not methods): ``mean only`` (no component at all: the denoised movie is each pixel's
  mean), ``known footprints`` (each frame least-squares projected on the true cells' spatial maps: perfect
  spatial components, no temporal penalty), ``svd rank k`` per 32x32 tile (the best k for the error, over all
  tiles), and the **error-optimal selection** (:func:`oracle_selection`) of the defaults' and of ``false_pass
  0.3``'s components: each dropped where that lowers the true error, the best any keep/drop decision (pooled
  evidence, a compactness test, a split-half test) could do with the candidates the solver finds;
* **the split-half decision**: the same selection made against the other half ``B`` (same signal, independent
  noise) instead of the truth: a component kept where it predicts B (what a decision on two split halves can do);
* **detectability** of each true cell in its own data: its signal's singular value ``theta`` (the Frobenius
  norm of its dynamic part in noise units), against the level where a patch's leading singular vector starts to
  see it (``(T P)^(1/4)``, the spiked-covariance transition, P = 1024 pixels) and the level where keeping its
  trace pays for the trace's noise even with a known footprint (``theta^2 > T``).

Truth measures as ``bench_short_split``: error reduction = mean squared noise over mean squared error (all pixels;
most active 10 % chosen by ``photon_split.active_folds``), shared signal removed against the clean half.
A second part asks the same of inscopix_1p_part2's target (residual/noise 0.922, below 0.95): on bench_robust's
correlated-noise one-photon case and a short two-photon case, and on the real movie (blind measures, photon
split), a per-component shrinkage of the temporal factors toward noise-free (:func:`shrinkage_filter`, a lever
session 7 did not try) and, on the simulations, the error-optimal selection oracle.

The real sima_ca1_example is scored by its photon split (``report.photon_split``) for the rank test's variants.
A last part (``selection``) asks whether the error-optimal choice drops components on the simulator's own
regimes too (:data:`SELECTION_CASES`, truth only).

Prints a table and writes JSON (``--parts`` runs some parts; the others keep their numbers from an existing
``--out`` file).  Needs ../shared/data/sima_ca1_example.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_short_split import SIMA, sima_like_maps  # noqa: E402

PARTS = ("short", "real", "correlated", "selection")
#: bench_robust cases of the selection part: does the error-optimal choice drop components on the simulator's
#: regimes too (the sima-like simulation's weak cells are one regime)?
SELECTION_CASES = ("2p 100 frames", "2p-real 600 frames", "1p short 63 frames 10 Hz", "voltage 1000 frames",
                   "dendritic 300 frames")

VARIANTS = [("defaults", {}), ("false_pass 0.01", {"false_pass": 0.01}), ("false_pass 0.15", {"false_pass": 0.15}),
            ("false_pass 0.3", {"false_pass": 0.3}), ("consecutive_failures 6", {"consecutive_failures": 6}),
            ("no temporal filter", {"temporal_filter": False})]
#: The variants whose components the error-optimal selection oracle (:func:`oracle_selection`) chooses among.
SELECTED = ("defaults", "false_pass 0.3")
#: bench_robust cases of the correlated-noise part (inscopix_1p_part2's simulation, and a short two-photon one).
CORRELATED_CASES = ("1p 63 frames blurred noise", "2p short 40 frames")


def measures(a, b, truth, den, ps) -> dict:
    everything = np.ones(a.shape[1:], bool)
    folds = ps.active_folds(b, shared=True)
    num = sum(float(np.sum((a[f][:, m] - truth[f][:, m]) ** 2)) for f, m in folds)
    err = sum(float(np.sum((den[f][:, m] - truth[f][:, m]) ** 2)) for f, m in folds)
    return {"true_er_all": float(np.mean((a - truth) ** 2) / np.mean((den - truth) ** 2)),
            "true_er_active": num / err,
            "true_removed_all": ps.shared_signal_removed(a, truth, den, everything),
            "true_removed_active": ps.shared_signal_removed(a, truth, den, folds),
            "estimated_removed_active": ps.shared_signal_removed(a, b, den, folds)}


def oracle_known_footprints(a: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Each frame's deviation from the pixel means, least-squares on the true cells' maps (in half-A units)."""
    t_len = a.shape[0]
    mean = a.mean(axis=0)
    basis = maps.reshape(len(maps), -1).T  # (pixels, cells)
    coef, *_ = np.linalg.lstsq(basis, (a - mean).reshape(t_len, -1).T, rcond=None)
    return (mean + (basis @ coef).T.reshape(a.shape)).astype(np.float32)


def oracle_svd(a: np.ndarray, truth: np.ndarray, tile: int = 32) -> tuple[np.ndarray, dict]:
    """Per tile, the rank-k truncation (k = 0..8, of the variance-scaled centred data) closest to the truth."""
    t_len, h, w = a.shape
    den = np.empty_like(a)
    chosen = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            block = a[:, y : y + tile, x : x + tile].astype(np.float64)
            shape = block.shape
            flat = block.reshape(t_len, -1)
            mean = flat.mean(axis=0)
            sd = np.sqrt(np.maximum(mean, 0.05))
            u, s, vt = np.linalg.svd((flat - mean) / sd, full_matrices=False)
            clean = truth[:, y : y + tile, x : x + tile].reshape(t_len, -1)
            best, best_err = None, np.inf
            for k in range(0, 9):
                est = mean + ((u[:, :k] * s[:k]) @ vt[:k]) * sd
                e = float(np.sum((est - clean) ** 2))
                if e < best_err:
                    best, best_err = (k, est), e
            chosen.append(best[0])
            den[:, y : y + tile, x : x + tile] = best[1].reshape(shape)
    return den, {"best_rank_per_tile": np.bincount(chosen, minlength=9).tolist()}


def component_images(store, t_len: int):
    """Each stored component's contribution to the denoised movie: (patch slices, weighted image, temporal row)."""
    h, w = store.patch_shape
    spatial = np.asarray(store.spatial, np.float64)
    temporal = np.asarray(store.temporal_block(0, t_len), np.float64)
    scale = np.asarray(store.noise, np.float64)
    for p, (y0, x0) in enumerate(store.patch_origins):
        weight = (store.weights_y[p][:, None] * store.weights_x[p][None, :]) * scale[y0 : y0 + h, x0 : x0 + w]
        for k in range(int(store.component_offsets[p]), int(store.component_offsets[p + 1])):
            yield (slice(None), slice(y0, y0 + h), slice(x0, x0 + w)), spatial[:, k].reshape(h, w) * weight, \
                temporal[k]


def oracle_selection(store, denoised: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, dict]:
    """The store's denoised movie less every component whose removal lowers the error against ``truth`` (one pass,
    in store order): with the clean movie, the best any keep/drop decision could do with the components the solver
    found (a bound for the rank test's decision, given its candidates); with the other split half, the split-half
    decision."""
    out = np.array(denoised, np.float64)
    n = kept = 0
    for sl, image, row in component_images(store, len(out)):
        part = row[:, None, None] * image[None]
        error = out[sl] - truth[sl]
        n += 1
        # ||e - c||^2 < ||e||^2  <=>  ||c||^2 < 2 <e, c>
        if np.sum(part * part) < 2.0 * np.sum(error * part):
            out[sl] -= part
        else:
            kept += 1
    return out.astype(np.float32), {"candidates": n, "kept": kept}


def shrinkage_filter():
    """trend_filter_rows as the pipeline calls it, each filtered row then shrunk toward its mean by
    ``c = S / (S + df sigma^2)`` (``S``: the row's energy less its noise's, ``T sigma^2``; ``df``: the filter's
    degrees of freedom, the noise the filtered row keeps): a per-component James-Stein shrinkage toward noise-free."""
    import pmdcompress.pipeline.compress as pc
    from pmdcompress.formats.store import piecewise_linear_df

    original = pc.trend_filter_rows

    def shrunk(values, *, sigma=None, **kwargs):
        filtered = np.asarray(original(values, sigma=sigma, **kwargs), np.float64)
        if sigma is None:
            return filtered.astype(np.float32)
        rows = np.asarray(values, np.float64)
        t_len = rows.shape[1]
        s2 = np.broadcast_to(np.asarray(sigma, np.float64), (len(rows),)) ** 2
        signal = np.maximum(np.sum((rows - rows.mean(axis=1, keepdims=True)) ** 2, axis=1) - t_len * s2, 0.0)
        df = piecewise_linear_df(filtered).astype(np.float64)
        df = np.where(df < 0, t_len, df)
        c = signal / np.maximum(signal + df * s2, 1e-30)
        centre = filtered.mean(axis=1, keepdims=True)
        return (centre + c[:, None] * (filtered - centre)).astype(np.float32)

    return shrunk


def detectability(maps: np.ndarray, traces: np.ndarray, noise_var: np.ndarray, t_len: int) -> dict:
    """Each cell's signal singular value theta in noise units (its centred trace times its map, per pixel over
    the noise's std), against the spiked-covariance transition (T P)^(1/4) and the keep-if-known level sqrt(T)."""
    centred = traces - traces.mean(axis=1, keepdims=True)
    theta = np.linalg.norm(centred, axis=1) * np.sqrt(np.sum(maps**2 / noise_var[None], axis=(1, 2)))
    transition = (t_len * 1024) ** 0.25
    return {"theta_median": float(np.median(theta)), "theta_p90": float(np.percentile(theta, 90)),
            "transition": transition, "share_above_transition": float(np.mean(theta > transition)),
            "share_above_keep_level": float(np.mean(theta > np.sqrt(t_len))),
            "share_above_2x_transition": float(np.mean(theta > 2 * transition))}


def case(seed: int, frames: int, amplitude: float, variants) -> dict:
    import pmdcompress
    from pmdcompress.report import photon_split as ps

    raw, clean, maps, traces = sima_like_maps(seed, frames, amplitude)
    counts = ps.prepare_counts(raw, seed=seed)
    a, b = ps.split(counts, seed)
    truth = ((clean - counts.offsets) / counts.gain / 2).astype(np.float32)
    half_maps = maps * 50.0 / counts.gain / 2  # photons -> ADU -> half-A units
    out = {"seed": seed, "frames": frames, "amplitude": amplitude, "variants": {}}
    a32 = np.ascontiguousarray(a, np.float32)
    for name, options in variants:
        cpu = time.process_time()
        store = pmdcompress.compress(a32, None, workers=1, hash_input=False, **options)
        den = store.read(0, frames).astype(np.float32)
        row = {"rank": int(store.metadata.total_rank), "cpu_s": time.process_time() - cpu}
        row.update(measures(a, b, truth, den, ps))
        out["variants"][name] = row
        if name in SELECTED:
            chosen, info = oracle_selection(store, den, truth)
            out["variants"][f"oracle: error-optimal selection of {name}"] = dict(measures(a, b, truth, chosen, ps),
                                                                                 **info)
            # The same decision made on the other half (B: the same signal, independent noise) instead of the
            # truth: the split-half decision in its best form (B's noise enters each decision once).
            chosen, info = oracle_selection(store, den, b)
            out["variants"][f"split-half selection of {name}"] = dict(measures(a, b, truth, chosen, ps), **info)
    mean_only = np.broadcast_to(a.mean(axis=0), a.shape).astype(np.float32)
    out["variants"]["oracle: mean only"] = measures(a, b, truth, mean_only, ps)
    out["variants"]["oracle: known footprints"] = measures(a, b, truth, oracle_known_footprints(a, half_maps), ps)
    den, info = oracle_svd(a, truth)
    out["variants"]["oracle: best svd rank per tile"] = dict(measures(a, b, truth, den, ps), **info)
    noise_var = np.maximum(np.var(a - truth, axis=0), 1e-6)
    out["detectability"] = detectability(half_maps, traces, noise_var, frames)
    return out


def short_real(name: str = "sima_ca1_example") -> dict:
    """The real movie's photon split (``report.photon_split``, seed 0, one split for every variant) for the rank
    test's variants."""
    import tifffile

    import pmdcompress
    from pmdcompress.report import photon_split as ps

    path = SIMA.parent.parent / name / "movie.tif"
    if not path.exists():
        return {}
    frames = tifffile.imread(path)[: ps.REPORT_FRAMES].astype(np.float32)
    counts = ps.prepare_counts(frames, seed=0)
    out = {}
    for label, options in VARIANTS:
        if label in ("consecutive_failures 6", "no temporal filter"):
            continue

        def denoise(a, options=options, label=label):
            store = pmdcompress.compress(np.ascontiguousarray(a, np.float32), None, workers=1, hash_input=False,
                                         **options)
            out[label]["rank"] = int(store.metadata.total_rank)
            return store.read(0, len(a)).astype(np.float32)

        out[label] = {}
        result = ps.photon_split(frames, denoise, seed=0, counts=counts)
        for fold in ("all", "active"):
            for key in ("error_reduction", "signal_removed", "signal_removed_low", "signal_removed_high"):
                out[label][f"{fold}_{key}"] = result.get(fold, {}).get(key)
    return out


def correlated_case(name: str) -> dict:
    """bench_robust's case ``name``: defaults, per-component shrinkage, error-optimal selection; true and blind."""
    import bench_robust as br

    import pmdcompress.pipeline.compress as pc

    args, post = next((a, p) for n, a, p in br.SIM_CASES if n == name)
    raw, clean = br.simulated(name, args, post)
    data = raw.astype(np.uint8 if post == "uint8" else np.uint16) if post != "blurred-noise" else raw.astype(np.float32)
    out = {}
    den, info, store = br.compress_denoise(data)
    out["defaults"] = dict(info, **br.truth_measures(raw, clean, den), **br.blind_measures(raw, raw - den))
    chosen, sel = oracle_selection(store, den, clean)
    chosen = chosen.astype(np.float64)
    out["oracle: error-optimal selection"] = dict(sel, **br.truth_measures(raw, clean, chosen),
                                                  **br.blind_measures(raw, raw - chosen))
    original = pc.trend_filter_rows
    pc.trend_filter_rows = shrinkage_filter()
    try:
        den, info, _ = br.compress_denoise(data)
    finally:
        pc.trend_filter_rows = original
    out["shrinkage"] = dict(info, **br.truth_measures(raw, clean, den), **br.blind_measures(raw, raw - den))
    return out


def selection_case(name: str) -> dict:
    """bench_robust's case ``name``: the defaults and the error-optimal selection of their components (truth)."""
    import bench_robust as br

    args, post = next((a, p) for n, a, p in br.SIM_CASES if n == name)
    raw, clean = br.simulated(name, args, post)
    data = raw.astype(np.uint8 if post == "uint8" else np.uint16) if post != "blurred-noise" else raw.astype(np.float32)
    den, info, store = br.compress_denoise(data)
    chosen, sel = oracle_selection(store, den, clean)
    return {"defaults": dict(info, **br.truth_measures(raw, clean, den)),
            "oracle: error-optimal selection": dict(sel, **br.truth_measures(raw, clean, chosen.astype(np.float64)))}


def correlated_real(name: str = "inscopix_1p_part2") -> dict:
    """The real movie: blind residual measures and photon-split scores, defaults and shrinkage."""
    import bench_robust as br
    import tifffile
    from bench_real import split_scores

    import pmdcompress.pipeline.compress as pc

    path = br.SHARED / name / "movie.tif"
    if not path.exists():
        return {}
    raw = tifffile.imread(path)
    out = {}
    original = pc.trend_filter_rows
    for label, replacement in (("defaults", None), ("shrinkage", shrinkage_filter())):
        if replacement is not None:
            pc.trend_filter_rows = replacement
        try:
            den, info, _ = br.compress_denoise(raw)
            split = split_scores(raw, {label: lambda a: br.compress_denoise(a)[0]})["tools"][label]
        finally:
            pc.trend_filter_rows = original
        out[label] = dict(info, **br.blind_measures(raw.astype(np.float64), raw - den))
        for fold in ("all", "active"):
            if fold in split:
                out[label][f"split_er_{fold}"] = split[fold]["error_reduction"]
                out[label][f"split_removed_{fold}"] = split[fold]["signal_removed"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[0.3, 0.6])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="short: the sima-like simulations; real: sima_ca1_example's photon split; correlated: "
                             "bench_robust's correlated cases and inscopix_1p_part2")
    parser.add_argument("--variants", nargs="+", choices=[n for n, _ in VARIANTS], default=[n for n, _ in VARIANTS],
                        help="the compressions of the short part (the selections need theirs: defaults, "
                             "false_pass 0.3)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "robust_short.json")
    args = parser.parse_args(argv)
    variants = [(n, o) for n, o in VARIANTS if n in args.variants]
    if "short" not in args.parts:
        args.frames = []
    if not SIMA.exists():
        sys.exit(f"{SIMA}: not found (needs ../shared/data)")
    rows = []
    for frames in args.frames:
        for amplitude in args.amplitudes:
            for seed in args.seeds:
                rows.append(case(seed, frames, amplitude, variants))
                print(json.dumps({"seed": seed, "frames": frames, "amplitude": amplitude,
                                  "detectability": rows[-1]["detectability"]}), flush=True)
    means = {}
    for frames in args.frames:
        for amplitude in args.amplitudes:
            sel = [r for r in rows if r["frames"] == frames and r["amplitude"] == amplitude]
            key = f"{frames} frames, amplitude {amplitude}"
            means[key] = {name: {k: float(np.mean([r["variants"][name][k] for r in sel]))
                                 for k, v in sel[0]["variants"][name].items() if not isinstance(v, list)}
                          for name in sel[0]["variants"]}
            means[key]["detectability"] = {k: float(np.mean([r["detectability"][k] for r in sel]))
                                           for k in sel[0]["detectability"]}
            print(f"\n{key} (means over {len(sel)} seeds)")
            print(f"{'':32s} {'rank':>6s} {'ER all':>7s} {'ER act':>7s} {'rem all':>8s} {'rem act':>8s} "
                  f"{'est act':>8s}")
            for name, m in means[key].items():
                if name == "detectability":
                    continue
                print(f"{name:32s} {m.get('rank', m.get('kept', float('nan'))):6.1f} {m['true_er_all']:7.2f} "
                      f"{m['true_er_active']:7.2f} {m['true_removed_all']:8.3f} {m['true_removed_active']:8.3f} "
                      f"{m['estimated_removed_active']:8.3f}")
            d = means[key]["detectability"]
            print(f"cells: theta median {d['theta_median']:.1f} (p90 {d['theta_p90']:.1f}); above the transition "
                  f"{d['transition']:.1f}: {d['share_above_transition']:.2f}, above 2x: "
                  f"{d['share_above_2x_transition']:.2f}; above sqrt(T): {d['share_above_keep_level']:.2f}")
    real = short_real() if "real" in args.parts else {}
    for label, r in real.items():
        print(f"sima_ca1_example {label:20s} " + " ".join(f"{k} {v:.3f}" for k, v in r.items()
                                                           if isinstance(v, float)), flush=True)
    correlated = {}
    if "correlated" in args.parts:
        for name in CORRELATED_CASES:
            correlated[name] = correlated_case(name)
        correlated["inscopix_1p_part2"] = correlated_real()
    selection = {name: selection_case(name) for name in SELECTION_CASES} if "selection" in args.parts else {}
    keys = ("rank", "kept", "true_error_reduction", "true_residual_over_noise", "residual_over_noise",
            "true_signal_removed", "residual_local_corr", "noise_local_corr", "split_er_all", "split_er_active",
            "split_removed_active")
    for name, variants in {**correlated, **selection}.items():
        for label, r in variants.items():
            print(f"{name[:26]:26s} {label:32s} " + " ".join(f"{k} {r[k]:.3f}" for k in keys if r.get(k) is not None),
                  flush=True)
    result = {"benchmark": "bench_robust_short", "machine": platform.platform(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "means": means, "rows": rows, "real": real, "correlated": correlated, "selection": selection}
    if args.out.exists():  # a part not run keeps its numbers from the earlier file
        earlier = json.loads(args.out.read_text())
        for part, names in (("short", ("means", "rows")), ("real", ("real",)), ("correlated", ("correlated",)),
                            ("selection", ("selection",))):
            if part not in args.parts:
                result.update({k: earlier.get(k, result[k]) for k in names})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
