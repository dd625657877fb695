"""Session 15 (second round): the demix's cheaper steps give the same results as the code they replace, to the bit.

- :func:`pmdcompress.demix.result.moment_ellipse` (its round in a compiled pass) against the numpy function it
  replaces, copied here, on many random masks (ties in the distances included) and against its round's twin;
- :func:`pmdcompress.demix.pipeline._nonzero_rows_times_kernel` against scipy's ``csr_matrix(dense) @ g``;
- :class:`pmdcompress.demix.hals.ColumnGroups` against :func:`~pmdcompress.demix.hals.column_groups`, asked
  anew each time.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pmdcompress.demix import hals
from pmdcompress.demix.hals import Footprints
from pmdcompress.demix.pipeline import _nonzero_rows_times_kernel, _pixel_power
from pmdcompress.demix.result import _ellipse_window, moment_ellipse, moment_ellipses


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- moment ellipses


def _ellipse_window_twin(ypix, xpix, y0, y1, x0, x1, width, cy, cx, i00, i01, i11, n):
    """Plain-numpy twin of ``result._ellipse_window`` (moment_ellipse's round before session 15)."""
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy.ravel() - cy, xx.ravel() - cx
    dist = i00 * dy * dy + 2.0 * i01 * dy * dx + i11 * dx * dx
    flat = yy.ravel().astype(np.int64) * width + xx.ravel()
    order = np.lexsort((flat, np.round(dist, 9)))
    chosen = order[: min(n, flat.size)]
    ellipse = np.sort(flat[chosen])
    picked = np.zeros(flat.size, bool)
    picked[chosen] = True
    wy, wx = ypix.astype(np.int64) - y0, xpix.astype(np.int64) - x0
    in_window = (wy >= 0) & (wy < y1 - y0) & (wx >= 0) & (wx < x1 - x0)
    now = np.zeros(ypix.size, bool)
    now[in_window] = picked[wy[in_window] * (x1 - x0) + wx[in_window]]
    return ellipse, now


def _moment_ellipse_twin(ypix, xpix, dims, *, n_iter=3, size=None):
    """``result.moment_ellipse`` as it was before session 15's second round (all numpy)."""
    height, width = dims
    n = ypix.size
    flat_given = ypix.astype(np.int64) * width + xpix
    if n < 3:
        return np.sort(flat_given)
    n = n if size is None else max(int(size), 1)
    y = ypix.astype(np.float64)
    x = xpix.astype(np.float64)
    inside = np.ones(ypix.size, bool)
    for _ in range(n_iter + 1):
        cy, cx = y[inside].mean(), x[inside].mean()
        cov = np.cov(np.vstack([y[inside], x[inside]]), bias=True) + np.eye(2) / 12.0
        inv = np.linalg.inv(cov)
        grow = np.sqrt(max(n, ypix.size) / max(int(inside.sum()), 1))
        half = int(np.ceil(3.0 * grow * np.sqrt(np.linalg.eigvalsh(cov)[-1]))) + 2
        y0, y1 = max(int(np.floor(cy)) - half, 0), min(int(np.ceil(cy)) + half + 1, height)
        x0, x1 = max(int(np.floor(cx)) - half, 0), min(int(np.ceil(cx)) + half + 1, width)
        ellipse, now = _ellipse_window_twin(ypix, xpix, y0, y1, x0, x1, width, cy, cx, inv[0, 0], inv[0, 1],
                                            inv[1, 1], n)
        if now.sum() < 3 or np.array_equal(now, inside):
            break
        inside = now
    return ellipse


def _random_masks(rng, dims, count):
    """Masks of many kinds: blobs with protrusions, lines, squares and discs (symmetric: ties in the distances),
    sparse scatters, masks at the field's edges and corners, one- and two-pixel masks."""
    height, width = dims
    yy, xx = np.mgrid[:height, :width]
    for i in range(count):
        kind = i % 7
        cy, cx = rng.uniform(-2, height + 2), rng.uniform(-2, width + 2)
        if kind == 0:  # a blob with a random ellipse and a stub
            a, b, t = rng.uniform(1.5, 9), rng.uniform(1.5, 9), rng.uniform(0, np.pi)
            u, v = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t), -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
            m = (u / a) ** 2 + (v / b) ** 2 <= 1
            m |= (np.abs(yy - cy) < 1) & (xx - cx > 0) & (xx - cx < rng.uniform(0, 15))
        elif kind == 1:  # a square (integer centre: ties)
            r = int(rng.integers(1, 7))
            m = (np.abs(yy - round(cy)) <= r) & (np.abs(xx - round(cx)) <= r)
        elif kind == 2:  # a disc on the pixel grid (ties)
            m = (yy - round(cy)) ** 2 + (xx - round(cx)) ** 2 <= rng.integers(1, 60)
        elif kind == 3:  # a line of pixels
            m = (yy == int(np.clip(cy, 0, height - 1))) & (np.abs(xx - cx) < rng.uniform(1, 12))
        elif kind == 4:  # a random scatter around a centre
            m = ((yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(4, 120)) & (rng.random(dims) < rng.uniform(0.2, 0.9))
        elif kind == 5:  # two blobs (a neighbour's pixels)
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(4, 40)
            m |= (yy - cy - rng.uniform(4, 12)) ** 2 + (xx - cx) ** 2 <= rng.uniform(1, 20)
        else:  # one to four pixels
            k = int(rng.integers(1, 5))
            m = np.zeros(dims, bool)
            m[rng.integers(0, height, k), rng.integers(0, width, k)] = True
        yield np.nonzero(m)


def test_moment_ellipse_equals_its_numpy_twin_on_many_masks():
    rng = np.random.default_rng(1515)
    checked = 0
    for dims in [(40, 50), (25, 25), (64, 37)]:
        for ypix, xpix in _random_masks(rng, dims, 300):
            if ypix.size == 0:
                continue
            for size in (None, max(ypix.size // 2, 1), ypix.size + 7):
                got = moment_ellipse(ypix, xpix, dims, size=size)
                want = _moment_ellipse_twin(ypix, xpix, dims, size=size)
                assert _same_bits(got, want), (dims, ypix.size, size)
                checked += 1
    assert checked > 2000


def test_moment_ellipses_equal_their_twin_column_by_column():
    rng = np.random.default_rng(7)
    dims = (48, 56)
    cols = [np.ravel_multi_index((y, x), dims) for y, x in _random_masks(rng, dims, 60)]
    rows = np.concatenate(cols)
    which = np.concatenate([np.full(c.size, j) for j, c in enumerate(cols)])
    masks = sp.csc_matrix((np.ones(rows.size, np.float32), (rows, which)), shape=(dims[0] * dims[1], len(cols)))
    sizes = rng.integers(1, 40, len(cols))
    for given in (None, sizes):
        got = moment_ellipses(masks, dims, sizes=given)
        for j, c in enumerate(cols):
            if c.size == 0:
                continue
            y, x = np.divmod(np.sort(c), dims[1])
            want = _moment_ellipse_twin(y, x, dims, size=None if given is None else int(given[j]))
            np.testing.assert_array_equal(got.indices[got.indptr[j] : got.indptr[j + 1]], want)


def test_ellipse_round_equals_its_twin_with_ties_and_clipping():
    rng = np.random.default_rng(3)
    width = 30
    for _ in range(400):
        ypix, xpix = rng.integers(0, 20, 25), rng.integers(0, width, 25)
        # integer and half-integer centres with an isotropic form make many equal distances
        cy, cx = rng.integers(0, 20) + rng.choice([0.0, 0.5, 0.25]), rng.integers(0, width) + rng.choice([0.0, 0.5])
        if rng.random() < 0.5:
            i00 = i11 = float(rng.choice([1.0, 0.1, 1 / 3]))
            i01 = 0.0
        else:
            i00, i11 = rng.uniform(0.01, 2, 2)
            i01 = rng.uniform(-0.9, 0.9) * np.sqrt(i00 * i11)
        y0, x0 = int(rng.integers(0, 10)), int(rng.integers(0, 15))
        y1, x1 = y0 + int(rng.integers(1, 12)), x0 + int(rng.integers(1, 15))
        n = int(rng.integers(1, 200))  # more than the window holds, too
        got = _ellipse_window(ypix, xpix, y0, y1, x0, x1, width, cy, cx, i00, i01, i11, n)
        want = _ellipse_window_twin(ypix, xpix, y0, y1, x0, x1, width, cy, cx, i00, i01, i11, n)
        assert _same_bits(got[0], want[0]) and _same_bits(got[1], want[1])


# --------------------------------------------------------------------------- _pixel_power's product


def test_nonzero_rows_times_equals_scipys_sparse_product():
    rng = np.random.default_rng(5)
    for n, m, w in [(1, 1, 1), (0, 3, 3), (7, 13, 13), (40, 29, 29), (5, 60, 17)]:
        dense = rng.standard_normal((n, m)).astype(np.float32)
        dense[rng.random((n, m)) < 0.4] = 0.0
        dense[rng.random((n, m)) < 0.05] = -0.0  # negative zeros: no entry either way
        dense[:1] = 0.0  # an empty row
        g = (rng.standard_normal((m, w)) * rng.uniform(0.1, 1e3)).astype(np.float32)
        out = np.zeros((n, w), np.float32)
        _nonzero_rows_times_kernel(dense, g, out)
        assert _same_bits(out, sp.csr_matrix(dense) @ g)


def test_pixel_power_is_the_quadratic_form_of_each_pixel():
    rng = np.random.default_rng(6)
    dims, k = (20, 24), 15
    u = sp.random(dims[0] * dims[1], k, density=0.3, format="csr", random_state=6, dtype=np.float32)
    v = rng.standard_normal((k, 40)).astype(np.float32)
    gram = v @ v.T
    needed = rng.random(dims) < 0.5
    got = _pixel_power(u, gram, needed)
    full = u.toarray()
    want = np.einsum("ij,jk,ik->i", full, gram.astype(np.float64), full).reshape(dims)
    np.testing.assert_allclose(got[needed], want[needed], rtol=1e-4, atol=1e-4)
    assert np.all(got[~needed] == 0)


# --------------------------------------------------------------------------- ColumnGroups


def _u_and_footprints(rng, dims=(40, 44), patch=12, stride=8, per_patch=4, n=25, box=(7, 7)):
    height, width = dims
    rows, cols = [], []
    k = 0
    for y0 in range(0, height - patch + 1, stride):
        for x0 in range(0, width - patch + 1, stride):
            pix = (np.arange(y0, y0 + patch)[:, None] * width + np.arange(x0, x0 + patch)[None, :]).ravel()
            for c in range(per_patch):
                rows.append(pix)
                cols.append(np.full(pix.size, k + c))
            k += per_patch
    r = np.concatenate(rows)
    u = sp.csr_matrix((rng.standard_normal(r.size).astype(np.float32), (r, np.concatenate(cols))),
                      shape=(height * width, k))
    origins = np.stack([rng.integers(0, height - box[0] + 1, n), rng.integers(0, width - box[1] + 1, n)], 1)
    support = rng.random((n, *box)) < 0.6
    return u, Footprints(origins.astype(np.int64), (rng.random((n, *box)) * support).astype(np.float32),
                         support, dims)


def _same_groups(a, b):
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(
        (ca == cb if isinstance(ca, slice) else isinstance(cb, np.ndarray) and np.array_equal(ca, cb))
        and np.array_equal(ra, rb) for (ca, ra), (cb, rb) in zip(a, b, strict=True))


def test_column_groups_memo_answers_as_column_groups(monkeypatch):
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    rng = np.random.default_rng(9)
    u, fp = _u_and_footprints(rng)
    groups_of = hals.ColumnGroups()
    first = groups_of(u, fp, fp.support, 30)
    assert _same_groups(first, hals.column_groups(u, fp, fp.support, 30))
    assert groups_of(u, fp, fp.support.copy(), 30) is first  # the same question: the remembered answer
    changed = fp.support.copy()
    changed[3] = False  # another mask: footprint 3 uses no column
    assert any(3 in rows for _, rows in first)
    assert _same_groups(groups_of(u, fp, changed, 30), hals.column_groups(u, fp, changed, 30))
    assert not any(3 in rows for _, rows in groups_of(u, fp, changed, 30))
    groups_of(u, fp, fp.support, 30)
    moved = Footprints(fp.origins[::-1].copy(), fp.values, fp.support, fp.dims)  # other boxes, the same masks
    assert _same_groups(groups_of(u, moved, fp.support, 30), hals.column_groups(u, moved, fp.support, 30))
    groups_of(u, fp, fp.support, 30)
    other_u = u.copy()  # another U (another object): asked anew
    other_u.indices = (other_u.indices + 1) % u.shape[1]
    other_u.has_sorted_indices = False
    assert _same_groups(groups_of(other_u, fp, fp.support, 30), hals.column_groups(other_u, fp, fp.support, 30))
    fewer = fp.subset(np.arange(10))
    assert _same_groups(groups_of(u, fewer, fewer.support, 30), hals.column_groups(u, fewer, fewer.support, 30))
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 10 * u.shape[1] * 10)
    assert groups_of(u, fewer, fewer.support, 30) is not None
    assert groups_of(u, fewer, fewer.support, 1) is None  # the frame count decides dense or grouped


@pytest.mark.parametrize("with_bg", [False, True])
def test_updates_with_shared_groups_equal_fresh_groups(monkeypatch, with_bg):
    monkeypatch.setattr(hals, "SPARSE_MIN_WORK", 0)
    rng = np.random.default_rng(11)
    u, fp = _u_and_footprints(rng)
    v = rng.standard_normal((u.shape[1], 30))
    bg = hals.Background(rng.random((1, *fp.dims)), rng.standard_normal((1, 30)), 3.0) if with_bg else None
    fp2 = Footprints(fp.origins.copy(), fp.values.copy(), fp.support.copy(), fp.dims)
    groups_of = hals.ColumnGroups()
    for _ in range(3):
        c1, f1 = hals.solve_traces(u, v, fp, bg)
        hals.update_footprints(u, v, fp, c1, bg)
        c2, f2 = hals.solve_traces(u, v, fp2, bg, groups_of=groups_of)
        hals.update_footprints(u, v, fp2, c2, bg, groups_of=groups_of)
        assert _same_bits(c1, c2) and _same_bits(f1, f2) and _same_bits(fp.values, fp2.values)
        fp.support[:, 0] = fp2.support[:, 0] = True  # the supports change between rounds
