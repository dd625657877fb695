"""``pmd compress``, ``pmd decompress`` and ``pmd info``: a movie into a store and back.

Thin click commands over :mod:`pmdcompress.pipeline.compress` and
:mod:`pmdcompress.pipeline.decompress`; the heavy imports happen inside them so that
``pmd --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import click

from .common import input_options
from .common import progress_for as _progress
from .common import say as _say


@click.command("compress")
@click.argument("movie")
@click.option("-o", "--output", default=None, help="Output store (default: MOVIE's stem + .pmd.zarr).")
@input_options
@click.option("--patch", default="32", show_default=True, help="Patch size N or HxW (pixels).")
@click.option("--overlap", default="8", show_default=True,
              help="Overlap of neighbouring patches N or HxW (pixels).")
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
def compress(ctx, movie, output, frames, crop, plane, channel, dataset, frame_rate, frame_shape, patch, overlap, method,
             max_rank, consecutive_failures, fit_frames, fit_bin, dtype, temporal_filter, detrend, seed, workers,
             scheduler, overwrite):
    """Compress MOVIE (TIFF/ScanImage, Zarr, .npy, HDF5, suite2p .bin, CaImAn .mmap, NWB) into a store of
    low-rank factors.  The movie must be motion-corrected (registered) first."""
    from ..options import parse_pair
    from ..pipeline.cluster import open_client
    from ..pipeline.compress import compress as run

    cluster = None
    if scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"):
        cluster = open_client(scheduler)
    with cluster or contextlib.nullcontext() as client:
        store = run(movie, output, frames=frames, crop=crop, plane=plane, channel=channel, dataset=dataset,
                    frame_rate=frame_rate,
                    frame_shape=None if frame_shape is None else parse_pair(frame_shape, "frame_shape"),
                    overwrite=overwrite, workers=workers, client=client, progress=_progress(ctx),
                    patch_shape=patch, overlap=overlap, method=method, max_rank=max_rank,
                    consecutive_failures=consecutive_failures, fit_frames=fit_frames, fit_bin=fit_bin,
                    dtype=dtype, temporal_filter=temporal_filter, detrend=detrend, seed=seed)
    info = store.info()
    t, y, x = info["shape"]
    ratio = info["compression_ratio_bytes"]  # below 1 on movies of a few pixels: the store's fixed overhead
    _say(ctx, f"pmd: {movie} -> {info['path']}: {t}x{y}x{x}, rank {info['total_rank']} over "
              f"{info['n_patches']} patches, {info['bytes_on_disk'] / 1e6:.2f} MB, "
              + (f"{ratio:.1f}x smaller" if ratio >= 1 else f"{1 / ratio:.1f}x LARGER than the input")
              + f", {info['timings']['total_s']:.2f} s")


@click.command("decompress")
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

    from ..pipeline.decompress import decompress as run

    start = time.perf_counter()
    result = run(store, output, frames=frames, crop=crop, dtype=dtype, overwrite=overwrite, workers=workers,
                 progress=_progress(ctx))
    t, y, x = result["shape"]
    _say(ctx, f"pmd: {store} -> {output}: {t}x{y}x{x} {result['dtype']} in {time.perf_counter() - start:.2f} s")


@click.command("info")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON on stdout.")
@input_options
def info(store, as_json, frames, crop, plane, channel, dataset, frame_rate, frame_shape):
    """Shape, ranks per patch, bytes on disk, compression ratios, timings and parameters of STORE; for a demix
    result its cells, frames, rate and source; for a movie file how pmd compress reads it, with the same options
    (--plane, --channel, --dataset, --frames, --crop, --fs, --frame-shape)."""
    from ..errors import OptionError
    from ..formats.demix import is_demix_result
    from ..options import parse_pair
    from ..reconstruct import open_store
    from ..report import is_store

    selection = {"frames": frames, "crop": crop, "plane": plane, "channel": channel, "dataset": dataset,
                 "frame_rate": frame_rate, "frame_shape": frame_shape}
    if is_demix_result(store):
        kind = "demix"
    elif is_store(store) or str(store).rstrip("/").endswith(".pmd.zarr"):
        kind = "store"
    else:
        kind = "movie"
    given = [name for name, value in selection.items() if value is not None]
    if given and kind != "movie":
        raise OptionError(f"{store}: {{{given[0]}}} applies to a movie file, not to a store or a demix result",
                          given[0])
    if kind == "movie":
        if frame_shape is not None:
            selection["frame_shape"] = parse_pair(frame_shape, "frame_shape")
        _movie_info(store, as_json, selection)
        return
    if kind == "demix":
        _demix_info(store, as_json)
        return
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
        f"bytes on disk   {d['bytes_on_disk']:,} ({_factor_kind(d)})",
        f"ratio           {d['compression_ratio_bytes']:.1f}x by bytes vs the data read ({_data_read(d)}), "
        f"{_vs_whole_file(d)}{d['compression_ratio_vs_uint16']:.1f}x vs uint16, "
        f"{d['compression_ratio_elements']:.1f}x by elements",
        f"input           {d['input'].get('name')} ({d['input'].get('size_bytes')} bytes, "
        f"sha256 {str(d['input'].get('sha256'))[:16]}...)",
        "timings         " + ", ".join(f"{k} {v:.2f}" for k, v in d["timings"].items()),
    ]
    click.echo("\n".join(lines))


def _movie_info(path, as_json: bool, selection: dict) -> None:
    """``pmd info`` of a movie: how pmd compress would read it (with the same ``selection``), before compressing
    it."""
    from ..io.readers import open_movie

    with open_movie(path, **selection) as movie:
        d = {"path": str(path), "format": movie.format, "shape": list(movie.shape), "dtype": str(movie.dtype),
             "frame_rate": movie.frame_rate, "frame_rate_source": movie.frame_rate_source, "plane": movie.plane,
             "channel": movie.channel, "data_bytes": movie.nbytes, "file_bytes": movie.input_identity()["size_bytes"]}
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    rate = (f"{d['frame_rate']:g} Hz ({d['frame_rate_source']})" if d["frame_rate"]
            else "unknown (give it with --fs)")
    picked = ", ".join(f"{k} {d[k]}" for k in ("plane", "channel") if d[k] is not None)
    lines = [
        f"movie           {d['path']} ({d['format']}{', ' + picked if picked else ''})",
        f"shape (T,Y,X)   {' x '.join(map(str, d['shape']))}  ({d['dtype']}, {d['data_bytes']:,} bytes of frames)",
        f"frame rate      {rate}",
    ]
    click.echo("\n".join(lines))


def _demix_info(path, as_json: bool) -> None:
    """``pmd info`` of a demix result."""
    import numpy as np

    from ..demix import open_demix

    result = open_demix(path)
    meta = result.metadata
    silent = int(np.count_nonzero(result.metrics.get("seeded_from_mean", np.zeros(result.n_components))))
    source = meta.get("input") or {}
    d = {"path": str(path), "format_version": meta.get("format_version"),
         "software_version": meta.get("software_version"), "created": meta.get("created"), "kind": meta.get("kind"),
         "n_components": result.n_components, "n_active": result.n_components - silent,
         "n_from_mean_image": silent, "n_frames": result.n_frames, "dims": list(result.dims),
         "frame_rate": result.fs, "frame_rate_source": meta.get("fs_source"),
         "cell_radius": meta.get("cell_radius_estimate"), "spike_model": result.spike_model,
         "store": source.get("store"), "movie": (source.get("movie") or {}).get("name"),
         "timings": meta.get("timings") or {}}
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    rate = f"{d['frame_rate']:g} Hz ({d['frame_rate_source']})" if d["frame_rate"] else "unknown"
    radius = f", soma radius {d['cell_radius']:.1f} px" if d["cell_radius"] else ""
    lines = [
        f"demix result    {d['path']}",
        f"format          pmdcompress-demix v{d['format_version']} (pmdcompress {d['software_version']})",
        f"kind            {d['kind']}{radius}",
        f"cells           {d['n_components']}: {d['n_active']} found by their activity, {d['n_from_mean_image']} "
        "from the mean image (silent, footprints fixed)",
        f"frames          {d['n_frames']} of {d['dims'][0]}x{d['dims'][1]}, frame rate {rate}",
        f"spikes          {d['spike_model'] or 'none'}",
        f"made from       {d['store']} (movie {d['movie']}), {d['created']}",
        "timings         " + ", ".join(f"{k} {v:.2f}" for k, v in d["timings"].items()
                                       if isinstance(v, int | float)),
    ]
    click.echo("\n".join(lines))


def _data_read(info: dict) -> str:
    """What the store holds of its input: frames x height x width in the input's dtype, and the plane/channel,
    HDF5 dataset, frames and crop of the file."""
    source = info["input"]
    picked = [f"{key} {source[key]}" for key in ("plane", "channel", "dataset") if key in source]
    if source.get("frames"):
        picked.append("frames {}:{}".format(*source["frames"]))
    if source.get("crop"):
        picked.append("crop {}:{},{}:{}".format(*source["crop"][0], *source["crop"][1]))
    return " x ".join(map(str, info["shape"])) + f" {info['input_dtype']}" + "".join(f", {p}" for p in picked)


def _vs_whole_file(info: dict) -> str:
    """The ratio against the input file as a whole, where the data read is a tenth or more smaller or larger
    (one plane/channel of a ScanImage file, some frames, a compressed file); empty otherwise."""
    whole, read = info.get("compression_ratio_vs_input_file"), info["compression_ratio_bytes"]
    if not whole or abs(whole / read - 1) < 0.1:
        return ""
    return f"{whole:.1f}x vs the whole input file, "


def _factor_kind(info: dict) -> str:
    """What the factors are on disk: format 3 and later write integer factors as narrow unsigned codes."""
    if info["factor_dtype"] == "int32" and info["format_version"] >= 3:
        return "factors as integer codes"
    return f"{info['factor_dtype']} factors"
