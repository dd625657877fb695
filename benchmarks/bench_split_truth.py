"""Benchmark: the photon-split estimates against ground truth, regime by regime, with pmd's defaults as the denoiser.

    python benchmarks/bench_split_truth.py [--regimes sima-like-20 sima-like-160 dim-binomial 2p-real 1p-correlated]
                                           [--seeds 0 1 2] [--out benchmarks/results/split_truth.json]
    python benchmarks/bench_split_truth.py --real [--seeds 0] [--out benchmarks/results/split_real.json]
    python benchmarks/bench_split_truth.py --whole [--regimes ...] [--seeds 0 1 2] [--fractions 0.5 0.8 0.9]
                                           [--out benchmarks/results/split_whole.json]

Every movie is converted to counts and split (:mod:`pmdcompress.report.photon_split`), half ``A`` is compressed
with the defaults, and each estimate is printed beside the same number computed against ``A``'s clean movie (the
truth): the error reduction over all pixels and over the most active 10 % (the same folds), with the estimate's
interval, and the shared signal removed (all pixels, most active).  Regimes (the three biases session 7 left open):

* ``sima-like-20``, ``sima-like-160``: ``bench_short_split.sima_like`` (sima_ca1_example's mean image, photon
  level and row-shared noise, 128 x 256), 20 and 160 frames: noise shared between horizontal neighbours;
* ``dim-binomial``: ``pmd simulate --kind 2p-dense`` 500 x 80 x 80 (about 1.2 photons per pixel per frame, 1 %
  of the counts negative, independent noise: the binomial split neurofinder-like dim movies take);
* ``2p-real``: ``pmd simulate --kind 2p-real`` 600 x 128 x 128;
* ``1p-correlated``: ``pmd simulate --kind 1p-correlated`` 200 x 96 x 96 (noise shared over several pixels).

Needs ../shared/data/sima_ca1_example for the sima-like regimes.  Prints a table, writes JSON.

``--whole`` (session 11): the estimates of ``pmd report``'s whole-movie split (``photon_split_whole``: ``A`` with
``p`` of the photons, :func:`pmdcompress.report.photon_split.whole_split`) and of its balanced split, each beside the
truth of the store made from the WHOLE movie (what a user's store removes) and of the store made from ``A`` (what
the split measures): short (sima-like 20 and 40 frames, noise shared along rows), dim (``dim-binomial``), two-photon
(``2p-real`` 100 and 600 frames) and one-photon (``1p-correlated``) regimes.  Prints, per regime and fraction, the
estimate minus the whole store's truth, how often it was resolved and how often its interval covers that truth.

``--real``: the four real movies of ../shared/data instead (no truth): the report's photon split
(:func:`pmdcompress.report.photon_split.photon_split` on the first 2000 frames, whole frame as ``pmd report``
scores all four) of pmd's defaults, one JSON line per movie and seed, to compare trees side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIMULATED = {"dim-binomial": ("2p-dense", 500, (80, 80), 20), "2p-real": ("2p-real", 600, (128, 128), None),
             "2p-real-100": ("2p-real", 100, (128, 128), None),
             "1p-correlated": ("1p-correlated", 200, (96, 96), 20)}
REGIMES = ("sima-like-20", "sima-like-40", "sima-like-160", "dim-binomial", "2p-real", "2p-real-100",
           "1p-correlated")
#: The regimes of ``--whole`` by default (short, dim, two-photon, one-photon, noise shared between neighbours).
WHOLE_REGIMES = ("sima-like-20", "sima-like-40", "dim-binomial", "2p-real-100", "2p-real", "1p-correlated")


def movie(regime: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw float32 ADU movie, clean ADU movie)."""
    if regime.startswith("sima-like"):
        import bench_short_split

        return bench_short_split.sima_like(seed, int(regime.rsplit("-", 1)[1]), 0.3)
    import tifffile
    import zarr

    from pmdcompress.simulate import simulate_movie

    kind, frames, shape, neurons = SIMULATED[regime]
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {} if neurons is None else {"n_neurons": neurons}
        info = simulate_movie(Path(tmp) / "m.tif", kind=kind, n_frames=frames, shape=shape, seed=seed, **kwargs)
        raw = tifffile.imread(info["movie"]).astype(np.float32)
        clean = zarr.open_group(str(info["truth"]), mode="r")["clean"][...].astype(np.float64)
    return raw, clean


