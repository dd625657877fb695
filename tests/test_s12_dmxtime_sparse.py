"""The alternating updates' products with V taken over the columns each footprint's box uses (demix/hals.py:
column_groups and the grouped products), against the dense products they replace and a plain-numpy twin of
their kernel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pmdcompress.demix import hals
from pmdcompress.demix.hals import Background, Footprints


def _box_columns_twin(u: sp.csr_matrix, width: int, origins, mask) -> np.ndarray:
    """Plain-numpy twin of ``hals._box_columns_kernel``: the columns of ``U`` used by each box's masked pixels."""
    n, bh, bw = mask.shape
    out = np.zeros((n, u.shape[1]), bool)
    for j in range(n):
        a, b = np.nonzero(mask[j])
        pix = (origins[j, 0] + a) * width + origins[j, 1] + b
        for p in pix:
            out[j, u.indices[u.indptr[p] : u.indptr[p + 1]]] = True
    return out


def _patch_factors(rng, dims=(60, 70), patch=16, stride=12, per_patch=6, index_dtype=np.int32):
    """A store-like ``U`` (pixels x K, CSR, float32): each overlapping patch's components on its pixels only,
    columns patch after patch; a few explicit zeros (their columns count as used)."""
    height, width = dims
    rows, cols, vals = [], [], []
    k = 0
    for y0 in range(0, height - patch + 1, stride):
        for x0 in range(0, width - patch + 1, stride):
            pix = ((np.arange(y0, y0 + patch)[:, None]) * width + np.arange(x0, x0 + patch)[None, :]).ravel()
            for c in range(per_patch):
                rows.append(pix)
                cols.append(np.full(pix.size, k + c))
                v = rng.standard_normal(pix.size).astype(np.float32)
                v[::11] = 0.0
                vals.append(v)
            k += per_patch
    u = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(height * width, k), dtype=np.float32)
    u.indices = u.indices.astype(index_dtype)
    u.indptr = u.indptr.astype(index_dtype)
    return u


