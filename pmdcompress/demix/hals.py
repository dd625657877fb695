"""Alternating updates of footprints, traces and background, all in factor space.

Model of the centred denoised movie ``Yc = U @ V`` (pixels x T)::

    Yc ~= A @ C + b @ f

- ``A`` (pixels x n), non-negative; footprint ``j`` lives in a box of fixed shape
  at ``origins[j]`` and only on its ``support[j]`` inside the box;
- ``C`` (n x T), the traces, centred (a free per-pixel baseline makes
  non-negativity of ``C`` inactive: the sign of the traces is settled after the fit);
- ``b`` (nb x pixels) spatially smooth, ``f`` (nb x T): the fluctuating background
  (neuropil) for two-photon data.

Every product with the movie is taken through the factors: ``A.T @ Yc`` is
``(A.T @ U) @ V`` and ``Yc @ C.T`` is ``U @ (V @ C.T)``; the box kernels below do the
sparse halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .._numba import jit
from .factors import gaussian_filter


@dataclass
class Footprints:
    """Footprints stored as boxes of one shape.

    Attributes
    ----------
    origins : ndarray, shape (n, 2), int64
        Top-left ``(y, x)`` of each box, inside the frame.
    values : ndarray, shape (n, bh, bw), float32
        Footprint values in the box (0 outside the support).
    support : ndarray, shape (n, bh, bw), bool
        Where each footprint may be non-zero.
    dims : tuple of int
        Frame shape ``(Y, X)``.
    zone : ndarray, shape (n, bh, bw), bool, optional
        Where the support may grow (a disk around each seed); ``None``: the whole box.
    """

    origins: np.ndarray
    values: np.ndarray
    support: np.ndarray
    dims: tuple[int, int]
    zone: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.origins)

    @property
    def box(self) -> tuple[int, int]:
        return self.values.shape[1:]

    def subset(self, keep) -> Footprints:
        keep = np.asarray(keep)
        zone = self.zone[keep].copy() if self.zone is not None else None
        return Footprints(self.origins[keep].copy(), self.values[keep].copy(), self.support[keep].copy(), self.dims,
                          zone)

    def images(self) -> np.ndarray:
        """Dense footprints, shape (n, Y, X) (for small fields of view and tests)."""
        out = np.zeros((self.n, *self.dims), np.float32)
        bh, bw = self.box
        for j, (y, x) in enumerate(self.origins):
            out[j, y : y + bh, x : x + bw] = self.values[j]
        return out

    def to_sparse(self):
        """``A`` as a scipy CSC matrix (pixels x n), pixel index ``y * X + x``."""
        import scipy.sparse as sp

        height, width = self.dims
        bh, bw = self.box
        yy, xx = np.mgrid[:bh, :bw]
        rows, cols, vals = [], [], []
        for j, (y, x) in enumerate(self.origins):
            nz = self.values[j] != 0
            rows.append(((yy[nz] + y) * width + xx[nz] + x).astype(np.int64))
            cols.append(np.full(int(nz.sum()), j, np.int64))
            vals.append(self.values[j][nz])
        if not rows:
            return sp.csc_matrix((height * width, 0), dtype=np.float32)
        return sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(height * width, self.n),
            dtype=np.float32,
        )


def box_origins(centers, box, dims) -> np.ndarray:
    """Origins of boxes of shape ``box`` centred on ``centers`` (n, 2), moved inside the frame."""
    centers = np.asarray(centers, np.int64).reshape(-1, 2)
    bh, bw = box
    y = np.clip(centers[:, 0] - bh // 2, 0, dims[0] - bh)
    x = np.clip(centers[:, 1] - bw // 2, 0, dims[1] - bw)
    return np.stack([y, x], axis=1).astype(np.int64)


# --------------------------------------------------------------------------- kernels


@jit
def _boxes_times_u_kernel(indptr, indices, data, width, origins, values, out):
    """``out[j, :] = sum over box pixels p of values[j, p] * U[p, :]`` (A.T @ U); out is zeroed here."""
    n, bh, bw = values.shape
    out[:, :] = 0.0
    for j in range(n):
        y0 = origins[j, 0]
        x0 = origins[j, 1]
        for a in range(bh):
            for b in range(bw):
                v = values[j, a, b]
                if v == 0.0:
                    continue
                pix = (y0 + a) * width + x0 + b
                for q in range(indptr[pix], indptr[pix + 1]):
                    out[j, indices[q]] += v * data[q]


@jit
def _u_times_into_boxes_kernel(indptr, indices, data, width, origins, m, support, out):
    """``out[j, p] = U[p, :] @ m[:, j]`` for box pixels in ``support[j]`` (U @ M), else 0."""
    n, bh, bw = out.shape
    for j in range(n):
        y0 = origins[j, 0]
        x0 = origins[j, 1]
        for a in range(bh):
            for b in range(bw):
                if not support[j, a, b]:
                    out[j, a, b] = 0.0
                    continue
                pix = (y0 + a) * width + x0 + b
                s = 0.0
                for q in range(indptr[pix], indptr[pix + 1]):
                    s += data[q] * m[indices[q], j]
                out[j, a, b] = s


@jit
def _box_gram_kernel(origins, values, out):
    """``out = A.T @ A`` for footprints in boxes of one shape (pairs whose boxes meet)."""
    n, bh, bw = values.shape
    for j in range(n):
        for k in range(j, n):
            dy = origins[k, 0] - origins[j, 0]
            dx = origins[k, 1] - origins[j, 1]
            if abs(dy) >= bh or abs(dx) >= bw:
                out[j, k] = 0.0
                out[k, j] = 0.0
                continue
            a0 = max(0, dy)
            a1 = min(bh, bh + dy)
            b0 = max(0, dx)
            b1 = min(bw, bw + dx)
            s = 0.0
            for a in range(a0, a1):
                for b in range(b0, b1):
                    s += values[j, a, b] * values[k, a - dy, b - dx]
            out[j, k] = s
            out[k, j] = s


@jit
def _spatial_hals_kernel(origins, values, support, p, cc, n_sweeps):
    """Block-coordinate non-negative least squares for the footprints, in place.

    For each footprint ``j`` in turn, on its support::

        a_j <- max(0, a_j + (p_j - sum_k cc[k, j] a_k) / cc[j, j])

    where ``p_j`` (box) is the data term ``(Yc - background) @ c_j`` and the sum runs
    over footprints whose boxes meet box ``j`` (``a_k`` shifted into box ``j``).
    """
    n, bh, bw = values.shape
    acc = np.empty((bh, bw), np.float64)
    for _ in range(n_sweeps):
        for j in range(n):
            if cc[j, j] <= 0.0:
                continue
            acc[:, :] = 0.0
            for k in range(n):
                w = cc[k, j]
                if w == 0.0:
                    continue
                dy = origins[k, 0] - origins[j, 0]
                dx = origins[k, 1] - origins[j, 1]
                if abs(dy) >= bh or abs(dx) >= bw:
                    continue
                a0 = max(0, dy)
                a1 = min(bh, bh + dy)
                b0 = max(0, dx)
                b1 = min(bw, bw + dx)
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        acc[a, b] += w * values[k, a - dy, b - dx]
            inv = 1.0 / cc[j, j]
            for a in range(bh):
                for b in range(bw):
                    if support[j, a, b]:
                        v = values[j, a, b] + (p[j, a, b] - acc[a, b]) * inv
                        values[j, a, b] = v if v > 0.0 else 0.0
                    else:
                        values[j, a, b] = 0.0


@jit
def _box_columns_kernel(indptr, indices, width, origins, mask, out):
    """``out[c, j] = True`` for every column ``c`` of ``U`` that a pixel of box ``j`` inside ``mask[j]`` uses."""
    n, bh, bw = mask.shape
    for j in range(n):
        y0 = origins[j, 0]
        x0 = origins[j, 1]
        for a in range(bh):
            for b in range(bw):
                if not mask[j, a, b]:
                    continue
                pix = (y0 + a) * width + x0 + b
                for q in range(indptr[pix], indptr[pix + 1]):
                    out[indices[q], j] = True


@jit
def _scatter_boxes_kernel(origins, values, weights, out):
    """``out (Y, X) += sum_j weights[j] * box_j`` (A @ w as an image)."""
    n, bh, bw = values.shape
    for j in range(n):
        w = weights[j]
        if w == 0.0:
            continue
        y0 = origins[j, 0]
        x0 = origins[j, 1]
        for a in range(bh):
            for b in range(bw):
                out[y0 + a, x0 + b] += w * values[j, a, b]


# --------------------------------------------------------------------------- wrappers


def boxes_times_u(u, fp: Footprints, *, out=None) -> np.ndarray:
    """``A.T @ U``, shape (n, K), float64 (into ``out``, C-contiguous (n, K) float64, when given)."""
    if out is None:
        out = np.zeros((fp.n, u.shape[1]), np.float64)
    _boxes_times_u_kernel(u.indptr, u.indices, u.data, fp.dims[1], fp.origins, fp.values, out)
    return out


def u_times_into_boxes(u, m, fp: Footprints) -> np.ndarray:
    """``(U @ m)`` restricted to each footprint's box and support, shape (n, bh, bw)."""
    out = np.zeros(fp.values.shape, np.float64)
    m = np.ascontiguousarray(m, dtype=np.float64)
    _u_times_into_boxes_kernel(u.indptr, u.indices, u.data, fp.dims[1], fp.origins, m, fp.support, out)
    return out


