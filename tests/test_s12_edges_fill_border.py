"""Motion-corrected movies whose shifted-in edges are filled with 0: demixing finds the border in the store and
leaves it out (``demix.pipeline.fill_border``).

Each jump of a border pixel between the tissue and 0 was the movie's largest, most correlated "activity": at its
defaults ``pmd demix`` seeded on the edges and found 0 of 20 cells of a 64 x 64 two-photon simulation with 0-6 px
borders, 0 of 15 of a one-photon one (benchmarks/bench_new_user.py, case 1p-zero-edges;
benchmarks/bench_demix_edges.py).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tifffile

import pmdcompress
import pmdcompress.demix as dm
from pmdcompress.demix.factors import Factors
from pmdcompress.demix.pipeline import border_mask, fill_border
from pmdcompress.simulate import simulate_movie


def _factors(movie: np.ndarray) -> Factors:
    """Exact factors of ``movie`` (T, Y, X): U the centred movie (pixels x T), V the identity."""
    t, h, w = movie.shape
    mean = movie.mean(axis=0)
    u = (movie - mean).reshape(t, h * w).T
    return Factors(U=sp.csr_matrix(u.astype(np.float32)), V=np.eye(t, dtype=np.float32),
                   mean=mean.astype(np.float32), dims=(h, w))


def _tissue(t=120, shape=(32, 40), level=100.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level + rng.normal(0, 5, (t, *shape))


def _shift_fill(movie, top, right):
    """Frame ``i``'s top ``top[i]`` rows and right ``right[i]`` columns set to 0."""
    out = movie.copy()
    for i, (a, b) in enumerate(zip(top, right, strict=True)):
        out[i, :a] = 0
        if b:
            out[i, :, -b:] = 0
    return out


def test_fill_border_is_the_widest_shifted_in_edge_and_ignores_dark_frames_and_dead_edges():
    rng = np.random.default_rng(1)
    movie = _tissue()
    top = rng.integers(0, 4, len(movie))  # 0-3 rows, changing from frame to frame
    right = rng.integers(0, 6, len(movie))  # 0-5 columns
    filled = _shift_fill(movie, top, right)
    filled[:, :, 0] = 0  # a dead column at the left: 0 in every frame, no jump
    filled[50] = 0  # a dark frame (shutter closed): every line at 0, no border
    assert fill_border(_factors(filled)) == (int(top.max()), 0, 0, int(right.max()))
    mask = border_mask((3, 0, 0, 5), (32, 40))
    assert mask[:3].all() and mask[:, 35:].all() and not mask[3:, :35].any()


def test_no_fill_border_without_fill():
    movie = _tissue()
    assert fill_border(_factors(movie)) is None
    dark = movie.copy()
    dark[10:14] = 0  # dark frames only
    assert fill_border(_factors(dark)) is None
    dead = movie.copy()
    dead[:, :2] = 0  # a dead edge, the same in every frame
    assert fill_border(_factors(dead)) is None
    # Samples around 0 (an int16 movie with its background subtracted, dF/F): a row near 0 is no fill, even where
    # the whole frame swings up and the edge lags behind.
    centred = _tissue(level=0.0)
    assert fill_border(_factors(centred)) is None
    rng = np.random.default_rng(2)
    dff = 0.05 * rng.normal(size=(120, 32, 40)) + rng.exponential(0.3, 120)[:, None, None]
    dff[::7, :3] = 0.0  # every seventh frame's top rows at 0
    assert fill_border(_factors(dff)) is None


def test_demix_finds_the_cells_inside_a_zero_filled_shifted_border(tmp_path, caplog):
    movie = tmp_path / "m.tif"
    simulate_movie(movie, n_frames=600, shape=(48, 48), n_neurons=12, seed=0)
    data = tifffile.imread(movie)
    rng = np.random.default_rng(1)
    shifts = np.clip(np.round(np.cumsum(rng.normal(0, 0.6, (600, 2)), axis=0)), -4, 4).astype(int)
    for i, (dy, dx) in enumerate(shifts):  # motion correction's shifts, the edges shifted in filled with 0
        data[i, : max(dy, 0)] = 0
        data[i, 48 + min(dy, 0) :] = 0
        data[i, :, : max(dx, 0)] = 0
        data[i, :, 48 + min(dx, 0) :] = 0
    tifffile.imwrite(tmp_path / "edges.tif", data)
    store = pmdcompress.compress(tmp_path / "edges.tif", tmp_path / "edges.pmd.zarr", workers=1)
    with caplog.at_level("WARNING", logger="pmdcompress"):  # an earlier CLI test may have quieted the logger
        result = dm.demix(store, tmp_path / "edges.demix.zarr", figures=False)
    border = result.metadata["fill_border"]
    zero = data == 0
    widest = [int(zero.all(axis=2).cumprod(axis=1).sum(axis=1).max()),
              int(zero[:, ::-1].all(axis=2).cumprod(axis=1).sum(axis=1).max()),
              int(zero.all(axis=1).cumprod(axis=1).sum(axis=1).max()),
              int(zero[:, :, ::-1].all(axis=1).cumprod(axis=1).sum(axis=1).max())]
    # Read from the denoised store: a line reached in a single frame may be missed (its one jump costs little).
    assert all(w - 1 <= b <= w for b, w in zip(border, widest, strict=True)), (border, widest)
    top, bottom, left, right = border
    said = [r.getMessage() for r in caplog.records if "fill value" in r.getMessage()]
    assert len(said) == 1 and "edges.pmd.zarr" in said[0]
    assert f"--crop {top}:{48 - bottom},{left}:{48 - right}" in said[0]
    inside = ~border_mask(border, (48, 48)).ravel()
    assert result.footprints.tocsr()[~inside].nnz == 0  # no footprint reaches into the border
    scores = dm.evaluate(tmp_path / "edges.demix.zarr", tmp_path / "m.truth.zarr")
    assert scores["tp"] >= 6 and scores["precision"] >= 0.8  # main: 1 of 12 found (8 of 12 with the border out)
