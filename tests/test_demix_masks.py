"""How a footprint becomes a mask: the moment ellipse of its thresholded pixels (``mask_shape`` "ellipse")."""

import numpy as np
import pytest
import scipy.sparse as sp

from pmdcompress.demix.result import (
    DemixResult,
    default_mask_shape,
    moment_ellipse,
    moment_ellipses,
)

DIMS = (48, 56)


def _ellipse(cy, cx, a, b, theta, dims=DIMS):
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def _as_image(flat, dims=DIMS):
    out = np.zeros(dims, bool)
    out.ravel()[flat] = True
    return out


@pytest.mark.parametrize(("a", "b", "theta"), [(5.0, 5.0, 0.0), (6.5, 4.0, 0.6), (7.0, 3.5, -1.1)])
def test_a_digital_ellipse_is_its_own_moment_ellipse(a, b, theta):
    cell = _ellipse(20.3, 27.6, a, b, theta)
    ys, xs = np.nonzero(cell)
    out = _as_image(moment_ellipse(ys, xs, DIMS))
    assert out.sum() == cell.sum()  # the same area, always
    assert _iou(out, cell) >= 0.93


def test_protrusions_and_notches_go_and_the_soma_stays():
    cell = _ellipse(24.0, 28.0, 6.0, 4.5, 0.4)
    ragged = cell.copy()
    ragged[24, 28:42] = True  # a dendrite's stub, one pixel wide
    ragged[18:21, 22:25] = False  # a notch: a neighbour took these pixels
    ragged[31:34, 33:36] = True  # a neighbour's pixels attached at the edge
    ys, xs = np.nonzero(ragged)
    out = _as_image(moment_ellipse(ys, xs, DIMS))
    assert out.sum() == ragged.sum()
    assert _iou(out, cell) > _iou(ragged, cell)
    assert not out[24, 38:42].any()  # the stub's far end is gone


def test_a_long_stub_does_not_stretch_the_ellipse():
    cell = _ellipse(24.0, 28.0, 6.0, 4.5, 0.4)
    ragged = cell.copy()
    ragged[24, 28:42] = True
    ys, xs = np.nonzero(ragged)
    once = _as_image(moment_ellipse(ys, xs, DIMS, n_iter=0))  # moments of all pixels: pulled along the stub
    refit = _as_image(moment_ellipse(ys, xs, DIMS))
    assert _iou(refit, cell) > _iou(once, cell) + 0.05
    assert _iou(refit, cell) >= _iou(ragged, cell)


def test_edge_of_the_field_small_masks_and_lines():
    ys, xs = np.nonzero(_ellipse(1.0, 54.0, 4.0, 3.0, 0.0))  # cut by two edges of the field
    out = moment_ellipse(ys, xs, DIMS)
    assert out.size == ys.size and out.min() >= 0 and out.max() < DIMS[0] * DIMS[1]
    two = moment_ellipse(np.array([3, 3]), np.array([4, 5]), DIMS)
    np.testing.assert_array_equal(two, [3 * DIMS[1] + 4, 3 * DIMS[1] + 5])  # too few pixels for moments: kept
    line = moment_ellipse(np.full(7, 10), np.arange(20, 27), DIMS)  # a row of pixels stays that row
    np.testing.assert_array_equal(line, 10 * DIMS[1] + np.arange(20, 27))


def test_moment_ellipses_per_column_and_empty_columns():
    cells = [_ellipse(12, 14, 4, 3, 0.3), np.zeros(DIMS, bool), _ellipse(30, 40, 5, 5, 0)]
    cols = sp.csc_matrix(np.stack([c.ravel() for c in cells], axis=1).astype(np.float32))
    out = moment_ellipses(cols, DIMS)
    assert out.shape == cols.shape
    np.testing.assert_array_equal(np.diff(out.indptr), np.diff(cols.indptr))  # areas kept, empty stays empty
    for j in (0, 2):
        assert out[:, j].nnz == cells[j].sum()


def _result(mask_shape):
    """A two-component result by hand: a ragged soma (above 20 % of its peak) and a round one."""
    soma = _ellipse(20.0, 20.0, 6.0, 4.5, 0.3).astype(np.float32)
    ragged = soma.copy()
    ragged[20, 20:34] = 0.5  # a dendrite's stub at half the peak
    round_one = _ellipse(34.0, 42.0, 4.0, 4.0, 0.0).astype(np.float32) * 0.8
    round_one[34, 42] = 1.0
    fp = sp.csc_matrix(np.stack([ragged.ravel(), round_one.ravel()], axis=1))
    n, t = 2, 5
    meta = {"parameters": {"footprint_threshold": 0.2}, "dims": list(DIMS)}
    if mask_shape is not None:
        meta["mask_shape"] = mask_shape
    z = np.zeros((n, t), np.float32)
    res = DemixResult(footprints=fp, traces=z, raw_traces=z, baseline=z, dff=z, centers=np.zeros((n, 2)),
                      background_spatial=np.zeros((0, *DIMS), np.float32),
                      background_temporal=np.zeros((0, t), np.float32),
                      background_static=np.zeros(DIMS, np.float32), metrics={}, images={}, metadata=meta)
    return res, soma.astype(bool)


