"""Benchmark: voltage spikes kept by the long rows' temporal filter (64 x 64 x 12000 voltage simulations).

    python benchmarks/bench_long_voltage.py [--seeds 10,7,3] [--frames 12000] [--workdir DIR]
                                            [--out benchmarks/results/long_voltage.json]

Rows longer than ``BUDGET_WINDOW_FRAMES`` (4000) are decided on a central window and fitted once
(``long_row_filter``); fast events that only a smoother fit restores are what that could lose.
For each seed: ``pmd simulate --kind voltage`` (64 x 64, 8 neurons, 40 photons per frame, 1 kHz),
compressed in this process at default settings with one worker, and scored against the truth:

- ``spike_amplitude_kept``: the median over spikes of the denoised footprint-weighted trace's
  spike amplitude over the clean one's (``bench_fidelity.spike_amplitudes``);
- ``noise_rms_reduction``: RMS of (raw - clean) over RMS of (denoised - clean);
- the total rank and the compression's CPU seconds.

Run it from the tree to measure (``PYTHONPATH=$PWD``); compare trees side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_fidelity import footprint_traces, spike_amplitudes  # noqa: E402


def voltage_long_case(seed: int, n_frames: int, folder: Path) -> dict:
    import tifffile
    import zarr

    import pmdcompress
    from pmdcompress.simulate import simulate_movie

    info = simulate_movie(folder / f"voltage{seed}.tif", kind="voltage", n_frames=n_frames, shape=(64, 64),
                          n_neurons=8, photons=40.0, seed=seed, overwrite=True)
    raw = tifffile.imread(info["movie"]).astype(np.float32)
    truth = zarr.open_group(str(info["truth"]), mode="r")
    clean = truth["clean"][...].astype(np.float64)
    footprints, spikes = truth["footprints"][...], truth["spikes"][...]
    clean_amps = spike_amplitudes(footprint_traces(clean, footprints), spikes)
    cpu = time.process_time()
    store = pmdcompress.compress(raw, None, workers=1, hash_input=False)
    cpu = time.process_time() - cpu
    den = store.read(0, raw.shape[0]).astype(np.float64)
    amps = spike_amplitudes(footprint_traces(den, footprints), spikes)
    return {"seed": seed, "frames": n_frames, "n_spikes": int(clean_amps.size),
            "spike_amplitude_kept": float(np.median(amps / clean_amps)),
            "noise_rms_reduction": float(np.sqrt(np.mean((raw - clean) ** 2) / np.mean((den - clean) ** 2))),
            "total_rank": int(store.metadata.total_rank), "cpu_s": cpu}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="10,7,3")
    ap.add_argument("--frames", type=int, default=12000)
    ap.add_argument("--workdir", default=None, help="where the simulations go (default: a temporary folder)")
    ap.add_argument("--out", default=str(HERE / "results" / "long_voltage.json"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            row = voltage_long_case(seed, args.frames, Path(tmp))
            rows.append(row)
            print(f"seed {seed}: spike amplitude kept {row['spike_amplitude_kept']:.3f}, noise RMS reduction "
                  f"{row['noise_rms_reduction']:.2f}x, rank {row['total_rank']}, {row['cpu_s']:.1f} CPU s", flush=True)
    out = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg()[0],
           "tree": str(Path.cwd()), "cases": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
