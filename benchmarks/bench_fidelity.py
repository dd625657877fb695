"""Benchmark: does the default compression keep the signal?  Voltage spikes over many seeds, and calcium quality.

    python benchmarks/bench_fidelity.py [--quick] [--calcium] [--out benchmarks/results/fidelity.json]

* **voltage** (``pmd simulate --kind voltage``; 1 kHz unless stated, 3000 frames): for several seeds, sizes,
  photon levels (spike amplitude against the shot noise) and one other frame rate, the median over spikes of
  the spike amplitude kept in footprint-weighted traces (denoised over clean; the amplitude is the spike's
  2-frame peak over the mean of frames -8..-3), and the noise RMS reduction against the ground truth, with
  the defaults and with ``temporal_filter=False`` (which keeps the spikes but removes less noise).  The
  spike's amplitude at its footprint's peak pixel over the shot noise there is reported per case;
* **regimes**: every other simulated kind (one-photon, with correlated noise, widefield, dendritic, dense
  two-photon; 64x64x1000, seed 2): ground-truth noise RMS reduction and residual std over the noise std;
* **calcium** (``--calcium``): the 256x256x3000 simulated movie of benchmarks/bench_compress.py (100 neurons,
  seed 0, default photons): ground-truth noise RMS reduction (>= 20x wanted) and median trace correlation
  (>= 0.99 wanted).

Every compression runs with ``workers=1`` in this process.  Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "fidelity"

#: (name, simulate_movie arguments): the voltage cases.
VOLTAGE_CASES = [
    *((f"48x48 photons 40 seed {s}", dict(shape=(48, 48), n_neurons=5, photons=40.0, seed=s)) for s in range(4)),
    *((f"64x64 photons 100 seed {s}", dict(shape=(64, 64), n_neurons=8, photons=100.0, seed=s)) for s in (10, 11)),
    ("64x64 photons 10 seed 5", dict(shape=(64, 64), n_neurons=8, photons=10.0, seed=5)),
    ("64x64 photons 40 seed 7 at 500 Hz", dict(shape=(64, 64), n_neurons=8, photons=40.0, seed=7, fs=500.0)),
]
QUICK_CASES = 2


def footprint_traces(movie: np.ndarray, footprints: np.ndarray) -> np.ndarray:
    """Footprint-weighted traces, (N, T): each footprint normalised to unit gain on itself."""
    feet = footprints.reshape(len(footprints), -1).astype(np.float64)
    w = feet / (feet**2).sum(axis=1, keepdims=True)
    return w @ movie.reshape(len(movie), -1).T


def spike_amplitudes(traces: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    """Every spike's 2-frame peak over the mean of frames -8..-3, flattened over neurons."""
    t_len = traces.shape[1]
    out = []
    for i in range(len(traces)):
        for t in np.flatnonzero(spikes[i]):
            if 10 <= t < t_len - 3:
                out.append(traces[i, t : t + 2].max() - traces[i, t - 8 : t - 2].mean())
    return np.array(out)


def peak_snr(raw: np.ndarray, clean: np.ndarray, footprints: np.ndarray, spikes: np.ndarray) -> float:
    """Median over neurons of the spike amplitude at the footprint's peak pixel over the shot noise there."""
    out = []
    for f, s in zip(footprints, spikes, strict=True):
        y, x = np.unravel_index(int(np.argmax(f)), f.shape)
        amps = spike_amplitudes(clean[None, :, y, x], s[None])
        noise = np.std(raw[:, y, x] - clean[:, y, x])
        if amps.size and noise > 0:
            out.append(float(np.median(amps)) / noise)
    return float(np.median(out)) if out else float("nan")


def voltage_case(name: str, args: dict, folder: Path) -> dict:
    import tifffile
    import zarr

    import pmdcompress
    from pmdcompress.simulate import simulate_movie

    info = simulate_movie(folder / "voltage.tif", kind="voltage", n_frames=3000, overwrite=True, **args)
    raw = tifffile.imread(info["movie"]).astype(np.float32)
    truth = zarr.open_group(str(info["truth"]), mode="r")
    clean = truth["clean"][...].astype(np.float64)
    footprints, spikes = truth["footprints"][...], truth["spikes"][...]
    clean_amps = spike_amplitudes(footprint_traces(clean, footprints), spikes)
    row = {"case": name, "simulate": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
           "n_spikes": int(clean_amps.size), "spike_over_shot_noise": peak_snr(raw, clean, footprints, spikes)}
    noise_ms = float(np.mean((raw - clean) ** 2))
    for label, opts in (("default", {}), ("no_temporal_filter", {"temporal_filter": False})):
        cpu = time.process_time()
        store = pmdcompress.compress(raw, None, workers=1, hash_input=False, **opts)
        den = store.read(0, raw.shape[0]).astype(np.float64)
        amps = spike_amplitudes(footprint_traces(den, footprints), spikes)
        row[label] = {"spike_amplitude_kept": float(np.median(amps / clean_amps)),
                      "noise_rms_reduction": float(np.sqrt(noise_ms / np.mean((den - clean) ** 2))),
                      "total_rank": int(store.metadata.total_rank), "cpu_s": time.process_time() - cpu}
    return row


