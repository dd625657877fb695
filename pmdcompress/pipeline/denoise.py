"""``pmd denoise``: the denoised movie (compressing first unless given a store), with an optional report.

The movie is written while the report's single pass streams it (see
:func:`pmdcompress.report.analyse`), or by :func:`pmdcompress.pipeline.decompress.decompress`
when no report is asked for.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from ..errors import InputError, OptionError
from ..io.atomic import atomic_output, check_not_source, check_output_path, input_paths, output_lock, partial_path
from ..io.readers import Movie, open_movie
from ..io.writers import open_writer
from ..options import output_dtype
from ..reconstruct import PMDStore, open_store
from ..report import analyse, is_store, open_raw, prefetch_matplotlib, write_report
from .compress import compress
from .decompress import decompress
from .photon_split import split_scratch
from .report import analysis_hooks, open_truth

__all__ = ["denoise"]


def denoise(movie_or_store, output, *, report=None, overwrite: bool = False, truth=None, movie_preview: bool = False,
            movie=None, store=None, dtype="float32", heldout: bool = True, workers=None, progress=None,
            **compress_options) -> dict:
    """Write the denoised movie (and optionally a report), compressing first unless given a store.

    Parameters
    ----------
    movie_or_store : path, ndarray, Movie or PMDStore
        The raw movie, or a store made from it (then nothing is compressed).
    output : path
        The denoised movie: ``.tif``/``.tiff`` (BigTIFF when large), ``.zarr`` or
        ``.npy``; same frames and shape as the input, streamed.
    report : path, optional
        Report folder (see :func:`make_report`).
    overwrite : bool
        Replace existing outputs.
    truth : path or Truth, optional
        Ground truth for the report.
    movie_preview : bool
        Animated preview in the report.
    movie : path, optional
        The raw movie when ``movie_or_store`` is a store (default: the store's
        input beside it, if present).
    store : path, optional
        Keep the compressed factors there (default: a temporary store, deleted).
    dtype : str
        Output dtype: ``float32`` (default), ``original`` (the input's, rounded
        and clipped) or any numpy dtype name.
    heldout, workers, progress
        As for :func:`make_report`; ``workers`` and ``progress`` also drive the compression.
    **compress_options
        Options of :func:`pmdcompress.compress` (patch_shape, overlap, max_rank, ...,
        and the input selection frames/plane/channel/dataset).

    Returns
    -------
    dict
        ``output``, ``shape``, ``dtype``, ``store`` (path or None), ``report``
        (the report's JSON content, or None) and ``timings``.
    """
    timings = {}
    start = time.perf_counter()
    given_store = is_store(movie_or_store)
    # Validate every output before any work.
    inputs = input_paths(movie_or_store, movie, truth)
    check_output_path(output, overwrite=overwrite, inputs=inputs)
    if report is not None:
        check_output_path(report, overwrite=overwrite, inputs=inputs, folder=True)
        if Path(report).resolve() == Path(output).resolve():
            raise InputError(f"{report}: the report folder and the output movie must differ")
    if store is not None:
        if given_store:
            raise OptionError(f"{store}: {{store}} applies only when denoising a movie, not a store", "store")
        check_output_path(store, overwrite=overwrite, inputs=inputs, folder=True)
    if report is None:  # these only shape a report: given without one, they would be dropped without a word
        unused = [name for name, given in (("truth", truth is not None), ("movie_preview", movie_preview),
                                           ("heldout", not heldout), ("movie", given_store and movie is not None))
                  if given]
        if unused:
            raise OptionError(f"{{{unused[0]}}} applies only to the report: add {{report}} FOLDER, or leave it out",
                              unused[0], "report")
    if given_store and compress_options:
        raise InputError(f"{movie_or_store}: compression options ({', '.join(sorted(compress_options))}) do not "
                         "apply to an existing store")
    checked_truth = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(output_lock(output))  # held from the start: one writer per output
        if given_store:
            st = movie_or_store if isinstance(movie_or_store, PMDStore) else open_store(movie_or_store)
            check_not_source(output, st)
            raw = open_raw(movie, st, stack) if report is not None else None
        else:
            if movie is not None:
                raise OptionError("{movie} applies only when denoising an existing store", "movie")
            selection = {k: compress_options.pop(k) for k in ("frames", "plane", "channel", "dataset", "crop",
                                                              "frame_rate", "frame_shape")
                         if k in compress_options}
            # Denoising defaults to the penalized solver: it removes more noise
            # than svd for ~2x the time (benchmarks/bench_compress.py).
            compress_options.setdefault("method", "pmd")
            raw = movie_or_store if isinstance(movie_or_store, Movie) else open_movie(movie_or_store, **selection)
            if raw is not movie_or_store:
                stack.callback(raw.close)
            if store is None:
                parent = Path(output).resolve().parent
                tmpdir = partial_path(parent / Path(output).name)  # a dead run's is cleaned like any partial
                tmpdir.mkdir()
                stack.callback(shutil.rmtree, tmpdir, ignore_errors=True)
                store_path = Path(tmpdir) / "movie.pmd.zarr"
            else:
                store_path = Path(store)
            # A truth that does not fit the movie is refused before the compression, not after it.
            checked_truth = open_truth(truth, tuple(raw.shape), raw) if report is not None else None
            t = time.perf_counter()
            st = compress(raw, store_path, overwrite=overwrite, workers=workers, progress=progress,
                          **compress_options)
            timings["compress_s"] = time.perf_counter() - t
        out_dtype = output_dtype(dtype, st.metadata.input_dtype, default="float32")
        result = {"output": str(output), "shape": list(st.shape), "dtype": str(out_dtype),
                  "store": str(store) if store is not None else (str(st.path) if given_store else None),
                  "report": None}
        t = time.perf_counter()
        if report is None:
            decompress(st, output, dtype=str(out_dtype), overwrite=overwrite, workers=workers, progress=progress,
                       inputs=inputs)
            timings["write_s"] = time.perf_counter() - t
        else:
            tru = checked_truth if checked_truth is not None else open_truth(truth, st.shape, raw)
            # The report folder is renamed into place first, then the movie: both, or neither.
            writer = stack.enter_context(open_writer(output, st.shape, out_dtype, overwrite=overwrite, inputs=inputs))
            tmp = Path(stack.enter_context(atomic_output(report, overwrite=overwrite, inputs=inputs, folder=True)))
            prefetch_matplotlib()
            # The photon split's movies go to a scratch folder beside the report (removed however this ends).
            scratch = stack.enter_context(split_scratch(report))
            data = analyse(raw, st, truth=tru, writer=writer, write_dtype=out_dtype, heldout=heldout,
                           movie_preview=movie_preview, workers=workers, progress=progress, defer_heldout=True,
                           **analysis_hooks(heldout, scratch=scratch))
            timings["write_and_report_s"] = time.perf_counter() - t
            if "compress_s" in timings:
                data["report"]["timings"]["compress_s"] = timings["compress_s"]
            result["report"] = write_report(tmp, data, st, movie_preview)
    timings["total_s"] = time.perf_counter() - start
    result["timings"] = timings
    return result
