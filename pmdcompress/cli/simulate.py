"""``pmd simulate`` and ``pmd demo``: synthetic movies with their ground truth.

Thin click commands over :mod:`pmdcompress.simulate`; the heavy imports happen
inside them so that ``pmd --help`` stays fast.
"""

from __future__ import annotations

import json
import pathlib
import time

import click

from ..io.atomic import check_output_path
from .common import progress_for as _progress
from .common import say as _say

# Kept in step with pmdcompress.simulate.KINDS (tests/test_regimes.py checks it) without importing numpy here.
SIMULATE_KINDS = ("2p", "1p", "1p-correlated", "voltage", "widefield", "dendritic", "2p-dense", "3p", "2p-real",
                  "2p-real-bright")


@click.command("simulate")
@click.argument("output", default="demo.tif")
@click.option("--frames", "n_frames", default=3000, show_default=True, type=int, help="Number of frames.")
@click.option("--shape", default="256x256", show_default=True, help="Frame size HxW.")
@click.option("--neurons", "n_neurons", default=None, type=int,
              help="Number of sources (default: 100; for the 3p and 2p-real kinds, the kind's density per area).")
@click.option("--photons", default=None, type=float,
              help="Mean photons per pixel per frame, lower is noisier (default: 1; the 3p and 2p-real kinds' own).")
@click.option("--kind", type=click.Choice(SIMULATE_KINDS), default="2p", show_default=True,
              help="Regime: 2p/1p calcium, 1p-correlated (noise shared between neighbours), voltage (1 kHz), "
                   "widefield, dendritic (thin segments), 2p-dense (dense field), 3p (three-photon: 0.2 photons/px "
                   "at 2 Hz), 2p-real and 2p-real-bright (calibrated to the rank per patch of real two-photon movies).")
@click.option("--fs", type=float, default=None,
              help="Frame rate in Hz (default: the kind's: 30; voltage 1000, 2p-real 7, 3p 2).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--no-truth", is_flag=True, help="Write the movie only (no STEM.truth.zarr: for scale tests).")
@click.pass_context
def simulate(ctx, output, n_frames, shape, n_neurons, photons, kind, fs, seed, overwrite, no_truth):
    """Write a seeded synthetic movie to OUTPUT and its ground truth beside it (STEM.truth.zarr)."""
    from ..options import parse_pair
    from ..simulate import simulate_movie

    hw = parse_pair(shape, "shape")
    info = simulate_movie(output, n_frames=n_frames, shape=hw, n_neurons=n_neurons, photons=photons, kind=kind,
                          fs=fs, seed=seed, overwrite=overwrite, truth=not no_truth)
    what = "" if no_truth else " and its ground truth"
    dendrites = f", {info['n_dendrites']} of them dendrite segments" if info["n_dendrites"] else ""
    _say(ctx, f"pmd: wrote {output} ({n_frames}x{hw[0]}x{hw[1]}, {info['attrs']['n_neurons']} sources{dendrites})"
              f"{what}")


@click.command("demo")
@click.argument("folder", default="pmd-demo")
@click.option("--overwrite", is_flag=True, help="Replace an existing demo folder's files.")
@click.pass_context
def demo(ctx, folder, overwrite):
    """Simulate a movie, compress it and score the result against the ground truth (no download)."""

    import numpy as np

    from ..errors import OutputError
    from ..io.readers import open_movie
    from ..pipeline.compress import compress as run
    from ..simulate import simulate_movie
    from ..simulate.groundtruth import evaluate_against_truth, load_truth

    root = pathlib.Path(folder)
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root}: is a file, not a folder; choose another demo folder")
    if not root.parent.is_dir():
        raise OutputError(f"{root}: parent folder {root.parent} does not exist")
    root.mkdir(exist_ok=True)
    movie = root / "demo.tif"
    check_output_path(root / "demo.pmd.zarr", overwrite=overwrite, folder=True)  # before simulating
    if overwrite or not movie.exists():
        _say(ctx, f"pmd: simulating {movie} (1500 x 128 x 128, 30 neurons)")
        simulate_movie(movie, n_frames=1500, shape=(128, 128), n_neurons=30, seed=0, overwrite=overwrite)
    start = time.perf_counter()
    store = run(movie, root / "demo.pmd.zarr", overwrite=overwrite, progress=_progress(ctx))
    elapsed = time.perf_counter() - start
    with open_movie(movie) as raw:
        scores = evaluate_against_truth(raw, store, load_truth(movie))
    info = store.info()
    summary = {"movie": str(movie), "store": str(root / "demo.pmd.zarr"), "compress_s": round(elapsed, 3),
               "compression_ratio_bytes": round(info["compression_ratio_bytes"], 2), "total_rank": info["total_rank"]}
    summary.update({k: round(float(v), 4) for k, v in scores.items() if np.isscalar(v)})
    click.echo(json.dumps(summary, indent=2))
