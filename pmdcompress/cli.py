"""The ``pmd`` command: thin wrappers over the library.

Exit codes (decided in one place, :class:`PMDGroup`): 0 success; 2 bad input or
usage (a one-line message, no traceback); 1 unexpected failure (a one-line
message; the traceback only with ``-v``); 130 interrupted.  Messages and
progress go to stderr; stdout carries only data (``pmd info --json``).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

import click

from .cli_common import parse_patch as _patch
from .cli_common import progress_for as _progress
from .cli_common import say as _say

EXIT_HELP = """\b
Exit codes: 0 success, 2 bad input or usage, 1 unexpected failure (traceback with -v), 130 interrupted."""


class PMDGroup(click.Group):
    """Maps exceptions to exit codes and one-line messages."""

    def invoke(self, ctx):
        from .errors import PMDError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except PMDError as exc:
            _report(ctx, f"error: {_one_line(exc)}", exc)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("pmd: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into exit 1
            _report(ctx, f"unexpected error: {type(exc).__name__}: {_one_line(exc)}"
                         + ("" if _verbose(ctx) else " (run with -v for the traceback)"), exc)
            ctx.exit(1)


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _verbose(ctx) -> int:
    return (ctx.obj or {}).get("verbose", 0)


def _report(ctx, message, exc):
    if _verbose(ctx):
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"pmd: {message}", err=True)




@click.group(cls=PMDGroup, epilog=EXIT_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log details to stderr (-vv for debug); tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.version_option(package_name="pmdcompress", prog_name="pmd")
@click.pass_context
def main(ctx, verbose, quiet):
    """Compress, denoise and demix functional imaging movies with penalized matrix decomposition."""
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, quiet=quiet)
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="pmd: %(message)s", stream=sys.stderr)
    logging.getLogger("pmdcompress").setLevel(level)


def _input_options(f):
    f = click.option("--frames", default=None, metavar="A:B", help="Use frames A to B only (Python slice).")(f)
    f = click.option("--plane", type=int, default=None,
                     help="Z plane (0-based) of a multi-plane movie (ImageJ hyperstack, ScanImage volume, NWB).")(f)
    f = click.option("--channel", type=int, default=None,
                     help="Channel (0-based, among the saved ones) of a multi-channel TIFF or ScanImage file.")(f)
    f = click.option("--dataset", default=None,
                     help="HDF5 dataset / Zarr array / NWB imaging series name (default: mov, then data).")(f)
    f = click.option("--fs", "frame_rate", default=None, type=float,
                     help="Frame rate in Hz (volume rate for volumes); default: from the file's metadata "
                          "(ScanImage, ImageJ, OME, NWB, suite2p ops), else stored as unknown.")(f)
    f = click.option("--frame-shape", default=None, metavar="HxW",
                     help="Frame size of a raw binary (suite2p data.bin) without its ops.npy.")(f)
    return f


def _frame_shape(value):
    """``"512x512"`` -> (512, 512); None stays None."""
    if value is None:
        return None
    from .errors import InputError

    try:
        height, width = (int(v) for v in str(value).lower().split("x"))
    except ValueError as exc:
        raise InputError(f"--frame-shape {value!r}: expected HxW, e.g. 512x512") from exc
    return height, width


@main.command()
@click.argument("movie")
@click.option("-o", "--output", default=None, help="Output store (default: MOVIE's stem + .pmd.zarr).")
@_input_options
@click.option("--patch", default="32", show_default=True, help="Patch size N or HxW (pixels).")
@click.option("--overlap", default=8, show_default=True, type=int, help="Overlap of neighbouring patches (pixels).")
@click.option("--method", type=click.Choice(["svd", "pmd"]), default="pmd", show_default=True,
              help="Per-patch solver: pmd (TV / trend-filter penalized rank-1, the paper) or svd (about 2x faster, "
                   "keeps fewer weak cells).")
@click.option("--max-rank", default=50, show_default=True, type=int, help="Most components kept per patch.")
@click.option("--consecutive-failures", default=3, show_default=True, type=int,
              help="Stop a patch after this many components in a row fail the rank test.")
@click.option("--fit-frames", default=1000, show_default=True, type=int,
              help="Frames (after binning) used to find the spatial components.")
@click.option("--fit-bin", default=None, type=int, help="Average this many frames per fit frame (default: auto).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage dtype of the factors.")
@click.option("--temporal-filter/--no-temporal-filter", default=True, show_default=True,
              help="Trend-filter each temporal factor within its noise level (PMD's temporal penalty); "
                   "turn off for signals faster than the frame rate can sample smoothly.")
@click.option("--detrend", is_flag=True,
              help="Remove a slow per-pixel baseline (bleaching, drift) before the fit; it is stored and "
                   "added back on reconstruction.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random draw.")
@click.option("--workers", default=None, type=int, help="Threads (default: all cores or $PMD_NUM_WORKERS).")
@click.option("--scheduler", default=None,
              help="Run on dask.distributed: local, tcp://host:8786, scheduler.json or slurm "
                   "(default: threads here, or $DASK_SCHEDULER_ADDRESS).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.pass_context
def compress(ctx, movie, output, frames, plane, channel, dataset, frame_rate, frame_shape, patch, overlap, method,
             max_rank,
             consecutive_failures, fit_frames, fit_bin, dtype, temporal_filter, detrend, seed, workers, scheduler,
             overwrite):
    """Compress MOVIE (TIFF/ScanImage, Zarr, .npy, HDF5, suite2p .bin, CaImAn .mmap, NWB) into a store of
    low-rank factors.  The movie must be motion-corrected (registered) first."""
    import contextlib
    import os

    from .compression import compress as run

    cluster = None
    if scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"):
        from .cluster import open_client

        cluster = open_client(scheduler)
    with cluster or contextlib.nullcontext() as client:
        store = run(movie, output, frames=frames, plane=plane, channel=channel, dataset=dataset,
                    frame_rate=frame_rate, frame_shape=_frame_shape(frame_shape),
                    overwrite=overwrite, workers=workers, client=client, progress=_progress(ctx),
                    patch_shape=_patch(patch), overlap=overlap, method=method, max_rank=max_rank,
                    consecutive_failures=consecutive_failures, fit_frames=fit_frames, fit_bin=fit_bin,
                    dtype=dtype, temporal_filter=temporal_filter, detrend=detrend, seed=seed)
    info = store.info()
    t, y, x = info["shape"]
    _say(ctx, f"pmd: {movie} -> {info['path']}: {t}x{y}x{x}, rank {info['total_rank']} over "
              f"{info['n_patches']} patches, {info['bytes_on_disk'] / 1e6:.2f} MB, "
              f"{info['compression_ratio_bytes']:.1f}x smaller, {info['timings']['total_s']:.2f} s")


@main.command()
@click.argument("store")
@click.option("-o", "--output", required=True, help="Output movie: .tif/.tiff, .zarr or .npy.")
@click.option("--frames", default=None, metavar="A:B", help="Frames A to B only.")
@click.option("--crop", default=None, metavar="Y0:Y1,X0:X1", help="Crop of the field of view.")
@click.option("--dtype", default="original", show_default=True,
              help="original (the input's dtype, rounded and clipped), float32, uint16, ...")
@click.option("--workers", default=None, type=int, help="Threads (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.pass_context
def decompress(ctx, store, output, frames, crop, dtype, workers, overwrite):
    """Reconstruct a movie (or frames / a crop of it) from STORE."""
    import time

    from .decompression import decompress as run

    start = time.perf_counter()
    result = run(store, output, frames=frames, crop=crop, dtype=dtype, overwrite=overwrite, workers=workers,
                 progress=_progress(ctx))
    t, y, x = result["shape"]
    _say(ctx, f"pmd: {store} -> {output}: {t}x{y}x{x} {result['dtype']} in {time.perf_counter() - start:.2f} s")


@main.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON on stdout.")
def info(store, as_json):
    """Shape, ranks per patch, bytes on disk, compression ratios, timings and parameters of STORE."""
    from .store.zarr_store import open_store

    d = open_store(store).info()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    r = d["rank_per_patch"]
    lines = [
        f"store           {d['path']}",
        f"format          pmdcompress-store v{d['format_version']} (pmdcompress {d['software_version']})",
        f"method          {d['method']}",
        f"shape (T,Y,X)   {' x '.join(map(str, d['shape']))}  ({d['input_dtype']})",
        "frame rate      " + (f"{d['frame_rate']:g} Hz ({d.get('frame_rate_source') or 'given'})"
                              if d.get("frame_rate") else "unknown (give --fs to pmd demix)"),
        f"patches         {d['n_patches']} of {d['patch_shape'][0]}x{d['patch_shape'][1]}, overlap "
        f"{d['overlap'][0]}x{d['overlap'][1]}",
        f"rank            {d['total_rank']} in all; per patch min {r['min']}, median {r['median']:g}, "
        f"max {r['max']}",
        f"bytes on disk   {d['bytes_on_disk']:,} ({d['factor_dtype']} factors)",
        f"ratio           {d['compression_ratio_bytes']:.1f}x by bytes vs the input, "
        f"{d['compression_ratio_vs_uint16']:.1f}x vs uint16, {d['compression_ratio_elements']:.1f}x by elements",
        f"input           {d['input'].get('name')} ({d['input'].get('size_bytes')} bytes, "
        f"sha256 {str(d['input'].get('sha256'))[:16]}...)",
        "timings         " + ", ".join(f"{k} {v:.2f}" for k, v in d["timings"].items()),
    ]
    click.echo("\n".join(lines))


@main.command()
@click.argument("output", default="demo.tif")
@click.option("--frames", "n_frames", default=3000, show_default=True, type=int, help="Number of frames.")
@click.option("--shape", default="256x256", show_default=True, help="Frame size HxW.")
@click.option("--neurons", default=100, show_default=True, type=int, help="Number of neurons.")
@click.option("--photons", default=1.0, show_default=True, type=float,
              help="Mean photons per pixel per frame (lower is noisier).")
@click.option("--kind", type=click.Choice(["2p", "1p"]), default="2p", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.pass_context
def simulate(ctx, output, n_frames, shape, neurons, photons, kind, seed, overwrite):
    """Write a seeded synthetic movie to OUTPUT and its ground truth beside it (STEM.truth.zarr)."""
    from .simulate import simulate_movie

    hw = _patch(shape)
    simulate_movie(output, n_frames=n_frames, shape=hw, n_neurons=neurons, photons=photons, kind=kind,
                   seed=seed, overwrite=overwrite)
    _say(ctx, f"pmd: wrote {output} ({n_frames}x{hw[0]}x{hw[1]}, {neurons} neurons) and its ground truth")


@main.command()
@click.argument("folder", default="pmd-demo")
@click.option("--overwrite", is_flag=True, help="Replace an existing demo folder's files.")
@click.pass_context
def demo(ctx, folder, overwrite):
    """Simulate a movie, compress it and score the result against the ground truth (no download)."""
    import pathlib
    import time

    import numpy as np

    from .compression import compress as run
    from .groundtruth import evaluate_against_truth, load_truth
    from .io.readers import open_movie
    from .simulate import simulate_movie

    root = pathlib.Path(folder)
    root.mkdir(exist_ok=True)
    movie = root / "demo.tif"
    if overwrite or not movie.exists():
        _say(ctx, f"pmd: simulating {movie} (1500 x 128 x 128, 30 neurons)")
        simulate_movie(movie, n_frames=1500, shape=(128, 128), n_neurons=30, seed=0, overwrite=True)
    start = time.perf_counter()
    store = run(movie, root / "demo.pmd.zarr", overwrite=True, progress=_progress(ctx))
    elapsed = time.perf_counter() - start
    with open_movie(movie) as raw:
        scores = evaluate_against_truth(raw, store, load_truth(movie))
    info = store.info()
    summary = {"movie": str(movie), "store": str(root / "demo.pmd.zarr"), "compress_s": round(elapsed, 3),
               "compression_ratio_bytes": round(info["compression_ratio_bytes"], 2), "total_rank": info["total_rank"]}
    summary.update({k: round(float(v), 4) for k, v in scores.items() if np.isscalar(v)})
    click.echo(json.dumps(summary, indent=2))


def _register(module: str, *names: str) -> None:
    """Add commands defined in their own modules (kept light: heavy imports happen inside them)."""
    import importlib

    mod = importlib.import_module(module, __package__)
    for name in names:
        command = getattr(mod, f"{name}_command")
        main.add_command(command, name)


_register(".demix.commands", "demix", "evaluate")
_register(".report.commands", "denoise", "report")
_register(".batch_commands", "batch")

if __name__ == "__main__":  # pragma: no cover
    main()
