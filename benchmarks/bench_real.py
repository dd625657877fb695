"""Benchmark: every real movie in ../shared/data, pmd's defaults beside localmd's best configuration.

    python benchmarks/bench_real.py [--movies NAME ...] [--skip-localmd] [--out benchmarks/results/real.json]
    python benchmarks/bench_real.py --variants [NAME ...] --skip-localmd --out benchmarks/results/real_variants.json

For each movie (``../shared/data/*/movie.tif``), in one run on the same machine:

* **photon splitting** (:mod:`pmdcompress.report.photon_split`, the headline): the raw movie is converted to
  photon counts, split into two halves with the same signal and independent noise (binomial, or with the
  measured neighbour correlation modelled where the noise is shared), each tool denoises half A with its
  defaults, and is scored against half B: error reduction over all pixels and over the most active 10 %,
  and the share of B's signal that the residual holds (signal removed).  Movies without a usable
  shot-noise curve (or too short) get no number, with the reason;
* **residual checks** of each tool's fit to the whole movie: median over pixels of the residual's RMS over the
  raw noise std (upper-half-band PSD), and the residual's local correlation (mean and median over pixels of the
  correlation with the 8 neighbours) beside the noise-only level (the same on first differences of the raw
  movie; their mean reads high where active pixels' fast rises remain, see :func:`local_correlation`);
* bytes on disk and time (wall and CPU of the compression, each tool in its own process).

localmd 0.0.4 runs in its venv (``/work/peers/localmd-venv``, or ``$LOCALMD_PYTHON``; made by
``LOCALMD_VENV=/work/peers/localmd-venv bash benchmarks/peers/setup_localmd.sh``) with blocks 16x16,
overlap 6x6, background rank 5; it needs at least 256 frames.  Prints a table and writes JSON.
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

import bench_compress  # the localmd runner (benchmarks/ is on sys.path when run as a script)
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work" / "real"
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
LOCALMD_PY = Path(os.environ.get("LOCALMD_PYTHON", "/work/peers/localmd-venv/bin/python"))
if not LOCALMD_PY.exists():
    LOCALMD_PY = HERE / ".venv-localmd" / "bin" / "python"
LOCALMD_MIN_FRAMES = 256

CHILD = r"""
import json, sys, time
t = time.perf_counter()
import pmdcompress
store = pmdcompress.compress(sys.argv[1], sys.argv[2], overwrite=True)
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "cpu_s": time.process_time(), "bytes_on_disk": store.bytes_on_disk,
                  "total_rank": store.metadata.total_rank}))
