"""Benchmark: is the residual (raw minus denoised) the noise, and only the noise, on every kind of movie?

    PYTHONPATH=. python benchmarks/bench_robust.py [--quick] [--cases NAME ...] [--no-real] [--diagnose]
                                                   [--out FILE.json]

Issue 13 asks, on every real movie and with the defaults only, for a residual std within 0.95-1.10 of the noise
std and a residual local correlation within 0.02 of what the noise alone gives.  Short movies (a fit of k
components over T frames keeps about k / T of the noise), 8-bit movies, one-photon movies with a shared
fluctuating background, spatially correlated noise, widefield and voltage movies each bend one of the two.

* **simulated movies** (``pmd simulate`` regimes, shortened, re-quantised or re-scaled to the kinds the
  evaluation runs), with ground truth: the true error reduction (noise RMS over the error's RMS), the
  residual's std over the true noise's std (median over pixels), the residual's local correlation beside that
  of the true noise, and the same two numbers measured without the truth as on a real movie (below);
* **real movies** (``../shared/data/*/movie.tif``): the residual's std over the noise std estimated from the
  movie (upper-half-band PSD less what each pixel shares with its annulus,
  :func:`pmdcompress.preprocess.coherent_noise_std`; also the plain first-difference estimate), and the
  residual's local correlation beside that of the noise alone (frame differences less what each pixel shares
  with its annulus).

``--diagnose`` splits each simulated case's error (:func:`kept_noise_diagnosis`).  What it showed (session 7):
on noise correlated over several pixels (``1p 63 frames blurred noise``, the simulation matching
inscopix_1p_part2) the fit keeps 0.110 of the noise's variance (true residual/noise 0.948) because its
components are smooth: noise of that correlation along them is 0.079 of its energy whatever they were fitted on
(0.093 for the noise they were fitted on), against 0.004-0.008 on uncorrelated noise; each factor then carries
about 5x the noise of one pixel.  Every factor carries 10x or more signal than the noise it keeps, and the
signals are rough (frame-to-frame changes 1.3-2x the factor's noise), so neither the rank test nor the temporal
filter can drop it without dropping signal: the trend filter takes in-span error 0.092 -> 0.076, a Wiener filter
told each factor's realised signal spectrum 0.060.  benchmarks/bench_robust_levers.py tries the levers one at a
time (results/robust_levers.json).  On short movies the stored per-pixel mean kept ``1 / T`` of the noise:
most of the error of 40-100-frame two-photon cases (0.025 of 0.035, 0.010 of 0.017); compress now smooths the
mean image where cross-validation says it pays (:func:`pmdcompress.preprocess.mean_correction`;
results/robust_s7_before.json is this benchmark before that, results/robust.json after).

Local correlation: the mean over pixels of the mean Pearson correlation (over time) with the 8 neighbours.
Every compression runs with the defaults, ``workers=1``, in this process.  Prints a table and writes JSON
(``results/robust.json``; ``results/robust_main_eef90f7.json`` is the same run on main before session 5).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

# The residual measures and the real movies' folder of the real-movie benchmark, one definition each.
from bench_real import SHARED, local_correlation, noise_std

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "robust"

#: (name, simulate_movie arguments, post-processing): the simulated cases.  ``uint8``: the movie rescaled so that
#: its 99.9th percentile is 250 and rounded to 8 bits (the truth rescaled the same way), as an 8-bit camera or an
#: export would.  ``blurred-noise``: the simulated noise replaced by Gaussian noise of the same level, shared over
#: several pixels (:func:`blurred_noise`) as on a real microendoscope clip (a sensor's point spread, resampling).
SIM_CASES = [
    ("2p short 40 frames", dict(kind="2p", n_frames=40, shape=(96, 96), n_neurons=25, photons=2.0, seed=1), None),
    ("2p 100 frames", dict(kind="2p", n_frames=100, shape=(96, 96), n_neurons=25, photons=2.0, seed=2), None),
    ("2p-dense uint8 240 frames", dict(kind="2p-dense", n_frames=240, shape=(80, 96), n_neurons=30, photons=3.0,
                                       seed=3, fs=3.0), "uint8"),
    ("1p short 63 frames 10 Hz", dict(kind="1p", n_frames=63, shape=(112, 112), n_neurons=30, photons=200.0,
                                      seed=4, fs=10.0), None),
    ("1p-correlated 100 frames uint8", dict(kind="1p-correlated", n_frames=100, shape=(96, 96), n_neurons=25,
                                            photons=100.0, seed=5, fs=10.0), "uint8"),
    ("1p 34 frames", dict(kind="1p", n_frames=34, shape=(96, 96), n_neurons=20, photons=100.0, seed=6,
                          fs=10.0), None),
    ("widefield 34 frames", dict(kind="widefield", n_frames=34, shape=(96, 96), n_neurons=15, photons=500.0,
                                 seed=34, fs=10.0), None),
    ("widefield 100 frames", dict(kind="widefield", n_frames=100, shape=(96, 96), n_neurons=15, photons=500.0,
                                  seed=7, fs=20.0), None),
    ("dendritic 300 frames", dict(kind="dendritic", n_frames=300, shape=(64, 64), n_neurons=30, photons=3.0,
                                  seed=8), None),
    ("1p 63 frames blurred noise", dict(kind="1p", n_frames=63, shape=(112, 112), n_neurons=30, photons=200.0,
                                        seed=10, fs=10.0), "blurred-noise"),
    ("voltage 1000 frames", dict(kind="voltage", n_frames=1000, shape=(64, 64), n_neurons=8, photons=40.0,
                                 seed=9), None),
    ("2p-real 600 frames", dict(kind="2p-real", n_frames=600, shape=(96, 96), seed=11), None),
    ("2p-real-bright 300 frames", dict(kind="2p-real-bright", n_frames=300, shape=(96, 96), seed=12), None),
]
QUICK = ("2p short 40 frames", "1p short 63 frames 10 Hz", "2p-dense uint8 240 frames")
REAL_MOVIES = ("inscopix_1p_part2", "sima_ca1_example", "neurofinder_dev", "optinist_mouse2p")


# --------------------------------------------------------------------------- measures


def blind_measures(raw: np.ndarray, residual: np.ndarray) -> dict:
    """The two numbers as measured on a real movie (no truth): residual / noise, local correlations."""
    from pmdcompress.preprocess import COHERENT_MIN_FRAMES, remove_coherent

    sigma = noise_std(raw)
    rms = np.sqrt(np.mean(residual.astype(np.float64) ** 2, axis=0))
    diffs = np.diff(raw.astype(np.float32), axis=0)
    fd = diffs.std(axis=0) / np.sqrt(2)
    ok = (sigma > 0) & (fd > 0)
    noise_diffs = remove_coherent(diffs) if len(diffs) >= COHERENT_MIN_FRAMES else diffs
    return {"residual_over_noise": float(np.median(rms[ok] / sigma[ok])),
            "residual_over_noise_first_differences": float(np.median(rms[ok] / fd[ok])),
            "residual_local_corr": local_correlation(residual),
            "noise_local_corr": local_correlation(noise_diffs),
            "first_differences_local_corr": local_correlation(diffs)}


def truth_measures(raw: np.ndarray, clean: np.ndarray, denoised: np.ndarray) -> dict:
    """Against the truth: the error reduction (noise RMS over the error's RMS: the issue's "noise RMS
    reduction"), the residual's std over the noise's, the noise's local correlation, and what the denoised movie
    follows of each part (per-pixel centred, over all pixels): ``noise_kept = <d, n> / <n, n>`` (the share of the
    noise's variance it passes, for a linear fit) and ``signal_removed = 1 - <d, s> / <s, s>`` (the share of the
    signal's variance it misses; the noise is independent of the signal, so neither reads the other).  Centred
    per pixel, ``noise_kept`` leaves out the stored mean's noise, ``1 / T`` of the noise's variance more."""
    noise = raw.astype(np.float64) - clean
    error = denoised - clean
    residual = raw - denoised
    noise_sd = noise.std(axis=0)
    rms = np.sqrt(np.mean(residual.astype(np.float64) ** 2, axis=0))
    ok = noise_sd > 0
    d = denoised - denoised.mean(axis=0)
    n = noise - noise.mean(axis=0)
    s = clean - clean.mean(axis=0)
    return {"true_error_reduction": float(np.sqrt(np.mean(noise**2) / np.mean(error**2))),
            "true_residual_over_noise": float(np.median(rms[ok] / noise_sd[ok])),
            "true_noise_local_corr": local_correlation(noise),
            "true_noise_kept": float(np.sum(d * n) / np.sum(n * n)),
            "true_signal_removed": float(1.0 - np.sum(d * s) / np.sum(s * s))}


def kept_noise_diagnosis(store, raw: np.ndarray, clean: np.ndarray, denoised: np.ndarray) -> dict:
    """Where the error of a simulated case comes from, in shares of the noise's energy (session 7).

    Per patch, with the store's components ``U`` (standardised, orthonormal) and the truth split into the
    signal ``S`` (less the stored mean) and the noise ``N``, both standardised:

    * ``in_span_noise``: ``||N U U^T||^2``, the noise along the components (what any temporal factor
      estimated from these pixels carries); ``in_span_noise_independent``: the same for the noise mirrored in
      space (the noise's statistics, not its values, at each pixel): the share that the components' shapes
      alone take from noise of that spatial correlation, whatever they were fitted on;
    * ``in_span_error_unfiltered``, ``in_span_error``, ``in_span_error_oracle_wiener``: the error of the
      temporal factors against the signal's own ``S U``, unfiltered, as stored (the trend filter), and for a
      per-factor Wiener filter that knows each factor's realised signal spectrum (what the best stationary
      linear filter of each factor could do: a reference, not a bound; the trend filter with its restored
      events beats it on spikes and steps);
    * ``out_of_span_signal``: ``||S - S U U^T||^2``, signal the components cannot hold (the stored mean's
      noise, ``1/T`` of the noise, counts here too), and ``total_error``: ``||D - C||^2``; ``mean_noise``:
      ``1/T``, what the input's own mean keeps (less where the store smooths it).

    Patches' terms are weighted by their overlap weights (approximate where patches overlap).
    """
    t_len = raw.shape[0]
    h, w = store.patch_shape
    spatial = np.asarray(store.spatial, np.float64)
    temporal = np.asarray(store.temporal_block(0, t_len), np.float64)
    scale = np.asarray(store.noise, np.float64)
    mean = np.asarray(store.mean, np.float64)
    noise = raw.astype(np.float64) - clean
    mirrored = noise[:, ::-1, ::-1]
    terms = dict.fromkeys(("in_span_noise", "in_span_noise_independent", "in_span_error_unfiltered",
                           "in_span_error", "in_span_error_oracle_wiener", "out_of_span_signal"), 0.0)
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = int(store.component_offsets[p]), int(store.component_offsets[p + 1])
        if k1 == k0:
            continue
        sl = (slice(None), slice(y0, y0 + h), slice(x0, x0 + w))
        s = scale[y0 : y0 + h, x0 : x0 + w].reshape(-1)
        weight = (store.weights_y[p][:, None] * store.weights_x[p][None, :]).reshape(-1) * s * s
        u = spatial[:, k0:k1]
        signal = (clean[sl].reshape(t_len, -1) - mean[y0 : y0 + h, x0 : x0 + w].reshape(-1)) / s
        own = noise[sl].reshape(t_len, -1) / s
        other = mirrored[sl].reshape(t_len, -1) / s
        terms["in_span_noise"] += float(np.sum(((own @ u) @ u.T) ** 2 * weight))
        terms["in_span_noise_independent"] += float(np.sum(((other @ u) @ u.T) ** 2 * weight))
        terms["out_of_span_signal"] += float(np.sum((signal - (signal @ u) @ u.T) ** 2 * weight))
        s_k, n_k = signal @ u, own @ u
        for j in range(k1 - k0):
            gain = float(np.sum(u[:, j] ** 2 * weight))
            truth_k, noisy = s_k[:, j], s_k[:, j] + n_k[:, j]
            terms["in_span_error_unfiltered"] += float(np.sum(n_k[:, j] ** 2)) * gain
            terms["in_span_error"] += float(np.sum((temporal[k0 + j] - truth_k) ** 2)) * gain
            power = np.abs(np.fft.rfft(truth_k)) ** 2
            wiener = power / (power + np.var(n_k[:, j]) * t_len)
            estimate = np.fft.irfft(wiener * np.fft.rfft(noisy), n=t_len)
            terms["in_span_error_oracle_wiener"] += float(np.sum((estimate - truth_k) ** 2)) * gain
    total = float(np.sum(noise**2))
    out = {k: v / total for k, v in terms.items()}
    out["total_error"] = float(np.sum((denoised - clean) ** 2)) / total
    out["mean_noise"] = 1.0 / t_len
    return out


def compress_denoise(raw: np.ndarray, **options) -> tuple[np.ndarray, dict, object]:
    import pmdcompress

    t = time.process_time()
    store = pmdcompress.compress(raw, None, hash_input=False, workers=1, **options)
    denoised = np.asarray(store.read(0, raw.shape[0]), np.float64)
    return denoised, {"rank": int(store.metadata.total_rank), "cpu_s": time.process_time() - t}, store


# --------------------------------------------------------------------------- cases


def simulated(name: str, args: dict, post: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The movie (float64) and its clean truth for one case (simulated once into WORK)."""
    import tifffile

    from pmdcompress.simulate import simulate_movie
    from pmdcompress.simulate.movie import load_truth

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / ("".join(c if c.isalnum() else "_" for c in name) + ".tif")
    if not path.exists():
        simulate_movie(path, overwrite=True, **args)
    raw = tifffile.imread(path).astype(np.float64)
    clean = np.asarray(load_truth(path).clean[:], np.float64)
    if post == "uint8":
        lo, hi = np.percentile(raw, 0.01), np.percentile(raw, 99.9)
        scale = 250.0 / (hi - lo)
        raw = np.clip(np.rint((raw - lo) * scale), 0, 255)
        clean = (clean - lo) * scale
    elif post == "blurred-noise":
        raw = clean + blurred_noise(np.random.default_rng(len(name)), clean.shape, float(np.std(raw - clean)))
    return raw, clean


def blurred_noise(rng, shape, level: float, sigma: float = 2.0, shared: float = 0.6) -> np.ndarray:
    """Gaussian noise of std ``level``, a share ``shared`` of its power blurred over ``sigma`` px in each frame.

    Its correlation falls slowly with distance (0.56, 0.47, 0.34, 0.22 at 1-4 px for the defaults), as on a real
    microendoscope clip (0.61, 0.43, 0.32, 0.24).
    """
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), (0, sigma, sigma), mode="wrap")
    noise = np.sqrt(shared) * smooth / smooth.std() + np.sqrt(1 - shared) * rng.standard_normal(shape)
    return noise * level