def case(regime: str, seed: int) -> dict:
    import pmdcompress
    from pmdcompress.report import photon_split as ps

    raw, clean = movie(regime, seed)
    counts = ps.prepare_counts(raw, seed=seed)
    row = {"regime": regime, "seed": seed, "shape": list(raw.shape), "split": counts.method, "ok": counts.ok}
    if not counts.ok:
        row["reason"] = counts.reason
        return row
    a, b = ps.split(counts, seed)
    a = np.ascontiguousarray(a, np.float32)
    cpu = time.process_time()
    store = pmdcompress.compress(a, None, workers=1, hash_input=False)
    den = store.read(0, a.shape[0]).astype(np.float32)
    row["cpu_s"] = time.process_time() - cpu
    row["rank"] = int(store.metadata.total_rank)
    if counts.method == "gaussian":
        truth = clean / 2.0
    else:
        truth = (clean - counts.offsets) / counts.gain / 2.0
    scores = ps.score(a, b, den, noise=counts.noise_of_half())
    folds = ps.active_folds(b)
    every = np.ones(a.shape[1:], bool)
    for name, fl in (("all", [(np.arange(a.shape[0]), every)]), ("active", folds)):
        s = scores[name]
        raw_err = sum(float(np.sum((a[f][:, m] - truth[f][:, m]) ** 2)) for f, m in fl)
        den_err = sum(float(np.sum((den[f][:, m] - truth[f][:, m]) ** 2)) for f, m in fl)
        row[f"er_{name}"] = s.get("error_reduction")
        row[f"er_{name}_low"] = s.get("error_reduction_low")
        row[f"er_{name}_high"] = s.get("error_reduction_high")
        row[f"true_er_{name}"] = raw_err / den_err
        row[f"removed_{name}"] = s.get("signal_removed")
        row[f"removed_{name}_low"] = s.get("signal_removed_low")
        row[f"removed_{name}_high"] = s.get("signal_removed_high")
        row[f"true_removed_{name}"] = ps.shared_signal_removed(a, truth, den, fl)
    row["halves_correlation"] = max(abs(v) for v in ps.halves_correlations(a, b, radius=1).values())
    return row


def _set_truth(noisy, clean, den, fl) -> tuple[float, float]:
    """(true error reduction, true shared signal removed) of ``den`` made from ``noisy``, on folds ``fl``."""
    from pmdcompress.report import photon_split as ps

    raw_err = sum(float(np.sum((noisy[f][:, m] - clean[f][:, m]) ** 2)) for f, m in fl)
    den_err = sum(float(np.sum((den[f][:, m] - clean[f][:, m]) ** 2)) for f, m in fl)
    return raw_err / den_err, ps.shared_signal_removed(noisy, clean, den, fl)


