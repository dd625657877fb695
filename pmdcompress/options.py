"""Option records and the one parser of each kind of option value.

Every option a user can give reaches the library through here: the records
(:class:`CompressOptions`, :class:`DemixOptions`) check themselves, and the
parsers turn the forms a user types (``"100:2000"``, ``"32x48"``, ``"original"``)
into values.  Errors are :class:`~pmdcompress.errors.OptionError`: their
messages name the library's parameter (``patch_shape``), and the CLI renames it
to its flag (``--patch``) when it prints them.

This module imports only numpy, so anything (readers, tiling, the pipeline, the
CLI) may use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from .errors import OptionError

#: Fewest frames a movie may have: the noise estimate and the temporal test need some.
MIN_FRAMES = 10
#: Frames of the fit buffer, at most (after binning); bounds memory independently of T.
DEFAULT_FIT_FRAMES = 1000
#: Storage dtypes of a store's factors.
FACTOR_DTYPES = ("float32", "float16")
#: Per-patch solvers (see :mod:`pmdcompress.solver`).
METHODS = ("pmd", "svd")
#: Kinds of recording the demixing knows.
DEMIX_KINDS = ("2p", "1p", "voltage")
# Voltage seeding runs on every frame (spikes last 1-3 frames) up to this many; longer movies are binned to it
VOLTAGE_MAX_SEED_FRAMES = 20000
# Calcium demixing bins frames to about 5 Hz, but never to fewer bins than this
MIN_BINNED_FRAMES = 10
#: Background models of the demixing.
BACKGROUND_MODELS = ("lowrank", "ring")

_RANGE = re.compile(r"\s*([+-]?\d+)?\s*:\s*([+-]?\d+)?\s*(?::\s*([+-]?\d+)?\s*)?")


def _p(parameter: str) -> str:
    """The placeholder of ``parameter`` in an :class:`OptionError` template."""
    return "{" + parameter + "}"


# ---------------------------------------------------------------------------
# Parsers: one per kind of value.
# ---------------------------------------------------------------------------


def frame_dtype_ok(dtype) -> bool:
    """Whether frames can be written in ``dtype``: integers and floats of at most 64 bits (the reconstruction's
    kernels and every movie writer; a 128-bit float has no kernel and no TIFF type)."""
    dtype = np.dtype(dtype)
    return dtype.kind in "iuf" and dtype.itemsize <= 8


def parse_range(value, length: int, parameter: str = "frames", *, source=None,
                unit: str = "frames") -> tuple[int, int]:
    """Resolve a range to ``(start, stop)`` within ``[0, length]``.

    ``value`` is None or ``""`` (everything), a ``slice``, a ``(start, stop)`` pair or a ``"start:stop"``
    string; either bound may be omitted (None) or negative, as in Python slicing.  The
    step must be 1 and the range must select something.  ``source`` (a file
    name) prefixes the messages; ``unit`` names what is counted ("frames", "rows").
    """
    where = f"{source}: " if source is not None else ""
    name = _p(parameter)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return 0, length
    if isinstance(value, tuple | list) and len(value) == 2:  # (start, stop), as the API's callers write it
        try:
            value = slice(*(None if b is None else _integer(b) for b in value))
        except (TypeError, ValueError) as exc:
            raise OptionError(f"{where}{name} {tuple(value)!r}: bounds must be integers", parameter) from exc
    if isinstance(value, str):
        text = value
        m = _RANGE.fullmatch(value)
        if m is None:
            raise OptionError(f"{where}{name} {value!r} is not a 'start:stop' range (e.g. '100:2000', ':500')",
                              parameter)
        value = slice(*(None if g is None else int(g) for g in m.groups()))
    elif isinstance(value, slice):
        text = ":".join("" if b is None else str(b) for b in (value.start, value.stop))
    else:
        raise OptionError(f"{where}{name} must be a slice, a (start, stop) pair or a 'start:stop' string, not "
                          f"{value!r}", parameter)
    if value.step not in (None, 1):
        raise OptionError(f"{where}{name} {text!r}: a step is not supported", parameter)
    try:
        start, stop, _ = value.indices(length)
    except TypeError as exc:
        raise OptionError(f"{where}{name} {text!r}: bounds must be integers", parameter) from exc
    if stop <= start:
        raise OptionError(f"{where}{name} {text!r} selects no {unit} of the {length} there are", parameter)
    return start, stop


def parse_crop(value, frame_shape, parameter: str = "crop", *,
               source=None) -> tuple[tuple[int, int], tuple[int, int]]:
    """``"y0:y1,x0:x1"`` (either range may be empty) -> ``((y0, y1), (x0, x1))`` within the frame (of ``source``,
    a file name that prefixes the messages)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return (0, int(frame_shape[0])), (0, int(frame_shape[1]))
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        parts = [value]
    if len(parts) != 2:
        raise OptionError(f"{_p(parameter)} {value!r}: expected y0:y1,x0:x1, e.g. 0:64,0:128", parameter)
    return (parse_range(parts[0], int(frame_shape[0]), parameter, source=source, unit="rows"),
            parse_range(parts[1], int(frame_shape[1]), parameter, source=source, unit="columns"))


