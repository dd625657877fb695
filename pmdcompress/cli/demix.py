"""``pmd demix`` and ``pmd evaluate``: thin click commands over :mod:`pmdcompress.demix`.

The ``pmd`` group registers them and maps exceptions to exit codes; messages go
to stderr, and ``pmd evaluate`` prints its scores as JSON on stdout.  The heavy
imports happen inside the commands so that ``pmd --help`` stays fast.
"""

from __future__ import annotations

import json

import click

from .common import progress_for as _progress
from .common import say as _say


@click.command("demix")
@click.argument("store")
@click.option("-o", "--output", default=None, help="Output result (default: STORE's stem + .demix.zarr).")
@click.option("--kind", type=click.Choice(["2p", "1p", "voltage"]), default="2p", show_default=True,
              help="2p: low-rank background; 1p: stronger background; voltage: signed traces.")
@click.option("--fs", default=None, type=float,
              help="Frame rate in Hz (default: the store's, from the movie's metadata; never assumed).")
@click.option("--export", default="", metavar="LIST",
              help="Comma-separated extra outputs: caiman, suite2p, nwb (nwb needs pynwb).")
@click.option("--nwb-metadata", default=None, metavar="YAML",
              help="Session metadata for --export nwb (subject, session start, experimenter, indicator, "
                   "location; see the README): makes the NWB file DANDI-ready.")
@click.option("--cell-radius", default=None, type=float,
              help="Typical soma radius, pixels (default: estimated from a first pass at 6).")
@click.option("--corr-threshold", default=0.7, show_default=True, type=float,
              help="Correlation-image level a seed must reach.")
@click.option("--background-rank", default=None, type=int, help="Rank of the fluctuating background (default 3).")
@click.option("--max-iter", "max_num_iter", default=8, show_default=True, type=int,
              help="Alternating updates per pass.")
@click.option("--seed-from-mean/--no-seed-from-mean", default=None,
              help="Also add cells of the mean image that never fire (default: on for 2p and voltage, off for 1p).")
@click.option("--figures/--no-figures", default=False, show_default=True,
              help="Also draw contours.png and traces.png (matplotlib: about 2 CPU-s, like a short fit).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.pass_context
def demix_command(ctx, store, output, kind, fs, export, nwb_metadata, cell_radius, corr_threshold, background_rank,
                  max_num_iter, seed_from_mean, figures, overwrite):
    """Find neurons in STORE (a .pmd.zarr): footprints, traces, dF/F, background and metrics."""

    from ..pipeline.demix import default_output, demix

    if output is None:
        output = str(default_output(store))
    result = demix(store, output, kind=kind, fs=fs, export=export, overwrite=overwrite, nwb_metadata=nwb_metadata,
                   progress=_progress(ctx),
                   seed_from_mean=seed_from_mean, figures=figures, cell_radius=cell_radius,
                   corr_threshold=corr_threshold, background_rank=background_rank, max_num_iter=max_num_iter)
    extra = ", ".join(str(p) for p in result.extra_outputs.values())
    rate = f"{result.fs:g} Hz" if result.fs else "frame rate unknown"
    _say(ctx, f"pmd: {store} -> {output}: {result.n_components} components, {result.n_frames} frames ({rate}), "
              f"{_spike_model(result)}{result.metadata['timings']['total_s']:.2f} s"
              + (f"; also {extra}" if extra else ""))


def _spike_model(result) -> str:
    """``"spikes AR(2), rise 96 ms, "``, ``"spikes AR(1), "``, or nothing where no spikes were inferred."""
    model = result.spike_model
    return f"spikes {model}, " if model else ""


@click.command("evaluate")
@click.argument("result")
@click.option("--truth", required=True, help="Ground truth: neurofinder JSON, label image, *.truth.zarr, CaImAn HDF5.")
@click.option("--iou", default=0.3, show_default=True, type=float, help="IoU a matched pair must reach.")
@click.option("--mode", type=click.Choice(["iou", "centroid"]), default="iou", show_default=True)
@click.option("--max-distance", default=5.0, show_default=True, type=float,
              help="Centroid distance a matched pair must not exceed (--mode centroid), pixels.")
@click.option("--pairs", is_flag=True, help="Also list every matched pair.")
@click.pass_context
def evaluate_command(ctx, result, truth, iou, mode, max_distance, pairs):
    """Score RESULT (a .demix.zarr or other regions) against ground truth; JSON on stdout."""
    from ..pipeline.demix import evaluate

    scores = evaluate(result, truth, iou=iou, mode=mode, max_distance=max_distance)
    somata = scores.get("somata")
    if not pairs:
        for part in (scores, somata or {}):
            part.pop("pairs", None)
    click.echo(json.dumps(scores, indent=2))
    notes = []
    if "crop" in scores:
        (y0, y1), (x0, x1) = scores["crop"]
        notes.append(f"the store's crop, rows {y0}:{y1}, columns {x0}:{x1}; {scores['n_true_outside_crop']} outside "
                     "it left out")
    if scores.get("n_true_dendrites"):  # a simulated truth with dendrite segments: somata scored alone too
        notes.append(f"{somata['tp']} of {somata['n_true']} somata; {scores['n_true_dendrites']} dendrite segments "
                     "not scored as somata")
    what = "sources" if scores.get("n_true_dendrites") else "cells"
    _say(ctx, f"pmd: {scores['tp']} of {scores['n_true']} {what} found" + (f" ({'; '.join(notes)})" if notes else "")
         + f", {scores['fp']} false; F1 {scores['f1']:.3f}"
         + (f", somata {somata['f1']:.3f}" if scores.get("n_true_dendrites") else ""))
    if scores.get("systematic_offset"):
        (oy, ox), (dy, dx) = scores["median_centroid_offset"], scores["offset_pixels"]
        _say(ctx, f"pmd: note: the matched regions sit a median {oy:+.1f} rows, {ox:+.1f} columns from their truth "
                  f"regions, a systematic offset (the truth's coordinate convention, e.g. 1-based?); mean IoU "
                  f"{scores['mean_iou']:.3f}, {scores['mean_iou_truth_moved']:.3f} for the same pairs with the truth "
                  f"moved {dy:+d}, {dx:+d}")
