"""Benchmark: voltage spikes kept on dim voltage simulations, by photon level and field size (a small ROI and more).

    python benchmarks/bench_voltage_roi.py [--seeds 0,1,2] [--photons 1,3,10,40] [--frames 3000]
                                           [--out benchmarks/results/voltage_roi.json]

A new user's first try (``pmd simulate --kind voltage --shape 32x32 --neurons 3``, at the simulator's default of
1 photon per pixel per frame) keeps far less of the spikes than benchmarks/bench_fidelity.py's cases (10-100
photons).  This tells the field size apart from the photon level: for each photon level and seed, a 32x32 movie
of 3 neurons (one patch: the frame is the size of a patch) and a 64x64 movie of 8 neurons (9 overlapping
patches), 1 kHz, compressed in this process with one worker, with the defaults and with
``temporal_filter=False``, scored against the truth:

- ``spike_over_shot_noise``: the spike's amplitude at its footprint's peak pixel over the shot noise there
  (median over neurons; ``bench_fidelity.peak_snr``);
- ``neuron_strength``: the clean movie's singular values after the first (the background and bleaching), in
  noise units, over ``(T P)^(1/4)`` for a patch of ``P`` = 32x32 pixels: below 1 a source is under the
  spectral detection threshold (Baik, Ben Arous and Peche 2005) of any low-rank fit of one patch of the
  movie; the largest of them is given (the strongest neuron);
- ``kept_pooled``: the median over all spikes of the denoised footprint-weighted trace's spike amplitude over
  the clean one's (as bench_fidelity.py); ``kept_per_neuron``: each neuron's median, and their minimum;
- ``noise_rms_reduction``: RMS of (raw - clean) over RMS of (denoised - clean); the total rank.

Prints a table and writes JSON.  Run it from the tree to measure (``PYTHONPATH=$PWD``).
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
sys.path.insert(0, str(HERE))

from bench_fidelity import footprint_traces, peak_snr, spike_amplitudes  # noqa: E402

#: (label, shape, neurons): one patch, and a field of 9 overlapping patches.
FIELDS = (("32x32, 3 neurons", (32, 32), 3), ("64x64, 8 neurons", (64, 64), 8))
PATCH_PIXELS = 32 * 32


def kept_per_neuron(den_traces: np.ndarray, clean_traces: np.ndarray, spikes: np.ndarray) -> list[float]:
    """Each neuron's median over its spikes of the denoised amplitude over the clean one (nan: no spike)."""
    out = []
    for i in range(len(spikes)):
        clean = spike_amplitudes(clean_traces[i : i + 1], spikes[i : i + 1])
        den = spike_amplitudes(den_traces[i : i + 1], spikes[i : i + 1])
        out.append(float(np.median(den / clean)) if clean.size else float("nan"))
    return out


def roi_case(shape, n_neurons: int, photons: float, seed: int, n_frames: int, folder: Path) -> dict:
    import tifffile
    import zarr

    import pmdcompress
    from pmdcompress.simulate import simulate_movie

    info = simulate_movie(folder / "voltage.tif", kind="voltage", n_frames=n_frames, shape=shape,
                          n_neurons=n_neurons, photons=photons, seed=seed, overwrite=True)
    raw = tifffile.imread(info["movie"]).astype(np.float32)
    truth = zarr.open_group(str(info["truth"]), mode="r")
    clean = truth["clean"][...].astype(np.float64)
    footprints, spikes = truth["footprints"][...], truth["spikes"][...]
    noise = raw - clean
    centred = (clean - clean.mean(axis=0)) / np.maximum(noise.std(axis=0), 1e-12)
    singular = np.linalg.svd(centred.reshape(n_frames, -1), compute_uv=False)
    threshold = (n_frames * PATCH_PIXELS) ** 0.25
    clean_traces = footprint_traces(clean, footprints)
    clean_amps = spike_amplitudes(clean_traces, spikes)
    row = {"shape": list(shape), "neurons": n_neurons, "photons": photons, "seed": seed, "frames": n_frames,
           "n_spikes": int(clean_amps.size), "spike_over_shot_noise": peak_snr(raw, clean, footprints, spikes),
           "neuron_strength": float(singular[1] / threshold) if singular.size > 1 else float("nan")}
    noise_ms = float(np.mean(noise**2))
    for label, opts in (("default", {}), ("no_temporal_filter", {"temporal_filter": False})):
        cpu = time.process_time()
        store = pmdcompress.compress(raw, None, workers=1, hash_input=False, **opts)
        den = store.read(0, n_frames).astype(np.float64)
        den_traces = footprint_traces(den, footprints)
        per = kept_per_neuron(den_traces, clean_traces, spikes)
        row[label] = {"kept_pooled": float(np.median(spike_amplitudes(den_traces, spikes) / clean_amps)),
                      "kept_per_neuron": per, "kept_min": float(np.nanmin(per)),
                      "noise_rms_reduction": float(np.sqrt(noise_ms / np.mean((den - clean) ** 2))),
                      "total_rank": int(store.metadata.total_rank), "cpu_s": time.process_time() - cpu}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--photons", default="1,3,10,40")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--out", default=str(HERE / "results" / "voltage_roi.json"))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    levels = [float(p) for p in args.photons.split(",")]
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
               "frames": args.frames, "cases": []}
    print("| field | photons | seed | spike / shot noise | neuron strength | kept (default): pooled, min "
          "| kept (no filter): pooled, min | noise RMS red. (default, no filter) | rank |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, shape, n_neurons in FIELDS:
            for photons in levels:
                for seed in seeds:
                    r = roi_case(shape, n_neurons, photons, seed, args.frames, Path(tmp))
                    results["cases"].append(r)
                    d, n = r["default"], r["no_temporal_filter"]
                    print(f"| {label} | {photons:g} | {seed} | {r['spike_over_shot_noise']:.2f} | "
                          f"{r['neuron_strength']:.2f} | {d['kept_pooled']:.2f}, {d['kept_min']:.2f} | "
                          f"{n['kept_pooled']:.2f}, {n['kept_min']:.2f} | {d['noise_rms_reduction']:.1f}x, "
                          f"{n['noise_rms_reduction']:.1f}x | {d['total_rank']} |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
