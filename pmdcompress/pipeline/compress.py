"""The compression pipeline: read → statistics → fit per patch → re-fit → store.

Three streaming passes, none of which holds the movie as float:

1. *statistics*: every chunk of frames once, for the per-pixel mean and noise
   level, and to fill the (small) fit buffer with temporally binned frames;
2. *fit*: each patch of the standardised fit buffer goes to the solver, which
   returns the spatial components it keeps (tested against a simulated null);
3. *re-fit*: every chunk again, projecting each patch onto its spatial
   components — the least-squares temporal factors on the full movie;

then the factors' last stage (the temporal trend filter and the final
rounding, by blocks of whole rows) and their copy into the store's
time-chunked ``temporal`` array.  Every step is a task that reads and writes
its own data: the fit buffer and the factors before the store live in a
scratch folder beside the store (:mod:`.scratch`), so the process that
schedules the tasks (on a cluster, the driver) never holds them.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import zarr

from .._package_version import __version__
from ..errors import InputError
from ..formats.store import (
    QUANTIZED_DTYPE,
    StoreMetadata,
    create_store,
    final_steps,
    finish_store,
    piecewise_linear_df,
    quantize,
    round_rows,
)
from ..formats.store_codes import round_noise
from ..io.atomic import atomic_output, check_output_path
from ..io.readers import Movie, open_movie
from ..options import MIN_FRAMES, CompressOptions, workers_count
from ..parallel import Executor, blas_threads, default_workers
from ..preflight import (
    check_compressible,
    check_magnitude,
    check_sampled_frames,
    check_store_fits,
    non_finite_error,
    sample_frames,
)
from ..preprocess import (
    NoiseAccumulator,
    chunk_statistics,
    coherent_noise_std,
    live_pixels,
    mean_correction,
    mean_correction_possible,
    noise_lag_correlation,
    noise_lag_correlation_extrapolated,
    pooled_noise,
    safe_scale,
    trend_basis,
)
from ..progress import null_progress
from ..reconstruct import PMDStore
from ..solver import get_solver
from ..solver.null import null_correlation, null_thresholds, round_correlation, strong_components
from ..solver.temporal import robust_noise_std, trend_filter_rows
from ..tiling import Tiling, extract_patch, tissue_bounds
from .scratch import FILTER_ROWS, FitBuffer, LazyFrames, RowBlocks, float32_holds

log = logging.getLogger("pmdcompress")

#: Auto binning never averages more frames than this (fast transients survive it).
MAX_AUTO_BIN = 4
#: Welch segments come from at most this many chunks, spread over the movie.
MAX_NOISE_CHUNKS = 6
#: Rows of the fit buffer's tiles in the scratch (each a patch's width across).  Patches overlap, so most start
#: inside a tile: with tiles of a patch's height a 32 x 32 patch at stride 24 read 2 x 2 tiles (4x its values),
#: with 16 rows at most 3 x 2 tiles of 16 x 32 (3x; 2x where it starts on a tile's edge).  Reading every patch
#: of a 512 x 512 movie's buffer: 4.3 -> 3.2 CPU-s; the neighbour correlation's gather of frames, which then
#: reads more, smaller pieces: 1.06 -> 1.16 (8-row tiles: 3.2 and 1.35).  The same values.
FIT_TILE_ROWS = 16
#: Float32 bytes of the fit rows that a statistics task fills and writes at a time (:func:`_statistics_task`).
FIT_ROWS_BYTES = 8 * 2**20
#: Float32 bytes of one chunk of frames (sets the chunk length, to a power of two: :func:`default_chunk_frames`).
CHUNK_BYTES = 64 * 2**20


@dataclass
class FitPlan:
    """Which frames go into the fit buffer: bins of ``bin`` frames, some of them."""

    bin: int
    bins: np.ndarray  # selected bin indices (sorted); bin j = frames [j*bin, (j+1)*bin)

    @property
    def n_frames(self) -> int:
        return len(self.bins)


def plan_fit(n_frames: int, fit_frames: int, fit_bin: int | None) -> FitPlan:
    """Bin factor and bins for the fit: all bins when they fit, else evenly spread windows."""
    if fit_bin is None:
        fit_bin = int(np.clip(round(n_frames / fit_frames), 1, MAX_AUTO_BIN))
    fit_bin = max(1, min(fit_bin, n_frames // MIN_FRAMES or 1))
    n_bins = n_frames // fit_bin
    if n_bins <= fit_frames:
        return FitPlan(fit_bin, np.arange(n_bins))
    window = min(100, fit_frames)
    n_windows = int(np.ceil(fit_frames / window))
    starts = np.round(np.linspace(0, n_bins - window, n_windows)).astype(np.int64)
    bins = np.unique(np.concatenate([np.arange(s, s + window) for s in starts]))[:fit_frames]
    return FitPlan(fit_bin, bins)


def denoise_trend(deviations: np.ndarray, noise: np.ndarray, chunk_frames: int) -> np.ndarray:
    """Low-rank part of the chunk means' deviations from the mean, (n_knots, P) float32.

    Each chunk mean still carries noise (std ~ noise / sqrt(chunk_frames)) at every
    pixel; a baseline such as bleaching is spatially structured and of low rank.
    So the deviations are standardised by that noise and only singular
    components above the noise edge (Marchenko-Pastur, sqrt(n) + sqrt(P), with a
    20 % margin) are kept.
    """
    unit = np.where(noise > 0, noise, 1.0) / np.sqrt(chunk_frames)
    z = deviations / unit
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    edge = 1.2 * (np.sqrt(z.shape[0]) + np.sqrt(z.shape[1]))
    k = int(np.sum(s > edge))
    return ((u[:, :k] * s[:k]) @ vt[:k] * unit).astype(np.float32)


def _chunk_bounds(n_frames: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n_frames)) for s in range(0, n_frames, chunk)]


def default_chunk_frames(frame_shape, fit_bin: int) -> int:
    """Frames per chunk: the power of two nearest (in ratio) to 64 MB of float32, 16 to 1024, less a part of a fit
    bin.  The noise level's Welch segments lie within chunks, so a length that followed the frame's width would
    re-sample the noise of every pixel when the frame widens: 16 dark columns beside neurofinder_dev (231 x 280) gave
    245 frames instead of 256, noise levels 1.2 % apart and 77 of 120 patches' ranks changed (989 -> 974 on the
    same grid).  A power of two stays for widths 0.7-1.4x (benchmarks/bench_dark_band.py)."""
    n = CHUNK_BYTES / (4 * frame_shape[0] * frame_shape[1])
    n = int(np.clip(2 ** round(np.log2(max(n, 1.0))), 16, 1024))
    return max(fit_bin, n - n % fit_bin)


def _sha256(path: Path) -> str | None:
    """sha256 of the file at PATH (None when it is not a file)."""
    if path is None or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:  # the store records no digest rather than failing a finished compression
        log.warning("%s: no sha256 of the input (%s)", path, exc)
        return None


class _Hasher(threading.Thread):
    """sha256 of the input file, computed beside the first pass: in a thread here, or as one task on a cluster
    (whose workers read the movie anyway), so that the driver does not read the file (7 CPU-s for 10 GB)."""

    def __init__(self, path: Path | None, client=None):
        super().__init__(daemon=True, name="pmd-sha256")
        self.path, self.digest, self.future = path, None, None
        if client is not None and path is not None:
            self.future = client.submit(_sha256, path, pure=False)

    def run(self):
        if self.future is None:
            self.digest = _sha256(self.path)

    def join(self, timeout=None):
        super().join(timeout)
        if self.future is not None:
            self.digest = self.future.result()
            self.future = None


def compress(source, output=None, *, frames=None, plane=None, channel=None, dataset=None, crop=None,
             frame_rate: float | None = None, frame_shape=None, overwrite: bool = False,
             workers: int | None = None, client=None,
             progress=None, hash_input: bool = True, **options) -> PMDStore:
    """Compress a movie into a store of low-rank patch factors.

    Parameters
    ----------
    source : path, ndarray (T, Y, X), zarr array or Movie
        The movie: TIFF/BigTIFF, Zarr, .npy, HDF5 path, or an array.
    output : path, optional
        The store folder (``*.pmd.zarr``).  Default: beside a path input
        (``movie.tif`` -> ``movie.pmd.zarr``); in memory for arrays.
    frames, plane, channel, dataset, crop, frame_shape
        Input selection (see :func:`pmdcompress.io.readers.open_movie`).
    frame_rate : float, optional
        Frames per second; overrides the movie's metadata.  Stored with the
        factors for demix, reports and exports; unknown rates are stored as
        unknown (a warning), never guessed.
    overwrite : bool
        Replace an existing output.
    workers : int, optional
        Threads (default: all cores, or ``$PMD_NUM_WORKERS``).
    client : dask.distributed.Client, optional
        Run the passes as tasks on this cluster.  The workers read the movie
        and share their data through a scratch folder beside the output (on
        the same file system; removed at the end), so the output must be on a
        file system that every worker sees.  An in-memory output
        (``output=None`` with an array) runs on this process's threads.
    progress : callable, optional
        Progress factory ``(label, total) -> bar`` (see :mod:`pmdcompress.progress`).
    **options
        Fields of :class:`CompressOptions` (patch_shape, overlap, method, ...).

    Returns
    -------
    PMDStore
    """
    opts = CompressOptions.create(**options)
    solver = get_solver(opts.method, max_rank=opts.max_rank, consecutive_failures=opts.consecutive_failures)
    progress = progress or null_progress
    workers = workers_count(workers) or default_workers()

    own_movie = not isinstance(source, Movie)
    if own_movie:
        movie = open_movie(source, frames=frames, plane=plane, channel=channel, dataset=dataset, crop=crop,
                           frame_rate=frame_rate, frame_shape=frame_shape)
    else:
        movie = source
        if frame_rate is not None:
            movie.frame_rate, movie.frame_rate_source = float(frame_rate), "given"
    try:
        if output is None and movie.path is not None:
            output = movie.path.with_name(movie.path.name.split(".")[0] + ".pmd.zarr")
        inputs = [p for p in (movie.path, source) if isinstance(p, (str, os.PathLike))]
        if output is not None:
            check_output_path(output, overwrite=overwrite, inputs=inputs, folder=True)  # before any work
        n_frames, height, width = movie.shape
        if n_frames < MIN_FRAMES:
            raise InputError(f"{movie.name}: {n_frames} frames; pmd compress needs at least {MIN_FRAMES}")
        check_compressible(movie)
        if movie.frame_rate is None:
            if output is not None:  # an in-memory fit (the report's held-out) stores nothing to warn about
                log.warning("%s: frame rate unknown (none in the file's metadata); stored as unknown: give it with"
                            " --fs (frame_rate=) for demix, reports and exports", movie.name)
        else:
            log.info("%s: %.6g frames/s (%s)", movie.name, movie.frame_rate, movie.frame_rate_source)
        executor = Executor(workers, client)
        source = None
        if output is not None:
            # On a cluster the movie goes to every worker once (it pickles as "reopen this file"), and a worker
            # reads the sampled frames from that copy, not from a second opening of the file: the driver only
            # decides and warns (reading them was 0.1 of its 0.7 CPU-s on a 2000 x 256 x 256 movie).
            source = executor.scatter(movie)
            sampled = executor.map(sample_frames, [source])[0] if executor.distributed else None
            check_sampled_frames(movie, sampled)
        if output is None:
            return _run(movie, None, opts, solver, executor, progress, hash_input)
        check_store_fits(output, movie.shape, opts)
        with atomic_output(output, overwrite=overwrite, inputs=inputs, folder=True) as tmp:
            _run(movie, tmp, opts, solver, executor, progress, hash_input, source)
        return PMDStore(output)
    finally:
        if own_movie:
            movie.close()


@dataclass
class _Job:
    """What every stage of one compression shares: the movie, the options and the plan of chunks and patches."""

    movie: Movie
    opts: CompressOptions
    solver: object
    executor: Executor
    progress: object
    tiling: Tiling
    plan: FitPlan
    chunk: int  # frames per chunk (a multiple of the fit bin)
    chunks: list  # [(t0, t1)] of every chunk
    source: object = None  # the movie where the tasks read it (scattered to a cluster's workers)
    scratch: Path | None = None  # the scratch folder beside the store's temporary folder (None: in memory)
    timings: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.movie.shape


@dataclass
class _Statistics:
    """Pass 1: per-pixel mean and noise, the slow baseline, and the standardised fit buffer."""

    mean: np.ndarray  # (Y, X) float32
    scale: np.ndarray  # (Y, X) float32, the noise level used to standardise (never 0)
    live: np.ndarray  # (Y, X) bool, pixels that carry signal
    fit: FitBuffer  # (fit frames, Y, X), raw in the scratch folder, read back standardised by patch
    trend: np.ndarray | None = None  # (knots, Y*X) float32 baseline values
    knots: np.ndarray | None = None  # frame of each baseline value
    mean_smoothing: tuple = (0.0, None)  # (width, correction (Y, X) float32 or None): preprocess.mean_correction


@dataclass
class _Fit:
    """Pass 2: the spatial components of every patch and the null thresholds they passed."""

    spatial: np.ndarray  # (patch pixels, total rank)
    ranks: np.ndarray  # (n_patches,) int32
    offsets: np.ndarray  # (n_patches + 1,) int64: patch p owns columns offsets[p]:offsets[p+1]
    thresholds: object
    correlation: tuple
    noise_profile: tuple = ()  # the noise's correlation at lags 1.. along y and x (null_correlation's form)

    @property
    def total_rank(self) -> int:
        return int(self.offsets[-1])


def _scratch_folder(path) -> Path:
    """The scratch folder beside the store's temporary folder: hidden and ending in ``.partial`` like it, so that
    a killed run's leftovers are cleaned like the store's (``pmd batch``)."""
    path = Path(path)
    folder = path.with_name(path.name.removesuffix(".partial") + ".scratch.partial")
    folder.mkdir()
    return folder


def _run(movie: Movie, path, opts: CompressOptions, solver, executor: Executor, progress, hash_input, source=None):
    """``source``: the movie where the tasks read it (:meth:`Executor.scatter`), when compress has sent it already."""
    if path is None:  # an in-memory store: only this process's threads can fill it
        executor, source = executor.local(), None
    scratch = None if path is None else _scratch_folder(path)
    try:
        return _run_stages(movie, path, opts, solver, executor, progress, hash_input, scratch, source)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_stages(movie: Movie, path, opts: CompressOptions, solver, executor: Executor, progress, hash_input,
                scratch, source=None):
    t_start, cpu_start = time.perf_counter(), time.thread_time()
    job = _plan(movie, opts, solver, executor, progress, scratch, source)
    hasher = _Hasher(movie.path if hash_input else None, executor.client)
    hasher.start()
    stats = _statistics_stage(job)
    job.timings["statistics_s"] = time.perf_counter() - t_start
    fit = _fit_stage(job, stats)
    stats.fit = None  # free the fit buffer before the re-fit pass
    t_refit = time.perf_counter()
    hasher.join()
    group, temporal, metadata = _write_stage(job, stats, fit, path, hasher.digest)
    sum_squares = None
    if fit.total_rank:
        # The factors go through the scratch first: the filter and the final rounding work on blocks of whole
        # rows, while the store's chunks hold every row of a time chunk.
        rows = RowBlocks(fit.total_rank, job.shape[0], QUANTIZED_DTYPE, job.scratch, temporal)
        _refit_stage(job, stats, fit, rows)
        job.timings["refit_s"] = time.perf_counter() - t_refit
        t_factors, cpu_factors = time.perf_counter(), time.thread_time()
        full = _has_far_lags(fit.noise_profile)
        sum_squares = _factors_stage(job, rows, temporal,
                                     row_noise(fit.spatial, job.tiling.patch_shape,
                                               fit.noise_profile if full else fit.correlation),
                                     KNOWN_NOISE_MARGIN_FULL if full else KNOWN_NOISE_MARGIN)
        job.timings["factors_s"] = time.perf_counter() - t_factors
        if opts.temporal_filter:
            job.timings["temporal_filter_s"] = job.timings["factors_s"]
        _driver_cpu(job, "factors", time.thread_time() - cpu_factors)
    job.timings["total_s"] = time.perf_counter() - t_start
    # this thread only: the filter's threads and a LocalCluster's scheduler run in other threads
    _driver_cpu(job, "thread", time.thread_time() - cpu_start)
    finish_store(group, dataclasses.replace(metadata, timings=job.timings), sum_squares=sum_squares)
    log.info("compressed %s: rank %d over %d patches in %.2f s", movie.name, fit.total_rank,
             job.tiling.n_patches, job.timings["total_s"])
    # a store on disk is opened once, under its final name (compress): opening it here too cost 0.03 CPU-s
    return PMDStore(group) if path is None else None


def _plan(movie: Movie, opts: CompressOptions, solver, executor: Executor, progress, scratch=None,
          source=None) -> _Job:
    """Patches, fit frames and chunks of frames for MOVIE (``source``: where the tasks read it, if sent already)."""
    n_frames, height, width = movie.shape
    tiling = Tiling.create((height, width), opts.patch_shape, opts.overlap)
    plan = plan_fit(n_frames, opts.fit_frames, opts.fit_bin)
    chunk = opts.chunk_frames or default_chunk_frames((height, width), plan.bin)
    chunk = max(plan.bin, chunk - chunk % plan.bin)
    # On a cluster the workers read their chunks themselves: the movie goes to each worker once
    # (it pickles as "reopen this file"); a task returns its sums and its rows of the fit buffer.
    return _Job(movie=movie, opts=opts, solver=solver, executor=executor, progress=progress, tiling=tiling,
                plan=plan, chunk=chunk, chunks=_chunk_bounds(n_frames, chunk),
                source=executor.scatter(movie) if source is None else source, scratch=scratch)


def _statistics_stage(job: _Job) -> _Statistics:
    """Pass 1: every chunk once, for the mean, the noise level and the fit buffer (and the baseline).

    The tasks write their rows of the fit buffer themselves (into the scratch
    folder, raw) and return only their sums: no process holds the buffer.
    """
    n_frames, height, width = job.shape
    plan, chunks = job.plan, job.chunks
    patch_h, patch_w = job.tiling.patch_shape
    fit = FitBuffer.create(plan.n_frames, (height, width), (min(patch_h, FIT_TILE_ROWS), patch_w), job.scratch,
                           _fit_dtype(job.movie.dtype, plan.bin))
    writer = fit.without_values()
    row_of_bin = np.full(n_frames // plan.bin + 1, -1, dtype=np.int64)
    row_of_bin[plan.bins] = np.arange(plan.n_frames)
    noise_chunks = set(np.round(np.linspace(0, len(chunks) - 1, min(MAX_NOISE_CHUNKS, len(chunks)))).astype(int))

    parity = mean_correction_possible(n_frames)  # the even frames' sums too (preprocess.mean_correction)

    def statistics_args(i):
        t0, t1 = chunks[i]
        first_bin = t0 // plan.bin
        rows = np.ascontiguousarray(row_of_bin[first_bin : first_bin + (t1 - t0) // plan.bin])
        return job.source, t0, t1, plan.bin, rows, i in noise_chunks, writer, parity

    bar = job.progress("statistics", len(chunks))
    # the sums, in chunk order (the same floats however many workers), folded where the tasks ran, and the
    # per-pixel results (and the baseline, from every chunk's mean) computed there: only those come here
    finish = functools.partial(_statistics_finish, chunks=chunks, n_frames=n_frames, frame_shape=(height, width),
                               chunk=job.chunk, detrend=job.opts.detrend)
    mean, noise, trend, knots, smoothing = job.executor.map_fold(
        _statistics_task, [statistics_args(i) for i in range(len(chunks))],
        _add_sums if job.opts.detrend else _add_sums_no_means, on_done=bar.update, finish=finish)
    bar.close()
    cpu = time.thread_time()
    if trend is not None:
        centres = plan.bins * plan.bin + (plan.bin - 1) / 2.0
        fit.trend, fit.basis = trend.reshape(-1, height, width), trend_basis(centres, knots)
    # rounded as the store keeps it (8 bits of mantissa), so that the movie is standardised by what is stored
    scale = round_noise(safe_scale(noise))
    fit.mean, fit.scale = mean, scale  # the fit tasks standardise their patches: (x - trend - mean) / scale
    _driver_cpu(job, "fit_buffer", time.thread_time() - cpu)
    return _Statistics(mean=mean, scale=scale, live=live_pixels(noise, mean), fit=fit, trend=trend, knots=knots,
                       mean_smoothing=smoothing)


def _statistics_finish(acc, *, chunks, n_frames: int, frame_shape, chunk: int, detrend: bool):
    """The folded sums of pass 1 as ``(mean, noise, trend, knots, (width, correction))``: per-pixel mean and
    noise level ``(Y, X)`` float32, the slow baseline (``None, None`` unless ``detrend``) and the mean image's
    smoothing (:func:`~pmdcompress.preprocess.mean_correction` from the even and odd frames' sums; ``(0.0,
    None)`` when none pays).  Runs where the fold ran (on a cluster, a worker: the chunk means and the baseline's
    SVD stay off the driver), BLAS on one thread, so the floats are the same wherever it runs."""
    total, power, count, chunk_means, even = acc
    height, width = frame_shape
    with blas_threads(1):
        mean = (total / n_frames).reshape(height, width).astype(np.float32)
        smoothing = (0.0, None)
        if even is not None and n_frames >= 2:
            n_even, n_odd = (n_frames + 1) // 2, n_frames // 2
            # over the tissue alone: a dark edge band's step would rule out any smoothing of the whole frame
            top, bottom, left, right = tissue_bounds(mean)
            inner = (slice(top, bottom), slice(left, right))
            smoothing = mean_correction((even / n_even).reshape(height, width)[inner],
                                        ((total - even) / n_odd).reshape(height, width)[inner], n_even, n_odd)
            if smoothing[1] is not None and smoothing[1].shape != (height, width):
                correction = np.zeros((height, width), np.float32)
                correction[inner] = smoothing[1]
                smoothing = (smoothing[0], correction)
        # Without the fast signals a region shares (a one-photon microscope's flicker): noise (preprocess).
        noise = coherent_noise_std(power, count) if count else None
        if noise is not None:
            # A short movie's per-pixel estimates are poor (35 % for 63 frames): pooled with their neighbours'.
            noise = pooled_noise(noise.reshape(height, width), mean, float(power[3][0]) - 1.0).ravel()
        trend = knots = None
        if detrend and len(chunks) >= 2:
            trend, knots = _baseline(chunks, n_frames, np.stack(chunk_means) - mean.reshape(1, -1),
                                     noise if noise is not None else np.ones(height * width), chunk)
        if noise is None:
            noise = np.zeros((height * width,))
    return mean, noise.reshape(height, width).astype(np.float32), trend, knots, smoothing


def _add_sums(acc, part, keep_means: bool = True):
    """Fold one chunk's statistics into ``(total, power, count, chunk means, even frames' total)`` (first: ACC
    None).  A part without the even frames' sum (or with None) leaves that total None."""
    total, power, count, means, even = acc if acc is not None else (0, 0, 0, [], 0)
    part_total, part_power, part_count, length, *rest = part
    part_even = rest[0] if rest else None
    if keep_means:
        means = [*means, part_total / length]
    even = None if even is None or part_even is None else even + part_even
    return total + part_total, power + part_power, count + part_count, means, even


