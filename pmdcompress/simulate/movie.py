"""Seeded simulator of calcium-imaging movies with ground truth.

:func:`simulate_movie` writes a uint16 multi-page TIFF movie, axes ``(T, Y, X)``,
and beside it a Zarr v3 group ``<stem>.truth.zarr`` holding the noise-free movie
and every component that produced it.  :func:`load_truth` opens that group.

The movie is generated chunk by chunk of frames, so the whole movie is never held
in memory, and each frame draws its noise from its own generator
``np.random.default_rng([seed, 1, t])``: the output depends on ``seed`` only, not
on ``chunk_frames`` or on how many threads drew the noise.

Model (expected photons per pixel per frame)::

    rate[t, p] = sum_i footprints[i, p] * traces[i, t]
               + sum_k neuropil_spatial[k, p] * neuropil_traces[k, t]
    clean      = offset + gain * rate                        (ADU, float32)
    movie      = clip(round(offset + gain * Poisson(rate) + N(0, read_noise**2)), 0, 65535)

``traces[i]`` is the soma fluorescence at the footprint peak,
``baseline_i * (1 + dff_i(t))``, where ``dff_i`` is the spike train convolved with
a double exponential (rise 50 ms, decay 0.4-1.0 s) scaled so that one spike gives
a peak dF/F of 0.3-1.0.  Everything is scaled at the end so that the mean of
``rate`` over the field of view and all frames equals ``photons``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
import zarr
from scipy import ndimage, signal, sparse

from ..errors import OptionError
from ..formats.truth import DENDRITE, Truth, create_truth, finish_truth, read_truth, truth_header
from ..io.atomic import atomic_outputs, check_output_path
from ..options import parse_pair

__all__ = ["FORMAT_VERSION", "KINDS", "Truth", "load_truth", "simulate_movie", "truth_path"]

FORMAT_VERSION = truth_header()["version"]  # "pmd-simulate/2"

# Camera defaults: those of the synthetic movie in compression_denoising.md section 1,
# so that its codec and noise measurements apply to movies made here.
DEFAULT_GAIN = 20.0  # ADU per photon
DEFAULT_OFFSET = 100.0  # ADU at zero photons
DEFAULT_READ_NOISE = 4.0  # ADU, standard deviation


@dataclasses.dataclass(frozen=True)
class _Regime:
    """Constants of one imaging regime (relative units before the photon scaling)."""

    radius: tuple[float, float]  # soma semi-axes, px
    blur: float  # Gaussian blur of the footprints, px (out-of-focus light)
    nucleus_fraction: float  # fraction of somata with a dimmer nucleus
    overlap_fraction: float  # probability that a soma is placed against an earlier one
    baseline: float  # median soma baseline at the footprint peak
    baseline_spread: float  # lognormal sigma of the soma baselines
    dff_per_spike: tuple[float, float]
    spike_rate_hz: tuple[float, float]  # log-uniform
    burst_probability: float  # probability that an event is a burst of 2-4 spikes
    tau_rise_s: float
    tau_decay_s: tuple[float, float]
    neuropil_sigma: tuple[float, ...]  # spatial smoothness of each neuropil mode, px
    neuropil_level: tuple[float, ...]  # mean level of each neuropil mode
    neuropil_tau_s: tuple[float, ...]  # time scale of each mode's fluctuations
    neuropil_swing: tuple[float, ...]  # log-amplitude of each mode's fluctuations
    population_coupling: float  # correlation of the neuropil with mean neuronal dF/F
    drift: float  # fractional decline of the first neuropil mode over the movie
    silent_fraction: float = 0.0  # fraction of somata that never fire (seen only in the mean image)
    # The fields below are off by default, so that the movies of the regimes above keep their bytes.
    fs: float = 30.0  # default frame rate, Hz
    trace_model: str = "calcium"  # "calcium" (spikes through a double exponential) or "voltage"
    spike_frames: tuple[int, int] = (1, 3)  # voltage: width of a spike's waveform, frames
    subthreshold: float = 0.0  # voltage: subthreshold oscillation amplitude, in units of a spike's dF/F
    dendrite_fraction: float = 0.0  # fraction of the sources that are thin, elongated dendrite/axon segments
    dendrite_length: tuple[float, float] = (15.0, 40.0)  # px
    dendrite_width: float = 0.8  # Gaussian sigma across a segment, px
    bleaching: float = 0.0  # fractional exponential decline of all fluorescence over the movie
    hemodynamic: float = 0.0  # amplitude of a global multiplicative (absorption-like) fluctuation
    noise_blur: float = 0.0  # share of each detected photon's noise spread to each of the 4 neighbours
    # Defaults of simulate_movie's arguments for the kind (the regimes above keep 100 neurons and 1 photon).
    density: float = 0.0  # sources per 1000 px^2 when n_neurons is not given (0: 100 sources)
    photons: float = 1.0  # mean photons per pixel per frame when photons is not given
    vignetting: float = 0.0  # brightness lost at the field's far edge (an objective's falloff), 0-1


_REGIMES = {
    # Two-photon GCaMP: small bright somata over a dim, fairly flat neuropil.
    "2p": _Regime(
        radius=(3.0, 6.0),
        blur=0.0,
        nucleus_fraction=0.5,
        overlap_fraction=0.15,
        baseline=8.0,
        baseline_spread=0.3,
        dff_per_spike=(0.3, 1.0),
        spike_rate_hz=(0.05, 0.5),
        burst_probability=0.15,
        tau_rise_s=0.05,
        tau_decay_s=(0.4, 1.0),
        neuropil_sigma=(24.0, 12.0, 6.0),
        neuropil_level=(1.0, 0.2, 0.1),
        neuropil_tau_s=(5.0, 2.0, 1.0),
        neuropil_swing=(0.05, 0.3, 0.3),
        population_coupling=0.5,
        drift=0.05,
    ),
    # One-photon (widefield/miniscope): larger blurred cells under a strong, large,
    # slowly varying diffuse background.
    "1p": _Regime(
        radius=(5.0, 9.0),
        blur=1.5,
        nucleus_fraction=0.0,
        overlap_fraction=0.3,
        baseline=2.0,
        baseline_spread=0.3,
        dff_per_spike=(0.3, 1.0),
        spike_rate_hz=(0.05, 0.5),
        burst_probability=0.15,
        tau_rise_s=0.05,
        tau_decay_s=(0.4, 1.0),
        neuropil_sigma=(64.0, 24.0, 12.0),
        neuropil_level=(4.0, 0.6, 0.3),
        neuropil_tau_s=(10.0, 3.0, 1.0),
        neuropil_swing=(0.1, 0.3, 0.3),
        population_coupling=0.3,
        drift=0.1,
    ),
}
# One-photon with the noise shared between neighbouring pixels (a miniscope's sensor, binning and
# motion-correction interpolation): each photon's count spreads 12 % to each 4-neighbour.
_REGIMES["1p-correlated"] = dataclasses.replace(_REGIMES["1p"], noise_blur=0.12)
# Voltage imaging at 1 kHz: bright membrane-labelled somata, 1-3-frame spikes at 5-20 Hz over a
# subthreshold oscillation, and bleaching of everything over the movie.
_REGIMES["voltage"] = dataclasses.replace(
    _REGIMES["2p"], fs=1000.0, trace_model="voltage", radius=(5.0, 8.0), nucleus_fraction=0.0,
    overlap_fraction=0.05, baseline=20.0, dff_per_spike=(0.15, 0.3), spike_rate_hz=(5.0, 20.0),
    burst_probability=0.1, subthreshold=0.3, neuropil_tau_s=(2.0, 0.5, 0.2), population_coupling=0.0,
    drift=0.0, bleaching=0.25)
# Widefield: no resolved cells; large smooth cortical sources under a strong global signal, and a
# hemodynamic (absorption) fluctuation that multiplies everything.
_REGIMES["widefield"] = dataclasses.replace(
    _REGIMES["1p"], radius=(12.0, 25.0), blur=6.0, overlap_fraction=0.6, baseline=1.0, dff_per_spike=(0.02, 0.08),
    spike_rate_hz=(0.2, 1.0), burst_probability=0.5, tau_decay_s=(0.8, 2.0), neuropil_sigma=(256.0, 48.0, 16.0),
    neuropil_level=(6.0, 0.8, 0.3), neuropil_tau_s=(3.0, 2.0, 1.0), neuropil_swing=(0.05, 0.1, 0.1),
    population_coupling=0.7, drift=0.05, hemodynamic=0.03)
# Dendritic/axonal imaging: many thin, elongated segments (1-2 px wide), small and dim.
_REGIMES["dendritic"] = dataclasses.replace(
    _REGIMES["2p"], radius=(1.5, 3.0), nucleus_fraction=0.0, overlap_fraction=0.3, baseline=4.0,
    dendrite_fraction=0.85, tau_decay_s=(0.2, 0.6), spike_rate_hz=(0.1, 1.0))
# Dense two-photon field as on real recordings: packed somata, dendrites through the neuropil and a
# neuropil with more, finer modes; about 12-19 components per 32 x 32 patch at 2-4 sources per
# 1000 px^2 (see docs).
_REGIMES["2p-dense"] = dataclasses.replace(
    _REGIMES["2p"], overlap_fraction=0.35, dendrite_fraction=0.35, dendrite_length=(20.0, 60.0),
    neuropil_sigma=(24.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0), neuropil_level=(1.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4),
    neuropil_tau_s=(5.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.4), neuropil_swing=(0.05, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6),
    silent_fraction=0.2, tau_decay_s=(0.5, 1.5), dff_per_spike=(0.4, 1.2), spike_rate_hz=(0.1, 0.8))
# Three-photon imaging of deep layers: sparse somata and almost no neuropil (the excitation is confined to the
# focus), but very few photons (0.1-0.5 per pixel per frame) at a slow frame rate (1-5 Hz), so that a GCaMP6s
# transient spans only a few frames.
_REGIMES["3p"] = dataclasses.replace(
    _REGIMES["2p"], fs=2.0, photons=0.2, density=1.5, radius=(4.0, 7.0), dff_per_spike=(0.5, 1.5),
    tau_decay_s=(0.8, 1.6), neuropil_level=(0.3, 0.05, 0.03), neuropil_tau_s=(20.0, 8.0, 4.0), drift=0.02)
# Calibrated to real movies with pmd compress's defaults (docs/simulate.md, benchmarks/bench_regimes.py): the
# 2p-dense field at a density per area, a photon level and a frame rate that give the components per 32 x 32
# patch and the photon level of neurofinder_dev (GCaMP6s at 7 Hz, a field that dims towards one side) ...
_REGIMES["2p-real"] = dataclasses.replace(_REGIMES["2p-dense"], fs=7.0, density=6.5, photons=0.8, vignetting=0.8,
                                          baseline=5.0)
# ... and of optinist_mouse2p (brighter and denser; its frame rate is not documented: 30 Hz).
_REGIMES["2p-real-bright"] = dataclasses.replace(_REGIMES["2p-dense"], fs=30.0, density=12.0, photons=3.3)

#: The simulated regimes (``kind``), in the order the CLI lists them.
KINDS = tuple(_REGIMES)


@dataclasses.dataclass(frozen=True)
class _Model:
    """Everything but the per-frame noise, in photons per pixel per frame."""

    footprints: sparse.csr_matrix  # (N, Y * X) float32, max 1 each: sparse, so that thousands fit at 512 x 512
    traces: np.ndarray  # (N, T) float32
    spikes: np.ndarray  # (N, T) uint8
    baseline: np.ndarray  # (N,) float32
    centers: np.ndarray  # (N, 2) float32, (y, x)
    radii: np.ndarray  # (N, 2) float32
    spike_rate_hz: np.ndarray  # (N,)
    tau_decay_s: np.ndarray  # (N,)
    dff_per_spike: np.ndarray  # (N,)
    neuropil_spatial: np.ndarray  # (K, Y, X) float32
    neuropil_traces: np.ndarray  # (K, T) float32, mean about 1
    n_overlapping: int
    scale: float  # relative units -> photons
    source_kind: np.ndarray  # (N,) uint8: formats.truth.SOMA or DENDRITE


def truth_path(movie_path: str | os.PathLike) -> Path:
    """Path of the ground-truth group that belongs to a simulated movie.

    Parameters
    ----------
    movie_path : str or path-like
        The movie, e.g. ``demo.tif``.

    Returns
    -------
    Path
        ``<stem>.truth.zarr`` beside the movie, e.g. ``demo.truth.zarr``.
    """
    movie_path = Path(movie_path)
    return movie_path.with_name(movie_path.stem + ".truth.zarr")


def simulate_movie(
    path: str | os.PathLike,
    *,
    n_frames: int = 3000,
    shape: tuple[int, int] = (256, 256),
    n_neurons: int | None = None,
    photons: float | None = None,
    fs: float | None = None,
    seed: int = 0,
    kind: str = "2p",
    overwrite: bool = False,
    chunk_frames: int = 250,
    gain: float = DEFAULT_GAIN,
    offset: float = DEFAULT_OFFSET,
    read_noise: float = DEFAULT_READ_NOISE,
    regime: dict | None = None,
    truth: bool = True,
) -> dict:
    """Write a simulated calcium-imaging movie and its ground truth.

    Parameters
    ----------
    path : str or path-like
        Output TIFF (uint16, one page per frame, axes ``(T, Y, X)``).  The ground
        truth goes to ``<stem>.truth.zarr`` beside it.
    n_frames : int, optional
        Number of frames T.
    shape : tuple of int, optional
        Frame shape ``(Y, X)``.
    n_neurons : int, optional
        Number of sources N (somata, and dendrites in the kinds that have them).
        Default: the kind's density per area for the ``2p-real`` kinds
        (``density`` sources per 1000 px^2), else 100.
    photons : float, optional
        Mean expected photons per pixel per frame over the field of view and all
        frames.  1-2 is the photon-limited regime of two-photon imaging.
        Default: the kind's (1; 0.8 for ``2p-real``, 3.3 for ``2p-real-bright``, 0.2 for ``3p``).
    fs : float, optional
        Frame rate in Hz; sets the time scales of spikes and calcium.  Default: the
        kind's (30 Hz; 1000 Hz for ``"voltage"``, 7 Hz for ``"2p-real"``, 2 Hz for ``"3p"``).
    seed : int, optional
        Seed of everything random.  Same arguments and seed give identical bytes.
    kind : str, optional
        One of ``KINDS``.
        ``"2p"``: small somata over a dim neuropil.  ``"1p"``: larger, blurred cells
        under a strong, large, slowly varying diffuse background; ``"1p-correlated"``
        the same with noise shared between neighbouring pixels.  ``"voltage"``: 1 kHz,
        1-3-frame spikes at 5-20 Hz over a subthreshold oscillation, with bleaching.
        ``"widefield"``: large smooth sources under global and hemodynamic-like
        (multiplicative) signals.  ``"dendritic"``: many thin, elongated, dim
        segments.  ``"2p-dense"``: packed somata, dendrites and a finer neuropil, with
        as many components per patch as real two-photon recordings.  ``"3p"``: three-photon,
        sparse somata without neuropil at 0.2 photons per pixel per frame and 2 Hz.
    overwrite : bool, optional
        Replace existing outputs; otherwise they raise ``OutputExistsError``.
    chunk_frames : int, optional
        At most this many frames are generated at a time (rounded down to a
        multiple of the time chunk of ``clean``, at most 16 MB); bounds the
        memory.  The output does not depend on it.
    gain, offset, read_noise : float, optional
        Camera model: ADU per photon, ADU at zero photons, read-noise SD in ADU.
    regime : dict, optional
        Overrides of the constants of ``kind`` (fields of ``_Regime``), e.g.
        ``{"tau_decay_s": (1.0, 2.0), "silent_fraction": 0.4}`` for a GCaMP6s-like
        movie in which 40% of the somata never fire.
    truth : bool, optional
        Write the ground truth beside the movie (default).  False writes the
        movie only: the truth's clean movie is float32, twice the movie's bytes
        before compression, which a scale test (20000 x 512 x 512) does not need.

    Returns
    -------
    dict
        ``movie`` and ``truth`` paths, ``shape``, ``mean_photons`` (realised mean of
        the expected rate), ``n_overlapping``, ``n_dendrites`` (sources drawn as dendrite or axon
        segments, ``source_kind`` 1 in the truth) and the attributes written.

    Raises
    ------
    ValueError
        If a parameter is out of range.
    OutputExistsError
        If the movie or its truth exists and ``overwrite`` is false.

    Notes
    -----
    Somata are soft-edged ellipses (semi-axes 3-6 px for 2p, random orientation;
    half of them with a dimmer nucleus), placed at random; 15% are placed against
    another soma, so that about 20-30% of the footprints overlap another one
    (``n_overlapping``).  Soma baselines are lognormal around 8 times the mean
    neuropil level before scaling (about 6x the total neuropil), as bright as in
    the synthetic movie of compression_denoising.md.  Spikes are Poisson (0.05-0.5 Hz,
    log-uniform per neuron; 15% of events are bursts of 2-4 spikes), calcium is the
    spike train convolved with a double exponential (rise 50 ms, decay 0.4-1.0 s),
    one spike giving a peak dF/F of 0.3-1.0 over a lognormal soma baseline.  The
    neuropil is three smooth non-negative spatial modes (Gaussian-filtered noise)
    times slow positive time courses, partly coupled to the mean neuronal activity;
    the first mode declines slowly (bleaching-like drift).  Photon counts are
    Poisson, then ``ADU = round(offset + gain * counts + N(0, read_noise**2))``
    clipped to uint16.

    Both outputs are written under temporary names and renamed only when complete.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> info = simulate_movie(d / "demo.tif", n_frames=20, shape=(32, 32), n_neurons=3)
    >>> info["shape"]
    (20, 32, 32)
    """
    n_frames = _positive_int(n_frames, "n_frames")
    chunk_frames = _positive_int(chunk_frames, "chunk_frames")
    if kind not in _REGIMES:
        raise OptionError(f"{{kind}} must be one of {sorted(_REGIMES)}, got {kind!r}", "kind")
    shape = parse_pair(shape, "shape")  # integers only: (32.5, 32) was cut to 32 without a word
    if min(shape) < 8:
        raise OptionError(f"{{shape}} must be a pair (Y, X) of at least 8 px each, got {shape!r}", "shape")
    constants = _REGIMES[kind]
    if regime:
        fields = {f.name for f in dataclasses.fields(_Regime)}
        unknown = sorted(set(regime) - fields)
        if unknown:
            raise ValueError(f"regime: unknown constant(s) {unknown}; known: {sorted(fields)}")
        constants = dataclasses.replace(constants, **regime)
    if n_neurons is None:
        n_neurons = round(constants.density * shape[0] * shape[1] / 1000.0) if constants.density > 0 else 100
    if photons is None:
        photons = constants.photons
    n_neurons = int(n_neurons)
    if n_neurons < 0:
        raise OptionError(f"{{n_neurons}} must be >= 0, got {n_neurons}", "n_neurons")
    if fs is None:
        fs = constants.fs
    for name, value in (("photons", photons), ("fs", fs), ("gain", gain)):
        if not np.isfinite(value) or value <= 0:
            raise OptionError(f"{{{name}}} must be a positive number, got {value!r}", name)
    if not np.isfinite(read_noise) or read_noise < 0:
        raise OptionError(f"{{read_noise}} must be >= 0, got {read_noise!r}", "read_noise")
    if not np.isfinite(offset):
        raise OptionError(f"{{offset}} must be finite, got {offset!r}", "offset")
    seed = int(seed)
    if seed < 0:
        raise OptionError(f"{{seed}} must be >= 0, got {seed}", "seed")

    movie_path = Path(path)
    zarr_path = truth_path(movie_path)
    if movie_path.suffix.lower() not in (".tif", ".tiff", ".btf"):
        # the movie is always a TIFF: under another name it would fool every reader (a .npy that is no .npy)
        raise OptionError(f"{movie_path}: a simulated movie is written as TIFF; name it .tif or .tiff")
    # Validate both outputs before writing either.
    check_output_path(movie_path, overwrite=overwrite)
    if truth:
        check_output_path(zarr_path, overwrite=overwrite)

    if not 0.0 <= constants.silent_fraction <= 1.0:
        raise ValueError(f"silent_fraction must be in [0, 1], got {constants.silent_fraction!r}")
    model = _build_model(np.random.default_rng([seed, 0]), constants, n_frames, shape, n_neurons, photons, fs)
    attrs = {
        "version": FORMAT_VERSION,
        "n_frames": n_frames,
        "shape": list(shape),
        "n_neurons": n_neurons,
        "photons": float(photons),
        "fs": float(fs),
        "seed": seed,
        "kind": kind,
        "chunk_frames": chunk_frames,
        "gain": float(gain),
        "offset": float(offset),
        "read_noise": float(read_noise),
        "n_overlapping": model.n_overlapping,
        "regime": _jsonable(dataclasses.asdict(constants)),
        "units": {
            "clean": "ADU",
            "traces": "photons/px/frame at the footprint peak",
            "background": "photons/px/frame",
            "neuropil_spatial": "photons/px/frame",
            "neuropil_traces": "unitless",
        },
    }
    # Both or neither: the truth is renamed into place with the movie.
    outputs, folders = ([movie_path, zarr_path], [False, True]) if truth else ([movie_path], [False])
    with atomic_outputs(outputs, overwrite=overwrite, folders=folders) as tmp:
        stats = _write(tmp[0], tmp[1] if truth else None, model, attrs, seed, chunk_frames)
    return {
        "movie": movie_path,
        "truth": zarr_path if truth else None,
        "shape": (n_frames, *shape),
        "mean_photons": stats["mean_photons"],
        "n_overlapping": model.n_overlapping,
        "n_dendrites": int(np.count_nonzero(model.source_kind == DENDRITE)),
        "attrs": attrs,
    }


def load_truth(path: str | os.PathLike) -> Truth:
    """Open the ground truth of a simulated movie.

    Parameters
    ----------
    path : str or path-like
        The ``.truth.zarr`` group, or the movie it belongs to.

    Returns
    -------
    Truth
        Small arrays loaded; ``clean`` stays a lazy zarr array.

    Raises
    ------
    FileNotFoundError
        If the group does not exist.
    StoreFormatError
        If it is not a truth group of a known version.
    """
    path = Path(path)
    if path.suffix != ".zarr":
        path = truth_path(path)
    return read_truth(path)


# --------------------------------------------------------------------------- model


def _positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, or an OptionError naming ``name``."""
    if int(value) != value or value < 1:
        raise OptionError(f"{{{name}}} must be an integer >= 1, got {value!r}", name)
    return int(value)