def _integer(value) -> int:
    """An integer from an int, an integral float or a string of digits; bools refused."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(value)
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(value)
    return int(value)


def parse_pair(value, parameter: str, *, minimum: int | None = None) -> tuple[int, int]:
    """``N`` or ``HxW`` -> ``(H, W)``: an int, ``"32"``, ``"32x48"``, ``"32,48"`` or a pair.

    ``minimum`` (optional) is the least value each side may take.
    """
    bad = OptionError(f"{_p(parameter)} {value!r}: expected N or HxW, e.g. 32 or 32x48", parameter)
    try:
        if isinstance(value, str):
            parts = [_integer(p) for p in value.lower().replace("x", ",").split(",")]
        elif isinstance(value, (tuple, list, np.ndarray)):
            parts = [_integer(p) for p in value]
        else:
            parts = [_integer(value)]
    except (TypeError, ValueError) as exc:
        raise bad from exc
    if len(parts) not in (1, 2):
        raise bad
    pair = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if minimum is not None and min(pair) < minimum:
        raise OptionError(f"{_p(parameter)} {value!r}: must be at least {minimum}", parameter)
    return pair


def output_dtype(dtype, input_dtype, *, default: str = "original", parameter: str = "dtype") -> np.dtype:
    """The dtype of a reconstructed movie.

    ``"original"`` is the input's dtype (``input_dtype``); None or ``""`` means
    ``default``; anything else must name a numpy dtype.
    """
    if dtype is None or dtype == "":
        dtype = default
    if dtype == "original":
        return np.dtype(input_dtype)
    try:
        return np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{_p(parameter)} {dtype!r} is not a numpy dtype", parameter) from exc


def positive_int(value, parameter: str, *, minimum: int = 1) -> int:
    """An integer of at least ``minimum`` (a thread count, a number of frames...)."""
    try:
        number = _integer(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{_p(parameter)} {value!r}: expected an integer", parameter) from exc
    if number < minimum:
        raise OptionError(f"{_p(parameter)} must be >= {minimum}, got {number}", parameter)
    return number


def positive_float(value, parameter: str, *, what: str = "a positive number") -> float:
    """A finite number > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{_p(parameter)} {value!r}: expected {what}", parameter) from exc
    if not math.isfinite(number) or number <= 0:
        raise OptionError(f"{_p(parameter)} {value!r}: expected {what}", parameter)
    return number