#: Without ``detrend`` the chunk means are not needed.
_add_sums_no_means = functools.partial(_add_sums, keep_means=False)


def _driver_cpu(job: _Job, part: str, seconds: float) -> None:
    """Record CPU seconds that this process (the driver, on a cluster) spent on PART, for the scaling benchmark."""
    job.timings[f"driver_cpu_{part}_s"] = job.timings.get(f"driver_cpu_{part}_s", 0.0) + seconds


def _baseline(chunks, n_frames: int, deviations: np.ndarray, noise: np.ndarray, chunk: int):
    """A slow per-pixel baseline, piecewise linear through the chunk means: (values (knots, P), knot frames).

    Knots sit at the chunk centres (the baseline is removed before the fit and
    re-fit and added back on reconstruction), and at the first and last frame
    too, extrapolated linearly, so that the half chunks at either end follow
    the baseline's slope.
    """
    centres = np.array([(a + b - 1) / 2.0 for a, b in chunks])
    values = denoise_trend(deviations, noise, chunk)
    first = values[0] + (values[0] - values[1]) * (centres[0] - 0) / (centres[1] - centres[0])
    last = values[-1] + (values[-1] - values[-2]) * (n_frames - 1 - centres[-1]) / (centres[-1] - centres[-2])
    knots = np.concatenate([[0.0], centres, [n_frames - 1.0]])
    trend = np.concatenate([first[None], values, last[None]]).astype(np.float32)
    return trend, knots