def _footprints(rng, n, dims, box=(9, 9)) -> Footprints:
    origins = np.stack([rng.integers(0, dims[0] - box[0] + 1, n), rng.integers(0, dims[1] - box[1] + 1, n)], 1)
    yy, xx = np.mgrid[: box[0], : box[1]]
    support = np.broadcast_to(((yy - box[0] // 2) ** 2 + (xx - box[1] // 2) ** 2) <= 12, (n, *box)).copy()
    support[0] = False  # an empty support: its footprint uses no column
    values = (rng.random((n, *box)) * support).astype(np.float32)
    values[1, 0, 0] = 0.5  # a value outside the support (a fixed footprint's): its columns count for the traces
    return Footprints(origins.astype(np.int64), values, support, dims)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_box_columns_kernel_matches_numpy_twin(index_dtype):
    rng = np.random.default_rng(0)
    dims = (60, 70)
    u = _patch_factors(rng, dims, index_dtype=index_dtype)
    fp = _footprints(rng, 25, dims)
    got = np.zeros((u.shape[1], fp.n), bool)
    hals._box_columns_kernel(u.indptr, u.indices, dims[1], fp.origins, fp.support, got)
    got = got.T
    want = _box_columns_twin(u, dims[1], fp.origins, fp.support)
    np.testing.assert_array_equal(got, want)
    assert not got[0].any() and got[2].any()
    # against scipy: the columns where (support indicator).T @ |U| is positive
    b = sp.csr_matrix(np.stack([np.pad(fp.support[j], ((y, dims[0] - y - 9), (x, dims[1] - x - 9))).ravel()
                                for j, (y, x) in enumerate(fp.origins)]).astype(np.float64))
    structure = u.copy()
    structure.data = np.ones_like(structure.data)
    np.testing.assert_array_equal(got, (b @ structure).toarray() > 0)


def test_column_groups_partition_the_used_pairs(monkeypatch):
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    rng = np.random.default_rng(1)
    dims = (60, 70)
    u = _patch_factors(rng, dims)
    fp = _footprints(rng, 30, dims)
    groups = hals.column_groups(u, fp, fp.support, 50)
    used = _box_columns_twin(u, dims[1], fp.origins, fp.support)
    covered = np.zeros_like(used, np.int64)
    seen_cols = np.zeros(u.shape[1], np.int64)
    for cols, rows in groups:
        col_idx = np.arange(u.shape[1])[cols]
        assert rows.size and np.all(np.diff(rows) > 0)
        for c in col_idx:  # every column of a group is used by exactly the group's footprints
            np.testing.assert_array_equal(np.flatnonzero(used[:, c]), rows)
        covered[np.ix_(rows, col_idx)] += 1
        seen_cols[col_idx] += 1
    np.testing.assert_array_equal(covered, used.astype(np.int64))
    assert seen_cols.max() == 1
    # consecutive columns come as slices: a patch's columns share their footprints here
    assert any(isinstance(cols, slice) and cols.stop - cols.start > 1 for cols, _ in groups)


def test_column_groups_none_where_dense_is_cheaper(monkeypatch):
    rng = np.random.default_rng(2)
    dims = (60, 70)
    u = _patch_factors(rng, dims)
    fp = _footprints(rng, 10, dims)
    assert fp.n * u.shape[1] * 50 < hals.SPARSE_MIN_WORK
    assert hals.column_groups(u, fp, fp.support, 50) is None  # a small product: dense
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    assert hals.column_groups(u, fp, fp.support, 50) is not None
    whole = np.ones_like(fp.support)
    big = Footprints(np.zeros((3, 2), np.int64), np.ones((3, *dims), np.float32), np.ones((3, *dims), bool), dims)
    assert hals.column_groups(u, big, big.support, 50) is None  # every box uses every column: dense
    empty = Footprints(np.zeros((0, 2), np.int64), np.zeros((0, 9, 9), np.float32), whole[:0], dims)
    assert hals.column_groups(u, empty, empty.support, 50) is None


def test_grouped_products_equal_dense_on_the_pattern(monkeypatch):
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    rng = np.random.default_rng(3)
    dims = (60, 70)
    u = _patch_factors(rng, dims)
    fp = _footprints(rng, 30, dims)
    groups = hals.column_groups(u, fp, fp.support, 50)
    used = _box_columns_twin(u, dims[1], fp.origins, fp.support)
    v = rng.standard_normal((u.shape[1], 50))
    proj = rng.standard_normal((fp.n, u.shape[1])) * used
    np.testing.assert_allclose(hals.grouped_rows_times(proj, v, groups), proj @ v, rtol=1e-12, atol=1e-12)
    c = rng.standard_normal((fp.n, 50))
    got = hals.grouped_times_rows(v.astype(np.float32), c, groups)
    want = v.astype(np.float32) @ c.T
    assert got.dtype == np.float64
    np.testing.assert_allclose(got[used.T], want[used.T], rtol=1e-12, atol=1e-12)
    assert not got[~used.T].any()


def _scene(rng, n=30, t=80, nb=2):
    dims = (60, 70)
    u = _patch_factors(rng, dims)
    fp = _footprints(rng, n, dims)
    v = rng.standard_normal((u.shape[1], t))
    bg = Background(rng.random((nb, *dims)), rng.standard_normal((nb, t)), 3.0)
    return u, v, fp, bg


@pytest.mark.parametrize("nb", [0, 2])
def test_solve_traces_grouped_equals_dense(monkeypatch, nb):
    rng = np.random.default_rng(4)
    u, v, fp, bg = _scene(rng, nb=nb)
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", np.inf)
    c_dense, f_dense = hals.solve_traces(u, v, fp, bg)
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    c_sparse, f_sparse = hals.solve_traces(u, v, fp, bg)
    scale = np.abs(c_dense).max()
    np.testing.assert_allclose(c_sparse, c_dense, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(f_sparse, f_dense, rtol=0, atol=1e-10 * max(np.abs(f_dense).max(initial=0), 1))
    # float32 V (the final traces: fac.V) as well
    c32, _ = hals.solve_traces(u, v.astype(np.float32), fp, bg)
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", np.inf)
    c32_dense, _ = hals.solve_traces(u, v.astype(np.float32), fp, bg)
    np.testing.assert_allclose(c32, c32_dense, rtol=0, atol=1e-10 * np.abs(c32_dense).max())


def test_update_footprints_grouped_equals_dense(monkeypatch):
    rng = np.random.default_rng(5)
    u, v, fp, bg = _scene(rng)
    c = rng.standard_normal((fp.n, v.shape[1]))
    dense_fp = Footprints(fp.origins.copy(), fp.values.copy(), fp.support.copy(), fp.dims)
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", np.inf)
    hals.update_footprints(u, v, dense_fp, c, bg)
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    hals.update_footprints(u, v, fp, c, bg)
    assert np.abs(dense_fp.values).max() > 0
    np.testing.assert_allclose(fp.values, dense_fp.values, rtol=0, atol=1e-5 * np.abs(dense_fp.values).max())
    np.testing.assert_array_equal(fp.values[~fp.support], 0)


def _banded_gram(rng, n, nb=3):
    """A Gram matrix of boxes along a line (each meets its next two) plus ``nb`` dense rows, with a ridge."""
    a = sp.lil_matrix((4 * n, n))
    for j in range(n):
        a[4 * j : min(4 * j + 12, 4 * n), j] = rng.random((min(12, 4 * n - 4 * j), 1))
    a = sp.hstack([a.tocsc(), sp.csc_matrix(rng.random((4 * n, nb)))]).toarray()
    gram = a.T @ a
    return gram + np.diag(1e-6 * np.diag(gram) + 1e-12)


def test_solve_gram_sparse_equals_dense(monkeypatch):
    rng = np.random.default_rng(6)
    reg = _banded_gram(rng, 120)
    rhs = rng.standard_normal((reg.shape[0], 40))
    want = np.linalg.solve(reg, rhs)
    assert np.array_equal(hals.solve_gram(reg, rhs), want)  # under SPARSE_SOLVE_MIN: LAPACK, bit for bit
    monkeypatch.setattr(hals, "SPARSE_SOLVE_MIN", 50)
    monkeypatch.setattr(hals, "SPARSE_SOLVE_DENSITY", 0.2)
    assert np.count_nonzero(reg) <= 0.2 * reg.size
    got = hals.solve_gram(reg, rhs)
    assert not np.array_equal(got, want)  # the sparse factor ran: another order of operations
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())
    np.testing.assert_allclose(reg @ got, rhs, rtol=0, atol=1e-9 * np.abs(rhs).max())


def test_solve_gram_singular_falls_back_to_least_squares(monkeypatch):
    monkeypatch.setattr(hals, "SPARSE_SOLVE_MIN", 5)
    monkeypatch.setattr(hals, "SPARSE_SOLVE_DENSITY", 1.0)
    reg = np.diag([2.0, 1.0, 0.0, 4.0, 1.0, 1.0])  # a footprint without pixels: a zero row and column
    rhs = np.arange(12.0).reshape(6, 2)
    rhs[2] = 0.0
    got = hals.solve_gram(reg, rhs)
    want = np.linalg.lstsq(reg, rhs, rcond=None)[0]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.all(np.isfinite(got)) and np.all(got[2] == 0)
