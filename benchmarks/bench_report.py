"""Benchmark: the SNR report (pmd report / pmd denoise --report) against its targets, in one run.

    python benchmarks/bench_report.py [--repeats 2] [--out benchmarks/results/report.json]

Movies: the simulated 256x256x3000 movie of bench_compress.py (benchmarks/work/sim256x256x3000.tif, made
once, with its ground truth) and ../shared/data/optinist_mouse2p/movie.tif (real two-photon, 2000x128x128).
For each movie, in fresh processes and back to back (the machine is shared: timings are noisy), the
compression and the report (no ground truth, held-out validation on) are timed ``--repeats`` times; wall and
CPU seconds are recorded and the best of each is compared.  Then one report with the ground truth (simulated
movie) gives the agreement of the estimates with the truth.  Targets (issue 4):

- SNR gain >= 2 at the median pixel and >= 4 on the most active pixels;
- residual std / raw noise within 0.95-1.10 except flagged pixels;
- residual local correlation mean < 0.02 on the simulated movie (and below localmd's 0.19 on the real one);
- median trace correlation with the truth >= 0.95 (simulated);
- the report takes less time than the compression.

``--real --base TREE`` (session 12): ``pmd report`` of every real movie in ../shared/data, this tree and another
checkout (a baseline) side by side, interleaved (base, this, base, this), each in a fresh process with
``PMD_NUM_WORKERS=1`` and the same store (made once by the baseline), timed by CPU seconds (the machine is shared);
then every number of the two report.json files compared (``metrics``, ``photon_split``, ``photon_split_whole``):
the largest relative difference, 0 where they are the same floats.

    PMD_NUM_WORKERS=1 python benchmarks/bench_report.py --real --base /work/wt/base --repeats 2 \
        --out benchmarks/results/report_s12.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
SHARED = ROOT.parent / "shared" / "data"

COMPRESS = r"""
import json, resource, sys, time
t, c = time.perf_counter(), time.process_time()
import pmdcompress
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "timings": store.metadata.timings, "total_rank": store.metadata.total_rank}))
"""

REPORT = r"""
import json, sys, time
t, c = time.perf_counter(), time.process_time()
from pmdcompress.pipeline.report import make_report
truth = sys.argv[4] if len(sys.argv) > 4 else None
report = make_report(sys.argv[1], sys.argv[2], sys.argv[3], truth=truth, overwrite=True)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "report": report}))
"""

KEYS = [
    "snr_gain_median", "snr_gain_active", "snr_gain_global", "mse_over_noise", "mse_over_noise_neighbour",
    "mse_over_noise_model", "mse_over_noise_heldout", "mse_over_noise_neighbour_crop", "residual_ratio_median",
    "residual_ratio_within", "flagged_signal_removed", "flagged_noise_kept", "flagged_regions",
    "residual_noise_ratio_median", "residual_band_ratio", "residual_lag1_median", "local_corr_raw_mean",
    "local_corr_denoised_mean", "local_corr_residual_mean", "local_corr_noise", "local_corr_residual_excess",
    "noise_correlation", "camera_gain", "camera_offset", "photon_noise_over_psd_noise", "pmd_style_gain_median",
    "snr_raw_median", "snr_denoised_median", "snr_raw_active", "snr_denoised_active",
]
TRUTH_KEYS = [
    "truth_noise_estimate_ratio_median", "truth_snr_gain_median", "truth_snr_gain_active", "truth_snr_gain_global",
    "truth_mse_over_noise", "truth_mse_over_noise_crop", "truth_gain_map_correlation",
    "truth_gain_map_correlation_smoothed", "truth_snr_raw_map_correlation", "truth_noise_rms_reduction",
    "truth_median_trace_corr_raw", "truth_median_trace_corr_denoised", "truth_snr_db_raw", "truth_snr_db_denoised",
    "truth_psnr_db_raw", "truth_psnr_db_denoised",
]


def child(code: str, *args) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ), check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def values(report: dict, keys) -> dict:
    m = report["metrics"]
    return {k: m[k]["value"] for k in keys if k in m}


def _timed_pmd(tree: Path, args: list) -> tuple[float, subprocess.CompletedProcess]:
    """CPU seconds (user + system, children) and the result of ``pmd ARGS`` run from TREE."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, str(tree / "bin" / "pmd"), *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tree), "PMD_NUM_WORKERS": "1"}, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"pmd {' '.join(map(str, args))} ({tree}): {proc.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def _numbers(obj, prefix="") -> dict:
    """Every number of a JSON object by its dotted path (booleans and strings left out)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{prefix}[{i}]"))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out


def compare_reports(a: dict, b: dict) -> dict:
    """The numbers of two report.json files that are not the same floats (``metrics``, ``photon_split``,
    ``photon_split_whole``), with the largest relative difference."""
    import math

    sections = ("metrics", "photon_split", "photon_split_whole")
    na = _numbers({k: a.get(k) for k in sections})
    nb = _numbers({k: b.get(k) for k in sections})
    differ = {}
    for key in sorted(set(na) | set(nb)):
        x, y = na.get(key), nb.get(key)
        if x is None or y is None:
            differ[key] = [x, y]
        elif not (x == y or (math.isnan(x) and math.isnan(y))):
            differ[key] = [x, y]
    rel = [abs(x - y) / max(abs(x), abs(y), 1e-300) for x, y in differ.values() if x is not None and y is not None]
    return {"numbers": len(na), "different": len(differ), "max_relative_difference": max(rel, default=0.0),
            "examples": dict(list(differ.items())[:12])}


def real_side_by_side(base: Path, repeats: int, out: str, only: str = "") -> None:
    """``pmd report`` CPU seconds of the real movies, ``base`` and this tree interleaved, and their numbers compared
    (``only``: comma-separated names of the movies to run; the results JSON is written after each movie)."""
    work = WORK / "report-real"
    work.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in only.split(",") if w]
    movies = sorted(p for p in SHARED.glob("*/movie.tif") if not wanted or p.parent.name in wanted)
    rows = {}
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "base": str(base), "tree": str(ROOT), "repeats": repeats, "movies": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    for movie in movies:
        name = movie.parent.name
        store = work / f"{name}.pmd.zarr"
        if not store.exists():
            _timed_pmd(base, ["compress", movie, "-o", store])
        row = rows[name] = {"base_cpu_s": [], "new_cpu_s": []}
        reports = {}
        for _ in range(repeats):
            for label, tree in (("base", base), ("new", ROOT)):
                folder = work / f"{name}.{label}.report"
                cpu, _proc = _timed_pmd(tree, ["report", movie, store, "-o", folder, "--overwrite"])
                row[f"{label}_cpu_s"].append(round(cpu, 2))
                reports[label] = json.loads((folder / "report.json").read_text())
                print(f"   {name:20s} {label:4s} {cpu:7.2f} CPU-s", file=sys.stderr, flush=True)
        row["comparison"] = compare_reports(reports["base"], reports["new"])
        row["photon_split_s"] = {k: reports[k]["timings"].get("photon_split_s") for k in reports}
        row["summary_new"] = reports["new"]["summary"]
        Path(out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\n{'movie':20s} {'base CPU-s':>12s} {'new CPU-s':>12s} {'new/base':>9s}  numbers differing")
    for name, row in rows.items():
        b, n = min(row["base_cpu_s"]), min(row["new_cpu_s"])
        c = row["comparison"]
        print(f"{name:20s} {b:12.2f} {n:12.2f} {n / b:9.3f}  {c['different']} of {c['numbers']} "
              f"(largest relative {c['max_relative_difference']:.2g})")
    Path(out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON results (default results/report.json, with --real "
                                                     "results/report_real.json)")
    parser.add_argument("--real", action="store_true", help="the real movies, side by side with --base")
    parser.add_argument("--base", default="/work/wt/base", help="the baseline checkout for --real")
    parser.add_argument("--movies", default="", help="with --real: comma-separated movie names (default: all)")
    args = parser.parse_args(argv)
    if args.real:
        return real_side_by_side(Path(args.base).resolve(), args.repeats,
                                 args.out or str(HERE / "results" / "report_real.json"), args.movies)
    args.out = args.out or str(HERE / "results" / "report.json")

    from pmdcompress.simulate import simulate_movie

    WORK.mkdir(exist_ok=True)
    sim = WORK / "sim256x256x3000.tif"
    if not sim.exists():
        print(f"simulating {sim} ...", file=sys.stderr)
        simulate_movie(sim, n_frames=3000, shape=(256, 256), n_neurons=100, seed=0, overwrite=True)
    movies = {"simulated": sim}
    real = SHARED / "optinist_mouse2p" / "movie.tif"
    if real.exists():
        movies["optinist_mouse2p"] = real

    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "movies": {}}
    for name, path in movies.items():
        print(f"== {name}: {path}", file=sys.stderr)
        store = WORK / f"report-{name}.pmd.zarr"
        folder = WORK / f"report-{name}"
        runs = []
        for _ in range(args.repeats):
            c = child(COMPRESS, path, store)
            r = child(REPORT, path, store, folder)
            runs.append({"compress": {k: c[k] for k in ("wall_s", "cpu_s")},
                         "report": {k: r[k] for k in ("wall_s", "cpu_s")},
                         "report_stages": r["report"]["timings"]})
            print(f"   compress {c['wall_s']:.2f} s wall / {c['cpu_s']:.2f} s cpu; report {r['wall_s']:.2f} s wall"
                  f" / {r['cpu_s']:.2f} s cpu", file=sys.stderr)
        entry = {
            "runs": runs,
            "compress_best_wall_s": min(x["compress"]["wall_s"] for x in runs),
            "report_best_wall_s": min(x["report"]["wall_s"] for x in runs),
            "compress_best_cpu_s": min(x["compress"]["cpu_s"] for x in runs),
            "report_best_cpu_s": min(x["report"]["cpu_s"] for x in runs),
            "total_rank": c["total_rank"],
            "metrics": values(r["report"], KEYS),
            "summary": r["report"]["summary"],
        }
        if name == "simulated":
            t = child(REPORT, path, store, WORK / f"report-{name}-truth", path)
            entry["truth_report_wall_s"] = t["wall_s"]
            entry["truth"] = values(t["report"], TRUTH_KEYS)
            entry["truth_report_estimates"] = values(t["report"], KEYS)
        results["movies"][name] = entry

    for name, e in results["movies"].items():
        m = e["metrics"]
        print(f"\n{name}: rank {e['total_rank']}")
        print("\n".join("  " + line for line in e["summary"]))
        print(f"  time: compression {e['compress_best_wall_s']:.2f} s wall ({e['compress_best_cpu_s']:.2f} s cpu), "
              f"report {e['report_best_wall_s']:.2f} s wall ({e['report_best_cpu_s']:.2f} s cpu)")
        checks = [
            ("SNR gain median >= 2", m.get("snr_gain_median", 0) >= 2),
            ("SNR gain active >= 4", m.get("snr_gain_active", 0) >= 4),
            ("residual ratio within 0.95-1.10 except flagged",
             m.get("residual_ratio_within", 0) + m.get("flagged_signal_removed", 0) + m.get("flagged_noise_kept", 0)
             >= 0.9999),
            ("report faster than compression (wall)", e["report_best_wall_s"] < e["compress_best_wall_s"]),
            ("report faster than compression (cpu)", e["report_best_cpu_s"] < e["compress_best_cpu_s"]),
        ]
        if name == "simulated":
            checks.append(("residual local correlation < 0.02", abs(m.get("local_corr_residual_mean", 1)) < 0.02))
            checks.append(("median trace corr >= 0.95", e["truth"].get("truth_median_trace_corr_denoised", 0) >= 0.95))
        else:
            checks.append(("residual local correlation < localmd's 0.19", m.get("local_corr_residual_mean", 1) < 0.19))
        for label, ok in checks:
            print(f"  [{'ok' if ok else 'MISSED'}] {label}")
        e["checks"] = {label: bool(ok) for label, ok in checks}
        if "truth" in e:
            est, tr = e["truth_report_estimates"], e["truth"]
            print("  estimate vs truth: " + ", ".join(
                f"{k} {est[k]:.3g} vs {tr['truth_' + k]:.3g}" for k in (
                    "snr_gain_median", "snr_gain_active", "snr_gain_global", "mse_over_noise") if k in est))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
