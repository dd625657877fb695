"""Rank-test thresholds from a null simulated with the same pipeline.

White N(0, 1) patches of the exact shape and length that the solver sees (the
pipeline standardises every pixel by its noise std, so pure noise *is* N(0, 1)
there) go through the same solver; the roughness of their leading candidates
gives the null distribution.  The two thresholds are chosen together so that a
noise component passes the ``spatial OR temporal`` test with probability
``false_pass`` (5 % by default).  Results are cached on disk, keyed by
everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import StoreFormatError
from ..formats.null_cache import NULL_CACHE, NullCacheEntry, cache_key, read_null_cache, write_null_cache
from ..parallel import map_tasks
from .svd import Thresholds, randomized_svd

log = logging.getLogger("pmdcompress")

NULL_VERSION = NULL_CACHE.version


def cache_dir() -> Path | None:
    """``$PMD_CACHE_DIR``, else ``~/.cache/pmdcompress``; ``PMD_CACHE_DIR=""`` disables."""
    env = os.environ.get("PMD_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    return Path.home() / ".cache" / "pmdcompress"


def joint_thresholds(spatial: np.ndarray, temporal: np.ndarray, false_pass: float) -> Thresholds:
    """Per-statistic quantiles q such that P(spatial <= t_s or temporal <= t_t) = false_pass."""
    spatial = np.asarray(spatial, float)
    temporal = np.asarray(temporal, float)
    finite_t = np.isfinite(temporal).any()

    def rate(q):
        ts = np.quantile(spatial, q)
        tt = np.quantile(temporal, q) if finite_t else -np.inf
        return np.mean((spatial <= ts) | (temporal <= tt)), ts, tt

    lo, hi = 0.0, false_pass
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        r, _, _ = rate(mid)
        if r > false_pass:
            hi = mid
        else:
            lo = mid
    _, ts, tt = rate(lo)
    return Thresholds(float(ts), float(tt))


def _kernel(rho: float) -> np.ndarray:
    """A symmetric 1-D kernel whose output has lag-1 correlation ``rho`` on white input.

    ``[a, 1, a]`` with ``2a / (1 + 2a^2) = rho`` up to |rho| = 0.6; beyond that (heavily
    smoothed or resampled data reach 0.95) a sampled Gaussian whose width is
    solved for ``rho``.
    """
    rho = float(np.clip(rho, -0.5, 0.99))
    if abs(rho) <= 0.6:
        a = 0.0 if abs(rho) < 1e-6 else (1.0 - np.sqrt(1.0 - 2.0 * rho * rho)) / (2.0 * rho)
        return np.array([a, 1.0, a])

    def lag1(sigma):
        x = np.arange(-int(4 * sigma + 1), int(4 * sigma + 1) + 1)
        k = np.exp(-0.5 * (x / sigma) ** 2)
        return float(np.dot(k[:-1], k[1:]) / np.dot(k, k)), k

    lo, hi = 0.3, 30.0
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        if lag1(mid)[0] < rho:
            lo = mid
        else:
            hi = mid
    return lag1(hi)[1]


def _profile_kernel(lags) -> np.ndarray:
    """A symmetric 1-D kernel whose output has correlations ``lags`` (at distances 1, 2, ...) on white input.

    Spectral factorisation: the power spectrum of the correlation sequence
    (clipped at a small floor where estimation noise makes it negative), its
    square root as a zero-phase filter, cut to ``2 len(lags) + 2`` taps each side.
    """
    lags = np.asarray(lags, np.float64)
    size = 256
    k = np.arange(1, len(lags) + 1)
    f = np.arange(size) / size
    spectrum = 1.0 + 2.0 * np.cos(2 * np.pi * np.outer(f, k)) @ lags
    spectrum = np.maximum(spectrum, 1e-4 * spectrum.max())
    taps = np.fft.ifft(np.sqrt(spectrum)).real
    half = 2 * len(lags) + 2
    return np.concatenate([taps[-half:], taps[: half + 1]])


def _axis_kernel(correlation) -> np.ndarray:
    """The kernel for one axis: a lag-1 correlation (float) or the correlations at lags 1, 2, ... (a sequence)."""
    if np.ndim(correlation) == 0:
        return _kernel(float(correlation))
    if len(correlation) == 1:
        return _kernel(float(correlation[0]))
    return _profile_kernel(correlation)


def correlated_noise(rng, n_frames: int, patch_shape, correlation=(0.0, 0.0)) -> np.ndarray:
    """N(0, 1)-like noise (n_frames, h*w) with the given correlations along y and x.

    ``correlation = (rho_y, rho_x)``: each the correlation between neighbours
    (a float), or the correlations at distances 1, 2, ... pixels (a tuple, see
    :func:`pmdcompress.preprocess.noise_lag_correlation`).
    """
    h, w = (int(v) for v in patch_shape)
    if all(np.all(np.asarray(c) == 0.0) for c in correlation):
        return rng.standard_normal((int(n_frames), h * w), dtype=np.float32)
    ky, kx = (_axis_kernel(c).astype(np.float32) for c in correlation)
    ky, kx = ky / np.linalg.norm(ky), kx / np.linalg.norm(kx)
    ry, rx = len(ky) // 2, len(kx) // 2
    field = rng.standard_normal((int(n_frames), h + 2 * ry, w + 2 * rx), dtype=np.float32)
    # Separable 'valid' filtering: every output pixel sees a full kernel, as inside a large field.
    out = sum(ky[i] * field[:, i : i + h, :] for i in range(len(ky)))
    out = sum(kx[j] * out[:, :, j : j + w] for j in range(len(kx)))
    return np.ascontiguousarray(out.reshape(int(n_frames), h * w), dtype=np.float32)


def round_correlation(correlation) -> tuple[float, float]:
    """Neighbour correlations rounded to 0.02 (so near-equal movies share a cached null); |rho| < 0.03 -> 0."""
    return tuple(0.0 if abs(r) < 0.03 else round(round(float(r) / 0.02) * 0.02, 2) for r in correlation)


#: A correlation beyond the first lag below this enters no null (two-photon movies: |rho| <= 0.035 at lag 2).
FAR_LAG_MIN = 0.05


def null_correlation(profile) -> tuple:
    """The null's noise correlation from :func:`pmdcompress.preprocess.noise_lag_correlation`'s profile.

    The correlations beyond the first lag are kept only from
    :data:`FAR_LAG_MIN` (and up to the last that is); where no axis keeps any,
    the plain pair of neighbour correlations rounded by :func:`round_correlation`
    (the same null, and cache entry, as before lags were measured), else every
    kept lag rounded to 0.001.
    """
    rounded = []
    for lags in profile:
        lags = [float(r) for r in np.atleast_1d(lags)]
        far = [0.0 if abs(r) < FAR_LAG_MIN else r for r in lags[1:]]
        while far and far[-1] == 0.0:
            far.pop()
        rounded.append(lags[:1] + far)
    if any(len(r) > 1 for r in rounded):
        # The null's spectrum is built from these: rounding to 0.02 would add a floor of a few % of its power
        # at high spatial frequencies, where smooth noise has almost none (and the roughness test looks).
        return tuple(tuple(round(r, 3) for r in lags) for lags in rounded)
    rounded = [[round_correlation(r[:1])[0]] for r in rounded]
    if all(len(r) == 1 for r in rounded):
        return tuple(r[0] for r in rounded)
    return tuple(rounded)


def _null_task(args):
    """The null statistics of simulation ``i``: one noise patch through the solver (a picklable cluster task)."""
    solver, seed, i, n_frames, patch_shape, noise_correlation, n_components = args
    rng = np.random.default_rng([seed, 7919, i])
    noise = correlated_noise(rng, n_frames, patch_shape, noise_correlation)
    return solver.null_statistics(noise, patch_shape, rng, n_components)


def null_thresholds(solver, patch_shape, n_frames: int, *, n_sims: int = 48, n_components: int = 4,
                    false_pass: float = 0.05, seed: int = 0, use_cache: bool = True,
                    workers: int | None = None, noise_correlation=(0.0, 0.0), progress=None,
                    executor=None) -> Thresholds:
    """Thresholds for ``solver`` on patches of ``patch_shape`` with ``n_frames`` fit frames.

    Parameters
    ----------
    solver : PatchSolver
    patch_shape : (int, int)
    n_frames : int
        Frames of the fit matrix (after temporal binning).
    n_sims : int
        Independent noise patches; ``n_sims * n_components`` null samples.
    n_components : int
        Leading candidates of each noise patch that enter the null.
    false_pass : float
        Probability that a pure-noise component is kept.
    noise_correlation : (float, float) or two sequences
        Correlation of the noise between vertical and horizontal neighbours
        (see :func:`pmdcompress.preprocess.noise_neighbour_correlation`), or
        at distances 1, 2, ... along each axis
        (:func:`pmdcompress.preprocess.noise_lag_correlation`, rounded by
        :func:`null_correlation`); the null noise is given the same correlation.
    progress : callable, optional
        Progress factory (see :mod:`pmdcompress.progress`); a cached null shows none.
    executor : pmdcompress.parallel.Executor, optional
        Where the simulations run (a cluster's workers, so that the driver only
        gathers their statistics); default: ``workers`` threads here.  Each
        simulation is seeded by its index, so the thresholds do not depend on
        where it ran.
    """
    noise_correlation = null_correlation(noise_correlation)
    key = cache_key(
        solver=solver.params(), patch_shape=list(map(int, patch_shape)),
        n_frames=int(n_frames), n_sims=n_sims, n_components=n_components,
        false_pass=false_pass, seed=seed, noise_correlation=[list(c) if isinstance(c, tuple) else c
                                                             for c in noise_correlation],
    )
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    folder = cache_dir() if use_cache else None
    path = folder / f"null-{digest}.json" if folder else None
    if path is not None and path.exists():
        try:
            cached = read_null_cache(path)
            return Thresholds(cached.spatial, cached.temporal)
        except StoreFormatError:
            log.debug("ignoring unreadable null cache %s", path)

    tasks = [(solver, seed, i, int(n_frames), tuple(map(int, patch_shape)), noise_correlation, n_components)
             for i in range(n_sims)]
    bar = (progress or (lambda label, total: None))("null", n_sims)
    on_done = bar.update if bar is not None else None
    if executor is not None:
        stats = executor.map(_null_task, tasks, on_done=on_done)
    else:
        stats = map_tasks(_null_task, tasks, workers=workers, on_done=on_done)
    if bar is not None:
        bar.close()
    thresholds = joint_thresholds(np.concatenate([s[0] for s in stats]),
                                  np.concatenate([s[1] for s in stats]), false_pass)

    if path is not None:
        try:
            write_null_cache(path, NullCacheEntry(key, thresholds.spatial, thresholds.temporal))
        except OSError as exc:  # a read-only home must not stop a compression
            log.debug("cannot write null cache %s: %s", path, exc)
    return thresholds


#: A patch component whose singular value exceeds the noise's largest by this factor is kept exactly (see
#: :func:`strong_components`).
STRONG_FACTOR = 10.0
#: Most such components per patch.
STRONG_MAX = 4
#: Rows per block of :func:`top_singular_value_bound` (32: 0.8 ms on a 600x1024 patch, a third of the SVD it
#: spares; two-photon patches bound at 0.6-0.9 of the strong threshold).
STRONG_BOUND_BLOCK = 32
#: The SVD is skipped only where that bound is below this share of the threshold: the bound's float32 Gram
#: matrices are off by at most about ``P`` float32 roundings (1e-4 for 1024 pixels), far inside it.
STRONG_BOUND_MARGIN = 0.95


def top_singular_value_bound(data: np.ndarray, block: int = STRONG_BOUND_BLOCK) -> float:
    """An upper bound on the largest singular value of ``data`` (L, P), for a few matrix products of its rows.

    With ``A_b`` the blocks of ``block`` rows, ``A^T A = sum_b A_b^T A_b``; the
    largest eigenvalue of a sum is at most the sum of the largest, and that of
    ``A_b A_b^T`` (``block x block``) at most its Frobenius norm:
    ``sigma_1(A)^2 <= sum_b ||A_b A_b^T||_F``.  For unit noise about
    ``sqrt(L P) (1/block + 1/P)^(1/4)`` (0.59 of ``10 (sqrt L + sqrt P)`` at
    600x1024), where the Frobenius norm alone would give ``sqrt(L P)`` (1.4 of it).
    """
    data = np.asarray(data, np.float32)
    n, p = data.shape
    full = n - n % block
    total = 0.0
    if full:
        blocks = data[:full].reshape(full // block, block, p)
        gram = np.matmul(blocks, blocks.transpose(0, 2, 1))
        total += float(np.sqrt(np.einsum("bij,bij->b", gram, gram, dtype=np.float64)).sum())
    if full < n:
        gram = data[full:] @ data[full:].T
        total += float(np.sqrt(np.sum(np.square(gram, dtype=np.float64))))
    return float(np.sqrt(total))


def strong_components(data: np.ndarray, correlation=(0.0, 0.0), rng=None) -> np.ndarray:
    """The leading spatial components of a standardised patch that stand far above its noise, (pixels, k).

    A one-photon movie's out-of-focus background (and its flicker) can hold
    most of a patch's variance, 10-100x the noise's largest singular value.  A
    penalized (smoothed) fit of such a component leaves a few % of it behind:
    rough leftovers, larger than the noise, that fail the rank test and stop the
    patch before its cells (a real microendoscope clip: 3-6 components per
    patch instead of 10-16).  Components above :data:`STRONG_FACTOR` times the
    noise's edge (``sqrt(L) + sqrt(P)`` for unit noise, times the largest
    gain correlated noise has along a smooth direction,
    ``sqrt((1 + 2 rho_y) (1 + 2 rho_x))``) need no penalty: they are taken as
    they are (singular vectors, at most :data:`STRONG_MAX`).

    Parameters
    ----------
    data : ndarray, shape (L, P)
        Standardised patch (noise variance 1).
    correlation : (rho_y, rho_x)
        The noise's neighbour correlation.
    rng : numpy Generator, optional
        For the randomized SVD; not drawn from where :func:`top_singular_value_bound` shows that no
        component can pass (the SVD is skipped).

    Returns
    -------
    ndarray of float32, shape (P, k), orthonormal columns (k may be 0)
    """
    data = np.asarray(data, np.float32)
    n, p = data.shape
    if min(n, p) < 2:
        return np.zeros((p, 0), np.float32)
    gain = float(np.sqrt(max((1 + 2 * max(correlation[0], 0.0)) * (1 + 2 * max(correlation[1], 0.0)), 1.0)))
    edge = (np.sqrt(n) + np.sqrt(p)) * gain
    if top_singular_value_bound(data) < STRONG_BOUND_MARGIN * STRONG_FACTOR * edge:
        # No singular value, so none of the SVD's estimates (never above them), can pass: what the SVD gives then
        # (no column), for a third of its cost (a two-photon patch's usual case).  Its rng is the caller's own.
        return np.zeros((p, 0), np.float32)
    rng = np.random.default_rng(0) if rng is None else rng
    k = min(STRONG_MAX, n - 1, p - 1)
    _, values, spatial = randomized_svd(data, k, oversample=8, power_iterations=2, rng=rng)
    keep = 0
    while keep < len(values) and values[keep] > STRONG_FACTOR * edge:
        keep += 1
    return np.ascontiguousarray(spatial[:, :keep], np.float32)