def unit_interval(value, parameter: str) -> float:
    """A number in [0, 1) (a correlation level to reach)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{_p(parameter)} {value!r}: expected a number in [0, 1)", parameter) from exc
    if not 0 <= number < 1:  # NaN fails too
        raise OptionError(f"{_p(parameter)} {value!r}: expected a number in [0, 1)", parameter)
    return number


def workers_count(workers) -> int | None:
    """Threads: None (the default) or an integer >= 1."""
    return None if workers is None else positive_int(workers, "workers")


def choice(value, parameter: str, choices) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise OptionError(f"{_p(parameter)} {value!r}: expected one of {', '.join(choices)}", parameter)
    return value


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CompressOptions:
    """Parameters of a compression (recorded in the store)."""

    patch_shape: tuple[int, int] = (32, 32)
    overlap: tuple[int, int] = (8, 8)
    method: str = "pmd"
    max_rank: int = 50
    consecutive_failures: int = 3
    fit_frames: int = DEFAULT_FIT_FRAMES
    fit_bin: int | None = None
    dtype: str = "float32"
    chunk_frames: int | None = None
    false_pass: float = 0.05
    temporal_filter: bool = True
    detrend: bool = False
    seed: int = 0

    @classmethod
    def create(cls, **options) -> CompressOptions:
        """A checked record from user values (``patch_shape`` and ``overlap`` may be N or HxW)."""
        for key, least in (("patch_shape", 2), ("overlap", 0)):
            if key in options:
                options[key] = parse_pair(options[key], key, minimum=least)
        try:
            opts = cls(**options)
        except TypeError as exc:
            raise OptionError(f"compression options: {exc}") from exc
        opts.validate()
        return opts

    def validate(self) -> None:
        """Refuse values no compression can use (before any work)."""
        choice(self.dtype, "dtype", FACTOR_DTYPES)
        choice(self.method, "method", METHODS)
        positive_int(self.max_rank, "max_rank")
        positive_int(self.consecutive_failures, "consecutive_failures")
        positive_int(self.fit_frames, "fit_frames", minimum=MIN_FRAMES)
        if self.fit_bin is not None:
            positive_int(self.fit_bin, "fit_bin")
        if self.chunk_frames is not None:
            positive_int(self.chunk_frames, "chunk_frames")
        if not 0 < self.false_pass < 0.5:
            raise OptionError(f"{{false_pass}} must be in (0, 0.5), got {self.false_pass}", "false_pass")
        positive_int(self.seed, "seed", minimum=0)  # numpy's generators take no negative seed
        patch = parse_pair(self.patch_shape, "patch_shape", minimum=2)
        overlap = parse_pair(self.overlap, "overlap", minimum=0)
        check_patch_overlap(patch, overlap)


def check_patch_overlap(patch_shape, overlap) -> None:
    """Neighbouring patches must overlap by less than a patch."""
    if overlap[0] >= patch_shape[0] or overlap[1] >= patch_shape[1]:
        raise OptionError(f"{{overlap}} {_show(overlap)} must be smaller than {{patch_shape}} {_show(patch_shape)}",
                          "overlap", "patch_shape")


def _show(pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


@dataclass(frozen=True, kw_only=True)
class DemixOptions:
    """Every parameter of :func:`pmdcompress.demix.demix` (recorded in the output)."""

    kind: str = "2p"
    fs: float | None = None  # None: unknown, windows in frames (dff_window_frames), never an assumed rate
    cell_radius: float | None = None  # default: estimated (a first pass at 6 px, refitted when far off)
    highpass_sigma: float | None = None  # default 1.4 * cell_radius
    mad_threshold: float = 2.0
    corr_threshold: float = 0.7
    residual_corr_threshold: float = 0.6
    region_threshold: float = 0.5
    contrast_threshold: float | None = None  # active seeds: correlation over its local median; 2p: 0.1, else 0.2
    min_activity: float | None = None  # seeds' peak-to-noise, SDs above the quiet pixels; default 5, voltage 1
    min_size: int | None = None  # default a quarter of the area of a disk of cell_radius
    min_distance: int = 3
    background_rank: int | None = None  # default 3 (2p, voltage), 6 (1p)
    background_model: str = "lowrank"  # or "ring" (CNMF-E-style ring model, for 1p data; see docs/demix.md)
    ring_radius: float | None = None  # ring model only; default 3 * cell_radius (1.5 cell diameters)
    ring_ssub: int = 2  # ring weights fitted on ring_ssub x ring_ssub pixel blocks
    ring_frames: int = 250  # ... and on at most this many (binned) frames
    ring_rounds: int = 2  # refits of the ring weights after the low-rank start
    max_num_iter: int = 8
    n_passes: int = 2
    merge_threshold: float = 0.8
    bin_frames: int | None = None  # default: about 5 Hz, at most 1000 binned frames
    footprint_threshold: float = 0.2
    seed_from_mean: bool | None = None  # default True for 2p (silent somata from the mean image), else False
    mean_threshold: float = 2.0
    nucleus_threshold: float = 0.45  # mean-image seeds: correlation with a dark-nucleus soma template
    nucleus_contrast: float = 1.0  # ... whose rim minus nucleus exceeds this many robust SDs of the high-passed mean
    nucleus_radius: float | None = None  # that template's radius; default: the somata's (demix.pipeline._soma_radius)
    min_compactness: float = 0.8  # active components: area over that of their moment ellipse
    min_relative_size: float = 0.5  # ... and mask area over the median of the accepted ones (fragments go)
    max_relative_size: float | None = None  # ... at most this (larger: neuropil, or merged cells); 2p: 2.5
    max_elongation: float | None = None  # ... ratio of the mask's principal axes (dendrites are longer); 2p: 2
    min_mean_contrast: float | None = None  # ... mean-image brightness over the surround, robust SDs (2p: -1)
    soma_opening: float | None = None  # active footprints opened by a disk of this many cell radii; 2p: 0.5, else 0
    support_radius: float = 2.0  # active footprints stay within this many cell radii (+1 px) of their seed
    min_snr: float | None = None  # active components: peak over trace noise (demix.metrics); 2p: 5, else 1
    min_r_value: float = 0.4
    min_skew: float | None = None  # default 0.5 for calcium, none for voltage
    dff_window_s: float = 30.0
    dff_window_frames: int = 500  # the dF/F window when the frame rate is unknown (CaImAn's frames_window)
    dff_percentile: float | None = None  # default 8 (calcium), 50 (voltage)
    seed: int = 0

    @classmethod
    def create(cls, **options) -> DemixOptions:
        """A checked record from user values."""
        try:
            opts = cls(**options)
        except TypeError as exc:
            raise OptionError(f"demix options: {exc}") from exc
        opts.validate()
        return opts

    def validate(self) -> None:
        """Refuse values no demixing can use (before any work)."""
        choice(self.kind, "kind", DEMIX_KINDS)
        if self.fs is not None:
            positive_float(self.fs, "fs", what="a positive frame rate in Hz")
        if self.cell_radius is not None:
            positive_float(self.cell_radius, "cell_radius", what="a positive radius in pixels")
        choice(self.background_model, "background_model", BACKGROUND_MODELS)
        if self.background_rank is not None:
            positive_int(self.background_rank, "background_rank", minimum=0)
        positive_int(self.max_num_iter, "max_num_iter")
        positive_int(self.seed, "seed", minimum=0)
        # a correlation level no pixel can reach (>= 1, NaN) would find nothing, silently
        for name in ("corr_threshold", "residual_corr_threshold"):
            unit_interval(getattr(self, name), name)

    def check_field(self, dims, where) -> None:
        """Refuse a given ``cell_radius`` whose soma would not fit in a ``dims`` field of view (``where``: the
        store, for the message)."""
        if self.cell_radius is not None and 2 * self.cell_radius > max(dims):
            raise OptionError(f"{where}: {{cell_radius}} {self.cell_radius:g}: a soma that wide does not fit in the "
                              f"{dims[0]}x{dims[1]} field of view", "cell_radius")

    def resolved(self, n_frames: int) -> DemixOptions:
        """A copy with every ``None`` replaced by its default for this movie."""
        sigma = self.highpass_sigma if self.highpass_sigma is not None else 1.4 * self.cell_radius
        rank = self.background_rank
        if rank is None:
            rank = 6 if self.kind == "1p" else 3
        ring = self.ring_radius if self.ring_radius is not None else 3.0 * self.cell_radius
        model = choice(self.background_model, "background_model", BACKGROUND_MODELS)
        b = self.bin_frames
        if b is None and self.kind == "voltage":
            # A voltage spike lasts 1-3 frames: binning averages it away (a simulated 1 kHz movie, 8 cells: bins of
            # 200 frames (fs // 5) found 0, of 2 frames 2, unbinned 6).  Unbinned up to VOLTAGE_MAX_SEED_FRAMES
            # (the correlation image holds a 66 x 66 pixel tile of every frame per worker: 350 MB at 20000).
            b = math.ceil(n_frames / VOLTAGE_MAX_SEED_FRAMES)
        elif b is None:
            b = max(1, int(self.fs // 5)) if self.fs is not None else 1
            b = max(b, math.ceil(n_frames / 1000))
            # A short movie at a high rate keeps at least MIN_BINNED_FRAMES bins (20 frames at 3 kHz made one bin,
            # and the quality tests' median frames were none: a ZeroDivisionError).
            b = max(1, min(b, n_frames // MIN_BINNED_FRAMES))
        # Seeds' peak-to-noise: a calcium transient spans many frames and stands well above the quiet pixels; an
        # unbinned voltage spike is about one frame's noise high (simulated voltage cells: z 0.3-4 at their centres,
        # so 5 found 0 of 8), and the correlation and contrast tests carry the seeding there.
        activity = self.min_activity
        if activity is None:
            activity = 1.0 if self.kind == "voltage" else 5.0
        skew = self.min_skew
        if skew is None:
            skew = -np.inf if self.kind == "voltage" else 0.5
        q = self.dff_percentile
        if q is None:
            q = 50.0 if self.kind == "voltage" else 8.0
        min_size = self.min_size if self.min_size is not None else int(0.25 * np.pi * self.cell_radius**2)
        # Mean-image seeds: 2p silent somata; voltage too (membrane-labelled somata are bright in the mean, and
        # cells with few spikes are found there: 4 simulations, F1 0.87 -> 0.92).  1p: the mean is background.
        from_mean = self.seed_from_mean if self.seed_from_mean is not None else self.kind in ("2p", "voltage")
        contrast = self.min_mean_contrast
        if contrast is None:
            # a 2p soma is not much darker than its neuropil in the mean image (a vessel's shadow is); not
            # 0: active somata with a dark nucleus and a thin rim sit just below it (neurofinder_dev: 12 of
            # 24 components rejected by a test at 0 alone lay on labelled active cells).  1p and voltage
            # mean images are dominated by background and membrane, so no test there
            contrast = -1.0 if self.kind == "2p" else -np.inf
        # Shape tests of two-photon somata (round to oval, about the movie's median size); one-photon blur
        # stretches and merges footprints (simulated 1p somata reached 2.2x), so 1p and voltage go without.
        elongation = self.max_elongation
        if elongation is None:
            elongation = 2.0 if self.kind == "2p" else np.inf
        largest = self.max_relative_size
        if largest is None:
            largest = 2.5 if self.kind == "2p" else np.inf
        # a 2p soma contains a disk of half its radius; not tried on 1p blur or voltage membranes
        opening = self.soma_opening
        if opening is None:
            opening = 0.5 if self.kind == "2p" else 0.0
        # A two-photon cell that fires has a transient several noise SDs high (the benchmarks call a labelled
        # cell active at 6 robust SDs); active components below 5 were fragments and neuropil (neurofinder_dev,
        # 5 stores: 1 of 36 labelled); silent somata come from the mean image.  1p and voltage: not tried.
        snr = self.min_snr
        if snr is None:
            snr = 5.0 if self.kind == "2p" else 1.0
        # Active seeds stand this much above the local median of the correlation image.  Two-photon: 0.1; 0.2
        # rejected somata beside strongly correlated tissue (neurofinder_dev's field edge, the simulated large-soma
        # regime; see docs/demix.md, session 7).  One-photon and voltage keep 0.2: on the 63-frame Inscopix clip
        # 0.1 gave 6 components instead of 11 (neighbours merged), though a 1p simulation gained (F1 0.67 -> 0.74).
        seed_contrast = self.contrast_threshold
        if seed_contrast is None:
            seed_contrast = 0.1 if self.kind == "2p" else 0.2
        return replace(self, seed_from_mean=bool(from_mean), contrast_threshold=float(seed_contrast),
                       highpass_sigma=sigma, min_size=min_size,
                       min_snr=float(snr), min_mean_contrast=float(contrast), max_elongation=float(elongation),
                       max_relative_size=float(largest), soma_opening=float(opening),
                       background_rank=rank, ring_radius=ring, background_model=model, bin_frames=b,
                       min_skew=float(skew), dff_percentile=float(q), min_activity=float(activity))