def _frame_rate_field(rate: float | None) -> dict:
    """The store's nullable ``frame_rate`` field (store format 2), where the format has it; the rate is also kept
    in ``input["frame_rate"]``, which stores of format 1 read."""
    names = {f.name for f in dataclasses.fields(StoreMetadata)}
    return {"frame_rate": rate} if "frame_rate" in names else {}


def _fit_stage(job: _Job, stats: _Statistics) -> _Fit:
    """Pass 2: the null thresholds, then each patch of the fit buffer through the solver."""
    t_null = time.perf_counter()
    opts, tiling, plan, executor = job.opts, job.tiling, job.plan, job.executor
    live = stats.live
    cpu = time.thread_time()
    fit = executor.scatter(stats.fit)  # its standardisation (and the scratch's path) to every worker, once
    profile = executor.map(_neighbour_task, [fit])[0]  # the noise's correlation at lags 1.. along y and x
    correlation = round_correlation((profile[0][0], profile[1][0]))
    _driver_cpu(job, "neighbour_correlation", time.thread_time() - cpu)
    cpu = time.thread_time()
    thresholds = null_thresholds(job.solver, tiling.patch_shape, plan.n_frames, false_pass=opts.false_pass,
                                 seed=opts.seed, workers=executor.workers, noise_correlation=profile,
                                 progress=job.progress, executor=executor)
    job.timings["null_s"] = time.perf_counter() - t_null
    _driver_cpu(job, "null", time.thread_time() - cpu)
    t_fit = time.perf_counter()

    def patch_live(p):
        ys, xs = tiling.patch_slices(p)
        return None if live[ys, xs].all() else live[ys, xs].ravel()

    bar = job.progress("fit patches", tiling.n_patches)
    spatial_list = []
    for members in executor.small_result_groups(range(tiling.n_patches)):
        # each task reads its own patch of the fit buffer
        spatial_list += executor.map(_fit_task, [(job.solver, fit, tiling.patch_slices(p), tiling.patch_shape,
                                                  thresholds, opts.seed, p, patch_live(p), correlation)
                                                 for p in members],
                                     on_done=bar.update)
    bar.close()
    ranks = np.array([u.shape[1] for u in spatial_list], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(ranks)]).astype(np.int64)
    n_pix = tiling.patch_shape[0] * tiling.patch_shape[1]
    spatial = (np.concatenate(spatial_list, axis=1) if offsets[-1] else np.zeros((n_pix, 0), np.float32))
    job.timings["fit_s"] = time.perf_counter() - t_fit
    return _Fit(spatial=spatial, ranks=ranks, offsets=offsets, thresholds=thresholds, correlation=correlation,
                noise_profile=null_correlation(profile))


