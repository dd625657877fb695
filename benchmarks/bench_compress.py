"""Benchmark: pmd compress / decompress beside localmd 0.0.4, in one run.

    python benchmarks/bench_compress.py [--quick] [--skip-localmd] [--out benchmarks/results/compress.json]

Movies: a simulated 256x256x3000 movie (100 neurons, low SNR; ``pmd simulate``,
seed 0, made once under benchmarks/work/) and ../shared/data/optinist_mouse2p.
Each tool runs in its own fresh process (peak RSS = that process's VmHWM);
localmd runs in its own venv (``bash benchmarks/peers/setup_localmd.sh``).
Quality on the simulated movie is judged against the ground truth (noise RMS
reduction, per-neuron trace correlation); on the real movie, without truth, by
the residual (raw minus denoised) over the raw noise and a held-out check.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
SHARED = ROOT.parent / "shared" / "data"
LOCALMD_PY = HERE / ".venv-localmd" / "bin" / "python"

CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
import pmdcompress
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True, **json.loads(sys.argv[3]))
wall = time.perf_counter() - t
# VmHWM, not ru_maxrss: after fork + exec ru_maxrss keeps the parent's peak.
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "peak_rss_bytes": hwm, "cpu_s": time.process_time(),
                  "timings": store.metadata.timings, "bytes_on_disk": store.bytes_on_disk,
                  "total_rank": store.metadata.total_rank}))
"""