"""


def run_pmd(movie: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(movie), str(out)], capture_output=True, text=True,
                          check=False, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode:
        raise RuntimeError(f"pmd compress failed on {movie}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_localmd(movie: Path, out: Path) -> dict | None:
    result = bench_compress.run_localmd(movie, out, python=LOCALMD_PY)
    if result is not None:
        result["denoised"] = out / "localmd_denoised.npy"
    return result


# --------------------------------------------------------------------------- residual checks


def noise_std(movie: np.ndarray) -> np.ndarray:
    """Per-pixel noise std from the upper half band of the PSD, without the fast signals a region shares (the
    compressor's estimate, :func:`pmdcompress.preprocess.coherent_noise_std`)."""
    from pmdcompress.preprocess import NoiseAccumulator

    t_len = movie.shape[0]
    acc = NoiseAccumulator(int(np.prod(movie.shape[1:])), frame_shape=movie.shape[1:])
    for t0 in range(0, t_len, 256):
        acc.add(np.asarray(movie[t0 : t0 + 256], np.float32).reshape(min(256, t_len - t0), -1))
    return acc.coherent_std().reshape(movie.shape[1:])


def local_correlation(x: np.ndarray, statistic=np.mean) -> float:
    """``statistic`` (the mean; :func:`numpy.median` for the robust level) over pixels of the mean Pearson
    correlation (over time) with the 8 neighbours.

    The noise-only level is this of the raw movie's first differences, which at active pixels still hold the
    signal's fast rises: their mean reads high (optinist_mouse2p: 0.119 by the mean, 0.105 by the median, 0.099
    over the quieter half of the pixels), so the table also gives both sides' medians, as ``pmd report`` does
    (``local_corr_noise``).
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    norm = np.sqrt(np.einsum("tij,tij->ij", x, x))
    h, w = x.shape[1:]
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        x0, x1 = max(0, -dx), w - max(dx, 0)
        p = (slice(0, h - dy), slice(x0, x1))
        q = (slice(dy, h), slice(x0 + dx, x1 + dx))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.einsum("tij,tij->ij", x[:, p[0], p[1]], x[:, q[0], q[1]]) / (norm[p] * norm[q])
        c = np.nan_to_num(c)
        total[p] += c
        count[p] += 1
        total[q] += c
        count[q] += 1
    return float(statistic(total / np.maximum(count, 1)))


def residual_checks(raw: np.ndarray, denoised: np.ndarray, sigma: np.ndarray) -> dict:
    residual = raw.astype(np.float32) - np.asarray(denoised, np.float32)
    rms = np.sqrt(np.mean(residual.astype(np.float64) ** 2, axis=0))
    ok = sigma > 0
    return {"residual_over_noise": float(np.median(rms[ok] / sigma[ok])),
            "residual_local_corr": local_correlation(residual),
            "residual_local_corr_median": local_correlation(residual, np.median)}


# --------------------------------------------------------------------------- photon splitting


def split_scores(raw: np.ndarray, tools: dict) -> dict:
    """Photon-splitting scores of each tool's denoiser (``tools``: name -> denoise(A))."""
    from pmdcompress.report import photon_split as ps

    counts = ps.prepare_counts(raw)
    out = {"counts": counts.summary(), "tools": {}}
    if not counts.ok:
        out["reason"] = counts.reason
        return out
    for name, denoise in tools.items():
        if denoise is None:
            continue
        t = time.perf_counter()
        try:
            result = ps.photon_split(raw, denoise, counts=counts)
        except RuntimeError as exc:
            out["tools"][name] = {"ok": False, "reason": str(exc)}
            continue
        result.pop("counts", None)
        result["seconds"] = time.perf_counter() - t
        out["tools"][name] = result
    return out


def pmd_denoiser(a: np.ndarray) -> np.ndarray:
    import pmdcompress

    return pmdcompress.compress(a, None, hash_input=False).read(0, a.shape[0])


def localmd_denoiser(folder: Path):
    import tifffile

    def denoise(a: np.ndarray) -> np.ndarray:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "half_a.tif"
        tifffile.imwrite(path, a.astype(np.float32), photometric="minisblack")
        result = run_localmd(path, folder / "out")
        if result is None:
            raise RuntimeError("localmd failed on half A")
        return np.load(result["denoised"])

    return denoise


# --------------------------------------------------------------------------- variants


def _bin2x2(movie: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 pixels (a rig binning on the camera or the scan: the counts add, the noise stays shot noise)."""
    t, h, w = movie.shape
    h2, w2 = h // 2 * 2, w // 2 * 2
    return movie[:, :h2, :w2].astype(np.float64).reshape(t, h2 // 2, 2, w2 // 2, 2).sum(axis=(2, 4))


#: Real movies a user could have recorded, made from the ones in ../shared/data (``--variants``): shorter, at half
#: the frame rate, binned, saved as 8 bits, a small field. Each is scored like the originals, so that a result tuned
#: to the four movies as they are shows here. (name: (source folder, derivation))
VARIANTS = {
    "nf_first100": ("neurofinder_dev", lambda m: m[:100]),
    "nf_every2": ("neurofinder_dev", lambda m: m[::2]),
    "nf_bin2x2": ("neurofinder_dev", lambda m: np.minimum(_bin2x2(m), 65535).astype(np.uint16)),
    "nf_uint8": ("neurofinder_dev", lambda m: np.clip(np.round(m / 8.0), 0, 255).astype(np.uint8)),
    "nf_center96": ("neurofinder_dev", lambda m: m[:, 60:156, 90:186]),
    "opt_first100": ("optinist_mouse2p", lambda m: m[:100]),
    "opt_last300_uint8": ("optinist_mouse2p", lambda m: np.clip(np.round(m[-300:] / 256.0), 0, 255).astype(np.uint8)),
    "insc_bin2x2": ("inscopix_1p_part2", lambda m: _bin2x2(m).astype(np.float32)),
}


def variant_movies(names) -> list[Path]:
    """Write each variant (once) as ``WORK/variants/NAME/movie.tif``; returns their paths."""
    import tifffile

    paths = []
    for name in names:
        source, derive = VARIANTS[name]
        path = WORK / "variants" / name / "movie.tif"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, derive(tifffile.imread(SHARED / source / "movie.tif")), photometric="minisblack")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- main


def bench_movie(path: Path, *, localmd: bool) -> dict:
    import tifffile

    from pmdcompress.preprocess import remove_coherent

    name = path.parent.name
    raw = tifffile.imread(path)
    row = {"movie": name, "shape": list(raw.shape), "dtype": str(raw.dtype), "input_bytes": path.stat().st_size}
    print(f"{name}: {raw.shape} {raw.dtype}", flush=True)
    sigma = noise_std(raw)
    # the noise alone: frame differences less what each pixel shares with its annulus (a 1-p flicker)
    diffs = remove_coherent(np.diff(raw.astype(np.float32), axis=0))
    row["noise_local_corr"] = local_correlation(diffs)
    row["noise_local_corr_median"] = local_correlation(diffs, np.median)
    del diffs
    WORK.mkdir(parents=True, exist_ok=True)
    tools = {}
    import pmdcompress

    store_path = WORK / f"{name}.pmd.zarr"
    try:
        r = run_pmd(path, store_path)
        den = pmdcompress.open(store_path)[:]
        row["pmd"] = dict(r, **residual_checks(raw, den, sigma))
        tools["pmd"] = pmd_denoiser
    except RuntimeError as exc:
        row["pmd"] = {"error": str(exc).splitlines()[-1][:300]}
    if localmd and raw.shape[0] >= LOCALMD_MIN_FRAMES:
        r = run_localmd(path, WORK / f"{name}-localmd")
        if r is not None:
            den = np.load(r.pop("denoised"))
            row["localmd"] = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "bytes_on_disk": r["factors_bytes"],
                              "total_rank": r.get("rank"), **residual_checks(raw, den, sigma)}
            tools["localmd"] = localmd_denoiser(WORK / f"{name}-localmd-split")
    elif localmd:
        row["localmd"] = {"error": f"{raw.shape[0]} frames: localmd needs at least {LOCALMD_MIN_FRAMES}"}
    row["photon_split"] = split_scores(raw, tools)
    return row


def fmt(v, spec="{:.2f}"):
    return spec.format(v) if isinstance(v, int | float) and v == v else "-"


def reduction(scores: dict) -> str:
    """Error reduction with its +- 2 SE interval; ``[>= low]`` where the interval is open above."""
    value, low, high = (scores.get(k) for k in ("error_reduction", "error_reduction_low", "error_reduction_high"))
    if value is None or not scores.get("valid"):
        return "no estimate"
    if low is None:
        return f"{value:.1f}x"
    return f"{value:.1f}x [{low:.1f}, {high:.1f}]" if high is not None else f"{value:.1f}x [>= {low:.1f}]"


def removed(scores: dict) -> str:
    """Signal removed in %, with its +- 2 SE interval (a jackknife over 16-px tiles) where one was computed;
    "not resolved" where ``pmd report`` says so (:func:`pmdcompress.report.photon_split.headline`: no signal
    variance in ``B``, an invalid error estimate or an interval wider than 30 points), since a ratio over a
    signal that is not there can read anything (the first 100 frames of optinist_mouse2p, with no signal
    variance, read 63 % on the most active pixels and -31544 % on all)."""
    from pmdcompress.report.photon_split import headline

    value = scores.get("signal_removed")
    entry = headline(scores, "signal_removed")
    if value is not None and not entry["resolved"]:
        low, high = entry["interval"]  # [None, None] where the estimate is invalid: no interval to show
        return "not resolved" + (f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None and high is not None
                                 else "")
    low, high = scores.get("signal_removed_low"), scores.get("signal_removed_high")
    text = f"{fmt(None if value is None else 100 * value, '{:.1f}')} %"
    if low is not None and high is not None:
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text


def table(rows: list[dict]) -> list[str]:
    lines = ["| movie | tool | error reduction, all (active 10 %) [+- 2 SE] | signal removed, active (all) [+- 2 SE] | "
             "residual / noise | residual local corr., mean / median (noise only) | size vs input | wall s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        split = row["photon_split"]
        for tool in ("pmd", "localmd"):
            r = row.get(tool)
            if r is None:
                continue
            s = split["tools"].get(tool)
            if s and s.get("ok"):
                er = f"{reduction(s['all'])} ({reduction(s['active'])})"
                sr = f"{removed(s['active'])} ({removed(s['all'])})"
            else:
                why = (s or {}).get("reason") or split.get("reason") or "not run"
                er, sr = f"n/a: {why[:60]}", "n/a"
            if "error" in r:
                lines.append(f"| {row['movie']} | {tool} | {r['error'][:80]} | | | | | | |")
                continue
            ratio = row["input_bytes"] / r["bytes_on_disk"] if r.get("bytes_on_disk") else float("nan")
            lines.append(f"| {row['movie']} | {tool} | {er} | {sr} | {fmt(r['residual_over_noise'], '{:.3f}')} | "
                         f"{fmt(r['residual_local_corr'], '{:.3f}')} ({fmt(row['noise_local_corr'], '{:.3f}')}) / "
                         f"{fmt(r.get('residual_local_corr_median'), '{:.3f}')} "
                         f"({fmt(row.get('noise_local_corr_median'), '{:.3f}')}) | "
                         f"{fmt(ratio, '{:.1f}')}x | {fmt(r['wall_s'], '{:.1f}')} | {fmt(r['cpu_s'], '{:.1f}')} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movies", nargs="*", help="folder names under ../shared/data (default: all)")
    parser.add_argument("--skip-localmd", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "real.json"))
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), metavar="NAME",
                        help="score these movies made from the real ones instead (none named: all of "
                             f"{', '.join(VARIANTS)})")
    args = parser.parse_args(argv)
    movies = sorted(SHARED.glob("*/movie.tif"))
    if args.movies:
        movies = [m for m in movies if m.parent.name in args.movies]
    if args.variants is not None:
        movies = variant_movies(args.variants or list(VARIANTS))
    if not movies:
        print(f"no movies under {SHARED}", file=sys.stderr)
        return 2
    rows = [bench_movie(m, localmd=not args.skip_localmd) for m in movies]
    lines = table(rows)
    print("\n".join(lines))
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "rows": rows, "table": lines}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