def _write_stage(job: _Job, stats: _Statistics, fit: _Fit, path, sha256):
    """The store (on disk at PATH, or in memory) with everything but the temporal factors: (group, temporal, meta)."""
    opts, tiling, plan = job.opts, job.tiling, job.plan
    n_frames, height, width = job.shape
    wy, wx = tiling.weights_1d()
    identity = dict(job.movie.input_identity(), sha256=sha256)
    metadata = StoreMetadata(
        shape=(n_frames, height, width), input_dtype=str(job.movie.dtype), factor_dtype=opts.dtype,
        method=job.solver.name, patch_shape=tiling.patch_shape, overlap=tiling.overlap,
        n_patches=tiling.n_patches, total_rank=fit.total_rank, software_version=__version__,
        input=identity,
        parameters=dict(asdict(opts), patch_shape=list(tiling.patch_shape), overlap=list(tiling.overlap),
                        fit_bin=plan.bin, fit_frames_used=plan.n_frames, chunk_frames=job.chunk,
                        thresholds=asdict(fit.thresholds), noise_correlation=list(fit.correlation),
                        solver=job.solver.params(), workers=job.executor.workers),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **_frame_rate_field(job.movie.frame_rate),
    )
    arrays = {
        "mean": stats.mean, "noise": stats.scale, "patch_origins": tiling.origins.astype(np.int32),
        "patch_ranks": fit.ranks, "weights_y": wy.astype(np.float32), "weights_x": wx.astype(np.float32),
        "spatial": fit.spatial.astype(opts.dtype),
    }
    if stats.trend is not None:
        arrays["trend"] = stats.trend.reshape(-1, height, width)
        arrays["trend_frames"] = stats.knots
    # A short movie's mean keeps 1/T of the noise in every frame: where smoothing it lowers the error
    # (preprocess.mean_correction, by SURE), the correction goes into the trend, which reconstruction adds to
    # every frame; the stored mean stays the input's (the report and demixing read it).
    smoothing, correction = stats.mean_smoothing
    metadata.parameters["mean_smoothing"] = smoothing
    if correction is not None:
        if "trend" in arrays:
            arrays["trend"] = arrays["trend"] + correction[None]
        else:
            arrays["trend"] = correction[None]
            arrays["trend_frames"] = np.zeros(1)
    target = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=3).store if path is None else path
    group, temporal = create_store(target, metadata, arrays, temporal_chunk=job.chunk)
    return group, temporal, metadata


