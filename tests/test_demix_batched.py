"""The box-wise morphology of demixing done for all boxes in one 3-D call gives, box for box, what one 2-D
call per box gives (the per-box code it replaced, kept here as the reference): supports of new footprints,
soma-shaped cores, filled mask holes, and the tile CSR of the zone test."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

from pmdcompress.demix import hals
from pmdcompress.demix.pipeline import _disk, _new_footprints, _soma_shape
from pmdcompress.demix.result import fill_mask_holes

DIMS = (60, 70)
BOX = (15, 15)


def _blobby_footprints(seed, n=30):
    """Footprints of several parts each (a large part, small ones, holes, ties in mass, empty ones), some
    boxes at the frame's edges."""
    rng = np.random.default_rng(seed)
    centers = np.stack([rng.integers(0, DIMS[0], n), rng.integers(0, DIMS[1], n)], axis=1)
    origins = hals.box_origins(centers, BOX, DIMS)
    yy, xx = np.mgrid[: BOX[0], : BOX[1]]
    values = np.zeros((n, *BOX), np.float32)
    for j in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0, BOX[0]), rng.uniform(0, BOX[1]), rng.uniform(1.0, 5.0)
            values[j] += (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r) * rng.choice([0.5, 1.0, 2.0])
        if rng.random() < 0.3:  # a hole
            values[j, rng.integers(3, 12), rng.integers(3, 12)] = 0.0
        values[j] += 0.15 * rng.random(BOX) * (rng.random(BOX) < 0.2)
    values[3] = 0.0  # empty
    values[4] = 0.0
    values[4, 2, 2] = values[4, 10, 10] = 1.0  # two single pixels of equal mass: the first wins
    return hals.Footprints(origins, values.astype(np.float32), values > 0, DIMS)


def _soma_shape_per_box(fp, fixed, radius, threshold):
    """The per-footprint code of :func:`_soma_shape` before it was batched."""
    keep = np.ones(fp.n, bool)
    structure = _disk(radius)
    for j in np.flatnonzero(~np.asarray(fixed, bool)):
        a = fp.values[j]
        top = float(a.max())
        if top <= 0:
            keep[j] = False
            continue
        mask = a > threshold * top
        core = mask & ndimage.binary_dilation(ndimage.binary_opening(mask, structure))
        lab, n = ndimage.label(core)
        if n == 0:
            keep[j] = False
            continue
        if n > 1:
            mass = ndimage.sum(a, lab, index=np.arange(1, n + 1))
            core = lab == 1 + int(np.argmax(mass))
        core = ndimage.binary_fill_holes(core)
        fp.values[j] = np.where(core, a, 0)
        fp.support[j] = core
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("radius", [1.0, 2.5])
def test_soma_shape_of_all_boxes_at_once_equals_one_box_at_a_time(seed, radius):
    fp = _blobby_footprints(seed)
    fixed = np.zeros(fp.n, bool)
    fixed[::7] = True
    ref = fp.subset(np.arange(fp.n))
    keep_ref = _soma_shape_per_box(ref, fixed, radius, 0.2)
    keep = _soma_shape(fp, fixed, radius, 0.2)
    assert np.array_equal(keep, keep_ref)
    assert not keep[3] and not keep[4]  # empty, and two pixels the opening removes
    assert np.array_equal(fp.values, ref.values)
    assert np.array_equal(fp.support, ref.support)
    assert (~keep[~fixed]).any() and keep[~fixed].any()  # the scenes exercise both outcomes


def _new_footprints_per_box(image, seeds, regions, box, zone_radius, unrelated, kept):
    """Supports and zones of :func:`_new_footprints` as its per-seed code made them."""
    origins = hals.box_origins(seeds, box, DIMS)
    bh, bw = box
    yy, xx = np.mgrid[:bh, :bw]
    support = np.zeros((len(seeds), *box), bool)
    zone = np.zeros((len(seeds), *box), bool)
    claimed = np.isin(regions, np.asarray(kept) + 1)
    for j, (y, x) in enumerate(origins):
        reg = regions[y : y + bh, x : x + bw] == j + 1
        support[j] = ndimage.binary_dilation(reg)
        sy, sx = seeds[j]
        zone[j] = ((yy + y - sy) ** 2 + (xx + x - sx) ** 2 <= zone_radius**2) | reg
        held = claimed[y : y + bh, x : x + bw] & ~reg
        parts, _ = ndimage.label(zone[j] & ~(unrelated[j] & ~held))
        zone[j] = parts == parts[sy - y, sx - x]
        support[j] &= zone[j]
    return support, zone


@pytest.mark.parametrize("seed", [0, 1])
def test_new_footprints_of_all_seeds_at_once_equal_one_seed_at_a_time(seed):
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random(DIMS), 2.0).astype(np.float32)
    seeds = np.stack([rng.integers(0, DIMS[0], 25), rng.integers(0, DIMS[1], 25)], axis=1)
    seeds = np.unique(seeds, axis=0)
    regions = np.zeros(DIMS, np.int32)
    for i, (y, x) in enumerate(seeds):
        regions[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = i + 1
        regions[y, x] = i + 1
    unrelated = rng.random((len(seeds), *BOX)) < 0.3
    kept = np.arange(0, len(seeds), 2)
    support, zone = _new_footprints_per_box(image, seeds, regions, BOX, 6.0, unrelated, kept)
    fp = _new_footprints(image, seeds, regions, BOX, DIMS, zone_radius=6.0, unrelated=unrelated, kept=kept)
    assert np.array_equal(fp.support, support)
    assert np.array_equal(fp.zone, zone)
    assert not zone.all(axis=(1, 2)).any() and zone.any(axis=(1, 2)).all()
    plain = _new_footprints(image, seeds, regions, BOX, DIMS)
    for j, (y, x) in enumerate(plain.origins):
        reg = regions[y : y + BOX[0], x : x + BOX[1]] == j + 1
        assert np.array_equal(plain.support[j], ndimage.binary_dilation(reg))


def test_filled_holes_of_all_masks_at_once_equal_one_mask_at_a_time(monkeypatch):
    import pmdcompress.demix.result as result

    fp = _blobby_footprints(5, n=40)
    a = fp.to_sparse()
    masks = sp.csc_matrix((a > 0.1).astype(np.float32))
    width = DIMS[1]
    expected = []
    for j in range(masks.shape[1]):
        pix = masks.indices[masks.indptr[j] : masks.indptr[j + 1]]
        if pix.size == 0:
            expected.append(np.zeros(0, np.int64))
            continue
        y, x = np.divmod(pix.astype(np.int64), width)
        y0, x0 = y.min(), x.min()
        box = np.zeros((y.max() - y0 + 1, x.max() - x0 + 1), bool)
        box[y - y0, x - x0] = True
        fy, fx = np.nonzero(ndimage.binary_fill_holes(box))
        expected.append(np.sort((fy + y0) * width + fx + x0))
    for batch in (1 << 22, 400):  # one call, and calls of a few masks each
        monkeypatch.setattr(result, "FILL_BATCH_PIXELS", batch)
        filled = fill_mask_holes(masks, DIMS)
        for j in range(masks.shape[1]):
            assert np.array_equal(np.sort(filled.indices[filled.indptr[j] : filled.indptr[j + 1]]), expected[j])
    assert filled.nnz > masks.nnz  # some holes were filled