def run_pmd(movie: Path, out: Path, options: dict) -> dict:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(movie), str(out), json.dumps(options)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"pmd compress failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_localmd(movie: Path, out: Path, python: Path = LOCALMD_PY) -> dict | None:
    """localmd's best configuration in its own venv (``python``); its result JSON, or None when it cannot run."""
    if not python.exists():
        print(f"localmd venv missing ({python}); run benchmarks/peers/setup_localmd.sh", file=sys.stderr)
        return None
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(python), str(HERE / "peers" / "run_localmd.py"), str(movie), str(out),
                           "--config", "best"], capture_output=True, text=True, check=False)
    if proc.returncode:
        print(f"localmd failed on {movie}: {proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads((out / "localmd_result.json").read_text())


def rss_vs_length(sim: Path, lengths=(1000, 3000, 9000)) -> list[dict]:
    """Peak RSS of pmd compress on movies of growing length (the simulated frames, tiled in time, as .npy)."""
    from pmdcompress.io.readers import open_movie

    rows = []
    with open_movie(sim) as raw:
        t_len = raw.shape[0]
        for n in lengths:
            path = WORK / f"long{n}.npy"
            if not path.exists():
                out = np.lib.format.open_memmap(path, mode="w+", dtype=raw.dtype, shape=(n, *raw.shape[1:]))
                for t0 in range(0, n, 500):
                    t1 = min(t0 + 500, n)
                    src = [(t % t_len) for t in range(t0, t1)]
                    out[t0:t1] = raw.read(min(src), max(src) + 1)[np.array(src) - min(src)]
                out.flush()
                del out
            r = run_pmd(path, WORK / f"long{n}.pmd.zarr", {})
            rows.append({"frames": n, "peak_rss_bytes": r["peak_rss_bytes"], "wall_s": r["wall_s"]})
    return rows


def decompress_speed(store_path: Path, repeats: int = 3) -> dict:
    """Full-frame uint16 reconstruction throughput on one core (BLAS limited to one thread)."""
    import pmdcompress
    from pmdcompress.parallel import blas_threads

    store = pmdcompress.open(store_path)
    t_len, y_len, x_len = store.shape
    chunk = 256
    buf = np.empty((chunk, y_len, x_len), np.uint16)
    best = np.inf
    with blas_threads(1):
        store.read(0, chunk, dtype=np.uint16, out=buf)  # compile + cell plan
        for _ in range(repeats):
            start = time.perf_counter()
            for t0 in range(0, t_len, chunk):
                t1 = min(t0 + chunk, t_len)
                store.read(t0, t1, dtype=np.uint16, out=buf[: t1 - t0])
            best = min(best, time.perf_counter() - start)
    out_bytes = t_len * y_len * x_len * 2
    return {"seconds": best, "gb_per_s_per_core": out_bytes / best / 1e9, "frames_per_s": t_len / best}


def residual_checks(raw_path: Path, denoised) -> dict:
    """Without truth: residual std over raw noise std (PSD), and how much high-band noise is left."""
    from pmdcompress.io.readers import open_movie
    from pmdcompress.preprocess import NoiseAccumulator

    with open_movie(raw_path) as raw:
        t_len, y_len, x_len = raw.shape
        acc_raw, acc_res, acc_den = (NoiseAccumulator(y_len * x_len) for _ in range(3))
        for t0 in range(0, t_len, 256):
            t1 = min(t0 + 256, t_len)
            r = raw.read(t0, t1).astype(np.float32).reshape(t1 - t0, -1)
            d = np.asarray(denoised[t0:t1], dtype=np.float32).reshape(t1 - t0, -1)
            acc_raw.add(r)
            acc_res.add(r - d)
            acc_den.add(d)
    raw_noise, res_noise, den_noise = acc_raw.std(), acc_res.std(), acc_den.std()
    ok = raw_noise > 0
    return {
        "residual_over_raw_noise_median": float(np.median(res_noise[ok] / raw_noise[ok])),
        "highband_noise_reduction_median": float(np.median(raw_noise[ok] / np.maximum(den_noise[ok], 1e-9))),
    }


def localmd_denoised(out: Path):
    return np.load(out / "localmd_denoised.npy", mmap_mode="r")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000-frame simulated movie, for a fast look")
    parser.add_argument("--skip-localmd", action="store_true")
    parser.add_argument("--options", default="{}", help="JSON of extra compress options (all pmd runs)")
    parser.add_argument("--methods", default="svd,pmd", help="pmd compress methods to run (comma-separated)")
    parser.add_argument("--low-snr", action="store_true", help="also a movie with half the photons (svd vs pmd)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS-versus-length runs")
    parser.add_argument("--out", default=str(HERE / "results" / "compress.json"))
    args = parser.parse_args(argv)
    options = json.loads(args.options)

    from pmdcompress.io.readers import open_movie
    from pmdcompress.simulate import load_truth, simulate_movie
    from pmdcompress.simulate.groundtruth import evaluate_against_truth

    WORK.mkdir(exist_ok=True)
    n_frames = 1000 if args.quick else 3000
    sim = WORK / f"sim256x256x{n_frames}.tif"
    if not sim.exists():
        print(f"simulating {sim} ...", file=sys.stderr)
        simulate_movie(sim, n_frames=n_frames, shape=(256, 256), n_neurons=100, seed=0, overwrite=True)
    movies = {"simulated": sim}
    if args.low_snr:
        low = WORK / f"sim256x256x{n_frames}-halfphotons.tif"
        if not low.exists():
            simulate_movie(low, n_frames=n_frames, shape=(256, 256), n_neurons=100, seed=0, photons=0.5,
                           overwrite=True)
        movies["simulated_half_photons"] = low
    real = SHARED / "optinist_mouse2p" / "movie.tif"
    if real.exists():
        movies["optinist_mouse2p"] = real
    methods = [m for m in args.methods.split(",") if m]

    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "options": options, "movies": {}}
    for name, path in movies.items():
        print(f"== {name}: {path}", file=sys.stderr)
        entry = {}
        import pmdcompress

        with open_movie(path) as raw:
            raw_bytes = raw.shape[0] * raw.shape[1] * raw.shape[2] * raw.dtype.itemsize
        truth = load_truth(path) if name.startswith("simulated") else None
        for method in methods:
            store_path = WORK / f"{name}-{method}.pmd.zarr"
            r = run_pmd(path, store_path, {**options, "method": method})
            store = pmdcompress.open(store_path)
            r["ratio_bytes"] = raw_bytes / r["bytes_on_disk"]
            r["decompress"] = decompress_speed(store_path)
            if truth is not None:
                with open_movie(path) as raw:
                    q = evaluate_against_truth(raw, store, truth)
                r.update({k: v for k, v in q.items() if not k.startswith("trace_corr_")})
            r.update(residual_checks(path, store))
            entry[f"pmd-{method}"] = r
        lmd = None if (args.skip_localmd or name == "simulated_half_photons") else run_localmd(
            path, WORK / f"localmd-{name}")
        if lmd:
            lmd["ratio_bytes"] = raw_bytes / lmd["factors_bytes"]
            if truth is not None:
                with open_movie(path) as raw:
                    ql = evaluate_against_truth(raw, localmd_denoised(WORK / f"localmd-{name}"), truth)
                lmd.update({k: v for k, v in ql.items() if not k.startswith("trace_corr_")})
            lmd.update(residual_checks(path, localmd_denoised(WORK / f"localmd-{name}")))
            entry["localmd"] = lmd
        results["movies"][name] = entry

    if not (args.quick or args.skip_rss):
        results["rss_vs_length"] = rss_vs_length(sim)

    cols = [("wall_s", "wall s", "{:.2f}"), ("cpu_s", "cpu s", "{:.1f}"), ("peak_rss_bytes", "peak RSS GB", "{:.2f}"),
            ("ratio_bytes", "ratio (bytes)", "{:.1f}"), ("noise_rms_reduction", "noise RMS red.", "{:.2f}"),
            ("median_trace_corr_denoised", "trace corr", "{:.3f}"), ("median_trace_corr_raw", "raw corr", "{:.3f}"),
            ("residual_over_raw_noise_median", "resid/noise", "{:.3f}"),
            ("highband_noise_reduction_median", "HF noise red.", "{:.2f}")]
    header = f"{'movie':<24}{'tool':<9}" + "".join(f"{c[1]:>15}" for c in cols)
    print(header)
    for name, entry in results["movies"].items():
        for tool, r in entry.items():
            row = f"{name:<24}{tool:<9}"
            for key, _, fmt in cols:
                v = r.get(key)
                if key == "peak_rss_bytes" and v is not None:
                    v = v / 1e9
                row += f"{(fmt.format(v) if v is not None else '-'):>15}"
            print(row)
        for tool, r in entry.items():
            if tool.startswith("pmd-"):
                if "localmd" in entry:
                    print(f"{'':<18}{tool} speed-up vs localmd: {entry['localmd']['wall_s'] / r['wall_s']:.2f}x")
                print(f"{'':<18}{tool} decompression: {r['decompress']['gb_per_s_per_core']:.2f} GB/s per core "
                      f"(uint16, full frames)")
    for row in results.get("rss_vs_length", []):
        print(f"pmd compress, {row['frames']:>6} frames of 256x256: peak RSS {row['peak_rss_bytes'] / 1e9:.2f} GB, "
              f"{row['wall_s']:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