def _refit_stage(job: _Job, stats: _Statistics, fit: _Fit, temporal) -> None:
    """Pass 3: every chunk again, projected on its patches' spatial components, into ``temporal``.

    ``temporal`` is the store's array or the scratch's :class:`RowBlocks`; the
    workers write their time chunks into it themselves.
    """
    if not fit.total_rank:
        return
    projection = _projection(job, stats, fit)
    executor = job.executor
    source = job.source if executor.distributed else job.movie
    projection = executor.scatter(projection)
    bar = job.progress("re-fit", len(job.chunks))
    for members in executor.small_result_groups(range(len(job.chunks))):
        executor.map(_project_task, [(source, *job.chunks[i], projection, temporal) for i in members],
                     on_done=bar.update)
    bar.close()


def _projection(job: _Job, stats: _Statistics, fit: _Fit) -> _Projection:
    """The standardisation folded into the projection: V = (U/sigma)^T Y - (U/sigma)^T mu.

    (and minus (U/sigma)^T trend(t) when detrending).
    """
    tiling, offsets, scale, mean = job.tiling, fit.offsets, stats.scale, stats.mean
    height, width = job.shape[1:]
    folded, shifts, trend_gains = [], [], []
    trend_img = stats.trend.reshape(-1, height, width) if stats.trend is not None else None
    for p in range(tiling.n_patches):
        ys, xs = tiling.patch_slices(p)
        u = fit.spatial[:, offsets[p] : offsets[p + 1]] / scale[ys, xs].reshape(-1, 1)
        folded.append(np.ascontiguousarray(u, dtype=np.float32))
        shifts.append(mean[ys, xs].reshape(-1).astype(np.float64) @ u)
        if trend_img is not None:
            trend_gains.append(u.T.astype(np.float64) @ trend_img[:, ys, xs].reshape(len(stats.knots), -1).T)
    active = [p for p in range(tiling.n_patches) if fit.ranks[p] > 0]
    return _Projection(folded, shifts, offsets, active, tiling.origins, tiling.patch_shape, fit.total_rank,
                       job.opts.dtype, trend_gains, stats.knots)