def whole_case(regime: str, seed: int, fractions) -> dict:
    """The whole movie's store against its truth, beside each split's estimate (``fractions``: ``A``'s share).

    ``report``: the report's balanced split (:func:`photon_split`); ``p<percent>``: the unbalanced split of
    ``pmd report``'s ``photon_split_whole`` (:func:`whole_split`, Gaussian fission in the movie's units) at each
    fraction (0.5 included: the same split balanced).  Every estimate is set beside the truth of the store made
    from the whole movie (``whole_true_*``, on the same pixels: that split's active folds) and of the store made
    from ``A`` (``a_true_*``: what the split measures).
    """
    import pmdcompress
    from pmdcompress.report import photon_split as ps

    raw, clean = movie(regime, seed)
    counts = ps.prepare_counts(raw, seed=seed)
    own = ps.prepare_counts(raw, seed=seed, own_units=True)
    row = {"regime": regime, "seed": seed, "shape": list(raw.shape), "split": counts.method, "ok": counts.ok,
           "whole_split_neighbour_correlation": own.correlation}
    if not counts.ok:
        row["reason"] = counts.reason
        return row
    cpu = time.process_time()
    whole = pmdcompress.compress(np.ascontiguousarray(raw, np.float32), None, workers=1, hash_input=False)
    row["whole_cpu_s"] = time.process_time() - cpu
    row["whole_rank"] = int(whole.metadata.total_rank)
    whole = whole.read(0, raw.shape[0]).astype(np.float64)
    every = [(np.arange(raw.shape[0]), np.ones(raw.shape[1:], bool))]
    row["whole_true_er_all"], row["whole_true_removed_all"] = _set_truth(raw, clean, whole, every)
    for p in [None, *fractions]:
        kept = {}

        def denoise(a, kept=kept):
            store = pmdcompress.compress(np.ascontiguousarray(a, np.float32), None, workers=1, hash_input=False)
            kept["a"], kept["den"], kept["rank"] = a, store.read(0, a.shape[0]), int(store.metadata.total_rank)
            return kept["den"]

        cpu = time.process_time()
        if p is None:
            tag, c, fraction = "report", counts, 0.5
            r = ps.photon_split(raw, denoise, seed=seed, counts=counts)
            a_clean = 0.5 * (clean if counts.method == "gaussian" else (clean - counts.offsets) / counts.gain)
        else:
            tag, c, fraction = f"p{round(100 * p)}", own, p
            r = ps.whole_split(raw, denoise, seed=seed, counts=own, fraction=p)
            a_clean = p * clean
        x = {"cpu_s": time.process_time() - cpu, "ok": r["ok"], "reason": r.get("reason", ""),
             "rank": kept.get("rank"), "halves_correlation": r.get("halves_correlation")}
        _, b = ps.split(c, seed, fraction=fraction)
        folds = ps.active_folds(b)
        for name, fl in (("all", every), ("active", folds)):
            s = r.get(name, {})
            for key in ("error_reduction", "error_reduction_low", "error_reduction_high", "signal_removed",
                        "signal_removed_low", "signal_removed_high"):
                x[f"{key}_{name}"] = s.get(key)
            x[f"removed_{name}_resolved"] = ps.headline(s, "signal_removed")["resolved"]
            x[f"er_{name}_resolved"] = ps.headline(s, "error_reduction")["resolved"]
            x[f"whole_true_er_{name}"], x[f"whole_true_removed_{name}"] = _set_truth(raw, clean, whole, fl)
            if "a" in kept:
                x[f"a_true_er_{name}"], x[f"a_true_removed_{name}"] = _set_truth(kept["a"], a_clean, kept["den"], fl)
        row[tag] = x
    return row


def whole_summary(rows: list[dict], fractions) -> dict:
    """Per regime and fraction: the estimate against the whole store's truth (means over seeds), coverage of its
    interval, and how often it was resolved; ``extrapolated``: ``f_p + (f_p - f_0.5) (1 - p) / (p - 0.5)``."""
    out = {}
    for regime in dict.fromkeys(r["regime"] for r in rows):
        sel = [r for r in rows if r["regime"] == regime and r.get("ok")]
        m = {"seeds": len(sel)}
        for p in [None, *fractions]:
            tag = "report" if p is None else f"p{round(100 * p)}"
            for name in ("all", "active"):
                est = [r[tag][f"signal_removed_{name}"] for r in sel]
                truth = [r[tag][f"whole_true_removed_{name}"] for r in sel]
                a_truth = [r[tag].get(f"a_true_removed_{name}") for r in sel]
                pairs = [(e, t) for e, t in zip(est, truth, strict=True) if e is not None and np.isfinite(t)]
                m[f"{tag}_removed_{name}"] = _mean([e for e, _ in pairs])
                m[f"{tag}_whole_true_removed_{name}"] = _mean(truth)
                m[f"{tag}_a_true_removed_{name}"] = _mean(a_truth)
                m[f"{tag}_removed_{name}_minus_whole_truth"] = _mean([e - t for e, t in pairs])
                m[f"{tag}_removed_{name}_rms_vs_whole_truth"] = (
                    float(np.sqrt(np.mean([(e - t) ** 2 for e, t in pairs]))) if pairs else None)
                m[f"{tag}_removed_{name}_resolved"] = sum(bool(r[tag][f"removed_{name}_resolved"]) for r in sel)
                m[f"{tag}_removed_{name}_covers_whole_truth"] = sum(
                    bool(r[tag][f"signal_removed_low_{name}"] is not None
                         and r[tag][f"signal_removed_low_{name}"] <= r[tag][f"whole_true_removed_{name}"]
                         <= r[tag][f"signal_removed_high_{name}"]) for r in sel)
                ers = [(r[tag][f"error_reduction_{name}"], r[tag][f"whole_true_er_{name}"]) for r in sel
                       if r[tag][f"error_reduction_{name}"] is not None]
                m[f"{tag}_er_{name}_over_whole_truth"] = _mean([e / t for e, t in ers])
                m[f"{tag}_er_{name}_resolved"] = sum(bool(r[tag][f"er_{name}_resolved"]) for r in sel)
                m[f"{tag}_whole_true_er_{name}"] = _mean([r[tag][f"whole_true_er_{name}"] for r in sel])
                if p is not None and p > 0.5:
                    # A straight line through the report's balanced split and this one, to p = 1.
                    ext = [(r[tag][f"signal_removed_{name}"] + (r[tag][f"signal_removed_{name}"]
                            - r["report"][f"signal_removed_{name}"]) * (1 - p) / (p - 0.5), r[tag][
                            f"whole_true_removed_{name}"]) for r in sel if r[tag][f"signal_removed_{name}"] is not None
                           and r["report"][f"signal_removed_{name}"] is not None]
                    m[f"{tag}_extrapolated_removed_{name}_minus_whole_truth"] = _mean([e - t for e, t in ext])
        out[regime] = m
    return out