def run_sim(name: str, args: dict, post: str | None, options: dict, diagnose: bool = False) -> dict:
    raw, clean = simulated(name, args, post)
    data = raw.astype(np.uint8 if post == "uint8" else np.uint16) if post != "blurred-noise" else raw.astype(np.float32)
    denoised, info, store = compress_denoise(data, **options)
    row = {"movie": name, "kind": "simulated", "shape": list(raw.shape), **info}
    row.update(truth_measures(raw, clean, denoised))
    row.update(blind_measures(raw, raw - denoised))
    if diagnose:
        row["diagnosis"] = kept_noise_diagnosis(store, raw, clean, denoised)
    return row


def run_real(name: str, options: dict) -> dict | None:
    import tifffile

    path = SHARED / name / "movie.tif"
    if not path.exists():
        return None
    raw = tifffile.imread(path)
    denoised, info, _ = compress_denoise(raw, **options)
    row = {"movie": name, "kind": "real", "shape": list(raw.shape), "dtype": str(raw.dtype), **info}
    row.update(blind_measures(raw, raw.astype(np.float64) - denoised))
    return row


def show(row: dict) -> None:
    def f(key, fmt="{:.3f}"):
        v = row.get(key)
        return "-" if v is None else fmt.format(v)

    print(f"{row['movie'][:32]:32s} rank {row['rank']:5d}  ER {f('true_error_reduction', '{:6.2f}')}  "
          f"noise kept {f('true_noise_kept', '{:.4f}')} signal removed {f('true_signal_removed', '{:.4f}')}  "
          f"res/noise true {f('true_residual_over_noise')} est {f('residual_over_noise')} "
          f"(fd {f('residual_over_noise_first_differences')})  local corr res {f('residual_local_corr')} "
          f"noise true {f('true_noise_local_corr')} est {f('noise_local_corr')}  cpu {row['cpu_s']:.1f}s",
          flush=True)
    if "diagnosis" in row:
        print("    " + "  ".join(f"{k} {v:.4f}" for k, v in row["diagnosis"].items()), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--cases", nargs="*", help="simulated cases (names or unique prefixes) to run")
    ap.add_argument("--real", nargs="*", default=None, help="real movies to run (default: all found)")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--diagnose", action="store_true",
                    help="also split each simulated case's error (kept_noise_diagnosis)")
    ap.add_argument("--out", default=str(HERE / "results" / "robust.json"))
    args = ap.parse_args(argv)
    cases = SIM_CASES
    if args.quick:
        cases = [c for c in SIM_CASES if c[0] in QUICK]
    if args.cases is not None:
        cases = [c for c in SIM_CASES if any(c[0].startswith(p) for p in args.cases)]
    rows = []
    for name, sim_args, post in cases:
        rows.append(run_sim(name, sim_args, post, {}, diagnose=args.diagnose))
        show(rows[-1])
    if not args.no_real and not args.quick:
        for name in (args.real if args.real is not None else REAL_MOVIES):
            row = run_real(name, {})
            if row is not None:
                rows.append(row)
                show(row)
    import pmdcompress

    out = {"benchmark": "bench_robust", "version": pmdcompress.__version__, "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