def _jsonable(obj):
    """Tuples to lists, recursively, for zarr attributes."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to [0, 1], shape ``shape``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    field -= field.min()
    top = field.max()
    return field / top if top > 0 else np.full(shape, 0.5)


def _vignette(rng: np.random.Generator, shape: tuple[int, int], loss: float) -> np.ndarray:
    """Brightness over the field, 1 at a spot in the middle half, ``1 - loss`` at the farthest corner."""
    spot = rng.uniform(0.25, 0.75, size=2) * (np.array(shape) - 1)
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    d2 = (yy - spot[0]) ** 2 + (xx - spot[1]) ** 2
    return 1.0 - loss * d2 / d2.max()


def _slow_noise(rng: np.random.Generator, n: int, frames: float) -> np.ndarray:
    """Low-pass white noise of unit SD and time scale ``frames``, shape (n,)."""
    x = ndimage.gaussian_filter1d(rng.standard_normal(n), max(frames, 0.5), mode="reflect")
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros(n)


def _soma(rng, regime: _Regime, center, radii, theta, shape) -> np.ndarray:
    """One footprint, shape ``shape``, maximum 1."""
    a, b = radii
    half = int(np.ceil(1.6 * max(a, b) + 3 * regime.blur)) + 1
    cy, cx = center
    y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, shape[0])
    x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, shape[1])
    dy = np.arange(y0, y1)[:, None] - cy
    dx = np.arange(x0, x1)[None, :] - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    patch = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.1))
    if rng.random() < regime.nucleus_fraction:
        depth = rng.uniform(0.3, 0.6)
        patch *= 1.0 - depth / (1.0 + np.exp((rho - 0.55) / 0.08))
    out = np.zeros(shape)
    out[y0:y1, x0:x1] = patch
    if regime.blur > 0:
        out = ndimage.gaussian_filter(out, regime.blur, mode="constant")
    out /= out.max()
    out[out < 0.02] = 0.0
    return out


def _dendrite(rng, regime: _Regime, start, shape) -> np.ndarray:
    """A thin, curved segment (a dendrite or an axon) from ``start``: a persistent random walk, maximum 1."""
    length = rng.uniform(*regime.dendrite_length)
    n_steps = max(int(length / 0.5), 2)
    angle = rng.uniform(0, 2 * np.pi)
    turns = np.cumsum(rng.normal(0.0, 0.06, n_steps))
    ys = start[0] + np.cumsum(0.5 * np.sin(angle + turns))
    xs = start[1] + np.cumsum(0.5 * np.cos(angle + turns))
    ok = (ys >= 0) & (ys <= shape[0] - 1) & (xs >= 0) & (xs <= shape[1] - 1)
    out = np.zeros(shape)
    if ok.sum() < 2:
        ok[:] = False
        ys, xs = np.array([start[0]]), np.array([start[1]])
        ok = np.array([True])
    np.add.at(out, (np.rint(ys[ok]).astype(int), np.rint(xs[ok]).astype(int)), 1.0)
    out = ndimage.gaussian_filter(out, regime.dendrite_width + regime.blur, mode="constant")
    # Varicosities (boutons, spines): brightness varies along the segment.
    out *= 0.6 + 0.4 * _smooth_field(rng, shape, 2.0)
    out /= out.max()
    out[out < 0.05] = 0.0
    return out


def _voltage(rng, regime: _Regime, spikes: np.ndarray, fs: float) -> np.ndarray:
    """Voltage-like dF/F in units of one spike, shape (N, T): 1-3-frame spikes over a subthreshold oscillation."""
    n, n_frames = spikes.shape
    out = np.zeros((n, n_frames))
    t_s = np.arange(n_frames) / fs
    lo, hi = regime.spike_frames
    for i in range(n):
        width = int(rng.integers(lo, hi + 1))
        # Rise within a frame, then a decay over ``width`` frames (an action potential's shape at kHz).
        wave = np.exp(-np.arange(width) / max(width / 2.0, 0.5))
        out[i] = signal.lfilter(wave, [1.0], spikes[i].astype(np.float64))
        if regime.subthreshold > 0:
            freq = rng.uniform(4.0, 10.0)
            sub = 0.6 * np.sin(2 * np.pi * freq * t_s + rng.uniform(0, 2 * np.pi))
            sub += 0.4 * _slow_noise(rng, n_frames, 0.05 * fs)
            out[i] += regime.subthreshold * sub
    return out


def _place(rng, regime: _Regime, n: int, shape) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n, 2) and semi-axes (n, 2); about ``overlap_fraction`` placed against another."""
    radii = rng.uniform(*regime.radius, size=(n, 2))
    centers = np.zeros((n, 2))
    lo = np.array([0.0, 0.0])
    hi = np.array(shape, dtype=float) - 1
    for i in range(n):
        r_i = radii[i].mean()
        margin = min(r_i, 0.25 * min(shape))
        box_lo, box_hi = lo + margin, hi - margin
        if i > 0 and rng.random() < regime.overlap_fraction:
            for _ in range(50):
                j = rng.integers(i)
                dist = rng.uniform(0.5, 0.85) * (r_i + radii[j].mean())
                phi = rng.uniform(0, 2 * np.pi)
                c = centers[j] + dist * np.array([np.sin(phi), np.cos(phi)])
                if np.all(c >= box_lo) and np.all(c <= box_hi):
                    break
            else:
                c = rng.uniform(box_lo, box_hi)
        else:
            for _ in range(200):
                c = rng.uniform(box_lo, box_hi)
                if i == 0:
                    break
                # Soft edges reach 1.4 semi-axes: keep the supports apart.
                d = np.hypot(*(centers[:i] - c).T)
                if np.all(d > 1.4 * (radii[i].max() + radii[:i].max(axis=1)) + 1.0):
                    break
        centers[i] = c
    return centers, radii