def test_results_without_the_key_keep_threshold_masks_and_new_ones_draw_ellipses():
    old, soma = _result(None)
    new, _ = _result("ellipse")
    assert old.mask_shape == "threshold" and new.mask_shape == "ellipse"
    thr = old.masks().toarray()[:, 0].reshape(DIMS).astype(bool)
    ell = new.masks().toarray()[:, 0].reshape(DIMS).astype(bool)
    np.testing.assert_array_equal(thr, old.masks(shape="threshold").toarray()[:, 0].reshape(DIMS) > 0)
    np.testing.assert_array_equal(ell, old.masks(shape="ellipse").toarray()[:, 0].reshape(DIMS) > 0)
    assert thr[20, 33] and not ell[20, 33]  # the stub belongs to the threshold mask only
    assert ell.sum() == thr.sum() and _iou(ell, soma) >= _iou(thr, soma)  # the stub's area goes round the soma
    with pytest.raises(ValueError, match="shape: 'disc' is not one of threshold, ellipse, cell"):
        new.masks(shape="disc")


def test_label_image_covers_every_ellipse_pixel():
    new, _ = _result("ellipse")
    masks = new.masks()
    labels = new.label_image()
    covered = np.asarray(masks.sum(axis=1)).ravel().reshape(DIMS) > 0
    np.testing.assert_array_equal(labels > 0, covered)
    assert labels[20, 20] == 1 and labels[34, 42] == 2


def test_calcium_results_record_ellipses():
    assert default_mask_shape("2p") == default_mask_shape("1p") == "ellipse"
    assert default_mask_shape("voltage") == "threshold"


def test_neurofinder_json_is_read_as_neurofinder_reads_it(tmp_path):
    """neurofinder's own loader sets ``mask[zip(*coordinates)] = 1``: 0-based [row, col], no offset."""
    import json

    from pmdcompress.demix.matching import load_regions

    rois = [{"coordinates": [[2, 3], [2, 4], [3, 3]]}, {"coordinates": [[0, 0], [10, 12]]}]
    path = tmp_path / "regions.json"
    path.write_text(json.dumps(rois))
    regions = load_regions(path, dims=(11, 13))
    masks = regions.masks.toarray().astype(bool)
    for j, roi in enumerate(rois):
        expected = np.zeros((11, 13), bool)
        rows, cols = np.asarray(roi["coordinates"]).T
        expected[rows, cols] = True
        np.testing.assert_array_equal(masks[:, j].reshape(11, 13), expected)


def test_nwb_image_masks_threshold_to_the_scored_masks():
    from pmdcompress.demix.export import nwb_image_masks
    from pmdcompress.demix.result import fill_mask_holes, threshold_columns

    for shape in ("ellipse", None):
        res, _ = _result(shape)
        images = nwb_image_masks(res)
        flat = sp.csc_matrix(images.reshape(res.n_components, -1).T)
        # what a reader that thresholds image masks at 0.2 of their peak and fills holes gets (pmd evaluate's NWB rule)
        read = fill_mask_holes(threshold_columns(flat, 0.2), DIMS)
        assert (read != res.masks()).nnz == 0
        fp = res.footprint_images()
        on = images > 0.21
        np.testing.assert_array_equal(images[on & (fp > 0.21)], fp[on & (fp > 0.21)])  # weights kept on the mask
    assert np.array_equal(nwb_image_masks(_result(None)[0]), _result(None)[0].footprint_images())


def test_cell_shape_finds_the_edge_of_a_blurred_soma():
    from scipy import ndimage

    soma = _ellipse(24.0, 28.0, 5.0, 5.0, 0.0)
    for blur in (0.0, 1.0, 2.0, 3.0):
        fp = ndimage.gaussian_filter(soma.astype(np.float64), blur) if blur else soma.astype(np.float64)
        fp = (fp / fp.max()).astype(np.float32)
        res, _ = _result("ellipse")
        res.footprints = sp.csc_matrix(fp.reshape(-1, 1))
        cell = res.masks(shape="cell").toarray().reshape(DIMS).astype(bool)
        wide = res.masks(shape="ellipse").toarray().reshape(DIMS).astype(bool)
        assert _iou(cell, soma) >= 0.83, blur  # half the plateau is the blurred soma's edge at any blur
        if blur >= 1.0:  # while 20 % of the peak lies ever further outside it
            assert wide.sum() > 1.3 * soma.sum() and _iou(cell, soma) > _iou(wide, soma) + 0.1
    res, _ = _result("ellipse")
    res.metrics["seeded_from_mean"] = np.array([0, 1], np.uint8)  # a mean-image region keeps its area
    np.testing.assert_array_equal(np.diff(res.masks(shape="cell").indptr)[1], np.diff(res.masks().indptr)[1])


def test_a_mean_image_region_is_masked_whole():
    """A mean-image component's footprint is its finder's region carrying the high-passed mean image: the mask
    is the region (as an ellipse), not the pixels above 20 % of a bright spot in it."""
    region = _ellipse(24.0, 28.0, 5.0, 4.0, 0.2)
    values = np.where(region, 0.1, 0.0).astype(np.float32)
    values[22:25, 26:29] = 1.0  # a bright spot: every other pixel of the region is under 20 % of it
    res, _ = _result("ellipse")
    res.footprints = sp.csc_matrix(np.stack([values.ravel(), values.ravel()], axis=1))
    res.metrics["seeded_from_mean"] = np.array([1, 0], np.uint8)
    masks = res.masks().toarray().reshape(*DIMS, 2).astype(bool)
    assert masks[..., 0].sum() == region.sum() and _iou(masks[..., 0], region) >= 0.9
    assert masks[..., 1].sum() == 9  # a fitted footprint is thresholded as before
    old, _ = _result(None)
    old.footprints, old.metrics = res.footprints, res.metrics
    assert old.masks().toarray()[:, 0].sum() == 9  # results without mask_shape keep their masks
