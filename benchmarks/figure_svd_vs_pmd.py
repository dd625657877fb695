"""Figure: raw | svd | pmd | ground truth on the simulated movie of bench_compress.py.

    python benchmarks/figure_svd_vs_pmd.py [--movie simulated|simulated_half_photons]

Needs the stores that ``bench_compress.py`` leaves in benchmarks/work/.  Writes
benchmarks/results/svd_vs_pmd-<movie>.png: a mean of 5 frames around a bright
transient, cropped, for each, and one neuron's pixel trace.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movie", default="simulated")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import pmdcompress
    from pmdcompress.io.readers import open_movie
    from pmdcompress.simulate import load_truth

    movie = WORK / ("sim256x256x3000.tif" if args.movie == "simulated" else "sim256x256x3000-halfphotons.tif")
    truth = load_truth(movie)
    stores = {m: pmdcompress.open(WORK / f"{args.movie}-{m}.pmd.zarr") for m in ("svd", "pmd")}
    traces = np.asarray(truth.traces)
    footprints = np.asarray(truth.footprints)
    n = int(np.argmax(traces.max(axis=1) - np.median(traces, axis=1)))
    t_peak = int(np.argmax(traces[n]))
    cy, cx = np.unravel_index(np.argmax(footprints[n]), footprints[n].shape)
    y0, x0 = max(0, cy - 32), max(0, cx - 32)
    y1, x1 = min(256, y0 + 64), min(256, x0 + 64)
    t0, t1 = max(0, t_peak - 2), t_peak + 3
    with open_movie(movie) as raw:
        panels = {"raw": raw.read(t0, t1)[:, y0:y1, x0:x1].astype(np.float32).mean(0)}
        w0, w1 = max(0, t_peak - 150), min(raw.shape[0], t_peak + 150)
        raw_trace = raw.read(w0, w1)[:, cy, cx].astype(np.float32)
    for m, s in stores.items():
        panels[f"{m} ({s.info()['compression_ratio_bytes']:.0f}x smaller)"] = s[t0:t1, y0:y1, x0:x1].mean(0)
    panels["ground truth"] = np.asarray(truth.clean[t0:t1, y0:y1, x0:x1]).mean(0)
    lo, hi = np.percentile(panels["ground truth"], [1, 99.8])
    fig = plt.figure(figsize=(13, 6.2))
    for i, (name, img) in enumerate(panels.items()):
        ax = fig.add_subplot(2, 4, i + 1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    ts = np.arange(w0, w1)
    ax.plot(ts, raw_trace, color="0.75", lw=0.6, label="raw")
    for m, s in stores.items():
        ax.plot(ts, s[w0:w1, cy, cx], lw=1.0, label=m)
    ax.plot(ts, np.asarray(truth.clean[w0:w1, cy, cx]), "k--", lw=1.0, label="ground truth")
    ax.set_xlabel("frame")
    ax.set_ylabel(f"pixel ({cy}, {cx}), ADU")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    fig.suptitle(f"{args.movie}: mean of frames {t0}-{t1 - 1} around a transient of neuron {n}", fontsize=11)
    fig.tight_layout()
    out = HERE / "results" / f"svd_vs_pmd-{args.movie}.png"
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
