"""The report's single streaming pass over the movie: the plan of chunks and what each chunk feeds, and
the per-chunk sums merged in chunk order (so the result does not depend on the number of threads).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..parallel import blas_threads, default_workers
from ..preprocess import COHERENT_MIN_FRAMES, WELCH_SEGMENT, remove_coherent
from ..progress import null_progress
from .kernels import moments, neighbour_sums
from .noise import FitProjection, Spectra
from .photon_transfer import integer_range, photon_pairs

#: Frames of noise passed through the fit for the residual's local-correlation reference (one chunk's first).
NOISE_FIT_FRAMES = 96

#: Pixels (frames x pixels per frame) of one chunk: 16 M float32 = 64 MB.
CHUNK_PIXELS = 16 * 2**20


#: Frames used for the 8-neighbour correlation images (whole chunks, spread over the movie).
CORRELATION_FRAMES = 1024




#: Frames used for the Welch spectra (noise std of raw, denoised and residual).
SPECTRUM_FRAMES = 1024


#: Frame pairs per chunk used by the photon-transfer fit.
PAIRS_PER_CHUNK = 32


@dataclass
class Plan:
    """Chunks of the pass and which of them feed the sampled metrics."""

    bounds: list
    correlation: set
    spectrum: set
    segment: int

    @property
    def n_chunks(self) -> int:
        return len(self.bounds)


def _spread(items: list, k: int) -> set:
    if not items or k <= 0:
        return set()
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, min(k, len(items)))).astype(int))
    return {items[i] for i in idx}


def make_plan(n_frames: int, frame_shape, *, chunk_frames=None, correlation_frames=CORRELATION_FRAMES,
              spectrum_frames=SPECTRUM_FRAMES) -> Plan:
    """Chunk bounds (about 64 MB of float32 each) and the chunks sampled by each metric."""
    pixels = int(frame_shape[0]) * int(frame_shape[1])
    if chunk_frames is None:
        chunk_frames = int(np.clip(CHUNK_PIXELS // max(pixels, 1), 64, 512))
        chunk_frames -= chunk_frames % 32
    chunk_frames = max(2, min(int(chunk_frames), n_frames))
    bounds = [(s, min(s + chunk_frames, n_frames)) for s in range(0, n_frames, chunk_frames)]
    # A short last chunk joins the one before it (spectra and pairs want long chunks).
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < chunk_frames // 2:
        bounds[-2:] = [(bounds[-2][0], n_frames)]
    segment = min(WELCH_SEGMENT, chunk_frames)
    segment -= segment % 4
    full = [i for i, (a, b) in enumerate(bounds) if b - a >= segment]
    corr = _spread(list(range(len(bounds))), math.ceil(correlation_frames / chunk_frames))
    spec = _spread(full, math.ceil(spectrum_frames / chunk_frames)) if segment >= 8 else set()
    return Plan(bounds, corr, spec, segment)


@dataclass
class PassResult:
    """Everything the pass accumulated (sums, not yet turned into metrics)."""

    n_frames: int
    moments: np.ndarray  # (10, P)
    pair_count: int  # frames with both neighbours
    neighbours: np.ndarray | None  # (4, 6, H, W)
    neighbour_frames: int
    spectra: Spectra | None
    photon: np.ndarray | None  # (2, K)
    photon_lo: int | None
    truth: np.ndarray | None  # (4, P): sum (d-c)^2, sum (y-c)^2, sum (c-mu), sum (c-mu)^2 (spectrum chunks)
    crop_frames: np.ndarray | None
    seconds: float = 0.0
    truth_frames: int = 0
    noise_neighbours: np.ndarray | None = None  # (6, H, W): frame differences less their coherent part
    noise_frames: int = 0
    noise_fit_neighbours: np.ndarray | None = None  # (6, H, W): the same less what the fit keeps of them
    noise_fit_frames: int = 0


def stream(movie, store, *, truth=None, writer=None, write_dtype=None, collect=None, plan: Plan | None = None,
           workers=None, progress=None) -> PassResult:
    """The single pass over the movie (see the module docstring).

    Parameters
    ----------
    movie : Movie or None
        The raw movie; None for a store-only pass (denoised statistics only).
    store : PMDStore
    truth : Truth, optional
    writer : MovieWriter, optional
        Receives the denoised frames, in order, as ``write_dtype``.
    collect : tuple, optional
        ``(((y0, y1), (x0, x1)), n)``: keep frames ``0 .. n - 1`` of this crop of the raw
        movie (for the held-out fits), returned in ``PassResult.crop_frames``.
    plan : Plan, optional
    workers : int, optional
    progress : callable, optional

    Returns
    -------
    PassResult
    """
    start = time.perf_counter()
    n_frames, height, width = store.shape
    n_pix = height * width
    plan = plan or make_plan(n_frames, (height, width))
    workers = default_workers() if workers is None else max(int(workers), 1)
    progress = progress or null_progress
    mu = np.ascontiguousarray(store.mean, np.float32)
    mu_flat = mu.reshape(-1)
    noise = np.asarray(store.noise, np.float64)
    weights = (1.0 / np.where(noise > 0, noise, 1.0) ** 2).reshape(-1)
    int_range = integer_range(movie.dtype) if movie is not None else None
    pt_size = (2 * (int_range[1] - int_range[0]) + 1) if int_range else 0
    write_dtype = np.dtype(write_dtype) if write_dtype is not None else None
    int_output = write_dtype is not None and write_dtype.kind in "iu"
    store.cells((0, height), (0, width))  # build once, before the threads share it
    # The noise alone through the fit (the residual's local-correlation reference), on the correlation chunks.
    projection = FitProjection(store) if movie is not None and plan.correlation else None
    first_correlation = min(plan.correlation) if plan.correlation else -1
    crop_frames = None
    if collect is not None and movie is not None:
        ((cy0, cy1), (cx0, cx1)), n_keep = collect
        crop_frames = np.empty((n_keep, cy1 - cy0, cx1 - cx0), movie.dtype)
    if truth is not None and tuple(truth.shape) != tuple(store.shape):
        raise InputError(f"{truth.path}: ground truth shape {tuple(truth.shape)} does not match the movie "
                         f"{tuple(store.shape)}")

    def task(i):
        t0, t1 = plan.bounds[i]
        n = t1 - t0
        d = store.read(t0, t1)
        if movie is not None:
            lo, hi = max(t0 - 1, 0), min(t1 + 1, n_frames)
            yh = movie.view(lo, hi)
            if yh.shape[1:] != (height, width):
                raise InputError(f"{movie.name}: frames are {yh.shape[1:]}, the store's are {(height, width)}")
            y = yh[t0 - lo : t0 - lo + n]
        else:
            lo, yh, y = t0, d, d
        part = {}
        m, cnt = moments(yh.reshape(yh.shape[0], -1), d.reshape(n, -1), mu_flat, t0 - lo)
        part["moments"], part["pairs"] = m, cnt
        if i in plan.correlation:
            part["neighbours"] = neighbour_sums(y, d, mu)
            part["neighbour_frames"] = n
            if movie is not None and n > COHERENT_MIN_FRAMES:
                # The noise alone: frame differences less what each pixel shares with its annulus
                # (flicker, background), whose neighbour products the raw slot of the kernel sums.
                noise = remove_coherent(np.diff(np.asarray(y, np.float32), axis=0))
                # only the raw slot (x - mu) is kept, so the noise stands in for the denoised frames too
                zero = np.zeros((height, width), np.float32)
                part["noise_neighbours"] = neighbour_sums(noise, noise, zero)[0]
                part["noise_frames"] = n - 1
                if projection is not None and i == first_correlation and n - 1 >= 4:
                    # One chunk's first frames: the projections cost about 3 CPU-s per 256 frames on a
                    # 600-patch movie, and a pooled local correlation needs few frames.
                    rest = projection.noise_residual(noise[:NOISE_FIT_FRAMES])
                    part["noise_fit_neighbours"] = neighbour_sums(rest, rest, zero)[0]
                    part["noise_fit_frames"] = rest.shape[0]
        if i in plan.spectrum:
            sp = Spectra(n_pix, plan.segment, weights, frame_shape=(height, width))
            sp.add(y.reshape(n, -1), d.reshape(n, -1))
            part["spectra"] = sp
            if int_range is not None:
                part["photon"] = photon_pairs(y, PAIRS_PER_CHUNK, int_range[0], np.zeros((2, pt_size)))
        if truth is not None and i in plan.spectrum:
            part["truth"] = _truth_sums(truth.read(t0, t1).reshape(n, -1), d.reshape(n, -1),
                                        y.reshape(n, -1) if movie is not None else None, mu_flat)
        if crop_frames is not None and t0 < len(crop_frames):
            keep = min(t1, len(crop_frames)) - t0
            part["_crop"] = (t0, np.array(y[:keep, cy0:cy1, cx0:cx1]))
        out = None
        if writer is not None:
            out = store.read(t0, t1, dtype=write_dtype) if int_output else d.astype(write_dtype, copy=False)
        return part, out

    total = None
    bar = progress("report", plan.n_chunks)
    with blas_threads(1), ThreadPoolExecutor(max(workers, 1)) as pool:
        pending = []
        index = 0

        def consume(fut):
            nonlocal total
            part, out = fut.result()
            if writer is not None:
                writer.write(out)
            if "_crop" in part:
                c0, block = part.pop("_crop")
                crop_frames[c0 : c0 + len(block)] = block
            total = part if total is None else _merge(total, part)
            bar.update()

        try:
            for index in range(plan.n_chunks):
                pending.append(pool.submit(task, index))
                if len(pending) > max(2, workers):
                    consume(pending.pop(0))
            while pending:
                consume(pending.pop(0))
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    bar.close()
    return PassResult(
        n_frames=n_frames, moments=total["moments"], pair_count=total["pairs"],
        neighbours=total.get("neighbours"), neighbour_frames=total.get("neighbour_frames", 0),
        spectra=total.get("spectra"), photon=total.get("photon"),
        photon_lo=int_range[0] if int_range else None, truth=total.get("truth"),
        crop_frames=crop_frames, seconds=time.perf_counter() - start,
        truth_frames=sum(plan.bounds[i][1] - plan.bounds[i][0] for i in plan.spectrum) if truth is not None else 0,
        noise_neighbours=total.get("noise_neighbours"), noise_frames=total.get("noise_frames", 0),
        noise_fit_neighbours=total.get("noise_fit_neighbours"), noise_fit_frames=total.get("noise_fit_frames", 0),
    )


def _truth_sums(clean: np.ndarray, denoised: np.ndarray, raw: np.ndarray | None, mu_flat: np.ndarray) -> np.ndarray:
    """(4, P) sums over frames: squared error of denoised and of raw (0 without raw), clean - mean and its square."""
    acc = np.zeros((4, clean.shape[1]))
    e = denoised - clean
    acc[0] = np.einsum("ij,ij->j", e, e, dtype=np.float64)
    if raw is not None:
        e = raw - clean
        acc[1] = np.einsum("ij,ij->j", e, e, dtype=np.float64)
    clean -= mu_flat
    acc[2] = clean.sum(axis=0, dtype=np.float64)
    acc[3] = np.einsum("ij,ij->j", clean, clean, dtype=np.float64)
    return acc


def _merge(a: dict, b: dict) -> dict:
    for key, value in b.items():
        if key not in a:
            a[key] = value
        elif key == "spectra":
            a[key].merge(value)
        else:
            a[key] = a[key] + value
    return a
