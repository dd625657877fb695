"""``pmd denoise`` and ``pmd report``: thin click commands over :mod:`pmdcompress.pipeline.denoise` and
:mod:`pmdcompress.pipeline.report`.

They are plain ``click.command`` functions; the ``pmd`` group registers them and
maps exceptions to exit codes.  Messages go to stderr; ``-q`` keeps only errors.
"""

from __future__ import annotations

import time

import click

from .common import input_options
from .common import progress_for as _progress
from .common import say as _say


def _summary(ctx, report: dict | None, folder) -> None:
    if report is None:
        return
    from ..report.html import summary_lines

    _say(ctx, "\n".join(summary_lines(report)))
    _say(ctx, f"pmd: report in {folder}/index.html")


@click.command("denoise")
@click.argument("source")
@click.option("-o", "--output", required=True, help="Denoised movie: .tif/.tiff, .zarr or .npy (same shape).")
@click.option("--report", "report", default=None, metavar="FOLDER", help="Also write an SNR report folder.")
@click.option("--movie", default=None, help="Raw movie, when SOURCE is a store (default: the store's input beside it).")
@click.option("--truth", default=None, help="Ground truth (a pmd simulate .truth.zarr, or its movie) for the report.")
@click.option("--store", default=None, help="Keep the compressed factors in this store (default: temporary).")
@click.option("--dtype", default="float32", show_default=True,
              help="float32, original (the input's dtype, rounded and clipped), uint16, ...")
@click.option("--movie-preview", is_flag=True, help="Add an animated GIF (raw | denoised | residual) to the report.")
@click.option("--no-heldout", is_flag=True, help="Skip the even/odd-frame fits of the held-out validation.")
@input_options
@click.option("--patch", default=None, help="Patch size N or HxW (pixels); default that of pmd compress.")
@click.option("--overlap", default=None, help="Overlap of neighbouring patches N or HxW (pixels).")
@click.option("--max-rank", default=None, type=int, help="Most components kept per patch.")
@click.option("--method", type=click.Choice(["pmd", "svd"]), default=None,
              help="Per-patch solver: pmd (penalized, best denoising; the default here) or svd (fast).")
@click.option("--temporal-filter/--no-temporal-filter", default=None,
              help="Trend-filter each temporal factor within its noise level (default: on).")
@click.option("--seed", default=None, type=int, help="Seed of every random draw.")
@click.option("--workers", default=None, type=int, help="Threads (default: all cores or $PMD_NUM_WORKERS).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.pass_context
def denoise_command(ctx, source, output, report, movie, truth, store, dtype, movie_preview, no_heldout, frames, crop,
                    plane, channel, dataset, frame_rate, frame_shape, patch, overlap, max_rank, method,
                    temporal_filter, seed, workers, overwrite):
    """Denoise SOURCE (a movie, or a store made by pmd compress) into a movie, with an optional report."""

    from ..options import parse_pair
    from ..pipeline.denoise import denoise

    if frame_shape is not None:
        frame_shape = parse_pair(frame_shape, "frame_shape")
    options = {k: v for k, v in (("frames", frames), ("crop", crop), ("plane", plane), ("channel", channel),
                                 ("dataset", dataset), ("frame_rate", frame_rate), ("frame_shape", frame_shape),
                                 ("overlap", overlap), ("max_rank", max_rank),
                                 ("seed", seed), ("method", method), ("temporal_filter", temporal_filter))
               if v is not None}
    if patch is not None:
        options["patch_shape"] = patch
    start = time.perf_counter()
    result = denoise(source, output, report=report, overwrite=overwrite, truth=truth, movie_preview=movie_preview,
                     movie=movie, store=store, dtype=dtype, heldout=not no_heldout, workers=workers,
                     progress=_progress(ctx), **options)
    t, y, x = result["shape"]
    _summary(ctx, result["report"], report)
    _say(ctx, f"pmd: {source} -> {output}: {t}x{y}x{x} {result['dtype']} in {time.perf_counter() - start:.2f} s")


@click.command("report")
@click.argument("movie")
@click.argument("store")
@click.option("-o", "--output", required=True, metavar="FOLDER", help="Report folder (index.html, report.json, ...).")
@click.option("--truth", default=None, help="Ground truth (a pmd simulate .truth.zarr, or its movie).")
@click.option("--movie-preview", is_flag=True, help="Add an animated GIF (raw | denoised | residual).")
@click.option("--no-heldout", is_flag=True, help="Skip the even/odd-frame fits of the held-out validation.")
@click.option("--no-whole-split", is_flag=True,
              help="Skip the whole-movie photon split (signal removed with most of the photons: one more "
                   "compression of the split crop).")
@click.option("--workers", default=None, type=int, help="Threads (default: all cores or $PMD_NUM_WORKERS).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report folder.")
@click.pass_context
def report_command(ctx, movie, store, output, truth, movie_preview, no_heldout, no_whole_split, workers, overwrite):
    """Write an SNR report (figures, numbers) of STORE against the raw MOVIE it was made from."""

    from ..pipeline.report import make_report

    start = time.perf_counter()
    report = make_report(movie, store, output, truth=truth, overwrite=overwrite, movie_preview=movie_preview,
                         heldout=not no_heldout, workers=workers, progress=_progress(ctx),
                         whole_split=not no_whole_split)
    _summary(ctx, report, output)
    _say(ctx, f"pmd: report of {store} in {time.perf_counter() - start:.2f} s")