#: A temporal factor whose first differences read more than this times its known noise (:func:`row_noise`)
#: carries a fast signal (a one-photon flicker): the filter takes the known noise (below it, the differences').
#: Flicker factors read 4-100x. At 1.25, 22 % of optinist_mouse2p's two-photon factors switched and were filtered
#: less, keeping noise (photon-split error reduction 96.6x, store 31.6x); at 2.0, 3.8 % switch (128.7x, 34.3x),
#: and inscopix's flicker is still kept (residual/noise 0.911 either way).
KNOWN_NOISE_MARGIN = 2.0
#: The same where the known noise models the noise's correlation at every lag (:func:`row_noise` with a lag
#: profile: noise shared over several pixels).  2.0 was set against the neighbour pair alone, which reads such
#: noise low; with the whole correlation the known noise is the noise, and 1.5 keeps or lowers the true error
#: on bench_robust's correlated one-photon cases (1p-correlated 100 frames 4.012x -> 4.022x, blurred-noise 63
#: frames 2.871x -> 2.952x; 2.0 with the full model: 3.962x, 2.957x).
KNOWN_NOISE_MARGIN_FULL = 1.5


def _filter_noise(values: np.ndarray, known: np.ndarray | None,
                  margin: float = KNOWN_NOISE_MARGIN) -> np.ndarray | None:
    """Each row's noise for the trend filter: its first differences' (``robust_noise_std``), or its known noise
    where the differences read more than ``margin`` (:data:`KNOWN_NOISE_MARGIN`) times it (a fast signal)."""
    if known is None:
        return None
    measured = robust_noise_std(values)
    known = np.asarray(known, np.float64)
    return np.where(measured > margin * known, known, measured)


def row_noise(spatial: np.ndarray, patch_shape, correlation) -> np.ndarray:
    """Noise std of each temporal factor, (K,): ``sqrt(u^T R u)`` for its standardised spatial component ``u``.

    A factor is ``u`` (over the noise scale) applied to the movie, so its noise
    is the pixels' standardised noise (variance 1, correlation ``R`` between
    vertical and horizontal neighbours, ``correlation = (rho_y, rho_x)``)
    through ``u``: known, whatever fast signal the factor carries.  ``correlation``
    may also be the lag profile (:func:`pmdcompress.solver.null.null_correlation`:
    ``((rho_y at 1, 2, ...), (rho_x at 1, 2, ...))``); where it holds lags beyond
    the first (noise shared over several pixels), ``R`` is the separable
    ``r_y(dy) r_x(dx)`` at every lag: a smooth one-photon component then carries
    several times the noise that the neighbour pair alone gives (a factor whose
    differences read more than :data:`KNOWN_NOISE_MARGIN` times too small a
    known noise was taken for a flicker and barely filtered).
    """
    h, w = patch_shape
    u = np.asarray(spatial, np.float64).reshape(h, w, -1)
    if _has_far_lags(correlation):
        return np.sqrt(np.maximum(_separable_quadratic(u, correlation[0], correlation[1]), 0.0))
    if all(isinstance(c, tuple | list) for c in correlation):
        correlation = tuple(float(c[0]) if len(c) else 0.0 for c in correlation)
    var = np.einsum("ijk,ijk->k", u, u)
    rho_y, rho_x = correlation
    var += 2.0 * rho_y * np.einsum("ijk,ijk->k", u[:-1], u[1:]) + 2.0 * rho_x * np.einsum("ijk,ijk->k", u[:, :-1],
                                                                                          u[:, 1:])
    return np.sqrt(np.maximum(var, 0.0))


def _separable_quadratic(u: np.ndarray, rho_y, rho_x) -> np.ndarray:
    """``u_k^T (R_y kron R_x) u_k`` for each column of ``u`` (h, w, K), ``R`` Toeplitz from the lag correlations."""
    from scipy.ndimage import correlate1d

    ry = np.concatenate([np.asarray(rho_y, np.float64)[::-1], [1.0], np.asarray(rho_y, np.float64)])
    rx = np.concatenate([np.asarray(rho_x, np.float64)[::-1], [1.0], np.asarray(rho_x, np.float64)])
    ru = correlate1d(correlate1d(u, ry, axis=0, mode="constant"), rx, axis=1, mode="constant")
    return np.einsum("ijk,ijk->k", u, ru)