def _spike_trains(rng, regime: _Regime, n: int, n_frames: int, fs: float):
    """Spike counts (n, T) uint8 and the rate of each train in Hz."""
    lo, hi = np.log(regime.spike_rate_hz)
    rates = np.exp(rng.uniform(lo, hi, size=n))
    spikes = np.zeros((n, n_frames), dtype=np.int64)
    for i in range(n):
        n_events = rng.poisson(rates[i] * n_frames / fs)
        times = rng.integers(0, n_frames, size=n_events)
        for t in times:
            if rng.random() < regime.burst_probability:
                size = rng.integers(2, 5)
                burst = t + np.cumsum(rng.integers(1, 4, size=size)) - 1
                burst = burst[burst < n_frames]
                np.add.at(spikes[i], burst, 1)
            else:
                spikes[i, t] += 1
        if spikes[i].sum() == 0:  # every neuron fires at least once
            spikes[i, rng.integers(0, n_frames)] = 1
    if regime.silent_fraction > 0 and n:
        # A separate stream, so that movies without silent cells keep their bytes.
        silent = np.random.default_rng([int(rng.integers(2**31)), 1]).random(n) < regime.silent_fraction
        spikes[silent] = 0
        rates[silent] = 0.0
    return np.minimum(spikes, 255).astype(np.uint8), rates


