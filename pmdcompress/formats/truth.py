"""The ground truth of a simulated movie (``<stem>.truth.zarr``, ``"pmd-simulate/2"``).

A Zarr v3 group beside the movie.  Arrays: ``clean`` (T, Y, X) float32, the
expected movie in ADU (time-chunked, Blosc zstd level 1); ``footprints`` (N, Y, X);
``traces`` (N, T); ``spikes`` (N, T) uint8; ``background`` (Y, X);
``neuropil_spatial`` (K, Y, X); ``neuropil_traces`` (K, T); ``neuron_baseline``,
``centers``, ``radii``, ``spike_rate_hz``, ``tau_decay_s``, ``dff_per_spike``
(per source); ``source_kind`` (N,) uint8, what each source is: 0 a soma
(:data:`SOMA`), 1 a thin dendrite or axon segment (:data:`DENDRITE`).  Attributes
(the group's own, written last): ``version`` (``"pmd-simulate/2"``), the
simulation's parameters, camera constants (``gain``, ``offset``, ``read_noise``),
``regime``, ``units``, ``mean_photons``, ``scale``.

Version 1 (``"pmd-simulate/1"``) is the same without ``source_kind``: it does
not say which sources are dendrites, and every source reads as a cell
(:attr:`Truth.source_kind` is None).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ..errors import StoreFormatError
from ._version import FormatId, header, read_version
from .store import read_array

TRUTH = FormatId("pmd-simulate", 2, (1, 2), "simulated truth", style="tag")

SOMA, DENDRITE = 0, 1  #: values of ``source_kind``


@dataclasses.dataclass(frozen=True)
class Truth:
    """Ground truth of a simulated movie, as opened by :func:`read_truth`.

    Attributes
    ----------
    path : Path
        The ``.truth.zarr`` group.
    clean : zarr.Array, shape (T, Y, X), float32
        Expected value of the movie in ADU, ``offset + gain * rate``.  Lazy.
    footprints : ndarray, shape (N, Y, X), float32
        Spatial footprint of each neuron, maximum 1.
    traces : ndarray, shape (N, T), float32
        Soma fluorescence at the footprint peak, photons/px/frame.
    spikes : ndarray, shape (N, T), uint8
        Spike counts per frame.
    background : ndarray, shape (Y, X), float32
        Mean rate without calcium transients (neuropil + soma baselines), photons/px/frame.
    neuropil_spatial : ndarray, shape (K, Y, X), float32
        Spatial modes of the neuropil, photons/px/frame.
    neuropil_traces : ndarray, shape (K, T), float32
        Temporal modes of the neuropil, unitless (mean about 1).
    attrs : dict
        Parameters and camera constants (``gain``, ``offset``, ``read_noise``, ...).
    source_kind : ndarray, shape (N,), uint8, or None
        What each source is: :data:`SOMA` (0) or :data:`DENDRITE` (1, a thin dendrite or axon segment);
        None for a version-1 group, which does not say (every source is then taken as a cell).
    """

    path: Path
    clean: object
    footprints: np.ndarray
    traces: np.ndarray
    spikes: np.ndarray
    background: np.ndarray
    neuropil_spatial: np.ndarray
    neuropil_traces: np.ndarray
    attrs: dict
    source_kind: np.ndarray | None = None

    @property
    def format_version(self) -> int:
        return read_version(self.attrs, TRUTH, str(self.path))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Movie shape ``(T, Y, X)``."""
        return tuple(self.clean.shape)

    @property
    def gain(self) -> float:
        """ADU per photon."""
        return float(self.attrs["gain"])

    @property
    def offset(self) -> float:
        """ADU at zero photons."""
        return float(self.attrs["offset"])

    @property
    def read_noise(self) -> float:
        """Read noise standard deviation, ADU."""
        return float(self.attrs["read_noise"])

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Frames ``t0:t1`` of the clean movie as float32, shape (t1 - t0, Y, X)."""
        return np.asarray(self.clean[t0:t1], dtype=np.float32)


def truth_header() -> dict:
    """The identifying attribute of a truth group (``{"version": "pmd-simulate/2"}``)."""
    return header(TRUTH)


def create_truth(path, small: dict, n_frames: int, ny: int, nx: int, time_chunk: int):
    """Create the group with its small arrays; return it and the empty ``clean`` array to fill."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, data in small.items():
        group.create_array(name, data=np.ascontiguousarray(data))
    clean = group.create_array(
        "clean",
        shape=(n_frames, ny, nx),
        dtype=np.float32,
        chunks=(time_chunk, ny, nx),
        compressors=BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"),
        dimension_names=("t", "y", "x"),
    )
    return group, clean


def finish_truth(group, attrs: dict) -> None:
    """Write the attributes (which carry the version) last."""
    group.attrs.update(attrs)


def read_truth(path) -> Truth:
    """Open a ``.truth.zarr`` group; small arrays are loaded, ``clean`` stays lazy."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no ground-truth group")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a non-group
        raise StoreFormatError(f"{path}: not a zarr group ({exc})") from exc
    attrs = dict(group.attrs)
    version = read_version(attrs, TRUTH, str(path))

    def get(name):
        return read_array(group[name], ..., str(path), name, "simulated truth")

    try:
        source_kind = get("source_kind") if version >= 2 else None
        footprints = get("footprints")
        if source_kind is not None and (source_kind.shape != footprints.shape[:1]
                                        or not np.isin(source_kind, (SOMA, DENDRITE)).all()):
            raise StoreFormatError(f"{path}: source_kind of shape {source_kind.shape} with values "
                                   f"{sorted(set(np.unique(source_kind).tolist()))} for {footprints.shape[0]} sources "
                                   f"(expected one {SOMA} or {DENDRITE} per source)")
        return Truth(
            path=path,
            clean=group["clean"],
            footprints=footprints,
            traces=get("traces"),
            spikes=get("spikes"),
            background=get("background"),
            neuropil_spatial=get("neuropil_spatial"),
            neuropil_traces=get("neuropil_traces"),
            attrs=attrs,
            source_kind=source_kind,
        )
    except KeyError as exc:
        raise StoreFormatError(f"{path}: missing array {exc}") from exc
