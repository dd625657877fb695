"""The demixing pipeline on a store's factors: seeds, alternating updates, merges, a residual pass."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .._numba import jit
from ..formats._version import header
from ..formats.demix import DEMIX
from ..options import DEMIX_KINDS, DemixOptions
from ..tiling import tissue_bounds
from . import hals
from . import ring as ringbg
from .deconvolve import deconvolve
from .factors import (
    ColumnStack,
    Factors,
    _smooth,
    bin_frames,
    gaussian_filter,
    highpass_spatial,
    load_factors,
    render_tile,
    tile_block,
)
from .hals import Background, Footprints
from .init import correlation_image, find_seeds, seed_regions, seed_score
from .metrics import compute_metrics, mean_contrast, trace_noise

log = logging.getLogger("pmdcompress")

KINDS = DEMIX_KINDS


@dataclass
class Model:
    """The fitted model, in memory."""

    footprints: Footprints
    traces: np.ndarray  # (n, T) centred least-squares traces of the denoised movie
    background: Background
    correlation_image: np.ndarray
    residual_correlation_image: np.ndarray | None
    fixed: np.ndarray  # (n,) bool: footprints seeded from the mean image and never updated
    timings: dict = field(default_factory=dict)
    cell_radius_estimate: float | None = None  # from the footprints of a first pass (cell_radius not given)
    cell_radius_prior: float | None = None  # guessed from the seeds before the fit (seed_radius), if used
    nucleus_radius: float | None = None  # radius of the mean-image soma template (seed_from_mean)
    ring: ringbg.Ring | None = None  # ring-model background (background_model="ring")
    source: np.ndarray | None = None  # (n,) int8: where each component came from, an index into SOURCES
    fill_border: tuple | None = None  # (top, bottom, left, right) widths a fill value reaches (fill_border), or None


# Where a component came from (Model.source): an active seed, a mean-image blob, a dark-nucleus disc.
SOURCES = ("active", "mean_blob", "nucleus")

# Diagnostics: when set, called as ``STAGE_HOOK(stage, footprints, fixed, metrics_or_None)`` at each stage of
# :func:`_fit` (seeds, fit, merge, delete, residual pass, soma shape, quality tests); never set in normal runs.
STAGE_HOOK = None


def _stage(name, fp, fixed, met=None):
    if STAGE_HOOK is not None:
        STAGE_HOOK(name, fp, fixed, met)


# --------------------------------------------------------------------------- helpers


def _highpass_footprints(fp: Footprints, sigma: float) -> sp.csr_matrix:
    """High-passed footprints as a sparse (pixels x n) matrix (boxes grown by the filter's reach)."""
    from .factors import _box_size

    height, width = fp.dims
    halo = 2 * (_box_size(sigma) // 2)
    bh, bw = fp.box
    rows, cols, vals = [], [], []
    for j, (y, x) in enumerate(fp.origins):
        a0, a1 = max(y - halo, 0), min(y + bh + halo, height)
        b0, b1 = max(x - halo, 0), min(x + bw + halo, width)
        img = np.zeros((1, a1 - a0, b1 - b0), np.float32)
        img[0, y - a0 : y - a0 + bh, x - b0 : x - b0 + bw] = fp.values[j]
        img = img - _smooth(img, sigma)
        pix = (np.arange(a0, a1)[:, None] * width + np.arange(b0, b1)[None, :]).ravel()
        rows.append(pix)
        cols.append(np.full(pix.size, j))
        vals.append(img.ravel())
    if not rows:
        return sp.csr_matrix((height * width, 0), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(height * width, fp.n),
        dtype=np.float32,
    )


def _activity_z(peak, noise, opts: DemixOptions, border=None) -> np.ndarray:
    """Peak-to-noise image as z-scores against its quiet pixels.

    ``peak`` (each pixel's maximum over its median in the high-passed, binned
    denoised movie) over the raw noise, smoothed at a quarter of the cell radius
    so that a soma's pixels pool.  The centre and spread come from the lower
    tail (30th and 5th percentiles), which the quiet pixels fill even where
    somata cover half the field.  Seeds need activity well above the quiet
    pixels: saturated correlation in dim neuropil or dendrites makes no seed.
    """
    sigma = np.where(noise > 0, noise, np.inf).astype(np.float64)
    pnr = gaussian_filter(_seen(peak / sigma, border), max(opts.cell_radius / 4.0, 0.5), mode="nearest")
    # Over the pixels that hold data: a fill border (fill_border: no noise, no components) is no quiet tissue.
    p5, p30 = np.percentile(pnr[noise > 0] if (noise > 0).any() else pnr, [5, 30])
    spread = (p30 - p5) / 1.121  # normal quantiles: z(0.30) - z(0.05)
    return (pnr - p30) / max(spread, 1e-12) - 0.524


# A pixel whose trace correlates with a seed's by less than this many SDs of the correlation of two unrelated
# traces (Bartlett: var r = (1 + rho^2) / ((1 - rho^2) T) for traces of lag-one autocorrelation rho, the seed's,
# over T frames) does not carry the seed's signal.
COHERENCE_SDS = 2.0


def unrelated_pixels(u, v, seeds, origins, box, dims, *, which=None, radius=None) -> np.ndarray:
    """Per seed, the pixels of its box (bool (n, *box)) that carry a larger signal of their own: traces in
    ``u v`` (pixels x K times K x T) more variable than the seed pixel's and not co-varying with it (correlation
    under :data:`COHERENCE_SDS` null SDs).  Only seeds ``which`` (default all), and only pixels within
    ``radius`` of the seed (default all of the box); the others get none.

    From the factors: a pixel's centred trace is ``d (V - mean)`` for its row ``d`` of ``u``, so every variance
    and correlation in a box is ``d G d'`` with ``G`` the Gram matrix of the centred ``V`` on the box's columns;
    the box's traces are never formed."""
    bh, bw = box
    width = dims[1]
    out = np.zeros((len(seeds), bh, bw), bool)
    vc = np.asarray(v, np.float32)
    vc = vc - vc.mean(axis=1, keepdims=True)
    gram = vc @ vc.T
    yy, xx = np.mgrid[:bh, :bw]
    which = np.arange(len(seeds)) if which is None else np.asarray(which, np.int64)
    near = np.zeros((which.size, bh, bw), bool)
    needed = np.zeros(dims, bool)
    for i, j in enumerate(which):
        (sy, sx), (y, x) = seeds[j], origins[j]
        near[i] = True if radius is None else (yy + y - sy) ** 2 + (xx + x - sx) ** 2 <= radius**2
        near[i, sy - y, sx - x] = True
        needed[y : y + bh, x : x + bw] |= near[i]
    power = _pixel_power(u, gram, needed)
    for i, j in enumerate(which):
        (sy, sx), (y, x) = seeds[j], origins[j]
        cy, cx = np.nonzero(near[i])
        cols, dense = tile_block(u, ((cy + y) * width + cx + x))
        if cols.size == 0:
            continue
        centre = int(np.flatnonzero((cy == sy - y) & (cx == sx - x))[0])
        here = power[cy + y, cx + x]
        r = (dense @ (gram[np.ix_(cols, cols)] @ dense[centre])) / np.sqrt(np.maximum(here * here[centre], 1e-30))
        trace = dense[centre] @ vc[cols]
        rho = float(np.clip(trace[1:] @ trace[:-1] / max(float(trace @ trace), 1e-30), 0.0, 0.99))
        level = COHERENCE_SDS * np.sqrt((1 + rho**2) / ((1 - rho**2) * vc.shape[1]))
        out[j][cy, cx] = (r < level) & (here > here[centre])
    return out


@jit
def _nonzero_rows_times_kernel(dense, g, out):
    """``out += csr_matrix(dense) @ g`` as scipy computes it (``csr_matvecs``: per row, each non-zero entry in
    column order adds ``entry * g[column]`` to the row, in ``out``'s type), float32 throughout; without building
    the CSR matrix and scipy's dispatch (a third of :func:`_pixel_power`'s 0.4 CPU-s at 512 x 512)."""
    n, m = dense.shape
    width = g.shape[1]
    for i in range(n):
        for a in range(m):
            x = dense[i, a]
            if x != 0:
                for b in range(width):
                    out[i, b] += x * g[a, b]


def _pixel_power(u, gram, needed, *, tile: int = 16) -> np.ndarray:
    """``d G d'`` for the row ``d`` of ``u`` of each ``needed`` pixel ((Y, X) bool), 0 elsewhere; float32 (Y, X).
    Tile by tile (few columns each); a row uses only the components of the patches holding it: sparse."""
    height, width = needed.shape
    out = np.zeros(needed.shape, np.float32)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            py, px = np.nonzero(needed[y0 : y0 + tile, x0 : x0 + tile])
            if py.size == 0:
                continue
            cols, dense = tile_block(u, (py + y0) * width + px + x0)
            if cols.size:
                weighted = np.zeros(dense.shape, np.float32)
                _nonzero_rows_times_kernel(dense, np.ascontiguousarray(gram[np.ix_(cols, cols)]), weighted)
                out[py + y0, px + x0] = np.einsum("ij,ij->i", weighted, dense)
    return out


def _new_footprints(image, seeds, regions, box, dims, *, zone_radius=None, unrelated=None,
                    kept=None) -> Footprints:
    """Footprints started from seed regions (values: the correlation image on the region).

    With ``zone_radius``, each footprint's support may later grow only within that
    distance of its seed (:attr:`Footprints.zone`), and with ``unrelated`` (:func:`unrelated_pixels`) not onto
    those pixels, unless they lie in the region of another seed in ``kept`` (indices; its component models
    them): the zone is the connected part holding the seed.  A structure beside a soma with larger transients
    of its own and no component (a dendrite's cross-section, too thin for a seed region of ``min_size``) took
    over a footprint allowed to grow onto it: its least-squares trace followed the larger transients and the
    footprint collapsed onto them (neurofinder_dev: a labelled active soma lost so in every store).
    """
    n = len(seeds)
    origins = hals.box_origins(seeds, box, dims)
    values = np.zeros((n, *box), np.float32)
    support = np.zeros((n, *box), bool)
    zone = np.zeros((n, *box), bool) if zone_radius is not None else None
    bh, bw = box
    yy, xx = np.mgrid[:bh, :bw]
    reg = np.zeros((n, *box), bool)
    for j, (y, x) in enumerate(origins):
        reg[j] = regions[y : y + bh, x : x + bw] == j + 1
        values[j] = reg[j] * np.clip(image[y : y + bh, x : x + bw], 0.05, None)
    # All boxes dilated (and below labelled) in one call: per box what 2-D calls give, without their overhead.
    support = ndimage.binary_dilation(reg, structure=_BOXWISE) if n else support
    if zone is not None and n:
        sy, sx = seeds[:, 0] - origins[:, 0], seeds[:, 1] - origins[:, 1]
        zone[...] = ((yy - sy[:, None, None]) ** 2 + (xx - sx[:, None, None]) ** 2 <= zone_radius**2) | reg
        if unrelated is not None:
            claimed = np.isin(regions, np.asarray(kept) + 1)
            held = hals.windows(claimed[None], Footprints(origins, values, support, dims))[0] & ~reg
            parts, _ = ndimage.label(zone & ~(unrelated & ~held), structure=_BOXWISE)
            zone[...] = parts == parts[np.arange(n), sy, sx][:, None, None]
        support &= zone
    return Footprints(origins, values, support, dims, zone)


def _concat(a: Footprints, b: Footprints) -> Footprints:
    if a.zone is None and b.zone is None:
        zone = None
    else:
        zone = np.concatenate([a.zone if a.zone is not None else np.ones(a.values.shape, bool),
                               b.zone if b.zone is not None else np.ones(b.values.shape, bool)])
    return Footprints(
        np.concatenate([a.origins, b.origins]),
        np.concatenate([a.values, b.values]),
        np.concatenate([a.support, b.support]),
        a.dims,
        zone,
    )


# 4-connectivity inside each box, none across boxes: all footprints labelled or dilated in one call
_BOXWISE = np.zeros((3, 3, 3), bool)
_BOXWISE[1] = ndimage.generate_binary_structure(2, 1)


def _heaviest_parts(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per box of ``mask`` (bool (n, bh, bw)), its 4-connected part of most mass in ``a`` (the first of equals
    in raster order, as ``argmax`` over a 2-D labelling); bool (n, bh, bw), empty where the box's mask is."""
    lab, n_lab = ndimage.label(mask, structure=_BOXWISE)
    if not n_lab:
        return np.zeros(mask.shape, bool)
    labels = np.arange(1, n_lab + 1)
    mass = ndimage.sum(a, lab, index=labels)
    box_of = ndimage.minimum(np.broadcast_to(np.arange(len(a))[:, None, None], a.shape), lab, index=labels)
    # per box, the label of most mass (the first of equals, as argmax)
    order = np.lexsort((labels, -mass, box_of))
    first = np.ones(n_lab, bool)
    first[1:] = box_of[order][1:] != box_of[order][:-1]
    best = np.zeros(n_lab + 1, bool)
    best[labels[order][first]] = True
    return best[lab]


def _refine_supports(fp: Footprints, *, grow: bool, fixed=None, prune: float = 0.1) -> None:
    """Keep each footprint's connected part of most mass; optionally grow the support by a pixel (in its zone).

    The part of most mass, not the part holding the peak: a few hot pixels (a
    bouton, a dendrite's cross-section) at a soma's edge must not take the
    footprint away from the soma.
    """
    idx = np.arange(fp.n) if fixed is None else np.flatnonzero(~np.asarray(fixed, bool))
    if idx.size == 0:
        return
    a = fp.values[idx]
    top = a.reshape(idx.size, -1).max(axis=1)
    mask = a > (prune * top)[:, None, None]
    keep = _heaviest_parts(a, mask)
    fp.values[idx] = a * keep
    support = ndimage.binary_dilation(keep, structure=_BOXWISE) if grow else keep
    if fp.zone is not None:
        support &= fp.zone[idx]
    fp.support[idx] = support


def _disk(radius: float) -> np.ndarray:
    """Boolean disk of ``radius`` pixels (odd side)."""
    half = max(int(np.floor(radius)), 0)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return yy**2 + xx**2 <= radius**2


def _soma_shape(fp: Footprints, fixed, radius: float, threshold: float) -> np.ndarray:
    """Cut each active footprint down to its soma-shaped core; ``False`` where it has none.

    The mask (above ``threshold`` of the peak) is opened with a disk of
    ``radius`` (half the cell radius): protrusions thinner than that (a
    dendrite leaving the soma, neuropil fringes, a bouton at the edge) go, and
    a footprint with no part that wide (a dendrite, a fragment) is no soma.
    The opened part of most mass, holes filled, becomes the footprint's
    support; its values outside are zeroed.
    """
    keep = np.ones(fp.n, bool)
    idx = np.flatnonzero(~np.asarray(fixed, bool))
    if idx.size == 0:
        return keep
    # All boxes at once (3-D calls whose structures do not reach across boxes: per box what 2-D calls give).
    a = fp.values[idx]
    top = a.reshape(idx.size, -1).max(axis=1)
    # the cut as one footprint's ``a > threshold * float(top)`` makes it: in float64, then compared in float32
    cut = (threshold * top.astype(np.float64)).astype(np.float32)
    mask = (a > cut[:, None, None]) & (top > 0)[:, None, None]
    # A digital disk's opening trims a round mask's boundary pixels too: one pixel of regrowth (inside the
    # mask) gives them back, while protrusions stay cut one pixel from the core (simulated somata:
    # matched IoU 0.963 without the opening, 0.888 with it alone, 0.958 with the regrowth).
    opened = ndimage.binary_opening(mask, _disk(radius)[None])
    core = _heaviest_parts(a, mask & ndimage.binary_dilation(opened, structure=_BOXWISE))
    core = ndimage.binary_fill_holes(core, structure=_BOXWISE)
    found = core.reshape(idx.size, -1).any(axis=1)
    keep[idx[~found]] = False
    done = idx[found]
    fp.values[done] = np.where(core[found], a[found], 0)
    fp.support[done] = core[found]
    return keep


def _centers(fp: Footprints) -> np.ndarray:
    """Weighted centroids (y, x) of the footprints, float64 (n, 2)."""
    bh, bw = fp.box
    yy, xx = np.mgrid[:bh, :bw]
    w = fp.values.reshape(fp.n, int(np.prod(fp.values.shape[1:]))).astype(np.float64)
    s = np.maximum(w.sum(1), 1e-12)
    cy = (w @ yy.ravel()) / s + fp.origins[:, 0]
    cx = (w @ xx.ravel()) / s + fp.origins[:, 1]
    return np.stack([cy, cx], axis=1)


# Two active footprints whose masks share more than this fraction of the smaller one are one object (a soma
# split between two seeds; two-photon only); 0.7 keeps touching and overlapping simulated somata apart
# (bench_demix.py).
DUPLICATE_OVERLAP = 0.7
# Traces correlating at or below this are distinct sources, whatever their masks share.
DISTINCT_TRACES = 0.0


def _merge(fp: Footprints, c: np.ndarray, threshold: float, fixed, *, mask_threshold: float | None = None,
           max_overlap: float = DUPLICATE_OVERLAP) -> tuple[Footprints, np.ndarray, np.ndarray]:
    """Merge footprints that touch and whose traces correlate above ``threshold``.

    With ``mask_threshold``, footprints whose masks (above that fraction of their
    peaks) share more than ``max_overlap`` of the smaller mask are merged too,
    unless their traces anti-correlate (at or below :data:`DISTINCT_TRACES`): two
    components on one soma split its signal between them, and their
    least-squares traces, fitted against each other, need not correlate
    strongly, but both carry its transients.
    """
    n = fp.n
    if n < 2:
        return fp, c, fixed
    gram = hals.box_gram(Footprints(fp.origins, (fp.values > 0).astype(np.float32), fp.support, fp.dims))
    sd = c.std(axis=1)
    z = (c - c.mean(axis=1, keepdims=True)) / np.maximum(sd, 1e-12)[:, None]
    corr = (z @ z.T) / c.shape[1]
    touch = gram > 0
    np.fill_diagonal(touch, False)
    similar = corr > threshold
    if mask_threshold is not None:
        top = fp.values.reshape(n, -1).max(axis=1)
        masks = (fp.values > mask_threshold * np.maximum(top, 1e-30)[:, None, None]).astype(np.float32)
        shared = hals.box_gram(Footprints(fp.origins, masks, fp.support, fp.dims))
        area = np.maximum(np.diag(shared), 1.0)
        duplicate = shared > max_overlap * np.minimum(area[:, None], area[None, :])
        # ... unless their traces are anti-correlated: then they are two sources under overlapping masks (a soma
        # and a neighbour or a neuropil component around it), not one soma split in two, whose halves both carry
        # its transients (neurofinder_dev, 5 stores: F1 0.545 -> 0.548, held-out half 0.481 -> 0.490; the
        # standard simulation's one such pair correlates at 0.7 and still merges).
        similar |= duplicate & (corr > DISTINCT_TRACES)
    link = touch & similar & ~fixed[:, None] & ~fixed[None, :]
    n_groups, labels = sp.csgraph.connected_components(sp.csr_matrix(link), directed=False)
    if n_groups == n:
        return fp, c, fixed
    bh, bw = fp.box
    keep = []
    for g in range(n_groups):
        members = np.flatnonzero(labels == g)
        if members.size == 1:
            keep.append(members[0])
            continue
        # The merged footprint: energy-weighted sum, drawn in the box of the strongest member.
        energy = np.array([np.linalg.norm(fp.values[m]) * sd[m] for m in members])
        lead = members[np.argmax(energy)]
        canvas = np.zeros(fp.dims, np.float64)
        support = np.zeros(fp.dims, bool)
        zone = np.zeros(fp.dims, bool)
        trace = np.zeros(c.shape[1])
        for i, m in enumerate(members):
            y, x = fp.origins[m]
            canvas[y : y + bh, x : x + bw] += fp.values[m] * sd[m]
            support[y : y + bh, x : x + bw] |= fp.support[m]
            if fp.zone is not None:
                zone[y : y + bh, x : x + bw] |= fp.zone[m]
            trace += c[m] / max(sd[m], 1e-12) * energy[i]
        y, x = fp.origins[lead]
        fp.values[lead] = canvas[y : y + bh, x : x + bw]
        fp.support[lead] = support[y : y + bh, x : x + bw]
        if fp.zone is not None:
            fp.zone[lead] = zone[y : y + bh, x : x + bw]
        c[lead] = trace / max(energy.sum(), 1e-12) * sd[lead]
        keep.append(lead)
    keep = np.sort(np.array(keep))
    return fp.subset(keep), c[keep], fixed[keep]


def _delete(fp: Footprints, c: np.ndarray, fixed, min_size: int, threshold: float):
    """Drop empty footprints and footprints smaller than ``min_size`` pixels above ``threshold`` of their peak."""
    if fp.n == 0:
        return fp, c, fixed
    n_pix = int(np.prod(fp.values.shape[1:]))
    top = fp.values.reshape(fp.n, n_pix).max(axis=1)
    size = (fp.values > threshold * np.maximum(top, 1e-30)[:, None, None]).reshape(fp.n, n_pix).sum(axis=1)
    keep = (top > 0) & ((size >= min_size) | fixed)
    if keep.all():
        return fp, c, fixed
    idx = np.flatnonzero(keep)
    return fp.subset(idx), c[idx], fixed[idx]


def _iterate(fac_u, vb, fp, bg, fixed, n_iter, *, update_bg=True):
    """``n_iter`` rounds of traces -> footprints -> background on the binned factors."""
    c = np.zeros((fp.n, vb.shape[1]))
    groups_of = hals.ColumnGroups()  # the traces' groups, found again by the footprints' update only if changed
    for it in range(n_iter):
        c, f = hals.solve_traces(fac_u, vb, fp, bg, groups_of=groups_of)
        if bg.rank:
            bg.temporal = f
        frozen = fp.values[fixed].copy() if fixed.any() else None
        hals.update_footprints(fac_u, vb, fp, c, bg, groups_of=groups_of)
        if frozen is not None:
            fp.values[fixed] = frozen
        if update_bg and bg.rank:
            hals.update_background(fac_u, vb, fp, c, bg)
        _refine_supports(fp, grow=it < n_iter - 2, fixed=fixed)
    return c


def _ring_step(u, vb, fp: Footprints, c, opts: DemixOptions):
    """Refit the ring weights to ``U vb - A c``; the factors of the movie minus that background."""
    ring = ringbg.fit_ring(u, vb, fp, c, opts.ring_radius, ssub=opts.ring_ssub, max_frames=opts.ring_frames)
    u2, v2 = ringbg.subtracted_factors(ring, u, vb, fp, c)
    return ring, u2, v2


# --------------------------------------------------------------------------- main


DEFAULT_CELL_RADIUS = 6.0
# Robust SDs of the high-passed mean image (metrics.mean_contrast) above which an active footprint is a clear soma.
BRIGHT_SOMA_CONTRAST = 5.0
# ... and where the footprint matches the data at its own transients almost perfectly (``r_value``, CaImAn's spatial
# consistency, at or above this), a transient of WEAK_SNR_FRACTION of ``min_snr`` is enough.  Session 13: no
# mean-image contrast is asked of it (it was >= 1 robust SD): a soma with a dark nucleus (GCaMP is excluded from it)
# has little contrast over its mask, and on dense simulated fields these were the firing somata the floor refused
# (2p-real 128x128, three seeds at 600/3000 frames and 20000 frames: every refused component at r_value >= 0.9 that
# passed the shape tests lay on a firing soma, mean contrast 0-1).  The r_value of a real footprint rises with the
# movie's length (the image at the top 5 % frames averages more of them; firing somata's median 0.96 at 600 frames,
# 0.98 at 3000, 0.99 at 20000), so this is where a longer movie finds more dim cells.  On neurofinder_dev's five
# stores no component under the floor reaches it with the other tests passed.  See docs/demix.md, session 13.
CONSISTENT_R_VALUE = 0.9
WEAK_SNR_FRACTION = 0.5
# Refit when the first pass's footprints are more than a third off in radius (1.2 refitted the 'large'
# simulated regime, estimate 7.9 px, but also the Inscopix clip, 7.4 px: 24 -> 18 components, unjudged).
REFIT_RATIO = 1.33
# Seeding passes of the refit, at most (the first pass runs options.n_passes, 2 by default).  1 saves the refit's
# residual pass, about a third of it where cells are large (neurofinder_dev zoomed 1.5x, the one real movie that
# refits: demix CPU 13.7-14.0 -> 11.3 s, demix/compress 0.81 -> 0.66, F1 0.557 -> 0.554), but every simulation
# that refits lost or tied (ten movies: 1p 0.667 -> 0.636, 'large' regime 0.491 -> 0.472, 8-9 px somata 0.824 ->
# 0.788, 0.899 -> 0.891; six tied): not adopted.  Keeping the first pass's fitted footprints and redoing only the
# selection at the new radius cost half, but lost F1 at the zoom (0.513: the default radius's high-pass splits
# the larger somata).  See docs/demix.md, session 7 (refit).
REFIT_PASSES = 2
# Radius of the first pass when none is given (None: DEFAULT_CELL_RADIUS).  A knob for measuring how the result
# depends on the pass radius: neurofinder_dev zoomed 1.5x, whose estimate is 8.1 px, scores F1 0.508 started at
# 7 px without a refit against 0.557 at 8.1 px (binned 2x2: 0.541 / 0.546 / 0.559 / 0.540 at 2.6 / 3 / 3.55 /
# 4.5 px), so a radius guessed before the first pass must be within a few per cent.  See docs/demix.md, session 8.
START_RADIUS = None
# The seeds' guess comes from the default pass's own correlation image: free where it does not fire (every native
# store), a thrown-away high-pass and correlation image where it does (zoom 1.5x: 0.8 of a 7.2 CPU-s demix; binned
# 2x2: 0.25 of 2.1, paired runs; a free exact guess would leave demix/compress at 0.53 and 0.51).  Cheaper guesses
# were not as good: the image on every 2nd or 3rd frame, or on frames binned 2 or 4, picks other bright seeds and
# guesses 7.3-7.8 px at the zoom (full image 8.25), and a pass at 7.6-7.85 px scores F1 0.512-0.514 there against
# 0.545 (8.6 px: 0.549); the mean image's autocorrelation width is no soma scale (zoom / native 1.32, binned /
# native 0.61, against 1.5 and 0.5; one-photon mean images untried).  Any guess made before the default pass costs
# the native stores, where that pass is kept: seeds of the 2x2-pooled high-passed factors' image guess as well
# (native: the same 5.40 px, zoom 8.20) for a third of the zoom's image, but add 0.15 CPU-s to every native demix
# and find too few seeds binned 2x2 (1.2 px somata at that scale), so they were not adopted (session 12).
GUESS_FROM_SEEDS = True


# --------------------------------------------------------------------------- fill-value borders


# A line (row or column) of the frame is at the fill value in a frame where its median pixel is under this fraction
# of that pixel's level (its 95th percentile over time: a border filled in most frames leaves the median at 0).
FILL_LEVEL = 0.5
# Borders wider than this fraction of the frame's side are not looked for: a line this deep that drops with the
# edge marks the whole frame dark (a shutter, the laser off), not a border.
FILL_MAX_DEPTH = 0.25
# ... and where the line that deep drops in more than this share of the frames, the movie's samples swing around 0
# (dF/F, a background subtracted): no fill is looked for on that side.
FILL_DARK_SHARE = 0.1


def _line_pixels(side: int, depth: int, dims) -> np.ndarray:
    """Flat indices of the row or column ``depth`` lines in from ``side`` (0 top, 1 bottom, 2 left, 3 right)."""
    height, width = dims
    if side < 2:
        row = depth if side == 0 else height - 1 - depth
        return row * width + np.arange(width)
    col = depth if side == 2 else width - 1 - depth
    return np.arange(height) * width + col


def _at_fill_level(fac: Factors, pix: np.ndarray) -> np.ndarray:
    """Frames (bool, T) in which the denoised line ``pix`` is at the fill level (:data:`FILL_LEVEL`)."""
    x = fac.mean.ravel()[pix].astype(np.float64)[:, None] + (fac.U[pix] @ fac.V)
    level = np.percentile(x, 95, axis=1)
    ratio = np.where(level[:, None] > 0, x / np.where(level > 0, level, 1.0)[:, None], 0.0)
    return np.median(ratio, axis=0) < FILL_LEVEL


def fill_border(fac: Factors) -> tuple[int, int, int, int] | None:
    """Widths ``(top, bottom, left, right)`` of the border that a fill value reaches in some frames, or ``None``.

    Motion correction (Inscopix, CaImAn/NoRMCorre, ImageJ) shifts each frame and fills the edges it shifts in with
    0, to a width that follows the shift.  Each of those jumps between the tissue and 0 is the largest, most
    correlated "activity" of the movie: demixing at its defaults seeded on the edges and found 0 of 15 cells of a
    64 x 64 one-photon simulation with 0-6 px borders (preflight warns of them at compress; the store keeps the
    jumps, so it shows them too).  Per side, from the edge inwards, each line's frames at the fill level are
    counted while the line before was at it too; a frame whose line at :data:`FILL_MAX_DEPTH` of the frame drops
    as well is dark, not bordered.  A border is one whose width changes from frame to frame (an edge at 0 in every
    frame is a dead edge: it holds no jumps); its width is the widest seen.  Costs a few lines of the denoised
    movie per side.
    """
    height, width = fac.dims
    depth = int(FILL_MAX_DEPTH * min(height, width))
    if depth < 2:
        return None
    widths = []
    for side in range(4):
        lit_inside = ~_at_fill_level(fac, _line_pixels(side, depth, fac.dims))
        if lit_inside.mean() < 1 - FILL_DARK_SHARE:
            # Lines inside drop under half their level often: samples around 0 (dF/F, a subtracted background),
            # where a line at 0 is no fill.
            widths.append(0)
            continue
        count = np.zeros(fac.n_frames, np.int64)
        still = lit_inside
        for d in range(depth):
            still = still & _at_fill_level(fac, _line_pixels(side, d, fac.dims))
            if not still.any():
                break
            count += still
        count = count[lit_inside]
        bordered = int((count > 0).sum())
        widths.append(int(count.max()) if bordered >= 2 and np.ptp(count) > 0 else 0)
    return tuple(widths) if any(widths) else None


def border_mask(border, dims) -> np.ndarray:
    """Pixels (bool, ``dims``) within a :func:`fill_border` border."""
    top, bottom, left, right = border
    out = np.zeros(dims, bool)
    out[:top] = True
    out[dims[0] - bottom :] = True
    out[:, :left] = True
    out[:, dims[1] - right :] = True
    return out


class _WithoutBorder:
    """A store whose pixels within a fill border carry no noise, hence no components (:func:`global_spatial` and
    :func:`highpass_spatial` fold the noise into ``U``): demixing sees them as outside the field of view."""

    def __init__(self, store, border):
        mask = border_mask(border, store.shape[1:])
        self._store = store
        self.border = border
        self.noise = np.where(mask, 0, store.noise).astype(store.noise.dtype)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _seen(image: np.ndarray, border) -> np.ndarray:
    """A seeding image (correlation, peak over noise) as the tissue inside a fill ``border`` shows it: mirrored
    over the border (:func:`mirror_outside`), so that its smoothing and local medians near the border are not
    pulled down by pixels without data; ``image`` itself without a border."""
    if border is None:
        return image
    height, width = image.shape
    top, bottom, left, right = border
    return mirror_outside(image, (top, height - bottom, left, width - right))


_NEIGHBOURS = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])


def _rim_corrected(corr: np.ndarray, border) -> np.ndarray:
    """The correlation image of the tissue inside a fill ``border`` (0 on it), as if the frame were cropped to it.

    :func:`correlation_image` averages over a pixel's neighbours in the frame; the border's traces are empty
    (no components there), so the pixels along it counted them as uncorrelated neighbours (3 of 8): their mean
    is taken over the neighbours inside instead, which is what a cropped movie's edge pixels get."""
    if border is None:
        return corr
    inside = ~border_mask(border, corr.shape)
    in_frame = ndimage.convolve(np.ones(corr.shape), _NEIGHBOURS, mode="constant")
    in_tissue = ndimage.convolve(inside.astype(np.float64), _NEIGHBOURS, mode="constant")
    return np.where(inside, corr * in_frame / np.maximum(in_tissue, 1.0), 0.0).astype(corr.dtype)


def _without(u: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    """The rows of ``u`` (pixels x K) within ``mask`` emptied."""
    out = (sp.diags((~mask).ravel().astype(u.dtype)) @ u).tocsr()
    out.eliminate_zeros()
    return out


def _highpass_inside(u: sp.csr_matrix, uh: sp.csr_matrix, border, dims, sigma: float, *,
                     overwrite_uh: bool = False) -> sp.csr_matrix:
    """The high-pass ``uh`` of ``u`` (whose rows within a fill ``border`` are empty) with the local mean taken over
    the pixels inside only (a normalized convolution: ``smooth(u) / smooth(inside)``), as a cropped movie's filter
    takes it over the frame; the border's rows emptied again (the filter spread the tissue's edge into them).
    Without the normalization the local mean next to the border is pulled down by its empty pixels, and the
    high-passed movie there keeps part of the background.  With ``overwrite_uh`` the result may be written over
    ``uh``'s arrays (``uh`` is then spoilt)."""
    mask = border_mask(border, dims)
    if sigma <= 0:
        return _without(uh, mask)
    share = _smooth((~mask).astype(np.float64)[None], sigma)[0].ravel()  # of the local mean's weight inside
    # uh = u - smooth(u); the normalized high-pass is u - smooth(u) / share = uh - (1 / share - 1) smooth(u).
    scale = np.where(share > 0, 1.0 / np.maximum(share, 1e-12) - 1.0, 0.0)
    scale[mask.ravel()] = 0.0
    # Row by row in one compiled pass: the sparse formula ``uh - diag(scale) (u - uh)``, then the border's rows
    # emptied, took three passes over all of uh's entries (about 1 CPU-s of a 512 x 512 field's demix) where
    # only the rows near the border change.
    u, uh = sp.csr_matrix(u, dtype=np.float32), sp.csr_matrix(uh, dtype=np.float32)
    cap = uh.nnz + u.nnz
    index = np.int32 if cap < np.iinfo(np.int32).max else np.int64
    scale, empty = scale.astype(np.float32), mask.ravel()
    indptr = np.zeros(uh.shape[0] + 1, index)
    if overwrite_uh and uh.indices.dtype == index and _u_columns_in_uh(u.indptr, u.indices, uh.indptr, uh.indices,
                                                                         scale, empty, uh.shape[1]):
        # Each row's result then fits in its own place in uh (its columns are uh's row's, fewer where exact zeros
        # drop), and the kernel reads a row before it writes it: written over uh, where fresh arrays of uh's size
        # cost 0.3 CPU-s of system time at 512 x 512 (their pages, the first time they are touched).
        indices, data = uh.indices, uh.data
    else:
        indices, data = np.empty(cap, index), np.empty(cap, np.float32)
    nnz = _highpass_inside_kernel(u.indptr, u.indices, u.data, uh.indptr, uh.indices, uh.data, scale, empty,
                                  uh.shape[1], indptr, indices, data)
    # views of the first nnz entries: at most u's entries are left unused, and a copy would cost a pass
    return sp.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=uh.shape, copy=False)


@jit
def _u_columns_in_uh(u_ptr, u_idx, h_ptr, h_idx, scale, empty, n_cols):
    """Whether each row that :func:`_highpass_inside_kernel` combines (inside, ``scale`` not 0) has all its columns
    of ``u`` among its columns of ``uh``."""
    mark = np.zeros(n_cols, np.bool_)
    for r in range(h_ptr.size - 1):
        if empty[r] or scale[r] == 0:
            continue
        for k in range(h_ptr[r], h_ptr[r + 1]):
            mark[h_idx[k]] = True
        within = True
        for k in range(u_ptr[r], u_ptr[r + 1]):
            if not mark[u_idx[k]]:
                within = False
                break
        for k in range(h_ptr[r], h_ptr[r + 1]):
            mark[h_idx[k]] = False
        if not within:
            return False
    return True


@jit
def _scatter_row(ptr, idx, val, r, row, seen, cols, n):
    """Row ``r`` of a CSR matrix added into the dense ``row``; its columns not yet ``seen`` appended to ``cols``
    after the first ``n``; returns the new count."""
    for k in range(ptr[r], ptr[r + 1]):
        j = idx[k]
        row[j] += val[k]
        if not seen[j]:
            seen[j] = True
            cols[n] = j
            n += 1
    return n


@jit
def _strictly_increasing(idx, lo, hi):
    """Whether ``idx[lo:hi]`` increases strictly (sorted, no repeated column)."""
    for k in range(lo + 1, hi):
        if idx[k] <= idx[k - 1]:
            return False
    return True


@jit
def _sorted_union(h_idx, lo, hi, u_cols, n_u, in_h, cols):
    """Into ``cols``: the union of ``h_idx[lo:hi]`` (strictly increasing) and the first ``n_u`` of ``u_cols``
    (distinct, any order), ascending; ``in_h[j]`` is True for the columns of the first.  Returns its size.

    The columns of ``u`` missing from ``uh`` (few: ``uh`` holds every component of the patches whose grown
    region covers the pixel) are sorted on their own and merged in, where sorting the whole union was most of
    :func:`_highpass_inside_kernel`'s time."""
    n_extra = 0
    for i in range(n_u):
        j = u_cols[i]
        if not in_h[j]:
            u_cols[n_extra] = j
            n_extra += 1
    extra = u_cols[:n_extra]
    extra.sort()
    n = 0
    e = 0
    for k in range(lo, hi):
        j = h_idx[k]
        while e < n_extra and extra[e] < j:
            cols[n] = extra[e]
            n += 1
            e += 1
        cols[n] = j
        n += 1
    while e < n_extra:
        cols[n] = extra[e]
        n += 1
        e += 1
    return n


@jit
def _highpass_inside_kernel(u_ptr, u_idx, u_val, h_ptr, h_idx, h_val, scale, empty, n_cols, out_ptr, out_idx,
                            out_val):
    """CSR of ``uh - diag(scale) @ (u - uh)`` with the rows in ``empty`` emptied, exact zeros left out and the
    column indices sorted, into ``out_ptr`` (rows + 1, zeros), ``out_idx`` and ``out_val`` (room for both inputs'
    entries); returns the number of entries.  The float32 operations of scipy's sparse formula, element by
    element (``d = u - uh``, ``s = scale * d``, ``uh - s``; an entry whose ``d`` or ``s`` is exactly 0 is absent,
    as scipy drops it)."""
    n_rows = h_ptr.size - 1
    u_row = np.zeros(n_cols, np.float32)
    h_row = np.zeros(n_cols, np.float32)
    seen = np.zeros(n_cols, np.bool_)
    in_h = np.zeros(n_cols, np.bool_)
    cols = np.empty(n_cols, np.int64)
    u_cols = np.empty(n_cols, np.int64)
    nnz = 0
    for r in range(n_rows):
        if not empty[r]:
            c = scale[r]
            if c == 0:  # uh's row as it is (its exact zeros left out)
                for k in range(h_ptr[r], h_ptr[r + 1]):
                    if h_val[k] != 0:
                        out_idx[nnz] = h_idx[k]
                        out_val[nnz] = h_val[k]
                        nnz += 1
            else:
                # ``scale`` is rarely exactly 0 inside (the share of the local mean's weight inside comes out
                # within 1e-16 of 1), so nearly every row comes here: its columns are put in order by a merge
                # where uh's row is sorted (the high-pass writes it so), by a sort of the union otherwise.
                lo, hi = h_ptr[r], h_ptr[r + 1]
                if _strictly_increasing(h_idx, lo, hi):
                    n_u = _scatter_row(u_ptr, u_idx, u_val, r, u_row, seen, u_cols, 0)
                    for k in range(lo, hi):
                        h_row[h_idx[k]] += h_val[k]  # as _scatter_row adds (-0.0 becomes +0.0)
                        in_h[h_idx[k]] = True
                    n = _sorted_union(h_idx, lo, hi, u_cols, n_u, in_h, cols)
                else:
                    n = _scatter_row(u_ptr, u_idx, u_val, r, u_row, seen, cols, 0)
                    n = _scatter_row(h_ptr, h_idx, h_val, r, h_row, seen, cols, n)
                    cols[:n].sort()
                for i in range(n):
                    j = cols[i]
                    d = np.float32(u_row[j] - h_row[j])
                    v = h_row[j]
                    if d != 0:
                        t = np.float32(c * d)
                        if t != 0:
                            v = np.float32(v - t)
                    if v != 0:
                        out_idx[nnz] = j
                        out_val[nnz] = v
                        nnz += 1
                    u_row[j] = 0
                    h_row[j] = 0
                    seen[j] = False
                    in_h[j] = False
        out_ptr[r + 1] = nnz
    return nnz


def _inner_bounds(fac: Factors, border) -> tuple[int, int, int, int]:
    """:func:`tissue_bounds` of the mean image, less a fill border."""
    top, bottom, left, right = tissue_bounds(fac.mean)
    if border is None:
        return top, bottom, left, right
    height, width = fac.dims
    return (max(top, border[0]), min(bottom, height - border[1]), max(left, border[2]), min(right, width - border[3]))



def fit(store, options: DemixOptions, *, progress=None) -> tuple[Model, Factors, DemixOptions]:
    """Fit footprints, traces and background to a store's factors.

    Without a ``cell_radius``, a first pass uses :data:`DEFAULT_CELL_RADIUS`; when
    the radius of the footprints it finds (:func:`estimate_cell_radius`) is more
    than :data:`REFIT_RATIO` off, the fit is repeated with that radius and at most
    :data:`REFIT_PASSES` seeding passes.  The estimate counts only the active
    footprints that pass the quality tests, so a first pass to be redone stops
    there (no mean-image components, no final traces: about a tenth of a pass).
    """
    t_start = time.perf_counter()
    fac = load_factors(store)
    border = fill_border(fac)
    if border is not None:
        mask = border_mask(border, fac.dims)
        top, bottom, left, right = border
        height, width = fac.dims
        log.warning("%s: demix leaves out a border that a fill value reaches in some frames (%d rows at the top, %d"
                    " at the bottom, %d columns at the left, %d at the right: motion correction's shifted-in edges);"
                    " no cell is looked for there.  Compressing with --crop %d:%d,%d:%d saves the rank its jumps cost"
                    " and demixes the rest better", store.path or "store", top, bottom, left, right,
                    top, height - bottom, left, width - right)
        store = _WithoutBorder(store, border)
        fac = replace(fac, U=_without(fac.U, mask))
    load_s = time.perf_counter() - t_start
    if options.cell_radius is not None:
        return _fit(store, fac, options, load_s, radius_given=True)
    start = DEFAULT_CELL_RADIUS if START_RADIUS is None else START_RADIUS

    def far_off(estimate, radius):
        return estimate is not None and not 1 / REFIT_RATIO <= estimate / radius <= REFIT_RATIO

    t_first = time.perf_counter()
    guess_if = (lambda guess: far_off(guess, start)) if GUESS_FROM_SEEDS else None
    model, fac, opts = _fit(store, fac, replace(options, cell_radius=start), load_s, radius_given=False,
                            stop_if=lambda estimate: far_off(estimate, start), guess_if=guess_if)
    prior = None
    if isinstance(model, _Stopped) and model.guessed:
        # The seeds say the somata are far from the default size: the pass runs at their radius, and the
        # refit below is only a safety net, for a fitted estimate as far from that.
        prior = model.estimate
        log.info("demix: the brightest seeds have a radius of %.1f px; fitting with it", prior)
        model, fac, opts = _fit(store, fac, replace(options, cell_radius=prior), load_s, radius_given=False,
                                stop_if=lambda estimate: estimate is None or far_off(estimate, prior))
        if isinstance(model, _Stopped) and model.estimate is None:
            # Too few somata at that radius: the seeds misled (a 20-frame movie, a short one-photon clip, whose
            # rank-one windows spread over their neighbours); the default pass, as without a guess.
            log.info("demix: too few components at %.1f px; fitting at %.1f px", prior, start)
            model, fac, opts = _fit(store, fac, replace(options, cell_radius=start), load_s, radius_given=False,
                                    stop_if=lambda estimate: far_off(estimate, start))
        else:
            start = prior
    if isinstance(model, _Stopped):
        estimate = model.estimate
    else:
        estimate = estimate_cell_radius(model.footprints, model.fixed)
        model.cell_radius_estimate = estimate
        model.cell_radius_prior = prior
        if not far_off(estimate, start):
            return model, fac, opts
    log.info("demix: footprints have a radius of %.1f px; refitting with it", estimate)
    first_s = time.perf_counter() - t_first + load_s
    refit = replace(options, cell_radius=estimate, n_passes=min(options.n_passes, REFIT_PASSES))
    model, fac, opts = _fit(store, fac, refit, load_s, radius_given=False)
    model.cell_radius_estimate = estimate
    model.cell_radius_prior = prior
    model.timings["first_pass_s"] = first_s
    model.timings["total_fit_s"] += first_s
    return model, fac, opts


# Footprints under this fraction of the area-weighted median area are left out of the radius estimate: pieces
# of somata, dendrite sections and boutons, which outnumber the somata on real movies at high zoom
# (neurofinder_dev at 1.5x zoom: 72 of 95 accepted components; their plain median, 4.9 px, was the estimate
# against 8.2 px for the footprints on labelled somata).  The area-weighted median is the somata's: small pieces
# carry little area.  See docs/demix.md, session 6.
FRAGMENT_AREA_FRACTION = 0.4


def estimate_cell_radius(fp: Footprints, fixed=None, *, threshold: float = 0.2, min_count: int = 5):
    """Median equivalent radius ``sqrt(area / pi)`` of the soma-sized footprints (area above ``threshold`` of
    the peak).

    Footprints seeded from the mean image (``fixed``) are left out, and so are
    those under :data:`FRAGMENT_AREA_FRACTION` of the area-weighted median area
    (fragments); ``None`` with fewer than ``min_count`` footprints.  Clipped to
    2.5-20 pixels.
    """
    if fp.n == 0:
        return None
    n_pix = int(np.prod(fp.values.shape[1:]))
    flat = fp.values.reshape(fp.n, n_pix)
    top = np.maximum(flat.max(axis=1), 1e-30)
    area = (flat > threshold * top[:, None]).sum(axis=1)
    if fixed is not None:
        area = area[~np.asarray(fixed, bool)]
    if area.size < min_count:
        return None
    return _equivalent_radius(soma_area(area))


def _equivalent_radius(area: float, scale: float = 1.0) -> float:
    """``scale`` times the radius of a disk of ``area`` pixels, clipped to the 2.5-20 px a soma radius may take."""
    return float(np.clip(scale * np.sqrt(area / np.pi), 2.5, 20.0))


def soma_area(area) -> float:
    """Median of the areas at least :data:`FRAGMENT_AREA_FRACTION` of their area-weighted median (non-empty)."""
    area = np.sort(np.asarray(area, np.float64))
    weighted_median = area[np.searchsorted(np.cumsum(area), 0.5 * area.sum())]
    return float(np.median(area[area >= FRAGMENT_AREA_FRACTION * weighted_median]))


# The radius guessed before the fit from the brightest seeds (:func:`seed_radius`): how many seeds, the half side
# of the window each is fitted in (in units of the pass's cell radius, at least SEED_WINDOW_MIN px), and the
# ratio of the fitted footprints' estimate to the guess.  Rank-one footprints of a seed's window take a little
# of the neighbours and the neuropil: the fitted footprints' estimate is 0.91x their radius (median of 12 movies:
# neurofinder_dev natively, zoomed 1.5x and its svd store; 9 simulations of 2p, 1p, small and large somata;
# 0.87-0.99 each; binned 2x2 neurofinder_dev, 1.23, is the exception: its 2.4 px somata).  0.92 started the
# 1.5x zoom at 8.26 px: F1 0.541 against 0.557 at 8.1.
SEED_GUESSES = 20
SEED_WINDOW = 2.0
SEED_WINDOW_MIN = 12
SEED_RADIUS_SCALE = 0.90
# Fewer (binned) frames and no guess: neighbours' transients overlap in time and the rank-one windows spread over
# them (the 63-frame Inscopix clip guessed 9.1 px and kept 5 components at that radius, against 19 at 6 px; the
# 20-frame sima_ca1_example guessed 10.9 px).
GUESS_MIN_FRAMES = 100


def seed_radius(u, v, dims, seeds, cell_radius: float) -> float | None:
    """The soma radius from the brightest ``seeds`` alone, before any fit: the median equivalent radius of each
    one's rank-one footprint in its own window (:func:`hals.local_footprint_area`) times
    :data:`SEED_RADIUS_SCALE`; ``None`` with fewer than 5 footprints."""
    half = max(int(math.ceil(SEED_WINDOW * cell_radius)), SEED_WINDOW_MIN)
    height, width = dims
    areas = []
    for sy, sx in seeds[:SEED_GUESSES]:
        y0, y1 = max(sy - half, 0), min(sy + half + 1, height)
        x0, x1 = max(sx - half, 0), min(sx + half + 1, width)
        area = hals.local_footprint_area(render_tile(u, v, dims, y0, y1, x0, x1), (sy - y0, sx - x0))
        if area:
            areas.append(area)
    if len(areas) < 5:
        return None
    return _equivalent_radius(float(np.median(areas)), SEED_RADIUS_SCALE)


# Footprints above 20 % of their peak are wider than the soma (soft edges): by about 15 % on simulations, by
# 23-31 % on real movies (neurofinder_dev's footprints on labelled somata against the labels, natively, binned
# 2 x 2 and at 1.5x zoom).  The real movies' value: with 1.15 the mean-image template came out 10 % too large
# natively once the radius estimate stopped being a fragment's (F1 0.581 -> 0.553); see docs/demix.md.
SOFT_EDGE_FACTOR = 1.28


def _soma_radius(opts: DemixOptions, fp: Footprints, fixed, radius_given: bool) -> float:
    """Radius of the mean-image soma template: ``nucleus_radius``, else the given ``cell_radius``, else the
    active footprints' equivalent radius (:func:`estimate_cell_radius`) less their soft edges."""
    if opts.nucleus_radius is not None:
        return float(opts.nucleus_radius)
    if radius_given:
        return float(opts.cell_radius)
    estimate = estimate_cell_radius(fp, fixed)
    return float((estimate if estimate is not None else opts.cell_radius) / SOFT_EDGE_FACTOR)


@dataclass
class _Stopped:
    """A pass stopped after its quality tests (:func:`_fit`'s ``stop_if``): the radius estimate of its footprints."""

    estimate: float | None
    guessed: bool = False  # the seeds' radius (:func:`seed_radius`), not the fitted footprints'


def _fit(store, fac: Factors, options: DemixOptions, load_s: float, *, radius_given: bool,
         stop_if=None, guess_if=None) -> tuple[Model | _Stopped, Factors, DemixOptions]:
    """One pass.  ``stop_if(estimate)``, called with :func:`estimate_cell_radius` of the footprints that pass the
    quality tests, stops the pass there when true (it is to be redone at that radius): no mean-image components,
    no final traces; a :class:`_Stopped` comes back in place of the model.  ``guess_if(guess)``, called with
    :func:`seed_radius` of the seeds, stops it right after its seeds when true."""
    timings = {"load_s": load_s}
    t_start = time.perf_counter() - load_s
    border = store.border if isinstance(store, _WithoutBorder) else None
    opts = options.resolved(fac.n_frames)

    t0 = time.perf_counter()
    uh = highpass_spatial(store, fac, opts.highpass_sigma)
    if border is not None:
        uh = _highpass_inside(fac.U, uh, border, fac.dims, opts.highpass_sigma, overwrite_uh=True)
    vb = bin_frames(fac.V, opts.bin_frames).astype(np.float32)
    corr, peak = correlation_image(uh, vb, fac.dims, mad_threshold=opts.mad_threshold, return_peak=True)
    corr = _rim_corrected(corr, border)
    activity = _activity_z(peak, store.noise, opts, border)
    outside = border_mask(border, fac.dims) if border is not None else False
    timings["correlation_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    half = int(math.ceil(2 * opts.cell_radius))
    box = (min(2 * half + 1, fac.dims[0]), min(2 * half + 1, fac.dims[1]))
    # contrast_threshold (2p: 0.1) only has to reject broad plateaus (a vessel's shadow, a patch-wide residual): in
    # dense or strongly correlated tissue the local median of the correlation image is itself 0.8-0.9 at a soma's
    # side, and 0.2 rejected most somata of the simulated large-soma regime (65 %) and active cells at the field's
    # edge (neurofinder_dev: two labelled ones at 0.17-0.19).  See docs/demix.md, session 7.
    smooth_corr, contrast = seed_score(_seen(corr, border), size=4 * opts.cell_radius + 1)
    seeds = find_seeds(smooth_corr, threshold=opts.corr_threshold, min_distance=opts.min_distance,
                       exclude=(contrast < opts.contrast_threshold) | (activity < opts.min_activity) | outside)
    # Seed regions and, through every update, the supports stay within support_radius cell radii of the
    # seed (+1 pixel, the first dilation): the alternating updates would otherwise let a footprint drift onto
    # a brighter neighbour or a few hot pixels nearby, and its soma would be lost (neurofinder_dev).
    # Duplicates by mask overlap only in a thin two-photon section: one-photon blur makes distinct
    # neighbours overlap (the Inscopix clip: 22 components -> 13 with this merge).
    duplicate_threshold = opts.footprint_threshold if opts.kind == "2p" else None
    reach = int(math.ceil(opts.support_radius * opts.cell_radius))
    zone_radius = opts.support_radius * opts.cell_radius + 1.0
    regions = seed_regions(corr, seeds, low=opts.region_threshold, max_radius=reach)
    sizes = np.bincount(regions.ravel(), minlength=len(seeds) + 1)[1:]
    ok = np.flatnonzero(sizes >= opts.min_size)
    if guess_if is not None and vb.shape[1] >= GUESS_MIN_FRAMES:
        # Before the footprints are made: a pass that stops here does not need them.
        guess = seed_radius(fac.U, vb, fac.dims, seeds[ok], opts.cell_radius)
        if guess_if(guess):
            return _Stopped(guess, guessed=True), fac, opts
    # Zones leave out pixels unrelated to their seed (unrelated_pixels) for two-photon movies of GUESS_MIN_FRAMES
    # binned frames or more: in fewer, unrelated traces correlate by chance up to the level a related pixel
    # reaches (sima_ca1_example, 20 frames: 13 -> 9 active components), and one-photon blur and voltage are
    # untried.  On the movie itself (U), not the high-passed one: the high-pass turns a soma's edge against its
    # centre.
    zone_test = opts.kind == "2p" and vb.shape[1] >= GUESS_MIN_FRAMES
    unrelated = unrelated_pixels(fac.U, vb, seeds, hals.box_origins(seeds, box, fac.dims), box, fac.dims, which=ok,
                                 radius=zone_radius) if zone_test else None
    fp = _new_footprints(corr, seeds, regions, box, fac.dims, zone_radius=zone_radius, unrelated=unrelated,
                         kept=ok).subset(ok)
    _stage("seeds", fp, np.zeros(fp.n, bool))
    rng = np.random.default_rng(opts.seed)
    if opts.background_rank and opts.highpass_sigma > 0:
        # The low-passed movie is U - uh; its products are taken as smoothed products with U (7x fewer entries).
        bg = hals.init_background_lowpass(fac.U, vb, opts.background_rank, opts.highpass_sigma, fac.dims, rng=rng)
    elif opts.background_rank:
        bg = hals.init_background(fac.U - uh, vb, opts.background_rank, opts.highpass_sigma, fac.dims, rng=rng)
    else:
        bg = Background(np.zeros((0, *fac.dims)), np.zeros((0, vb.shape[1])), opts.highpass_sigma)
    fixed = np.zeros(fp.n, bool)
    timings["init_s"] = time.perf_counter() - t0
    log.info("demix: %d seeds, %d kept", len(seeds), fp.n)

    t0 = time.perf_counter()
    use_ring = opts.background_model == "ring"
    # The alternating updates multiply V by float64 operands: converted once here, not in each of their products
    # (the same products, to the last bit).
    fit64 = vb.astype(np.float64)
    c = _iterate(fac.U, fit64, fp, bg, fixed, opts.max_num_iter)
    u_fit, v_fit, ring = fac.U, vb, None
    if use_ring:
        # Start from the low-rank fit, then alternate: ring weights given A, C; A, C given the ring background.
        bg = Background(np.zeros((0, *fac.dims)), np.zeros((0, vb.shape[1])), opts.highpass_sigma)
        for _ in range(opts.ring_rounds):
            ring, u_fit, v_fit = _ring_step(fac.U, vb, fp, c, opts)
            fit64 = v_fit.astype(np.float64, copy=False)
            c = _iterate(u_fit, fit64, fp, bg, fixed, max(opts.max_num_iter // 2, 2))
    n_before = fp.n
    _stage("fit", fp, fixed)
    fp, c, fixed = _merge(fp, c, opts.merge_threshold, fixed, mask_threshold=duplicate_threshold)
    n_merged = fp.n
    _stage("merge", fp, fixed)
    fp, c, fixed = _delete(fp, c, fixed, opts.min_size, opts.footprint_threshold)
    _stage("delete", fp, fixed)
    log.debug("demix: %d components, %d after merging, %d after deleting", n_before, n_merged, fp.n)
    resid_corr = None
    for _ in range(1, opts.n_passes):
        # Residual pass: the same image on the movie minus what the model explains.
        ha = _highpass_footprints(fp, opts.highpass_sigma)
        u_res = ColumnStack(uh, -ha)  # hstack, without copying uh
        v_res = np.vstack([vb, c.astype(np.float32)])
        resid_corr, resid_peak = correlation_image(u_res, v_res, fac.dims, mad_threshold=opts.mad_threshold,
                                                   return_peak=True)
        resid_corr = _rim_corrected(resid_corr, border)
        resid_activity = _activity_z(resid_peak, store.noise, opts, border)
        centers = _centers(fp)
        near = np.zeros(fac.dims, bool)
        cy = np.clip(np.round(centers[:, 0]).astype(int), 0, fac.dims[0] - 1)
        cx = np.clip(np.round(centers[:, 1]).astype(int), 0, fac.dims[1] - 1)
        near[cy, cx] = True
        near = ndimage.binary_dilation(near, iterations=max(opts.min_distance, 1))
        smooth_res, contrast = seed_score(_seen(resid_corr, border), size=4 * opts.cell_radius + 1)
        new = find_seeds(smooth_res, threshold=opts.residual_corr_threshold, min_distance=opts.min_distance,
                         exclude=near | (contrast < opts.contrast_threshold) | (resid_activity < opts.min_activity)
                         | outside)
        if len(new) == 0:
            break
        regions = seed_regions(resid_corr, new, low=opts.region_threshold, max_radius=reach)
        sizes = np.bincount(regions.ravel(), minlength=len(new) + 1)[1:]
        ok = np.flatnonzero(sizes >= opts.min_size)
        if ok.size == 0:
            break
        log.info("demix: residual pass adds %d seeds", ok.size)
        unrelated = unrelated_pixels(ColumnStack(fac.U, -fp.to_sparse().tocsr()), v_res, new,
                                     hals.box_origins(new, box, fac.dims), box, fac.dims, which=ok,
                                     radius=zone_radius) if zone_test else None
        fp = _concat(fp, _new_footprints(resid_corr, new, regions, box, fac.dims, zone_radius=zone_radius,
                                         unrelated=unrelated, kept=ok).subset(ok))
        fixed = np.concatenate([fixed, np.zeros(ok.size, bool)])
        c = _iterate(u_fit, fit64, fp, bg, fixed, max(opts.max_num_iter // 2, 2))
        if use_ring:
            ring, u_fit, v_fit = _ring_step(fac.U, vb, fp, c, opts)
            fit64 = v_fit.astype(np.float64, copy=False)
            c = _iterate(u_fit, fit64, fp, bg, fixed, 2)
        fp, c, fixed = _merge(fp, c, opts.merge_threshold, fixed, mask_threshold=duplicate_threshold)
        fp, c, fixed = _delete(fp, c, fixed, opts.min_size, opts.footprint_threshold)
        _stage("residual", fp, fixed)
    timings["fit_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # Mean-image shape measures see the tissue only: a scanner's dark edge band is mirrored over (tissue_bounds).
    bounds = _inner_bounds(fac, border)
    shape_mean = mirror_outside(fac.mean, bounds)
    if opts.soma_opening:
        # The disk is a fraction of the somata's own radius, measured on these footprints (less their soft
        # edges), not of the working cell radius: that stays at its 6 px default for footprints up to a third
        # smaller, and a disk of half of it (3 px) cut real somata of radius 4-5 px whose masks are ragged
        # (neurofinder_dev, 5 stores: F1 0.527 -> 0.536, held-out half 0.447 -> 0.476).
        opening = opts.soma_opening * _soma_radius(opts, fp, fixed, radius_given)
        shaped = _soma_shape(fp, fixed, opening, opts.footprint_threshold)
        idx = np.flatnonzero(shaped)
        fp, c, fixed = fp.subset(idx), c[idx], fixed[idx]
        _stage("soma_shape", fp, fixed)
    met = compute_metrics(u_fit, v_fit, fp, c, store.noise, threshold=opts.footprint_threshold,
                          mean=shape_mean, contrast_sigma=2.2 * opts.cell_radius)
    # A weak transient is enough with a second kind of evidence (:func:`_clear_transients`): a clear soma of the mean
    # image (simulated dim cells: 10 of 11 true cells under SNR 5 stood >= 5 SDs out of the mean image;
    # neurofinder_dev's fragments and neuropil under SNR 5 mostly < 3.5), or a footprint consistent with its
    # transients and brighter than its surround.
    accept = _clear_transients(met, opts.min_snr)
    accept &= (met["r_value"] >= opts.min_r_value) & (met["skew"] >= opts.min_skew)
    # Ragged or split footprints are neuropil, dendrite or bouton fragments on real data, not somata.
    accept &= met["compactness"] >= opts.min_compactness
    # Dendrites are long, somata round; a soma is brighter than its surround in a two-photon mean image.
    accept &= met["elongation"] <= opts.max_elongation
    accept &= met["mean_contrast"] >= opts.min_mean_contrast
    # Fragments: an active component under half the soma area of the accepted ones (:func:`soma_area`, the movie's
    # own soma scale, so this holds at any cell size) is a piece of a soma, a dendrite or a bouton.  Their plain
    # median was a fragment's at high zoom, where fragments outnumber somata (neurofinder_dev at 1.5x).
    sizes = met["size"][accept & ~fixed]
    passed = np.flatnonzero(accept | fixed)
    soma_radius = _soma_radius(opts, fp.subset(passed), fixed[passed], radius_given)
    if sizes.size >= 5:
        reference = soma_area(sizes)
        accept &= met["size"] >= opts.min_relative_size * reference
        # ... and one several times that area is neuropil or several cells merged.
        accept &= met["size"] <= opts.max_relative_size * reference
    accept |= fixed
    _stage("quality", fp, fixed, dict(met, accept=accept))
    log.info("demix: %d of %d components pass the quality tests", int(accept.sum()), fp.n)
    idx = np.flatnonzero(accept)
    fp, c, fixed = fp.subset(idx), c[idx], fixed[idx]
    if stop_if is not None:
        # The radius estimate counts these active footprints only (the mean-image components that follow are
        # fixed, and left out): a pass to be redone at another radius stops here, its estimate final.
        estimate = estimate_cell_radius(fp, fixed)
        if stop_if(estimate):
            return _Stopped(estimate), fac, opts
    source = np.zeros(fp.n, np.int8)
    if opts.seed_from_mean:
        soma_opts = replace(opts, cell_radius=soma_radius, min_size=int(0.25 * np.pi * soma_radius**2))
        for code, finder, finder_opts in ((1, _mean_footprints, blob_options(opts, soma_radius)),
                                          (2, _nucleus_footprints, soma_opts)):
            extra = finder(shape_mean, fp, finder_opts, box, bounds=bounds)
            log.info("demix: %d components seeded from the mean image (%s)", extra.n, finder.__name__)
            fp = _concat(fp, extra)
            fixed = np.concatenate([fixed, np.ones(extra.n, bool)])
            source = np.concatenate([source, np.full(extra.n, code, np.int8)])
    timings["select_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()

    def final_traces():
        if use_ring:
            return ringbg.solve_traces_ring(ring, fac.U, fac.V, fp), np.zeros((0, fac.n_frames))
        return hals.solve_traces(fac.U, fac.V, fp, bg)

    c, f = final_traces()
    if BLOB_TRANSIENT_TEST and (source == 1).any():
        rejected = _active_dim_blobs(fp, c, source, shape_mean, store.noise, opts)
        if rejected.size:
            log.info("demix: %d mean-image blobs with transients and no clear soma left out", rejected.size)
            keep = np.setdiff1d(np.arange(fp.n), rejected)
            fp, fixed, source = fp.subset(keep), fixed[keep], source[keep]
            c, f = final_traces()
    if bg.rank:
        bg.temporal = f
    else:
        bg.temporal = np.zeros((0, fac.n_frames))
    timings["traces_s"] = time.perf_counter() - t0
    timings["total_fit_s"] = time.perf_counter() - t_start
    model = Model(fp, c, bg, corr, resid_corr, fixed, timings, ring=ring,
                  nucleus_radius=soma_radius if opts.seed_from_mean else None, source=source, fill_border=border)
    return model, fac, opts


def _clear_transients(met: dict, min_snr: float) -> np.ndarray:
    """Which components' transients are evidence enough for an active cell (before the shape and size tests).

    A peak of ``min_snr`` noise SDs; or, under that, a footprint that is also a clear soma of the mean image
    (``mean_contrast`` >= :data:`BRIGHT_SOMA_CONTRAST`); or one that matches the data at its own transients almost
    perfectly (``r_value`` >= :data:`CONSISTENT_R_VALUE`) with a peak of :data:`WEAK_SNR_FRACTION` x ``min_snr``:
    two kinds of evidence (CaImAn accepts on spatial consistency alone, at 0.85). Session 8 asked the consistent
    ones for mean-image contrast too (>= 1) and a peak of 0.7 x the floor; session 13 dropped the contrast
    (dark-nucleus somata have none) and lowered the peak to half the floor: on dense simulated fields the firing
    somata refused by the floor had r_value 0.9-0.99 at SNR 2.2-4.9, and every refused component at r_value >= 0.9
    that passed the shape tests was a firing soma; on neurofinder_dev's stores the components under the floor are
    neuropil, fragments or dim pieces with r_value mostly under 0.9. At least a peak of 1 SD (or ``min_snr`` if
    lower).
    """
    snr, contrast = met["snr"], met["mean_contrast"]
    strong = (snr >= min_snr) | (contrast >= BRIGHT_SOMA_CONTRAST)
    strong |= (snr >= WEAK_SNR_FRACTION * min_snr) & (met["r_value"] >= CONSISTENT_R_VALUE)
    return strong & (snr >= min(min_snr, 1.0))


# A mean-image blob (a filled soma) must stand this many times above the RMS of the fine structure around it:
# the high-passed mean image less its own smoothing at a quarter of the cell radius, RMS over 4 cell radii.  A
# filled soma is smooth at that scale; neuropil texture (boutons, dendrite cross-sections) is made of it.  At z >= 2
# on neurofinder_dev, 36 of 54 blob maxima off the labels fall below 2 (3 of 19 on labels); on the neurofinder-like
# simulations (no texture) 8 of 196 somata do.  The RMS of the whole high-passed image over the same window served
# worse: it also counts neighbouring somata, and dense simulated fields lost 22 of 196 at the same rejection.
MEAN_BLOB_TEXTURE_CONTRAST = 2.0


BLOB_TRANSIENT_TEST = True

# A mean-image blob's region must cover at least this fraction of the disc of the somata's measured radius
# (:func:`_soma_radius`), the scale the active fragment test uses too (``min_relative_size`` 0.5).  Its floor was
# ``min_size``, a quarter of the disc of the working ``cell_radius``: natively the same scale, but where that
# radius is set below the somata's (neurofinder_dev binned 2 x 2: a pass at 2.5 px, somata of 2.3 px less their
# soft edges, labels of 18 px) bright specks of 5-8 px, boutons and dendrite cross-sections, passed as somata
# (14 of 18 blobs unlabelled; the labelled ones cover 10-22 px, 0.58-1.3 of the disc).
BLOB_MIN_SOMA_AREA = 0.5


def blob_options(opts: DemixOptions, soma_radius: float) -> DemixOptions:
    """``opts`` for :func:`_mean_footprints`: ``min_size`` at least :data:`BLOB_MIN_SOMA_AREA` of the disc of
    ``soma_radius`` (a blob is a whole soma, whatever the working cell radius)."""
    return replace(opts, min_size=max(opts.min_size, math.ceil(BLOB_MIN_SOMA_AREA * np.pi * soma_radius**2)))


def _active_dim_blobs(fp: Footprints, c: np.ndarray, source: np.ndarray, mean, noise, opts: DemixOptions):
    """Indices of the mean-image blobs whose traces have transients but which are no clear soma of the mean image.

    A blob stands for a soma that never fires.  One whose trace reaches ``min_snr``
    is an active structure, so it needs the evidence an active component needs:
    it is no clear soma of the mean image (``mean_contrast`` under
    :data:`BRIGHT_SOMA_CONTRAST`), so it is a fragment, a dendrite or a bouton the
    active tests turned down (neurofinder_dev, natively, binned 2 x 2 and at 1.5x
    zoom: the blobs on labels stand 6.5-60 robust SDs out of the mean image, the
    unlabelled ones 1.4-4.7 with SNR 3-16; the simulated silent somata found as
    blobs have SNR under 1).
    """
    blobs = np.flatnonzero(source == 1)
    sub = fp.subset(blobs)
    cb = bin_frames(c[blobs], opts.bin_frames)
    sigma = trace_noise(sub, noise)
    snr = (np.percentile(cb, 99.5, axis=1) - np.median(cb, axis=1)) / np.maximum(sigma, 1e-30)
    contrast = mean_contrast(mean, sub, opts.footprint_threshold, 2.2 * opts.cell_radius)
    return blobs[(snr >= opts.min_snr) & (contrast < BRIGHT_SOMA_CONTRAST)]


def _mean_footprints(mean, fp: Footprints, opts: DemixOptions, box, *, bounds=None) -> Footprints:
    """Footprints of bright blobs of the mean image that no footprint covers (cells that never fire).

    The mean image is high-passed (neuropil removed), then smoothed at half the
    cell radius, which fills the dark nucleus of a cytosolic indicator, and
    z-scored robustly.  Seeds are its maxima above ``mean_threshold`` away from
    existing footprints; each footprint is the seed's connected part of the
    high-passed image above a quarter of the seed's height, within 1.5 cell radii, with
    holes filled, kept when it is at least ``min_size`` pixels and compact
    (not a dendrite or a vessel's edge).  ``bounds`` (:func:`tissue_bounds`): no seed or
    pixel outside them, and a blob cut by their edge is compact for the part of its disk inside.
    """
    radius = opts.cell_radius
    img = mean.astype(np.float64)
    hp = img - gaussian_filter(img, opts.highpass_sigma, mode="reflect")
    blob = gaussian_filter(hp, max(radius / 2.0, 0.5), mode="reflect")
    med = np.median(blob)
    mad = 1.4826 * np.median(np.abs(blob - med)) + 1e-12
    z = (blob - med) / mad
    covered = _covered(fp, opts.footprint_threshold)
    outside = _outside(bounds, fp.dims)
    # A real mean image's texture is uneven: its bright spots pass a z-score against the whole image's spread,
    # but not the fine structure around them (see MEAN_BLOB_TEXTURE_CONTRAST).
    fine_structure = hp - gaussian_filter(hp, max(radius / 4.0, 0.5), mode="reflect")
    texture = np.sqrt(gaussian_filter(fine_structure**2, 4.0 * radius, mode="reflect"))
    seeds = find_seeds(z, threshold=opts.mean_threshold, min_distance=max(int(radius), 1),
                       exclude=ndimage.binary_dilation(covered, iterations=max(int(radius / 2), 1))
                       | (blob < MEAN_BLOB_TEXTURE_CONTRAST * texture) | outside)
    fine = gaussian_filter(hp, max(radius / 6.0, 0.5), mode="reflect")
    half = int(math.ceil(1.5 * radius))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    disk = yy**2 + xx**2 <= half**2
    taken = covered | outside
    regions = np.zeros(fp.dims, np.int32)
    kept = []
    height, width = fp.dims
    for y, x in seeds:
        y0, y1 = max(y - half, 0), min(y + half + 1, height)
        x0, x1 = max(x - half, 0), min(x + half + 1, width)
        win = fine[y0:y1, x0:x1]
        level = 0.25 * max(fine[y, x], blob[y, x])
        mask = (win > level) & disk[y0 - y + half : y1 - y + half, x0 - x + half : x1 - x + half]
        mask = ndimage.binary_fill_holes(mask)
        mask = ndimage.binary_opening(mask)
        lab, _ = ndimage.label(mask)
        own = lab[y - y0, x - x0]
        if own == 0:
            continue
        mask = (lab == own) & ~taken[y0:y1, x0:x1]
        area = int(mask.sum())
        if area < opts.min_size:
            continue
        # Compactness: area over that of the disk of the mask's largest extent from its centroid, the part of
        # that disk inside the frame (a soma cut by the field's edge is a compact half-disk).
        py, px = np.nonzero(mask)
        extent = np.sqrt(((py - py.mean()) ** 2 + (px - px.mean()) ** 2).max()) + 0.5
        if area < 0.55 * np.pi * extent**2 * _inside_fraction(py.mean() + y0, px.mean() + x0, extent, fp.dims,
                                                                         bounds=bounds):
            continue
        kept.append((y, x))
        regions[y0:y1, x0:x1][mask] = len(kept)
        taken[y0:y1, x0:x1] |= mask
    seeds = np.array(kept, dtype=np.int64).reshape(-1, 2)
    values = np.clip(hp / max(float(hp.max()), 1e-30), 0, None)
    new = _new_footprints(values, seeds, regions, box, fp.dims)
    new.support[...] = new.values > 0
    return new


def _inside_fraction(cy: float, cx: float, radius: float, dims, *, bounds=None) -> float:
    """Fraction of the disk of ``radius`` around ``(cy, cx)`` inside a frame of ``dims`` (pixel centres
    counted), or inside its ``bounds`` (top, bottom, left, right; :func:`tissue_bounds`); exactly 1 where the
    disk is clear of the edges."""
    top, bottom, left, right = bounds if bounds is not None else (0, dims[0], 0, dims[1])
    if cy - radius >= top - 0.5 and cx - radius >= left - 0.5 and cy + radius <= bottom - 0.5 \
            and cx + radius <= right - 0.5:
        return 1.0
    half = int(math.ceil(radius)) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    yy, xx = yy + int(round(cy)), xx + int(round(cx))
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    inside = (yy >= top) & (yy < bottom) & (xx >= left) & (xx < right)
    return float((disk & inside).sum()) / max(float(disk.sum()), 1.0)


def mirror_outside(mean: np.ndarray, bounds) -> np.ndarray:
    """``mean`` with everything outside ``bounds`` replaced by the tissue mirrored at their edges
    (``d c b a | a b c d``, the ``reflect`` boundary of the filters at the frame's edge)."""
    top, bottom, left, right = bounds
    height, width = mean.shape
    if (top, bottom, left, right) == (0, height, 0, width):
        return mean
    inner = mean[top:bottom, left:right]
    return np.pad(inner, ((top, height - bottom), (left, width - right)), mode="symmetric")


def _outside(bounds, dims) -> np.ndarray:
    """Pixels outside ``bounds`` (none when it is ``None``)."""
    out = np.zeros(dims, bool)
    if bounds is not None:
        top, bottom, left, right = bounds
        out[:top] = out[bottom:] = True
        out[:, :left] = out[:, right:] = True
    return out


def _covered(fp: Footprints, threshold: float) -> np.ndarray:
    """Pixels inside any footprint's mask (above ``threshold`` of its peak)."""
    covered = np.zeros(fp.dims, bool)
    if fp.n:
        bh, bw = fp.box
        for j, (y, x) in enumerate(fp.origins):
            a = fp.values[j]
            covered[y : y + bh, x : x + bw] |= a > threshold * max(a.max(), 1e-30)
    return covered


def _soft_disk(distance: np.ndarray, radius: float) -> np.ndarray:
    """Fraction of each pixel inside ``radius`` (a one-pixel linear edge): shapes that change continuously with it."""
    return np.clip(radius - distance + 0.5, 0.0, 1.0)


# Half-side of the template's square window, in template radii.
NUCLEUS_WINDOW = 1.8


def nucleus_template(radius: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A soma with a dark nucleus and the window it is compared over: ``(template, (rows, columns))``.

    The template is -1 inside 0.9 ``radius`` and 0.7 on the ring out to 1.45 ``radius``, 0 beyond; the
    window is a square of half-side :data:`NUCLEUS_WINDOW` ``radius``, given by its row and column profiles
    (it is their outer product).  GCaMP is excluded from the
    nucleus, so a soma that never fires shows in the mean image as a dark disc in a brighter rim of
    cytoplasm.  Edges are anti-aliased (pixel coverage), so the score changes continuously with the
    radius: with hard edges the digital discs and the window's side jumped at whole pixels and the
    number of candidates with them (neurofinder_dev: 88, 104, 101, 77 candidates at radii 4.0, 4.2,
    4.4, 4.6 px; now 103, 98, 99, 95, with 0.45 for the threshold and the five scales of
    :data:`NUCLEUS_SCALES`).
    """
    half = int(math.ceil(NUCLEUS_WINDOW * radius + 0.5))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    rr = np.hypot(yy, xx)
    nucleus = _soft_disk(rr, 0.9 * radius)
    template = -nucleus + 0.7 * (_soft_disk(rr, 1.45 * radius) - nucleus)
    side = _soft_disk(np.abs(np.arange(-half, half + 1)), NUCLEUS_WINDOW * radius)
    return template, (side, side)


def correlate_mirror(image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.correlate(image, weights, mode="mirror")`` for a 2-D float64 image: the same floats.

    scipy's sum per pixel (from 0, each weight above ``DBL_EPSILON`` in magnitude times its sample, in the weights'
    order) is run over a block of rows at a time, the taps outermost, along whole rows of the image mirrored into
    a margin (``numpy.pad``'s "reflect" is scipy's "mirror"): 3x faster for the nucleus finder's templates (20-30
    px a side, five scales: 0.3 CPU-s of a 512 x 512 field's demix).  Other inputs (even sides, margins as
    wide as the image) go to scipy."""
    image = np.asarray(image)
    weights = np.asarray(weights, np.float64)
    if (image.ndim != 2 or weights.ndim != 2 or image.dtype != np.float64 or weights.shape[0] % 2 == 0
            or weights.shape[1] % 2 == 0 or weights.shape[0] // 2 >= image.shape[0]
            or weights.shape[1] // 2 >= image.shape[1]):
        return ndimage.correlate(image, weights, mode="mirror")
    ry, rx = weights.shape[0] // 2, weights.shape[1] // 2
    padded = np.pad(image, ((ry, ry), (rx, rx)), mode="reflect")
    flat = weights.ravel()
    taps = np.flatnonzero(np.abs(flat) > np.finfo(np.float64).eps)
    out = np.zeros(image.shape, np.float64)
    _correlate_taps_kernel(padded, taps // weights.shape[1], taps % weights.shape[1], flat[taps], out)
    return out


#: Output rows that :func:`_correlate_taps_kernel` runs every tap over at a time (they stay in the L1 cache).
CORRELATE_ROWS = 8


@jit
def _correlate_taps_kernel(padded, dy, dx, weights, out):
    """``out[i, j] += weights[t] * padded[i + dy[t], j + dx[t]]`` for each tap ``t`` in order, for a block of
    :data:`CORRELATE_ROWS` rows at a time (``out`` zeros on entry)."""
    h, w = out.shape
    for i0 in range(0, h, CORRELATE_ROWS):
        i1 = min(i0 + CORRELATE_ROWS, h)
        for t in range(weights.size):
            c = weights[t]
            for i in range(i0, i1):
                src = padded[i + dy[t], dx[t] : dx[t] + w]
                dst = out[i]
                for j in range(w):
                    dst[j] += c * src[j]


def normalized_cross_correlation(image: np.ndarray, template: np.ndarray, window=None) -> np.ndarray:
    """Pearson correlation of ``template`` (odd sides) with the window of ``image`` centred at each pixel.

    With ``window``, non-negative weights of the template's shape or a pair of 1-D profiles ``(rows,
    columns)`` whose outer product they are (then the local means take two 1-D passes), the correlation is
    weighted by it.
    Edges are mirrored (``d c b | a b c d``).  Direct correlation (``scipy.ndimage``):
    templates are a few cell radii wide, and ``scipy.signal`` alone would add
    seconds of import time to every run.
    """
    if window is None:
        window = (np.ones(template.shape[0]), np.ones(template.shape[1]))
    separable = isinstance(window, tuple)
    w = np.outer(*window) if separable else np.asarray(window, np.float64)
    total = float(w.sum())
    t = template - float((w * template).sum()) / total
    t = w * t / max(float(np.sqrt((w * t * t).sum())), 1e-30)
    img = image.astype(np.float64)
    num = correlate_mirror(img, t)

    def local_mean(x):
        if not separable:
            return ndimage.correlate(x, w / total, mode="mirror")
        rows, cols = (np.asarray(v, np.float64) for v in window)
        x = ndimage.correlate1d(x, rows / rows.sum(), axis=0, mode="mirror")
        return ndimage.correlate1d(x, cols / cols.sum(), axis=1, mode="mirror")

    mean, mean2 = local_mean(img), local_mean(img * img)
    var = np.maximum(mean2 - mean * mean, 0.0) * total
    return np.where(var > 1e-12, num / np.sqrt(np.maximum(var, 1e-12)), 0.0)


def local_contrast(mean: np.ndarray, sigma: float) -> np.ndarray:
    """The mean image high-passed at ``sigma`` and divided by its local RMS (uneven brightness evened out)."""
    img = mean.astype(np.float64)
    hp = img - gaussian_filter(img, sigma, mode="reflect")
    rms = np.sqrt(gaussian_filter(hp * hp, sigma, mode="reflect"))
    return hp / (rms + 0.5 * np.median(rms) + 1e-12)


# Template radii, relative to the soma radius.  The estimate is rough (7 % between stores of one movie) and somata
# vary: five scales over 0.75-1.3 make the finder's candidates depend little on it (neurofinder_dev, 0.4 px on the
# radius moved the count by 5 %, against 20 % with 0.85-1.15).
NUCLEUS_SCALES = (0.75, 0.87, 1.0, 1.15, 1.3)
NUCLEUS_DISC = 1.2  # footprint radius relative to the matched template's: the middle of its rim (0.9-1.45)
NUCLEUS_DISC_SCALES = (0.87, 1.15)  # ... that template's radius held within these fractions of the soma radius


def nucleus_scores(flat: np.ndarray, radius: float) -> np.ndarray:
    """The template's correlation with ``flat`` at each of :data:`NUCLEUS_SCALES` x ``radius``: (scales, Y, X)."""
    return np.stack([normalized_cross_correlation(flat, *nucleus_template(radius * k)) for k in NUCLEUS_SCALES])


def _nucleus_footprints(mean, fp: Footprints, opts: DemixOptions, box, *, bounds=None) -> Footprints:
    """Disc footprints of silent somata: dark nuclei in a bright rim of the mean image.

    The mean image is evened out (:func:`local_contrast`, scale 2.2 cell radii)
    and correlated with :func:`nucleus_template` at five radii around the soma
    radius (:data:`NUCLEUS_SCALES`; the best one per pixel); maxima above
    ``nucleus_threshold``, at least a cell radius apart and away from existing
    footprints, become discs of the radius that matched best (fixed; only their
    traces are fitted); none centred outside ``bounds`` (:func:`tissue_bounds`), and discs are cut to them.
    """
    radius = opts.cell_radius
    flat = local_contrast(mean, 2.2 * radius)
    img = mean.astype(np.float64)
    hp = img - gaussian_filter(img, 2.2 * radius, mode="reflect")
    # The template's correlation ignores amplitude, and evening out the brightness lifts dim regions'
    # texture to the contrast of cells: the rim must also be brighter than the nucleus in the mean image's
    # own units, against the spread of its high-passed structure (neurofinder_dev: the 24 weakest of 116
    # candidates, below 0.7 of that spread, were all unlabelled, most in the dim top of the field).
    structure = 1.4826 * float(np.median(np.abs(hp - np.median(hp)))) + 1e-12
    scores = nucleus_scores(flat, radius)
    best = np.argmax(scores, axis=0)
    score = scores.max(axis=0)
    covered = _covered(fp, opts.footprint_threshold)
    outside = _outside(bounds, fp.dims)
    seeds = find_seeds(score, threshold=opts.nucleus_threshold, min_distance=max(int(radius), 1),
                       exclude=ndimage.binary_dilation(covered, iterations=max(int(radius / 2), 1)) | outside)
    height, width = fp.dims
    yy, xx = np.mgrid[:height, :width]
    regions = np.zeros(fp.dims, np.int32)
    taken = covered | outside
    kept = []
    reach = int(np.ceil(1.45 * radius * max(NUCLEUS_SCALES))) + 1
    for y, x in seeds:
        r = radius * NUCLEUS_SCALES[best[y, x]]
        # The disc's size stays near the measured somata's: the outer scales help find a soma whose radius is
        # off the estimate, but where they win it is often by the texture around it (neurofinder_dev: matched
        # IoU 0.55 with discs of the outer scales' radius, 0.59 held to 0.87-1.15 of the soma radius).
        r_disc = radius * min(max(NUCLEUS_SCALES[best[y, x]], NUCLEUS_DISC_SCALES[0]), NUCLEUS_DISC_SCALES[1])
        y0, y1 = max(y - reach, 0), min(y + reach + 1, height)
        x0, x1 = max(x - reach, 0), min(x + reach + 1, width)
        dist2 = (yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2
        rim = (dist2 >= (0.9 * r) ** 2) & (dist2 < (1.45 * r) ** 2)
        core = dist2 < (0.9 * r) ** 2
        if hp[y0:y1, x0:x1][rim].mean() - hp[y0:y1, x0:x1][core].mean() < opts.nucleus_contrast * structure:
            continue
        # The footprint reaches the middle of the template's cytoplasm rim: hand-drawn somata include it
        # (neurofinder_dev: mean IoU of the matches 0.50 -> 0.57 on both halves).
        disc = (dist2 <= (NUCLEUS_DISC * r_disc) ** 2) & ~taken[y0:y1, x0:x1]
        if disc.sum() < opts.min_size:
            continue
        kept.append((y, x))
        regions[y0:y1, x0:x1][disc] = len(kept)
        taken[y0:y1, x0:x1] |= disc
    seeds = np.array(kept, dtype=np.int64).reshape(-1, 2)
    new = _new_footprints(np.ones(fp.dims, np.float32), seeds, regions, box, fp.dims)
    new.support[...] = new.values > 0
    return new


def options_dict(opts: DemixOptions) -> dict:
    """The resolved options as a JSON record; a limit that is off (+-inf, the 1p and voltage kinds' shape tests) is
    written as null: strict JSON has no infinity (zarr 3.1.0 refuses it, later versions write a non-standard
    ``Infinity`` that JSON readers outside Python reject)."""

    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    return {key: finite(value) for key, value in asdict(opts).items()}


def _static_background(mean, fp: Footprints, opts: DemixOptions) -> np.ndarray:
    """The mean image without the neurons: a normalized convolution of the pixels outside the masks."""
    outside = np.ones(fp.dims)
    if fp.n:
        bh, bw = fp.box
        for j, (y, x) in enumerate(fp.origins):
            a = fp.values[j]
            outside[y : y + bh, x : x + bw] *= ~(a > 0.02 * max(a.max(), 1e-30))
    sigma = opts.highpass_sigma
    num = gaussian_filter(mean.astype(np.float64) * outside, sigma, mode="reflect")
    den = gaussian_filter(outside, sigma, mode="reflect")
    fallback = gaussian_filter(mean.astype(np.float64), 2 * sigma, mode="reflect")
    return np.where(den > 0.05, num / np.maximum(den, 1e-12), fallback)


def to_result(model: Model, fac: Factors, opts: DemixOptions, store):
    """Normalise, add baselines, dF/F and metrics: the :class:`~.result.DemixResult` (no path yet)."""
    from .dff import delta_f_over_f, running_percentile
    from .result import DemixResult

    fp = model.footprints
    c = model.traces.astype(np.float64)
    peak = fp.values.reshape(fp.n, int(np.prod(fp.values.shape[1:]))).max(axis=1) if fp.n else np.zeros(0)
    peak = np.maximum(peak, 1e-30)
    fp.values /= peak[:, None, None].astype(np.float32)
    c *= peak[:, None]

    static = _static_background(fac.mean, fp, opts)
    gram = hals.box_gram(fp)
    reg = gram + np.diag(1e-6 * np.maximum(np.diag(gram), 1e-12) + 1e-12)
    win_mean = hals.windows((fac.mean - static)[None].astype(np.float64), fp)[0]
    win_static = hals.windows(static[None], fp)[0]
    a_sum = np.maximum(fp.values.reshape(fp.n, int(np.prod(fp.values.shape[1:]))).astype(np.float64).sum(axis=1), 1e-30)
    if fp.n:
        f0 = np.linalg.solve(reg, np.einsum("nij,nij->n", fp.values, win_mean))
        local_bg = np.einsum("nij,nij->n", fp.values, win_static) / a_sum
    else:
        f0 = local_bg = np.zeros(0)
    raw = c + f0[:, None]
    if opts.fs is not None:
        window = max(1, int(round(opts.dff_window_s * opts.fs)))
    else:
        window = max(1, int(opts.dff_window_frames))
    baseline = running_percentile(raw, window, opts.dff_percentile)
    activity = raw - baseline
    traces = activity if opts.kind == "voltage" else np.maximum(activity, 0.0)
    floor = np.maximum(0.1 * np.abs(local_bg), 1e-6)
    dff = delta_f_over_f(raw, baseline, floor)
    spikes = None
    if opts.kind != "voltage":
        spikes, _, ar = deconvolve(raw - baseline, opts.fs)

    vb = bin_frames(fac.V, opts.bin_frames)
    met = compute_metrics(fac.U, vb, fp, bin_frames(c, opts.bin_frames), store.noise,
                          threshold=opts.footprint_threshold,
                          mean=mirror_outside(fac.mean, _inner_bounds(fac, model.fill_border)),
                          contrast_sigma=2.2 * opts.cell_radius)
    met["seeded_from_mean"] = model.fixed.astype(np.uint8)
    met["f0"] = f0
    met["local_background"] = local_bg
    if spikes is not None:
        met["tau_s"] = ar["tau_s"]
        met["decay_g"] = ar["g"]
        met["tau_rise_s"] = ar["tau_rise_s"]
        met["rise_g"] = ar["rise_g"]
    images = {"mean": fac.mean, "correlation": model.correlation_image}
    if model.residual_correlation_image is not None:
        images["residual_correlation"] = model.residual_correlation_image
    bg = model.background
    from .result import default_mask_shape  # (here, not at the top: a one-line hook in a file s7-masks does not own)

    meta = {
        **header(DEMIX),
        "kind": opts.kind,
        "fs": float(opts.fs) if opts.fs is not None else None,
        "dims": list(fp.dims),
        "n_frames": int(fac.n_frames),
        "n_components": int(fp.n),
        "parameters": options_dict(opts),
        "mask_shape": default_mask_shape(opts.kind),
        "cell_radius_estimate": model.cell_radius_estimate,
        "cell_radius_prior": model.cell_radius_prior,
        "nucleus_radius": model.nucleus_radius,
        # (top, bottom, left, right) widths left out: a fill value reaches them in some frames (fill_border)
        "fill_border": list(model.fill_border) if model.fill_border is not None else None,
        "ring": ({"ssub": opts.ring_ssub, "radius": opts.ring_radius, "low_dims": list(model.ring.low_dims),
                  "model": "B(t) = up(W down(Y(t) - mean image - A c(t))), c the traces centred in time; down: "
                           "ssub x ssub block means (row-major blocks), up: each pixel takes its block's value"}
                 if model.ring is not None else None),
        "dff": {"baseline": "running percentile", "percentile": opts.dff_percentile,
                "window_s": opts.dff_window_s if opts.fs is not None else None,
                "window_frames": window, "floor": "0.1 * local static background",
                "formula": "(raw - baseline) / max(baseline, floor)"},
        "units": {"footprints": "peak 1", "traces": "input units at the footprint's peak pixel",
                  "spikes": "inputs s of the AR calcium model fit to raw_traces - baseline (with AR(1) the jumps "
                            "of the fit), units of raw_traces"},
        "spikes": ({"method": "OASIS, AR(2) (1 - g B)(1 - r B) c = s where most traces show a rise (the rise r "
                              "shared: metrics rise_g, tau_rise_s), else AR(1) (r = 0); spikes 0 or >= s_min; decay, "
                              "noise and offset estimated per trace",
                    "s_min": "1.0 * noise SD * sqrt(1 + r^2) * sqrt(1 - g^2)"} if spikes is not None else None),
        "metrics": sorted(met),
        "images": sorted(images),
        "timings": model.timings,
    }
    return DemixResult(
        footprints=fp.to_sparse(),
        traces=traces.astype(np.float32),
        raw_traces=raw.astype(np.float32),
        baseline=baseline.astype(np.float32),
        dff=dff.astype(np.float32),
        centers=_centers(fp),
        background_spatial=bg.spatial.astype(np.float32),
        background_temporal=bg.temporal.astype(np.float32),
        background_static=static.astype(np.float32),
        metrics=met,
        images=images,
        metadata=meta,
        ring_weights=model.ring.weights if model.ring is not None else None,
        spikes=spikes,
    )