REGIMES = ("1p", "1p-correlated", "widefield", "dendritic", "2p-dense")


def regime_case(kind: str, folder: Path) -> dict:
    import tifffile
    import zarr

    import pmdcompress
    from pmdcompress.simulate import simulate_movie

    info = simulate_movie(folder / f"{kind}.tif", kind=kind, n_frames=1000, shape=(64, 64), n_neurons=15, seed=2,
                          overwrite=True)
    raw = tifffile.imread(info["movie"]).astype(np.float32)
    clean = zarr.open_group(str(info["truth"]), mode="r")["clean"][...].astype(np.float64)
    cpu = time.process_time()
    store = pmdcompress.compress(raw, None, workers=1, hash_input=False)
    den = store.read(0, raw.shape[0]).astype(np.float64)
    noise = raw - clean
    return {"kind": kind, "noise_rms_reduction": float(np.sqrt(np.mean(noise**2) / np.mean((den - clean) ** 2))),
            "residual_over_noise": float(np.std(raw - den) / np.std(noise)),
            "total_rank": int(store.metadata.total_rank), "cpu_s": time.process_time() - cpu}


def calcium_case() -> dict:
    import pmdcompress
    from pmdcompress.io.readers import open_movie
    from pmdcompress.simulate import simulate_movie
    from pmdcompress.simulate.groundtruth import evaluate_against_truth

    WORK.mkdir(parents=True, exist_ok=True)
    sim = WORK / "sim256x256x3000.tif"
    if not sim.exists():
        simulate_movie(sim, n_frames=3000, shape=(256, 256), n_neurons=100, seed=0, overwrite=True)
    cpu = time.process_time()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        store = pmdcompress.compress(sim, Path(tmp) / "sim.pmd.zarr", workers=1)
        with open_movie(sim) as raw:
            q = evaluate_against_truth(raw, store, sim.with_name(sim.stem + ".truth.zarr"))
    return {"movie": "simulated 256x256x3000, 100 neurons, seed 0", "noise_rms_reduction": q["noise_rms_reduction"],
            "median_trace_corr": q["median_trace_corr_denoised"], "total_rank": int(store.metadata.total_rank),
            "cpu_s": time.process_time() - cpu}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_CASES} voltage cases only")
    parser.add_argument("--calcium", action="store_true", help="also the 256x256x3000 calcium movie (slow)")
    parser.add_argument("--out", default=str(HERE / "results" / "fidelity.json"))
    args = parser.parse_args(argv)
    cases = VOLTAGE_CASES[:QUICK_CASES] if args.quick else VOLTAGE_CASES
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "voltage": []}
    print("| voltage case | spike / shot noise | kept (default) | kept (no filter) | noise RMS red. (default) "
          "| (no filter) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, sim_args in cases:
            r = voltage_case(name, sim_args, Path(tmp))
            results["voltage"].append(r)
            d, n = r["default"], r["no_temporal_filter"]
            print(f"| {name} | {r['spike_over_shot_noise']:.2f} | {d['spike_amplitude_kept']:.3f} | "
                  f"{n['spike_amplitude_kept']:.3f} | {d['noise_rms_reduction']:.1f}x | "
                  f"{n['noise_rms_reduction']:.1f}x |", flush=True)
    kept = [r["default"]["spike_amplitude_kept"] for r in results["voltage"]]
    results["voltage_summary"] = {"median_kept": float(np.median(kept)), "min_kept": float(np.min(kept))}
    print(f"median over cases of the spike amplitude kept: {np.median(kept):.3f} (lowest {np.min(kept):.3f})")
    results["regimes"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in REGIMES[:1] if args.quick else REGIMES:
            r = regime_case(kind, Path(tmp))
            results["regimes"].append(r)
            print(f"{kind}: noise RMS reduction {r['noise_rms_reduction']:.2f}x, residual / noise "
                  f"{r['residual_over_noise']:.3f}", flush=True)
    if args.calcium:
        results["calcium"] = c = calcium_case()
        print(f"calcium 256x256x3000: noise RMS reduction {c['noise_rms_reduction']:.2f}x, median trace corr "
              f"{c['median_trace_corr']:.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