def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def real_rows(seeds) -> list[dict]:
    import tifffile

    import pmdcompress
    from pmdcompress.report import photon_split as ps

    shared = HERE.parent.parent / "shared" / "data"
    if not shared.is_dir():
        shared = Path("/work/shared/data")

    def denoise(a):
        return pmdcompress.compress(np.ascontiguousarray(a, np.float32), None, workers=1, hash_input=False).read(
            0, a.shape[0])

    rows = []
    for name in ("sima_ca1_example", "inscopix_1p_part2", "optinist_mouse2p", "neurofinder_dev"):
        raw = tifffile.imread(shared / name / "movie.tif")[: ps.REPORT_FRAMES]
        for seed in seeds:
            cpu = time.process_time()
            r = ps.photon_split(raw, denoise, seed=seed)
            row = {"movie": name, "seed": seed, "ok": r["ok"], "reason": r.get("reason", ""),
                   "split": r["counts"]["split"], "correlations": r["counts"]["correlations"],
                   "line_noise": r["counts"]["line_noise"], "halves_correlation": r.get("halves_correlation"),
                   "cpu_s": time.process_time() - cpu}
            for part in ("all", "active"):
                x = r.get(part, {})
                row[part] = {k: x.get(k) for k in ("error_reduction", "error_reduction_low", "error_reduction_high",
                                                   "signal_removed", "signal_removed_low", "signal_removed_high")}
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
    return rows


def _inside(row, name, what) -> bool | None:
    low, high, true = row.get(f"{what}_{name}_low"), row.get(f"{what}_{name}_high"), row.get(f"true_{what}_{name}")
    if low is None or true is None or not np.isfinite(true):
        return None
    return bool(low <= true <= (np.inf if high is None else high))


def summary(rows: list[dict]) -> dict:
    out = {}
    for regime in dict.fromkeys(r["regime"] for r in rows):
        sel = [r for r in rows if r["regime"] == regime and r.get("ok")]
        if not sel:
            continue
        m = {}
        for name in ("all", "active"):
            ratios = [r[f"er_{name}"] / r[f"true_er_{name}"] for r in sel if r.get(f"er_{name}")]
            m[f"er_{name}_over_truth"] = float(np.mean(ratios)) if ratios else None
            m[f"er_{name}_inside"] = sum(bool(_inside(r, name, "er")) for r in sel)
            diffs = [r[f"removed_{name}"] - r[f"true_removed_{name}"] for r in sel
                     if r.get(f"removed_{name}") is not None and np.isfinite(r[f"true_removed_{name}"])]
            m[f"removed_{name}_minus_truth"] = float(np.mean(diffs)) if diffs else None
            m[f"removed_{name}_inside"] = sum(bool(_inside(r, name, "removed")) for r in sel)
            m[f"true_er_{name}"] = float(np.mean([r[f"true_er_{name}"] for r in sel]))
            m[f"true_removed_{name}"] = float(np.nanmean([r[f"true_removed_{name}"] for r in sel]))
        m["seeds"] = len(sel)
        out[regime] = m
    return out