def _calcium(spikes: np.ndarray, fs: float, tau_rise: float, tau_decay: np.ndarray) -> np.ndarray:
    """Spikes convolved with a double exponential of peak 1, shape (N, T), float64.

    The kernel is ``exp(-(k + 1/2) / (tau_decay fs)) - exp(-(k + 1/2) / (tau_rise fs))``
    for lag ``k >= 0`` frames (a spike in mid-frame), divided by its maximum.
    """
    out = np.zeros(spikes.shape)
    g_r = np.exp(-1.0 / (tau_rise * fs))
    for i, tau in enumerate(tau_decay):
        lags = np.arange(int(10 * tau * fs) + 2) + 0.5
        g_d = np.exp(-1.0 / (tau * fs))
        peak = np.max(g_d**lags - g_r**lags)
        s = spikes[i].astype(np.float64)
        out[i] = (
            signal.lfilter([np.sqrt(g_d)], [1.0, -g_d], s) - signal.lfilter([np.sqrt(g_r)], [1.0, -g_r], s)
        ) / peak
    return out


def _build_model(rng, regime: _Regime, n_frames, shape, n_neurons, photons, fs) -> _Model:
    """Draw footprints, traces and neuropil; scale so that the mean rate is ``photons``."""
    centers, radii = _place(rng, regime, n_neurons, shape)
    thetas = rng.uniform(0, np.pi, size=n_neurons)
    pixels = shape[0] * shape[1]
    # Each footprint is drawn on the whole frame (as always: the same floats), then kept sparse, so that
    # thousands of sources at 512 x 512 take megabytes, not gigabytes; its sum is taken on the dense frame.
    rows, sums = [], np.zeros(n_neurons)
    source_kind = np.zeros(n_neurons, np.uint8)  # SOMA unless redrawn as a dendrite below
    for i in range(n_neurons):
        dense = _soma(rng, regime, centers[i], radii[i], thetas[i], shape)
        rows.append(sparse.csr_matrix(dense.reshape(1, pixels)))
        sums[i] = dense.sum()
    if regime.dendrite_fraction > 0 and n_neurons:
        # A separate stream, so that the regimes without dendrites keep their bytes.
        extra = np.random.default_rng([int(rng.integers(2**31)), 2])
        for i in np.flatnonzero(extra.random(n_neurons) < regime.dendrite_fraction):
            dense = _dendrite(extra, regime, centers[i], shape)
            rows[i] = sparse.csr_matrix(dense.reshape(1, pixels))
            sums[i] = dense.sum()
            source_kind[i] = DENDRITE
    footprints = sparse.vstack(rows, format="csr") if n_neurons else sparse.csr_matrix((0, pixels))
    if n_neurons:
        cover = np.bincount(footprints.indices, minlength=pixels)
        n_overlapping = int(sum(np.any(cover[footprints.indices[a:b]] > 1)
                                for a, b in zip(footprints.indptr[:-1], footprints.indptr[1:], strict=True)))
    else:
        n_overlapping = 0

    spikes, rates = _spike_trains(rng, regime, n_neurons, n_frames, fs)
    tau_decay = rng.uniform(*regime.tau_decay_s, size=n_neurons)
    dff_per_spike = rng.uniform(*regime.dff_per_spike, size=n_neurons)
    baseline = regime.baseline * np.exp(regime.baseline_spread * rng.standard_normal(n_neurons))
    if regime.trace_model == "voltage":
        extra = np.random.default_rng([int(rng.integers(2**31)), 3])
        dff = dff_per_spike[:, None] * _voltage(extra, regime, spikes, fs)
    else:
        dff = dff_per_spike[:, None] * _calcium(spikes, fs, regime.tau_rise_s, tau_decay)
    traces = baseline[:, None] * (1.0 + dff)

    # Neuropil: smooth non-negative modes times slow positive time courses, partly
    # driven by the mean neuronal activity.
    population = dff.mean(axis=0) if n_neurons else np.zeros(n_frames)
    sd = population.std()
    population = (population - population.mean()) / sd if sd > 0 else np.zeros(n_frames)
    rho = regime.population_coupling
    k_modes = len(regime.neuropil_level)
    neuropil_spatial = np.empty((k_modes, *shape))
    neuropil_traces = np.empty((k_modes, n_frames))
    ramp = np.linspace(0.0, 1.0, n_frames)
    for k in range(k_modes):
        field = _smooth_field(rng, shape, regime.neuropil_sigma[k])
        if k == 0:
            field = 0.5 + field  # 0.5-1.5 times the level: never dark
        neuropil_spatial[k] = regime.neuropil_level[k] * field / field.mean()
        z = np.sqrt(1 - rho**2) * _slow_noise(rng, n_frames, regime.neuropil_tau_s[k] * fs) + rho * population
        course = np.exp(regime.neuropil_swing[k] * z)
        course /= course.mean()
        if k == 0:
            course *= 1.0 - regime.drift * (ramp - 0.5)
        neuropil_traces[k] = course
    if regime.vignetting > 0:
        # Uneven brightness across the field (real fields dim towards an edge: fewer photons, fewer components
        # there): a quadratic falloff from a bright spot drawn off centre; sources take the value at their centre.
        extra = np.random.default_rng([int(rng.integers(2**31)), 5])
        falloff = _vignette(extra, shape, regime.vignetting)
        neuropil_spatial *= falloff
        cy, cx = (np.clip(np.rint(centers[:, a]), 0, shape[a] - 1).astype(int) for a in (0, 1))
        traces = traces * falloff[cy, cx][:, None]
        baseline = baseline * falloff[cy, cx]
    if regime.bleaching > 0 or regime.hemodynamic > 0:
        # Multiplies every source and the neuropil alike: bleaching of the whole field, and an
        # absorption-like hemodynamic fluctuation (slow vasomotion near 0.1 Hz plus the heartbeat).
        extra = np.random.default_rng([int(rng.integers(2**31)), 4])
        t_s = np.arange(n_frames) / fs
        factor = np.exp(-regime.bleaching * np.arange(n_frames) / max(n_frames - 1, 1))
        if regime.hemodynamic > 0:
            heart = extra.uniform(5.0, 10.0)
            wave = 0.7 * _slow_noise(extra, n_frames, 2.0 * fs) + 0.3 * np.sqrt(2) * np.sin(
                2 * np.pi * min(heart, 0.4 * fs) * t_s + extra.uniform(0, 2 * np.pi))
            factor = factor * (1.0 - regime.hemodynamic * wave)
        traces = traces * factor
        neuropil_traces = neuropil_traces * factor

    mean_rate = (
        sums @ traces.mean(axis=1)
        + neuropil_spatial.reshape(k_modes, pixels).sum(axis=1) @ neuropil_traces.mean(axis=1)
    ) / pixels
    scale = photons / mean_rate
    f32 = np.float32
    return _Model(
        footprints=footprints.astype(f32),
        traces=(scale * traces).astype(f32),
        spikes=spikes,
        baseline=(scale * baseline).astype(f32),
        centers=centers.astype(f32),
        radii=radii.astype(f32),
        spike_rate_hz=rates.astype(f32),
        tau_decay_s=tau_decay.astype(f32),
        dff_per_spike=dff_per_spike.astype(f32),
        neuropil_spatial=(scale * neuropil_spatial).astype(f32),
        neuropil_traces=neuropil_traces.astype(f32),
        n_overlapping=n_overlapping,
        scale=float(scale),
        source_kind=source_kind,
    )


