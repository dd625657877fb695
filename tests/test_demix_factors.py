"""The factor-space helpers of demixing (demix/factors.py): tiles of the movie, the sparse factors assembled in
place, and masks drawn once per result."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import reference_demix as ref
from pmdcompress.demix.factors import ColumnStack, _PatchRows, render_tile, tile_block


def _random_csr(rng, n_rows, n_cols, density, index_dtype):
    u = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng, dtype=np.float32)
    u.data[::7] = 0.0  # explicit zeros: their columns count as used, as scipy's indexing keeps them
    u.indices = u.indices.astype(index_dtype)
    u.indptr = u.indptr.astype(index_dtype)
    return u


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_tile_block_matches_numpy_twin_and_scipy(index_dtype):
    rng = np.random.default_rng(3)
    u = _random_csr(rng, 300, 80, 0.05, index_dtype)
    pix = np.array([5, 6, 7, 40, 41, 299, 0], np.int64)
    cols, dense = tile_block(u, pix)
    want_cols, want = ref.tile_block(u.indptr, u.indices, u.data, u.shape[1], pix)
    np.testing.assert_array_equal(cols, want_cols)
    np.testing.assert_array_equal(dense, want)
    assert dense.dtype == np.float32
    block = u[pix]
    np.testing.assert_array_equal(cols, np.unique(block.indices))
    np.testing.assert_array_equal(dense, block[:, cols].toarray())
    # rows without entries: no columns
    empty = sp.csr_matrix((10, 4), dtype=np.float32)
    cols, dense = tile_block(empty, np.arange(3))
    assert cols.size == 0 and dense.shape == (3, 0)


def test_column_stack_is_hstack_for_tiles():
    rng = np.random.default_rng(4)
    a = _random_csr(rng, 400, 60, 0.08, np.int32)
    b = _random_csr(rng, 400, 9, 0.2, np.int32)
    stacked = ColumnStack(a, -b)
    whole = sp.hstack([a, -b]).tocsr()
    assert stacked.shape == whole.shape
    pix = np.arange(37, 120)
    for got, want in zip(tile_block(stacked, pix), tile_block(whole, pix), strict=True):
        np.testing.assert_array_equal(got, want)
    v = rng.standard_normal((whole.shape[1], 30)).astype(np.float32)
    dims = (20, 20)
    for pixel_major in (False, True):
        np.testing.assert_array_equal(render_tile(stacked, v, dims, 2, 9, 3, 17, pixel_major=pixel_major),
                                      render_tile(whole, v, dims, 2, 9, 3, 17, pixel_major=pixel_major))
    tile = render_tile(whole, v, dims, 2, 9, 3, 17)
    want = (whole.toarray().astype(np.float64) @ v).T.reshape(30, *dims)[:, 2:9, 3:17]
    np.testing.assert_allclose(tile, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="different numbers of rows"):
        ColumnStack(a, b[:10])


def test_patch_rows_fill_canonical_csr_like_the_numpy_twin():
    rng = np.random.default_rng(5)
    width, n_pixels, k = 12, 12 * 10, 11
    pieces, counts = [], np.zeros(n_pixels, np.int64)
    for (y0, x0, h, w), k0, kp in (((0, 0, 6, 7), 0, 3), ((3, 4, 7, 8), 3, 4), ((5, 0, 5, 12), 7, 4)):
        pix = ((np.arange(y0, y0 + h)[:, None]) * width + np.arange(x0, x0 + w)[None, :]).ravel()
        values = rng.standard_normal((kp, pix.size)).astype(np.float32)
        values[0, ::5] = 0.0
        pieces.append((pix, values, k0))
        counts[pix] += kp
    rows = _PatchRows(counts, k)
    for pix, values, k0 in pieces:
        rows.append(pix, values, k0)
    u = rows.matrix()
    indptr, indices, data = ref.patch_rows(pieces, n_pixels, k)
    np.testing.assert_array_equal(u.indptr, indptr)
    np.testing.assert_array_equal(u.indices, indices)
    np.testing.assert_array_equal(u.data, data)
    # What scipy would build from the same entries (COO, summed and sorted): the same arrays.
    coo = sp.coo_matrix((np.concatenate([v.ravel() for _, v, _ in pieces]),
                         (np.concatenate([np.tile(p, v.shape[0]) for p, v, _ in pieces]),
                          np.concatenate([np.repeat(np.arange(k0, k0 + v.shape[0]), p.size) for p, v, k0 in pieces]))),
                        shape=(n_pixels, k)).tocsr()
    coo.sum_duplicates()
    np.testing.assert_array_equal(u.indptr, coo.indptr)
    np.testing.assert_array_equal(u.indices, coo.indices)
    np.testing.assert_array_equal(u.data, coo.data)
    short = _PatchRows(counts + 1, k)
    for pix, values, k0 in pieces:
        short.append(pix, values, k0)
    with pytest.raises(AssertionError, match="not filled as counted"):
        short.matrix()


def test_store_factors_assembled_in_place_equal_the_coo_route(tmp_path):
    import pmdcompress
    from pmdcompress.demix.factors import _smooth, global_spatial, highpass_spatial, load_factors
    from pmdcompress.simulate import simulate_movie

    movie = tmp_path / "m.tif"
    simulate_movie(movie, n_frames=200, shape=(70, 90), n_neurons=8, photons=2.0, seed=2)
    store = pmdcompress.compress(movie, tmp_path / "m.pmd.zarr")
    u = global_spatial(store)
    height, width = store.shape[1:]
    ph, pw = store.patch_shape
    dense = np.zeros(u.shape, np.float32)
    offsets = store.component_offsets
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = int(offsets[p]), int(offsets[p + 1])
        w = store.weights_y[p][:, None] * store.weights_x[p][None, :] * store.noise[y0 : y0 + ph, x0 : x0 + pw]
        block = (store.spatial[:, k0:k1] * w.ravel()[:, None]).astype(np.float32)
        pix = (np.arange(y0, y0 + ph)[:, None] * width + np.arange(x0, x0 + pw)[None, :]).ravel()
        dense[pix, k0:k1] = np.where(w.ravel()[:, None] > 0, block, 0)
    np.testing.assert_array_equal(u.toarray(), dense)
    assert u.has_canonical_format and np.all(np.diff(u.indices[u.indptr[5] : u.indptr[6]]) > 0)
    fac = load_factors(store)
    uh = highpass_spatial(store, fac, 5.0)
    assert uh.has_canonical_format
    frames = dense.T.reshape(-1, height, width)
    want = (frames - _smooth(frames, 5.0)).reshape(frames.shape[0], -1).T
    np.testing.assert_allclose(uh.toarray(), want, atol=1e-5 * np.abs(want).max())


def test_masks_are_drawn_once_and_redrawn_for_new_footprints():
    from test_demix_masks import _result

    res, _ = _result("ellipse")
    first = res.masks()
    again = res.masks()
    assert (first != again).nnz == 0
    again.data[:] = 0  # the caller's copy: the next call is untouched
    assert (res.masks() != first).nnz == 0
    assert (res.masks(shape="threshold") != first).nnz > 0  # another shape, another drawing
    res.footprints = sp.csc_matrix(res.footprints[:, ::-1])
    swapped = res.masks()
    assert (swapped[:, 0] != first[:, 1]).nnz == 0 and (swapped[:, 1] != first[:, 0]).nnz == 0


@pytest.mark.parametrize("shape,sigma", [((37, 52), 4.0), ((9, 6), 6.0), ((64, 40), 8.4)])
def test_box_lowpass_is_self_adjoint(shape, sigma):
    # What init_background_lowpass relies on: box filters reflected by half a sample at the edges (also where the
    # box is wider than the image) are symmetric operators, so (smooth U).T q = U.T smooth(q).
    from pmdcompress.demix.factors import _smooth

    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, *shape))
    y = rng.standard_normal((3, *shape))
    lhs = np.sum(_smooth(x, sigma) * y, axis=(1, 2))
    rhs = np.sum(x * _smooth(y, sigma), axis=(1, 2))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * np.abs(lhs).max())


def test_background_from_the_lowpass_products_equals_the_lowpassed_factors(tmp_path):
    import pmdcompress
    from pmdcompress.demix import hals
    from pmdcompress.demix.factors import highpass_spatial, load_factors
    from pmdcompress.simulate import simulate_movie

    movie = tmp_path / "m.tif"
    simulate_movie(movie, n_frames=300, shape=(64, 80), n_neurons=10, photons=2.0, seed=4)
    store = pmdcompress.compress(movie, tmp_path / "m.pmd.zarr")
    fac = load_factors(store)
    sigma = 8.4
    u_low = fac.U - highpass_spatial(store, fac, sigma)
    want = hals.init_background(u_low, fac.V, 3, sigma, fac.dims, rng=np.random.default_rng(1))
    got = hals.init_background_lowpass(fac.U, fac.V, 3, sigma, fac.dims, rng=np.random.default_rng(1))
    assert got.rank == want.rank == 3
    # the same modes up to float32 rounding of U - (U - smooth U)
    np.testing.assert_allclose(got.temporal, want.temporal, atol=1e-6 * np.abs(want.temporal).max())
    np.testing.assert_allclose(got.spatial, want.spatial, atol=1e-6 * np.abs(want.spatial).max())
    # and the top mode is the movie's low-passed top mode (exact SVD of the dense low-passed movie)
    dense = np.asarray(u_low.toarray(), np.float64) @ fac.V.astype(np.float64)
    _, _, vt = np.linalg.svd(dense, full_matrices=False)
    top = vt[0] * np.sqrt(fac.n_frames)
    assert abs(abs(np.dot(top, got.temporal[0])) / fac.n_frames - 1.0) < 1e-3


def test_windows_are_the_per_pixel_gather_with_its_layout():
    from pmdcompress.demix import hals

    rng = np.random.default_rng(8)
    for dims, box, m in (((40, 50), (9, 9), 3), ((30, 20), (7, 5), 2), ((9, 9), (9, 9), 4)):
        origins = np.stack([rng.integers(0, dims[0] - box[0] + 1, 6), rng.integers(0, dims[1] - box[1] + 1, 6)], 1)
        fp = hals.Footprints(origins, np.zeros((6, *box), np.float32), np.ones((6, *box), bool), dims)
        images = rng.standard_normal((m, *dims))
        yy = origins[:, 0][:, None, None] + np.arange(box[0])[None, :, None]
        xx = origins[:, 1][:, None, None] + np.arange(box[1])[None, None, :]
        want = images[:, yy, xx]
        got = hals.windows(images, fp)
        np.testing.assert_array_equal(got, want)
        assert got.strides == want.strides  # einsum over it sums in the same order
