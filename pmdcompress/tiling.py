"""Overlapping patches over the field of view, with weights that sum to one.

Patches are placed on a grid; the last patch of a row or column sits flush with
the frame edge, so every patch has the same shape whenever the frame is at least
one patch wide (frames smaller than a patch get one patch of the frame's size).
Each patch carries a separable taper; tapers are normalised by their sum over
patches, so the weights of all patches add up to exactly 1 at every pixel and no
seams show where patches meet.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._numba import jit
from .options import check_patch_overlap, parse_pair


def axis_starts(length: int, patch: int, overlap: int) -> np.ndarray:
    """Start indices of patches along one axis.

    Patches of ``min(patch, length)`` pixels, evenly spread so that neighbours
    overlap by at least ``overlap`` pixels; first at 0, last flush with the end.
    """
    patch = min(patch, length)
    if patch >= length:
        return np.zeros(1, dtype=np.int64)
    stride = max(patch - overlap, 1)
    n = int(np.ceil((length - patch) / stride)) + 1
    return np.round(np.linspace(0, length - patch, n)).astype(np.int64)


def _axis_taper(starts: np.ndarray, patch: int, length: int) -> np.ndarray:
    """Normalised 1-D weights, shape (n_patches, patch): they sum to 1 per pixel."""
    n = len(starts)
    raw = np.zeros((n, patch), dtype=np.float64)
    idx = np.arange(patch, dtype=np.float64)
    for i, s in enumerate(starts):
        # Linear ramps over the overlap with each neighbour; flat (1) elsewhere
        # and at the frame edges.
        left = starts[i - 1] + patch - s if i > 0 else 0
        right = s + patch - starts[i + 1] if i + 1 < n else 0
        w = np.ones(patch)
        if left > 0:
            w = np.minimum(w, (idx + 0.5) / left)
        if right > 0:
            w = np.minimum(w, (patch - idx - 0.5) / right)
        raw[i] = w
    total = np.zeros(length)
    for i, s in enumerate(starts):
        total[s : s + patch] += raw[i]
    return np.stack([raw[i] / total[s : s + patch] for i, s in enumerate(starts)])


# A frame's edge rows or columns are a dark band, not tissue, where their median in the mean image is under this
# fraction of the way from the image's minimum to its median: a scanner's flyback or the edge of the field (the full
# neurofinder frames have 16 dark columns on one side; neurofinder_dev is cropped clear of them).  Tissue, even the
# dim top of neurofinder_dev (row medians about 0.45 of the field's median), stands far above; bands wider than
# DARK_EDGE_MAX of the frame are not taken for one.
DARK_EDGE_FRACTION = 0.1
DARK_EDGE_MAX = 0.25


def tissue_bounds(mean: np.ndarray) -> tuple[int, int, int, int]:
    """The frame less its dark edge bands (:data:`DARK_EDGE_FRACTION`): ``(top, bottom, left, right)``,
    end-exclusive; the whole frame when it has none.

    Next to a dark band the mean image steps from tissue to nothing: high-passed, the step is a bright ridge
    that hides the somata along it from demixing's mean-image finders (neurofinder_dev with 16 dark columns added
    at its left edge lost 4 labelled somata within 5 px of that edge, found without the band), which see the
    tissue mirrored over the band (:func:`pmdcompress.demix.pipeline.mirror_outside`).  Compression takes what it
    decides once for the whole frame over the tissue alone: the mean image's smoothing (the step at a band's edge
    is no structure of the tissue, and it alone ruled out any smoothing) and the noise's neighbour correlation
    (the band's independent noise diluted it), tests/test_dark_band.py.
    """
    img = np.asarray(mean, np.float64)
    lo = float(img.min())
    floor = lo + DARK_EDGE_FRACTION * (float(np.median(img)) - lo)
    out = []
    for axis in (1, 0):  # row medians (top, bottom), then column medians (left, right)
        bright = np.flatnonzero(np.median(img, axis=axis) > floor)
        n = img.shape[1 - axis]
        first, last = (int(bright[0]), int(bright[-1]) + 1) if bright.size else (0, n)
        limit = DARK_EDGE_MAX * n
        out += [first if first <= limit else 0, last if n - last <= limit else n]
    return tuple(out)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Tiling:
    """Patch grid over a (Y, X) frame.

    Attributes
    ----------
    frame_shape : (int, int)
    patch_shape : (int, int)
        Actual patch shape (the requested one, clipped to the frame).
    overlap : (int, int)
    """

    frame_shape: tuple[int, int]
    patch_shape: tuple[int, int]
    overlap: tuple[int, int]

    @classmethod
    def create(cls, frame_shape, patch_shape=(32, 32), overlap=(8, 8)) -> Tiling:
        """Tiling for a frame; ``patch_shape`` and ``overlap`` may be ints."""
        fy, fx = (int(v) for v in frame_shape)
        py, px = parse_pair(patch_shape, "patch_shape", minimum=1)
        oy, ox = parse_pair(overlap, "overlap", minimum=0)
        check_patch_overlap((py, px), (oy, ox))
        return cls((fy, fx), (min(py, fy), min(px, fx)), (min(oy, max(fy - 1, 0)), min(ox, max(fx - 1, 0))))

    # The grid is computed once per tiling (read-only arrays): the pipeline asks for a patch's slices several
    # times per patch, and rebuilding the grid each time was 0.1 CPU-s of a cluster driver's 0.8 on a 256 x 256
    # movie (benchmarks/bench_scaling.py).  cached_property writes the instance's __dict__, which a frozen
    # dataclass allows; equality and hashing still see the three fields only.
    @functools.cached_property
    def starts_y(self) -> np.ndarray:
        return _read_only(axis_starts(self.frame_shape[0], self.patch_shape[0], self.overlap[0]))

    @functools.cached_property
    def starts_x(self) -> np.ndarray:
        return _read_only(axis_starts(self.frame_shape[1], self.patch_shape[1], self.overlap[1]))

    @functools.cached_property
    def origins(self) -> np.ndarray:
        """Patch origins (y0, x0), shape (n_patches, 2), row-major over the grid."""
        yy, xx = np.meshgrid(self.starts_y, self.starts_x, indexing="ij")
        return _read_only(np.stack([yy.ravel(), xx.ravel()], axis=1))

    @property
    def n_patches(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    def weights_1d(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-patch weights along y and x, shapes (n_patches, py) and (n_patches, px).

        The 2-D weight of patch i is ``wy[i][:, None] * wx[i][None, :]``.
        """
        wy = _axis_taper(self.starts_y, self.patch_shape[0], self.frame_shape[0])
        wx = _axis_taper(self.starts_x, self.patch_shape[1], self.frame_shape[1])
        ny, nx = len(wy), len(wx)
        return np.repeat(wy, nx, axis=0), np.tile(wx, (ny, 1))

    def coverage(self) -> np.ndarray:
        """How many patches cover each pixel, (Y, X) int: 1 in a patch's interior, 2 or 4 where patches overlap.

        The reconstruction blends the patches' fits where they overlap; the
        benchmarks and tests compare the signal kept there with the interiors'.
        """
        cy = np.zeros(self.frame_shape[0], np.int64)
        cx = np.zeros(self.frame_shape[1], np.int64)
        for s in self.starts_y:
            cy[s : s + self.patch_shape[0]] += 1
        for s in self.starts_x:
            cx[s : s + self.patch_shape[1]] += 1
        return cy[:, None] * cx[None, :]

    def patch_slices(self, i: int) -> tuple[slice, slice]:
        y0, x0 = self.origins[i]
        py, px = self.patch_shape
        return slice(int(y0), int(y0) + py), slice(int(x0), int(x0) + px)


@jit
def _extract_patch_kernel(block, y0, x0, h, w, out):
    # Row by row through 1-D views: the compiler then knows both rows are contiguous and vectorises the
    # copy (with the cast), about 2.5x faster than indexing the 3-D and 2-D arrays element by element.
    n = block.shape[0]
    for t in range(n):
        for i in range(h):
            src = block[t, y0 + i, x0 : x0 + w]
            dst = out[t, i * w : (i + 1) * w]
            for j in range(w):
                dst[j] = src[j]


def extract_patch(block: np.ndarray, y0: int, x0: int, h: int, w: int, out: np.ndarray) -> np.ndarray:
    """Copy ``block[:, y0:y0+h, x0:x0+w]`` (any dtype) into ``out`` (n, h*w), casting.

    Returns ``out[:n]``.
    """
    n = block.shape[0]
    _extract_patch_kernel(block, int(y0), int(x0), int(h), int(w), out[:n])
    return out[:n]