def box_gram(fp: Footprints) -> np.ndarray:
    """``A.T @ A``, shape (n, n), float64."""
    out = np.zeros((fp.n, fp.n), np.float64)
    _box_gram_kernel(fp.origins, fp.values, out)
    return out


# The products with ``V`` of the footprints' projections (``A.T U V``, :func:`solve_traces`) and of the traces
# (``V C.T``, :func:`update_footprints`) need, for each footprint, only the columns of ``U`` that its box uses:
# a store's components live in their patches, and a footprint's box meets a few of them (1.7 % of the
# (footprint, column) pairs at 1.5x zoom).  Those columns come in groups (a patch's) that the same footprints
# use, so each group is one small product (:func:`column_groups`).  Grouping costs about 2 ms per call to find
# the groups and some 15 us per group, against n K T multiply-adds for the dense product (BLAS, about 3e10 a
# second on one core): at 1.5x zoom (n 142, K 1814, T 600) the two cost the same and the dense products stay;
# at 512 x 512 (n 755, K 4927, T 3000) the dense ones took a third of the demix's CPU.  So groups are used from
# SPARSE_MIN_WORK multiply-adds and under SPARSE_FRACTION of the pairs used.  The grouped products sum the same
# terms in another order: traces agree with the dense products' to about 1e-9 relative, not to the last bit.
SPARSE_MIN_WORK = 1e9
SPARSE_FRACTION = 0.25