# --------------------------------------------------------------------------- output


def _blur_kernel(share: float) -> np.ndarray:
    """Cross-shaped kernel that keeps ``1 - 4 share`` of a value and gives ``share`` to each 4-neighbour."""
    return np.array([[0.0, share, 0.0], [share, 1.0 - 4.0 * share, share], [0.0, share, 0.0]])


def _noisy_frame(rate: np.ndarray, seed: int, t: int, gain, offset, read_noise, noise_blur=0.0,
                 frame_shape=None) -> np.ndarray:
    """One uint16 frame from its expected photon rate, with its own generator.

    ``noise_blur`` > 0 spreads each pixel's detected photons to its neighbours
    (``frame_shape`` gives the frame's 2-D shape), so neighbours share noise.
    """
    rng = np.random.default_rng([seed, 1, t])
    counts = rng.poisson(np.maximum(rate, 0.0).astype(np.float64))
    if noise_blur > 0:
        counts = ndimage.convolve(counts.reshape(frame_shape).astype(np.float64), _blur_kernel(noise_blur),
                                  mode="nearest").ravel()
    adu = offset + gain * counts.astype(np.float32)
    if read_noise > 0:
        adu += read_noise * rng.standard_normal(rate.shape, dtype=np.float32)
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


def _write(tmp_movie: Path, tmp_zarr: Path, model: _Model, attrs: dict, seed, chunk_frames):
    """Write the truth group and stream the movie; return realised statistics."""
    import tifffile

    ny, nx = model.neuropil_spatial.shape[1:]
    n_frames = model.traces.shape[1]
    pixels = ny * nx
    gain, offset, read_noise = attrs["gain"], attrs["offset"], attrs["read_noise"]
    noise_blur = float(attrs["regime"].get("noise_blur", 0.0))
    time_chunk = min(chunk_frames, n_frames, max(1, (16 << 20) // (4 * pixels)))
    clean = None
    if tmp_zarr is not None:
        clean = _write_truth(tmp_zarr, model, n_frames, ny, nx, time_chunk)

    b = model.neuropil_spatial.reshape(len(model.neuropil_spatial), pixels)
    # Chunks of the movie are multiples of the zarr chunk so that no zarr chunk is
    # written twice.
    step = max(time_chunk, (chunk_frames // time_chunk) * time_chunk)
    workers = max(1, min(4, os.cpu_count() or 1))

    # Chunk-invariant sums: each pixel adds its neurons in one fixed order (a sparse product is plain
    # loops), then the neuropil modes one by one.  A blocked matrix product (BLAS) would round
    # differently with the chunk length and the CPU's kernels.
    by_pixel = model.footprints.T.tocsr()
    by_pixel.sort_indices()

    def rates(t0: int, t1: int) -> np.ndarray:
        rate = np.ascontiguousarray((by_pixel @ model.traces[:, t0:t1]).T)
        for mode_trace, mode in zip(model.neuropil_traces[:, t0:t1], b, strict=True):
            rate += mode_trace[:, None] * mode[None, :]
        return rate

    frame_totals = []

    def frames():
        with ThreadPoolExecutor(workers) as pool:
            for t0 in range(0, n_frames, step):
                t1 = min(t0 + step, n_frames)
                rate = rates(t0, t1)
                frame_totals.extend(rate.sum(axis=1, dtype=np.float64).tolist())
                if clean is not None:
                    expected = rate
                    if noise_blur > 0:  # the spread photons' expected value spreads too
                        expected = ndimage.convolve(rate.reshape(t1 - t0, ny, nx), _blur_kernel(noise_blur)[None],
                                                    mode="nearest")
                    clean[t0:t1] = (offset + gain * expected).reshape(t1 - t0, ny, nx)
                noisy = pool.map(
                    _noisy_frame,
                    rate,
                    repeat(seed),
                    range(t0, t1),
                    repeat(gain),
                    repeat(offset),
                    repeat(read_noise),
                    repeat(noise_blur),
                    repeat((ny, nx)),
                )
                for frame in noisy:
                    yield frame.reshape(ny, nx)

    tifffile.imwrite(
        tmp_movie,
        data=frames(),
        shape=(n_frames, ny, nx),
        dtype=np.uint16,
        photometric="minisblack",
        metadata={"axes": "TYX", "frame_rate": attrs["fs"]},  # read back as Movie.frame_rate
        bigtiff=2 * n_frames * pixels > 2**31,
    )
    attrs["mean_photons"] = math.fsum(frame_totals) / (n_frames * pixels)
    attrs["scale"] = model.scale
    if clean is not None:
        finish_truth(zarr.open_group(str(tmp_zarr), mode="r+"), attrs)
    return {"mean_photons": attrs["mean_photons"]}


def _write_truth(path: Path, model: _Model, n_frames: int, ny: int, nx: int, time_chunk: int):
    """The truth group without its attributes (written last), and its empty ``clean`` array to fill.

    The footprints (dense on disk, ``(N, Y, X)``) are written by blocks of sources from the sparse model.
    """
    n_neurons, pixels = model.footprints.shape
    feet = model.footprints
    # The mean rate without transients: the neuropil's mean, then each pixel's sources, in a fixed order.
    background = np.tensordot(model.neuropil_traces.mean(axis=1), model.neuropil_spatial, axes=1).astype(np.float32)
    background += (feet.T @ model.baseline).reshape(ny, nx).astype(np.float32)
    small = {
        "traces": model.traces,
        "spikes": model.spikes,
        "background": background,
        "neuropil_spatial": model.neuropil_spatial,
        "neuropil_traces": model.neuropil_traces,
        "neuron_baseline": model.baseline,
        "centers": model.centers,
        "radii": model.radii,
        "spike_rate_hz": model.spike_rate_hz,
        "tau_decay_s": model.tau_decay_s,
        "dff_per_spike": model.dff_per_spike,
        "source_kind": model.source_kind,
    }
    group, clean = create_truth(path, small, n_frames, ny, nx, time_chunk)
    per_chunk = max(1, (16 << 20) // (4 * pixels))
    array = group.create_array("footprints", shape=(n_neurons, ny, nx), dtype=np.float32,
                               chunks=(max(1, min(per_chunk, n_neurons)), ny, nx))
    for i in range(0, n_neurons, per_chunk):
        array[i : i + per_chunk] = feet[i : i + per_chunk].toarray().reshape(-1, ny, nx)
    return clean