def _has_far_lags(profile) -> bool:
    """True for a lag profile (:func:`pmdcompress.solver.null.null_correlation`) with lags beyond the first."""
    return (isinstance(profile, tuple) and len(profile) == 2
            and all(isinstance(c, tuple | list) for c in profile) and any(len(c) > 1 for c in profile))


def _factors_stage(job: _Job, rows: RowBlocks, temporal, noise: np.ndarray | None = None,
                   margin: float = KNOWN_NOISE_MARGIN) -> np.ndarray:
    """The temporal factors' last steps, by tasks: trend filter, final rounding, copy into ``temporal``.

    Tasks take blocks of 16 whole rows of the scratch's factors (rounded to
    the store's working step, as the store would hold them): trend-filter each
    factor within its noise level (PMD's temporal penalty; each block
    warm-starts its penalty search afresh, so the result does not depend on
    the tasks or the workers), then round it to its final step
    (:func:`round_rows`, which needs the whole row).  Copy tasks then move the
    integers into the store's time chunks (every chunk holds all rows).  Each
    task holds at most ~64 MB of rows; the driver receives three numbers per
    row (degrees of freedom, final step, sum of squares), which
    :func:`finish_store` needs.  Returns the sums of squares.
    """
    n_frames, executor, opts = job.shape[0], job.executor, job.opts
    n_blocks = rows.n_blocks
    most = max(1, CHUNK_BYTES // (4 * FILTER_ROWS * n_frames))
    # on a cluster a task costs the driver about a millisecond: a few tasks per worker thread; here one block
    # per task, so that the threads end together (8 tasks of 36 blocks left a core idle for ~5 % of the stage)
    per_task = int(np.clip(-(-n_blocks // (4 * executor.slots)), 1, most)) if executor.distributed else 1
    spans = [(b, min(b + per_task, n_blocks)) for b in range(0, n_blocks, per_task)]
    label = "temporal filter" if opts.temporal_filter else "factors"
    bar = job.progress(label, len(spans) + len(job.chunks))
    parts = []
    for members in executor.small_result_groups(spans):
        parts += executor.map(_factors_task, [(rows, b0, b1, opts.dtype, opts.temporal_filter,
                                               temporal.rounding_error,
                                               None if noise is None else noise[b0 * FILTER_ROWS : b1 * FILTER_ROWS],
                                               margin)
                                              for b0, b1 in members], on_done=bar.update)
    for members in executor.small_result_groups(job.chunks):
        executor.map(_copy_task, [(rows, t0, t1, temporal) for t0, t1 in members], on_done=bar.update)
    bar.close()
    df, steps, sum_squares = (np.concatenate(p) for p in zip(*parts, strict=True))
    temporal.scale[:] = steps
    if opts.temporal_filter:
        temporal.df = df.astype(np.int64)  # as if each row had been written whole
    return sum_squares


def _factors_task(args):
    """Blocks [b0, b1) of 16 rows of the scratch's factors: filtered (optionally) and rounded to their final
    steps, in place.  Returns each row's (degrees of freedom, final step, sum of squares)."""
    rows, b0, b1, dtype, filtering, rounding_error, noise, margin = args
    out = []
    for b in range(b0, b1):
        steps = rows.scale[b * FILTER_ROWS : (b + 1) * FILTER_ROWS]
        known = None if noise is None else noise[(b - b0) * FILTER_ROWS : (b - b0 + 1) * FILTER_ROWS]
        integers = rows.read_block(b)
        # what the store's reader gives: the rounded values times their step, in float32
        values = np.multiply(integers, steps[:, None], dtype=np.float32)
        df = None
        if filtering:
            filtered = trend_filter_rows(values, sigma=_filter_noise(values, known, margin)).astype(dtype)
            df = piecewise_linear_df(np.asarray(filtered, np.float64))
            integers = quantize(filtered, steps[:, None], rows.where, "temporal")
            values = np.multiply(integers, steps[:, None], dtype=np.float32)
        final = final_steps(df, rows.n_frames, rounding_error, steps)
        rounded, sum_squares = round_rows(values, steps, final, rows.where)
        rows.write_block(b, integers if rounded is None else rounded)
        out.append((np.full(len(steps), -1, np.int64) if df is None else df, final, sum_squares))
    return tuple(np.concatenate(p) for p in zip(*out, strict=True)) if out else (np.zeros(0, np.int64),) * 3


def _copy_task(args):
    """Frames [t0, t1) of every factor (rounded integers), from the scratch into their time chunk of the store."""
    rows, t0, t1, temporal = args
    temporal.set_integers((slice(None), slice(t0, t1)), rows.read_columns(t0, t1))


# Off: on the real one-photon movie (inscopix_1p_part2) the extrapolated profile is taken on a photon-split
# half (not on the whole movie) and lowers the split's error reduction 2.49x -> 2.25x, against the gains on
# simulations that copy it (benchmarks/bench_robust_reference.py, lever "extrapolated noise profile").
EXTRAPOLATE_NOISE_PROFILE = False


def _neighbour_task(fit: FitBuffer):
    """The noise's correlation at lags 1.. along y and x on (at most 64 pairs of) standardised fit frames.

    With :data:`EXTRAPOLATE_NOISE_PROFILE` (off by default), where the noise is shared beyond the neighbours
    (far lags kept by the null: a one-photon movie) the differences' covariances are extrapolated to lag 0 in
    time (:func:`pmdcompress.preprocess.noise_lag_correlation_extrapolated`): such a movie's large cells rise in
    step over many pixels, which the plain correlation of differences counts as noise (simulations copying
    inscopix_1p_part2: 0.71-0.82 for a true 0.61).  Two-photon movies (no far lags) keep the plain profile.
    """
    # over the tissue alone: a dark edge band's noise (near-zero counts, uncorrelated) would dilute the tissue's
    mean = getattr(fit, "mean", None)
    frames = LazyFrames(fit) if mean is None else LazyFrames(fit, tissue_bounds(mean))
    plain = noise_lag_correlation(frames)
    if not EXTRAPOLATE_NOISE_PROFILE or not _has_far_lags(null_correlation(plain)):
        return plain
    return noise_lag_correlation_extrapolated(frames, plain=plain)


def _fit_dtype(movie_dtype, fit_bin: int) -> np.dtype:
    """The fit buffer's type: a bin of one frame of an integer movie of up to 16 bits is that frame, kept as read
    (float32 holds it exactly: the same floats read back, half the bytes of uint16); else float32 bin means."""
    return np.dtype(movie_dtype) if fit_bin == 1 and float32_holds(movie_dtype) else np.dtype(np.float32)


def _statistics_task(args):
    """Sums and noise power of frames [t0, t1), whose fit-buffer rows it writes (pass 1; runs where the movie is
    read)."""
    movie, t0, t1, fit_bin, rows, want_noise, fit, parity = args
    n_pix = movie.shape[1] * movie.shape[2]
    block = movie.view(t0, t1).reshape(t1 - t0, -1)
    # the frames of even index in the movie: the mean image's cross-validation (preprocess.mean_correction)
    even = np.zeros(n_pix, np.float64) if parity else None  # summed with the rest, in chunk_statistics
    keep = rows >= 0
    kept = rows[keep]
    if len(kept):
        assert np.array_equal(kept, np.arange(kept[0], kept[0] + len(kept))), "a chunk's fit rows are consecutive"
    total = np.zeros(n_pix, np.float64)
    # By groups of bins, through one small buffer of fit rows: a whole chunk's rows (66 MB for 256 frames of
    # 231 x 280) were fresh memory that the kernel zeroed page by page.  The same sums and rows to the bit: the
    # kernel adds bin after bin, frame after frame, into the same totals, whichever call holds them.  A buffer of
    # the movie's own type (_fit_dtype: bins of one frame) takes the frames themselves: the kernel only sums.
    as_read = fit.raw.dtype != np.float32
    n_bins = len(rows)
    per_call = max(1, FIT_ROWS_BYTES // (4 * n_pix))
    fit_rows = np.empty((0 if as_read else min(per_call, len(kept)), n_pix), np.float32)
    for b0 in range(0, n_bins, per_call) if n_bins else [0]:
        b1 = min(b0 + per_call, n_bins)
        f0, f1 = b0 * fit_bin, b1 * fit_bin if b1 < n_bins else t1 - t0  # the last call: the frames past the bins
        part = keep[b0:b1]
        local = np.full(b1 - b0, -1, np.int64)
        if not as_read:
            local[part] = np.arange(int(part.sum()))
        if chunk_statistics(block[f0:f1], fit_bin, local, total, fit_rows, even, (t0 + f0) % 2) >= 0:
            raise non_finite_error(block.reshape(t1 - t0, *movie.shape[1:3]), movie.name, t0)
        if part.any():
            if as_read:  # one frame per bin: bin j of this call is frame f0 + j
                values = block[f0:f1] if part.all() else block[f0:f1][part]
            else:
                values = fit_rows[: int(part.sum())]
            fit.write_rows(int(rows[b0:b1][part][0]), values)
    check_magnitude(total, t1 - t0, movie.name, t0, t1)
    acc = NoiseAccumulator(n_pix, frame_shape=movie.shape[1:3])
    if want_noise:
        acc.add(block)
    return total, acc.sums, acc.count, t1 - t0, even


def _fit_task(args):
    """Spatial components of one patch of the standardised fit buffer (pass 2)."""
    solver, fit, (ys, xs), patch_shape, thresholds, seed, p, live, correlation = args
    data = fit.patch(ys, xs)
    # Components far above the noise (a one-photon background) are kept exactly, before the penalized fit,
    # whose smoothed version of them would leave rough leftovers that stop the rank test (strong_components).
    strong = strong_components(data, correlation, np.random.default_rng([seed, p, 1]))
    if strong.shape[1]:
        data = data - (data @ strong) @ strong.T
    u = solver.fit(data, patch_shape, thresholds, np.random.default_rng([seed, p])).spatial
    if strong.shape[1]:
        q, r = np.linalg.qr(np.concatenate([strong, u], axis=1).astype(np.float64))
        keep = np.abs(np.diag(r)) > 1e-6
        u = (q[:, keep] * np.sign(np.diag(r))[keep]).astype(np.float32)
    if live is None or u.shape[1] == 0 or not np.any(u[~live]):
        return u
    # Dead or constant pixels carry no signal, but a penalized (smoothing) spatial step
    # spreads values onto them from their neighbours: zero them and re-orthonormalise.
    u = u * live[:, None]
    q, r = np.linalg.qr(u.astype(np.float64))
    keep = np.abs(np.diag(r)) > 1e-6 * max(float(np.abs(np.diag(r)).max()), 1e-30)
    return q[:, keep].astype(np.float32)


@dataclass
class _Projection:
    """What the re-fit needs besides the frames: the folded spatial components of every patch."""

    folded: list
    shifts: list
    offsets: np.ndarray
    active: list
    origins: np.ndarray
    patch_shape: tuple
    total_rank: int
    dtype: str
    trend_gains: list = None
    knots: np.ndarray | None = None


def _project_task(args):
    """Temporal factors of frames [t0, t1), written into their time chunk of ``temporal`` (pass 3)."""
    movie, t0, t1, proj, temporal = args
    block = movie.view(t0, t1)
    buffer = np.empty((t1 - t0, proj.patch_shape[0] * proj.patch_shape[1]), np.float32)
    v = np.empty((proj.total_rank, t1 - t0), dtype=np.float32)
    basis = trend_basis(np.arange(t0, t1), proj.knots) if proj.knots is not None else None
    for p in proj.active:
        y0, x0 = proj.origins[p]
        patch = extract_patch(block, y0, x0, *proj.patch_shape, buffer)
        v[proj.offsets[p] : proj.offsets[p + 1]] = (patch @ proj.folded[p]).T - proj.shifts[p][:, None]
        if basis is not None:
            v[proj.offsets[p] : proj.offsets[p + 1]] -= (proj.trend_gains[p] @ basis.T).astype(np.float32)
    if isinstance(temporal, RowBlocks):  # rounded to the store's working step, as the store would
        temporal.write_columns(t0, quantize(v.astype(proj.dtype), temporal.scale[:, None], temporal.where,
                                            "temporal"))
    else:
        temporal[:, t0:t1] = v.astype(proj.dtype)