def column_groups(u, fp: Footprints, mask, n_frames: int) -> list[tuple[slice | np.ndarray, np.ndarray]] | None:
    """The columns of ``U`` that the boxes of ``fp`` use inside ``mask`` (n, bh, bw), grouped by the footprints
    that use them: ``[(columns, footprints), ...]``, columns a slice where they are consecutive, each group's
    footprints sorted; ``None`` where the dense products (with ``n_frames`` columns) are as cheap (see
    :data:`SPARSE_MIN_WORK`)."""
    k = u.shape[1]
    if fp.n == 0 or float(fp.n) * k * n_frames < SPARSE_MIN_WORK:
        return None
    used = np.zeros((k, fp.n), np.bool_)  # used[c, j]: footprint j uses column c
    _box_columns_kernel(u.indptr, u.indices, fp.dims[1], fp.origins, np.ascontiguousarray(mask, np.bool_), used)
    if np.count_nonzero(used) > SPARSE_FRACTION * used.size:
        return None
    # One key per column: the footprints that use it, as bits; columns with the same key form a group.
    keys = np.packbits(used, axis=1)
    keys = keys.view(np.dtype((np.void, keys.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(first.size + 1))
    groups = []
    for g in range(first.size):
        footprints = np.flatnonzero(used[first[g]])
        if footprints.size == 0:
            continue
        cols = order[bounds[g] : bounds[g + 1]]  # ascending: a stable sort of the columns by group
        if cols[-1] - cols[0] + 1 == cols.size:
            cols = slice(int(cols[0]), int(cols[-1]) + 1)
        groups.append((cols, footprints))
    return groups


class ColumnGroups:
    """:func:`column_groups` that remembers its last answer: asked again for the same ``u`` (the same object),
    boxes, mask and frame count, it returns the same groups without finding them again.  A round of the
    alternating updates asks twice for nearly every footprint set (the traces on ``support | values != 0``, the
    footprints on ``support``, the same mask where the values stay on their supports): on the 512 x 512 field
    11 of 26 searches (0.1 CPU-s) were repeats.  The same groups, so the same products to the bit."""

    def __init__(self):
        self._last = None

    def __call__(self, u, fp: Footprints, mask, n_frames: int):
        mask = np.asarray(mask, np.bool_)
        last = self._last
        if (last is not None and last[0] is u and last[1] == n_frames and np.array_equal(last[2], fp.origins)
                and last[3].shape == mask.shape and np.array_equal(last[3], mask)):
            return last[4]
        groups = column_groups(u, fp, mask, n_frames)
        self._last = (u, n_frames, fp.origins.copy(), mask.copy(), groups)
        return groups


def grouped_rows_times(proj, v, groups) -> np.ndarray:
    """``proj @ v`` for ``proj`` (n, K) zero outside ``groups`` (:func:`column_groups`), float64 (n, T)."""
    out = np.zeros((proj.shape[0], v.shape[1]), np.float64)
    for cols, rows in groups:
        block = proj[rows, cols] if isinstance(cols, slice) else proj[np.ix_(rows, cols)]
        out[rows] += block @ v[cols]
    return out


def grouped_times_rows(v, c, groups) -> np.ndarray:
    """``v @ c.T`` (K, n) on the (column, footprint) pairs of ``groups`` (:func:`column_groups`), 0 elsewhere;
    float64."""
    out = np.zeros((v.shape[0], c.shape[0]), np.float64)
    for cols, rows in groups:
        block = v[cols] @ c[rows].T
        if isinstance(cols, slice):
            out[cols, rows] = block
        else:
            out[np.ix_(cols, rows)] = block
    return out


def windows(images, fp: Footprints) -> np.ndarray:
    """Boxes cut from ``images`` (m, Y, X) at each footprint: shape (m, n, bh, bw)."""
    bh, bw = fp.box
    # Each box is a window of the images' sliding-window view: one (y, x) index per footprint, not one per pixel
    # (10x faster at 1.5x zoom).  Laid out as numpy lays out that per-pixel gather (the image axis innermost), so
    # that the products taken with it sum in the same order.
    view = np.lib.stride_tricks.sliding_window_view(images, (bh, bw), axis=(1, 2))
    boxes = np.ascontiguousarray(np.moveaxis(view[:, fp.origins[:, 0], fp.origins[:, 1]], 0, -1))
    return np.moveaxis(boxes, -1, 0)


def scatter(fp: Footprints, weights) -> np.ndarray:
    """``A @ weights`` as an image (Y, X) (``weights`` shape (n,)); float64."""
    out = np.zeros(fp.dims, np.float64)
    _scatter_boxes_kernel(fp.origins, fp.values, np.ascontiguousarray(weights, dtype=np.float64), out)
    return out


# --------------------------------------------------------------------------- model


@dataclass
class Background:
    """Fluctuating background ``b @ f``: smooth spatial maps and their traces."""

    spatial: np.ndarray  # (nb, Y, X) float64
    temporal: np.ndarray  # (nb, T) float64
    sigma: float  # smoothness of the spatial maps, px

    @property
    def rank(self) -> int:
        return len(self.spatial)


def _smooth(images, sigma):
    """``ndimage.gaussian_filter(images, (0, sigma, sigma), mode="reflect", truncate=3.0)``: the background's maps
    smoothed in space after every background update (:func:`factors.gaussian_filter`: the same floats)."""
    return gaussian_filter(images, sigma, mode="reflect", truncate=3.0)


def solve_traces(u, v, fp: Footprints, bg: Background | None, *, ridge=1e-6, groups_of=column_groups):
    """Least-squares traces of the footprints (and of the background maps) for ``U @ V``.

    Returns ``C`` (n, T) and the background traces (nb, T) (empty when ``bg`` is None).  ``groups_of``: how the
    column groups are found (:func:`column_groups`, or a :class:`ColumnGroups` shared with the footprints'
    update).
    """
    n = fp.n
    nb = bg.rank if bg is not None else 0
    # A.T U and B.T U written into one array: np.vstack of the two was a copy of (n + nb) x K per call (0.4 s
    # of CPU at 512 x 512); the product below sees the same array.
    proj = np.empty((n + nb, u.shape[1]), np.float64)
    boxes_times_u(u, fp, out=proj[:n])
    gram = box_gram(fp)
    if nb:
        bflat = bg.spatial.reshape(bg.rank, -1)
        proj[n:] = np.asarray(u.T @ bflat.T).T  # (nb, K)
        bta = np.einsum("mnij,nij->nm", windows(bg.spatial, fp), fp.values)  # (n, nb)
        btb = bflat @ bflat.T
        gram = np.block([[gram, bta], [bta.T, btb]])
    diag = np.diag(gram).copy()
    reg = gram + np.diag(ridge * np.maximum(diag, 1e-12) + 1e-12)
    groups = groups_of(u, fp, fp.support | (fp.values != 0), v.shape[1])
    if groups is None:
        rhs = proj @ v
    else:
        rhs = np.empty((n + nb, v.shape[1]), np.float64)
        rhs[:n] = grouped_rows_times(proj[:n], v, groups)
        rhs[n:] = proj[n:] @ v
    sol = solve_gram(reg, rhs)
    return sol[:n], sol[n:]


# The traces' normal equations (:func:`solve_traces`) have a Gram matrix that is sparse where many footprints
# share the field: a footprint's box meets a few neighbours' (512 x 512: 759 x 759 with 1 % non-zero).  From
# SPARSE_SOLVE_MIN unknowns and under SPARSE_SOLVE_DENSITY non-zero it is factored sparse (SuperLU, symmetric
# mode: the matrix is a Gram matrix plus a ridge, positive definite, so its diagonal needs no pivoting), and the
# T right-hand sides are solved on that factor: 50-70 ms a call against 130-180 ms dense (n 759 x T 3000 and
# n 1455 x T 1000, one core), the same solution to 1e-12 relative.  Smaller systems stay dense (bit-identical).
SPARSE_SOLVE_MIN = 500
SPARSE_SOLVE_DENSITY = 0.05


def solve_gram(reg: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``reg^-1 rhs`` for the symmetric positive (semi-)definite ``reg`` (n, n): sparse where it pays (see
    :data:`SPARSE_SOLVE_MIN`), else LAPACK; least squares where ``reg`` is singular."""
    n = reg.shape[0]
    if n >= SPARSE_SOLVE_MIN and np.count_nonzero(reg) <= SPARSE_SOLVE_DENSITY * n * n:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        try:
            factor = splu(sp.csc_matrix(reg), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                          options={"SymmetricMode": True})
            sol = factor.solve(np.asarray(rhs, np.float64))
            if np.all(np.isfinite(sol)):
                return sol
        except RuntimeError:  # exactly singular: as np.linalg.solve's failure below
            pass
    try:
        return np.linalg.solve(reg, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(reg, rhs, rcond=None)[0]


def update_footprints(u, v, fp: Footprints, c, bg: Background | None, *, n_sweeps=2, groups_of=column_groups):
    """Non-negative HALS sweeps of the footprints on their supports (in place); ``groups_of`` as in
    :func:`solve_traces`."""
    if fp.n == 0:
        return
    groups = groups_of(u, fp, fp.support, v.shape[1])
    vc = v @ c.T if groups is None else grouped_times_rows(v, c, groups)  # (K, n)
    p = u_times_into_boxes(u, vc, fp)
    cc = c @ c.T
    if bg is not None and bg.rank:
        fc = bg.temporal @ c.T  # (nb, n)
        p -= np.einsum("mnij,mn->nij", windows(bg.spatial, fp), fc)
    values = fp.values.astype(np.float64)
    _spatial_hals_kernel(fp.origins, values, fp.support, p, cc, n_sweeps)
    fp.values[...] = values


def update_background(u, v, fp: Footprints, c, bg: Background) -> None:
    """Least-squares smooth maps, then traces, of the background given ``A`` and ``C`` (in place)."""
    f = bg.temporal
    ff = f @ f.T
    if not np.all(np.isfinite(ff)) or np.linalg.matrix_rank(ff) < bg.rank:
        return
    # Residual @ f.T = U (V f.T) - A (C f.T), as images.
    yf = np.asarray(u @ (v @ f.T)).T.reshape(bg.rank, *fp.dims)
    cf = c @ f.T  # (n, nb)
    for m in range(bg.rank):
        yf[m] -= scatter(fp, cf[:, m])
    maps = np.linalg.solve(ff, yf.reshape(bg.rank, -1)).reshape(bg.rank, *fp.dims)
    bg.spatial = _smooth(maps, bg.sigma)


def init_background(u_low, v, rank, sigma, dims, *, rng=None) -> Background:
    """Top ``rank`` modes of the spatially low-passed movie ``u_low @ v`` (randomized range finder)."""
    u_low = u_low.astype(np.float64)  # once: scipy converts a float32 matrix in each product with float64
    return _top_modes(lambda z: np.asarray(u_low @ z), lambda q: np.asarray(u_low.T @ q), v, rank, sigma, dims,
                      rng)


def init_background_lowpass(u, v, rank, sigma, dims, *, rng=None) -> Background:
    """:func:`init_background` of ``U - highpass_spatial(U)`` (the movie low-passed by :func:`factors._smooth`),
    without forming that matrix: the low-pass is applied to the products instead.

    ``U - highpass_spatial(U)`` holds each patch's components smoothed over the patch grown by the filter's
    reach, 7 times as many entries as ``U`` at 1.5x zoom (12.6 M); the same products cost one product with ``U``
    and the smoothing of a few images.  The smoothing (box filters, reflected at the frame's edges by half a
    sample) is self-adjoint, so ``(smooth U).T @ q = U.T @ smooth(q)``.  Equal to :func:`init_background` up to
    float32 rounding (``U - (U - smooth U)`` is not exactly ``smooth U``).
    """
    from .factors import _smooth as lowpass

    u64 = u.astype(np.float64)

    def images(x):  # (pixels, m) -> (m, Y, X)
        return np.ascontiguousarray(x.T).reshape(x.shape[1], *dims)

    def apply(z):
        return lowpass(images(np.asarray(u64 @ z)), sigma).reshape(z.shape[1], -1).T

    def apply_t(q):
        return np.asarray(u64.T @ lowpass(images(q), sigma).reshape(q.shape[1], -1).T)

    return _top_modes(apply, apply_t, v, rank, sigma, dims, rng)


def _top_modes(apply, apply_t, v, rank, sigma, dims, rng) -> Background:
    """Randomized range finder (two power iterations) of ``L @ v``, ``apply(z) = L @ z``, ``apply_t(q) = L.T @ q``;
    the maps smoothed at ``sigma``."""
    t = v.shape[1]
    if rank <= 0:
        return Background(np.zeros((0, *dims)), np.zeros((0, t)), sigma)
    rng = np.random.default_rng(0) if rng is None else rng
    v64 = v.astype(np.float64)
    omega = rng.standard_normal((t, rank + 6))
    # Two power iterations, orthonormalised in time (T x r) rather than in space (pixels x r; their QRs were half
    # of this at 1.5x zoom): the same subspace, B (B.T B)^2 omega with B = L v, one QR over the pixels.
    z = omega
    for _ in range(2):
        z = np.linalg.qr(v64.T @ apply_t(apply(v64 @ z)))[0]  # (T, r)
    q = np.linalg.qr(apply(v64 @ z))[0]  # (N, r)
    small = apply_t(q).T @ v64  # (r, T) = Q.T @ L @ v
    _, _, vt = np.linalg.svd(small, full_matrices=False)
    f = vt[:rank] * np.sqrt(t)
    maps = apply(v64 @ f.T).T / t
    # fewer frames than ``rank`` (a short movie binned for demixing) leave fewer modes
    return Background(_smooth(maps.reshape(len(f), *dims), sigma), f, sigma)


def local_footprint_area(tile: np.ndarray, seed, *, threshold: float = 0.2, n_iter: int = 10) -> int:
    """Area of the non-negative rank-one footprint of a window of the movie around ``seed``.

    ``tile`` (T, h, w) is the centred movie in the window; the model is
    ``a c + 1 f``: a footprint ``a >= 0`` started on a 2-pixel disk at ``seed`` with its trace ``c``, and a
    flat component with its own trace ``f`` (the window's share of the neuropil).  Alternating least squares,
    ``n_iter`` rounds.  Returns the pixels above ``threshold`` of the footprint's peak in its part connected to
    the peak (0 when the footprint vanishes), the measure of :func:`pipeline.estimate_cell_radius`.
    """
    t, h, w = tile.shape
    y = tile.reshape(t, h * w).T.astype(np.float64)  # (pixels, T)
    yy, xx = np.mgrid[:h, :w]
    a = (((yy - seed[0]) ** 2 + (xx - seed[1]) ** 2) <= 4).ravel().astype(np.float64)
    flat = np.full(h * w, 1.0 / np.sqrt(h * w))
    for _ in range(n_iter):
        basis = np.stack([a, flat])
        traces = np.linalg.solve(basis @ basis.T + 1e-9 * np.eye(2), basis @ y)
        c, f = traces
        cc = float(c @ c)
        if not cc > 0:
            return 0
        a = np.maximum((y @ c - flat * float(f @ c)) / cc, 0.0)
        if not a.max() > 0:
            return 0
    image = a.reshape(h, w)
    labels, _ = ndimage.label(image > threshold * image.max())
    return int((labels == labels.flat[np.argmax(image)]).sum())