def _f(v, digits=3):
    return "-" if v is None else f"{v:.{digits}g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regimes", nargs="+", default=None, choices=REGIMES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--real", action="store_true", help="the real movies of ../shared/data (no truth)")
    parser.add_argument("--whole", action="store_true",
                        help="score each split against the truth of the store made from the whole movie")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.8, 0.9],
                        help="with --whole: the shares of the photons that half A gets")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.whole:
        return whole_main(args)
    if args.real:
        out = args.out or HERE / "results" / "split_real.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": platform.platform(), "rows": real_rows(args.seeds)}, indent=1,
                                  default=float))
        return
    args.out = args.out or HERE / "results" / "split_truth.json"
    rows = []
    for regime in args.regimes or REGIMES:
        for seed in args.seeds:
            rows.append(case(regime, seed))
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}),
                  flush=True)
    means = summary(rows)
    print(f"{'regime':15s} {'ER all/true':>11s} {'in':>3s} {'ER act/true':>11s} {'in':>3s} {'rem all-true':>12s} "
          f"{'in':>3s} {'rem act-true':>12s} {'in':>3s}  true ER all/act, removed all/act")
    for regime, m in means.items():
        print(f"{regime:15s} {_f(m['er_all_over_truth']):>11s} {m['er_all_inside']:>3d} "
              f"{_f(m['er_active_over_truth']):>11s} {m['er_active_inside']:>3d} "
              f"{_f(m['removed_all_minus_truth'], 2):>12s} {m['removed_all_inside']:>3d} "
              f"{_f(m['removed_active_minus_truth'], 2):>12s} {m['removed_active_inside']:>3d}  "
              f"{_f(m['true_er_all'])}/{_f(m['true_er_active'])}, {_f(m['true_removed_all'], 2)}/"
              f"{_f(m['true_removed_active'], 2)} ({m['seeds']} seeds)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "seeds": args.seeds, "means": means,
                                    "rows": rows}, indent=1, default=float))


def whole_main(args) -> None:
    out = args.out or HERE / "results" / "split_whole.json"
    fractions = sorted(set(args.fractions))
    rows = []
    for regime in args.regimes or WHOLE_REGIMES:
        for seed in args.seeds:
            rows.append(whole_case(regime, seed, fractions))
            print(json.dumps(rows[-1], default=lambda v: round(float(v), 4)), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"machine": platform.platform(), "seeds": args.seeds, "fractions": fractions,
                                       "means": whole_summary(rows, fractions), "rows": rows}, indent=1,
                                      default=float))
    means = whole_summary(rows, fractions)
    print("signal removed, most active 10 % (all pixels): estimate - truth of the WHOLE movie's store, [resolved / "
          "interval covers the whole truth / seeds]")
    for regime, m in means.items():
        cells = []
        for p in [None, *fractions]:
            tag = "report" if p is None else f"p{round(100 * p)}"
            label = "report" if p is None else f"p={p:g}"
            cells.append(f"{label}: {_f(m[f'{tag}_removed_active_minus_whole_truth'], 2)} "
                         f"[{m[f'{tag}_removed_active_resolved']}/{m[f'{tag}_removed_active_covers_whole_truth']}] "
                         f"({_f(m[f'{tag}_removed_all_minus_whole_truth'], 2)} "
                         f"[{m[f'{tag}_removed_all_resolved']}/{m[f'{tag}_removed_all_covers_whole_truth']}])")
        print(f"{regime:14s} whole truth {_f(m['report_whole_true_removed_active'], 2)} "
              f"({_f(m['report_whole_true_removed_all'], 2)}); " + "; ".join(cells)
              + f"  [{m['seeds']} seeds]")


if __name__ == "__main__":
    main()
