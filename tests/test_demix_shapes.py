"""Soma-shaped components on two-photon data: supports that stay on their soma, duplicates merged,
dendrites and neuropil rejected by shape and by mean-image contrast."""

import numpy as np
import pytest
import scipy.sparse as sp

import pmdcompress
import pmdcompress.demix as dm
from pmdcompress.demix import hals
from pmdcompress.demix.matching import iou_matrix, load_regions
from pmdcompress.demix.metrics import compute_metrics, mean_contrast
from pmdcompress.demix.pipeline import _merge, _refine_supports, _soma_shape

# --------------------------------------------------------------------------- a hand-made scene


def _disk(dims, center, radius):
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    return ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2).astype(np.float64)


def _calcium(rng, n_frames, rate, tau_frames=6.0):
    spikes = rng.random(n_frames) < rate
    trace = np.zeros(n_frames)
    level = 0.0
    for t in range(n_frames):
        level = level * np.exp(-1.0 / tau_frames) + spikes[t]
        trace[t] = level
    return trace


SOMATA = ((20, 20), (20, 30), (45, 46))  # the first two touch (radius 5, 10 px apart)
DENDRITE = (slice(52, 55), slice(4, 36))  # 3 px wide, 32 px long, with its own transients


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """64x64x500 frames: three somata (two touching), a dendrite, smooth neuropil, Poisson noise."""
    rng = np.random.default_rng(7)
    dims, n_frames = (64, 64), 500
    shapes, traces = [], []
    for center in SOMATA:
        shapes.append(_disk(dims, center, 5))
        traces.append(_calcium(rng, n_frames, 0.03))
    dendrite = np.zeros(dims)
    dendrite[DENDRITE] = 1.0
    shapes.append(dendrite)
    traces.append(_calcium(rng, n_frames, 0.03))
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    neuropil_map = 0.5 + 0.5 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 25.0**2))
    neuropil = 1.0 + 0.2 * np.sin(np.arange(n_frames) / 40.0)
    rates = 20.0 * neuropil_map[None] * neuropil[:, None, None]
    for shape, trace in zip(shapes, traces, strict=True):
        # baseline brightness of the indicator, and transients of 1.5x that per spike
        rates = rates + 10.0 * shape[None] * (1.0 + 1.5 * trace[:, None, None])
    movie = rng.poisson(rates).astype(np.float32)
    root = tmp_path_factory.mktemp("shapes")
    store = pmdcompress.compress(movie, root / "scene.pmd.zarr", workers=1)
    result = dm.demix(store, root / "scene.demix.zarr", fs=7.0, seed_from_mean=False, figures=False,
                      cell_radius=5.0)
    return {"result": result, "shapes": shapes}


def _masks(shapes):
    import scipy.sparse as sp

    return sp.csc_matrix(np.stack([s.ravel() > 0 for s in shapes], axis=1).astype(np.float32))


def test_touching_somata_are_found_as_two_and_the_dendrite_is_not_a_cell(scene):
    res = scene["result"]
    pred = load_regions(res).masks
    true = _masks(scene["shapes"])
    iou = iou_matrix(pred, true)  # (pred, true)
    for k in range(len(SOMATA)):
        assert iou[:, k].max() >= 0.5, (k, iou)
    # one component per soma: the touching pair is not merged into one, nor split in two
    assert (iou[:, : len(SOMATA)].max(axis=1) >= 0.3).sum() == len(SOMATA), iou
    # nothing kept on the dendrite: no mask has a third of its pixels on it
    dend = true[:, len(SOMATA)].toarray().ravel() > 0
    for j in range(pred.shape[1]):
        pix = pred.indices[pred.indptr[j] : pred.indptr[j + 1]]
        assert dend[pix].mean() < 1 / 3, (j, dend[pix].mean())
    assert res.n_components == len(SOMATA), iou


def test_shape_metrics_of_a_soma_and_a_dendrite():
    dims, box = (40, 40), (33, 33)
    soma = _disk(box, (16, 16), 5)
    bar = np.zeros(box)
    bar[28:30, 2:30] = 1.0
    fp = hals.Footprints(np.array([[0, 0], [0, 0]]), np.stack([soma, bar]).astype(np.float32),
                         np.ones((2, *box), bool), dims)
    u = __import__("scipy.sparse", fromlist=["csr_matrix"]).csr_matrix((dims[0] * dims[1], 1), dtype=np.float32)
    c = np.random.default_rng(0).standard_normal((2, 50))
    texture = np.random.default_rng(1).normal(0, 5, dims)  # the neuropil's texture sets the contrast's scale
    mean = 100.0 + texture
    mean[:33, :33] += 40 * soma  # a bright soma in the mean image; the bar is not brighter than its surround
    met = compute_metrics(u, np.zeros((1, 50), np.float32), fp, c, np.ones(dims), mean=mean, contrast_sigma=7.0)
    assert met["elongation"][0] < 1.2
    assert met["elongation"][1] > 5
    assert met["mean_contrast"][0] > 3
    assert abs(met["mean_contrast"][1]) < 1
    # a dark disk (a hole in the neuropil) has negative contrast
    dark = 100.0 + texture
    dark[:33, :33] -= 40 * soma
    assert mean_contrast(dark, fp.subset([0]), 0.2, 7.0)[0] < -3


# --------------------------------------------------------------------------- fitting steps


def test_a_hot_spot_beside_a_soma_does_not_take_its_footprint():
    box = (25, 25)
    soma = _disk(box, (12, 12), 5)  # 81 pixels at 1
    values = soma.copy()
    values[2:4, 20:22] = 6.0  # 4 hot pixels, apart from the soma: the peak, but a fraction of the mass
    fp = hals.Footprints(np.array([[0, 0]]), values[None].astype(np.float32), np.ones((1, *box), bool), (40, 40))
    _refine_supports(fp, grow=False)
    assert fp.values[0][3, 21] == 0
    np.testing.assert_array_equal(fp.values[0] > 0, soma > 0)


def test_supports_grow_only_inside_their_zone():
    box = (25, 25)
    values = _disk(box, (12, 12), 3)[None].astype(np.float32)
    zone = _disk(box, (12, 12), 4)[None] > 0
    fp = hals.Footprints(np.array([[0, 0]]), values, values > 0, (40, 40), zone)
    for _ in range(5):
        _refine_supports(fp, grow=True)
    np.testing.assert_array_equal(fp.support[0], zone[0])


def test_two_components_on_one_soma_are_merged_but_touching_somata_are_not():
    dims, box = (40, 60), (21, 21)
    soma = _disk(box, (10, 10), 5)
    shifted = np.roll(soma, 1, axis=1)
    rng = np.random.default_rng(1)
    c = rng.standard_normal((4, 200))
    # 0 and 1 both carry the soma's transients, correlated well under the trace test's 0.8: only the masks can
    # tell they are duplicates
    c[1] = 0.5 * c[0] + rng.standard_normal(200)
    assert 0 < np.corrcoef(c[0], c[1])[0, 1] < 0.8
    origins = np.array([[5, 5], [5, 5], [5, 30], [5, 39]])  # 0 and 1: one soma; 2 and 3: 9 px apart, touching
    values = np.stack([soma, shifted, soma, soma]).astype(np.float32)
    fp = hals.Footprints(origins, values, values > 0, dims)
    # _merge writes the merged footprint and trace into its arguments: give it copies
    merged, c2, fixed = _merge(hals.Footprints(origins, values.copy(), values > 0, dims), c.copy(), 0.8,
                               np.zeros(4, bool), mask_threshold=0.2)
    assert merged.n == 3
    assert sorted(map(tuple, merged.origins.tolist())) == [(5, 5), (5, 30), (5, 39)]
    # without the mask test, weakly correlated duplicates stay apart
    kept, _, _ = _merge(fp, c, 0.8, np.zeros(4, bool))
    assert kept.n == 4


def test_overlapping_components_with_anti_correlated_traces_are_two_sources():
    # A soma and a larger component around it (a neighbour, neuropil) whose masks overlap past the duplicate
    # test: their least-squares traces anti-correlate, so they are not one soma split in two.
    dims, box = (40, 40), (21, 21)
    soma = _disk(box, (10, 10), 4)
    around = _disk(box, (10, 10), 8)
    rng = np.random.default_rng(2)
    shared = rng.standard_normal(300)
    c = np.stack([shared + 0.3 * rng.standard_normal(300), -shared + 0.3 * rng.standard_normal(300)])
    fp = hals.Footprints(np.array([[5, 5], [5, 5]]), np.stack([soma, around]).astype(np.float32),
                         np.stack([soma, around]) > 0, dims)
    kept, c2, _ = _merge(fp, c.copy(), 0.8, np.zeros(2, bool), mask_threshold=0.2)
    assert kept.n == 2
    np.testing.assert_array_equal(c2, c)
    np.testing.assert_array_equal(kept.values, fp.values)
    # the same masks with traces that share the transients are one object
    c[1] = shared + 0.3 * rng.standard_normal(300) + 2.0 * rng.standard_normal(300)
    assert 0 < np.corrcoef(c[0], c[1])[0, 1] < 0.8
    merged, _, _ = _merge(fp, c.copy(), 0.8, np.zeros(2, bool), mask_threshold=0.2)
    assert merged.n == 1


def test_soma_shape_cuts_a_dendrite_off_a_soma_keeps_round_somata_whole_and_drops_a_dendrite():
    box = (33, 33)
    soma = _disk(box, (16, 16), 5)
    with_dendrite = soma.copy()
    with_dendrite[15:17, 21:33] = 0.8  # a 2 px wide dendrite leaving the soma
    bar = np.zeros(box)
    bar[10:13, 2:30] = 1.0  # a piece of dendrite alone (3 px wide)
    silent = _disk(box, (16, 16), 4)  # a fixed (mean-image) footprint: never touched
    silent[0:3, 0:30] = 1.0
    values = np.stack([soma, with_dendrite, bar, silent]).astype(np.float32)
    fp = hals.Footprints(np.zeros((4, 2), np.int64), values.copy(), values > 0, (40, 40))
    fixed = np.array([False, False, False, True])
    keep = _soma_shape(fp, fixed, radius=3.0, threshold=0.2)
    assert keep.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(fp.values[0], values[0])  # a round soma keeps every pixel
    # the dendrite goes beyond one pixel from the soma's disk; the soma stays whole
    assert (fp.values[1][soma > 0] > 0).all()
    assert not (fp.values[1][15:17, 23:] > 0).any()
    np.testing.assert_array_equal(fp.support[1], fp.values[1] > 0)
    np.testing.assert_array_equal(fp.values[3], values[3])


def _mean_blobs(mean, dims, somata):
    """The mean-image blobs found with no footprint yet (cell radius 5.5 px), the somata's true disks, the blobs'
    masks (pixels x blobs)."""
    from dataclasses import replace

    from pmdcompress.demix.pipeline import _mean_footprints
    from pmdcompress.options import DemixOptions

    opts = DemixOptions.create(fs=7.0, cell_radius=5.5).resolved(600)
    opts = replace(opts, cell_radius=5.5, highpass_sigma=7.7, min_size=int(0.25 * np.pi * 5.5**2))
    none = hals.Footprints(np.zeros((0, 2), np.int64), np.zeros((0, 23, 23), np.float32),
                           np.zeros((0, 23, 23), bool), dims)
    found = _mean_footprints(mean, none, opts, (23, 23))
    truth = _masks([_disk(dims, c, 5.5) for c in somata])
    return found, truth, (found.to_sparse() > 0).astype(np.float32).tocsc()


def test_mean_image_blobs_in_bright_texture_are_not_somata_but_filled_somata_are():
    """Silent somata from the mean image: filled somata stand out of their surround; neuropil texture
    (many small bright spots, each above the whole image's robust spread) does not make components."""
    from pmdcompress.demix.pipeline import MEAN_BLOB_TEXTURE_CONTRAST

    rng = np.random.default_rng(3)
    dims = (120, 160)
    mean = 100.0 + rng.normal(0, 1.0, dims)
    # textured right half: boutons and dendrite cross-sections, 2-3 px bright spots every ~6 px
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    spots = [(y, x) for y in range(4, dims[0] - 4, 6) for x in range(84, dims[1] - 4, 6)]
    for y, x in spots:
        y, x = y + rng.integers(-1, 2), x + rng.integers(-1, 2)
        mean += rng.uniform(20, 40) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.6**2))
    somata = [(30, 25), (60, 50), (95, 30), (60, 120)]  # the last one inside the texture, twice as bright
    for k, c in enumerate(somata):
        mean += (60.0 if k == 3 else 30.0) * _disk(dims, c, 5.5)
    found, truth, masks = _mean_blobs(mean, dims, somata)
    centers = np.array([np.divmod(masks.indices[masks.indptr[j] : masks.indptr[j + 1]], dims[1])
                        for j in range(found.n)], dtype=object)
    centers = np.array([[np.mean(c[0]), np.mean(c[1])] for c in centers]).reshape(-1, 2)
    hits = iou_matrix(masks, truth).max(axis=0) if found.n else np.zeros(len(somata))
    assert np.all(hits >= 0.3), hits  # every filled soma, the one in the texture too
    in_texture = (centers[:, 1] >= 80) & (np.hypot(centers[:, 0] - 60, centers[:, 1] - 120) > 8)
    assert found.n == len(somata) and not in_texture.any(), centers
    # without the texture test the same spots are taken as somata (the test above can fail)
    import pmdcompress.demix.pipeline as pipeline

    saved = pipeline.MEAN_BLOB_TEXTURE_CONTRAST
    try:
        pipeline.MEAN_BLOB_TEXTURE_CONTRAST = 0.0
        loose, _, _ = _mean_blobs(mean, dims, somata)
    finally:
        pipeline.MEAN_BLOB_TEXTURE_CONTRAST = saved
    assert MEAN_BLOB_TEXTURE_CONTRAST > 0 and loose.n >= found.n + 2


def test_mean_image_somata_cut_by_the_field_edge_are_found_and_an_edge_bar_is_not():
    """A filled soma cut in half by the frame's edge is compact for the frame it lies in (its compactness is
    measured against the part of the enclosing disk inside the frame); a bright bar along the edge is not."""
    from pmdcompress.demix.pipeline import _inside_fraction

    assert _inside_fraction(50.0, 50.0, 6.0, (100, 100)) == 1.0
    assert _inside_fraction(50.0, 0.0, 6.0, (100, 100)) == pytest.approx(0.5, abs=0.06)
    assert _inside_fraction(0.0, 0.0, 6.0, (100, 100)) == pytest.approx(0.25, abs=0.06)

    rng = np.random.default_rng(5)
    dims = (120, 160)
    mean = 100.0 + rng.normal(0, 1.0, dims)
    somata = [(40, 0), (0, 90), (70, 159), (80, 60)]  # left, top and right edges, and one inside
    for c in somata:
        mean += 30.0 * _disk(dims, c, 5.5)
    mean[100:104, 100:160] += 30.0  # a bright bar (a vessel's wall) along the right part of the bottom
    mean[117:120, 20:50] += 30.0  # ... and one on the bottom edge itself
    found, truth, masks = _mean_blobs(mean, dims, somata)
    hits = iou_matrix(masks, truth).max(axis=0) if found.n else np.zeros(len(somata))
    assert np.all(hits >= 0.5), hits
    assert found.n == len(somata), found.n  # neither bar


def test_mean_image_blobs_smaller_than_half_a_soma_are_not_somata_at_a_small_working_radius():
    """Where the working cell radius is set below the somata's (a binned movie: a pass at 2.5 px), the blob finder's
    own floor (a quarter of that radius's disk, 4 px) lets bright specks of 5 px (boutons, dendrite
    cross-sections) through; the floor of half the disk of the somata's measured radius keeps every soma and
    no speck."""
    from dataclasses import replace

    from pmdcompress.demix.pipeline import _mean_footprints, blob_options
    from pmdcompress.options import DemixOptions

    rng = np.random.default_rng(7)
    dims = (80, 100)
    mean = 100.0 + rng.normal(0, 1.0, dims)
    somata = [(15, 15), (40, 30), (62, 18), (20, 70)]
    for c in somata:
        mean += 30.0 * _disk(dims, c, 3.0)
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    for y, x in [(45, 60), (60, 75), (35, 85), (65, 50), (8, 40), (70, 90)]:
        mean += 40.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 0.7**2))
    opts = DemixOptions.create(fs=7.0, cell_radius=2.5).resolved(600)
    opts = replace(opts, cell_radius=2.5, highpass_sigma=3.5, min_size=int(0.25 * np.pi * 2.5**2))
    none = hals.Footprints(np.zeros((0, 2), np.int64), np.zeros((0, 11, 11), np.float32),
                           np.zeros((0, 11, 11), bool), dims)
    truth = _masks([_disk(dims, c, 3.0) for c in somata])
    loose = _mean_footprints(mean, none, opts, (11, 11))
    assert loose.n == len(somata) + 6  # the specks pass the working radius's floor (the test below can fail)
    found = _mean_footprints(mean, none, blob_options(opts, 2.6), (11, 11))
    masks = (found.to_sparse() > 0).astype(np.float32).tocsc()
    assert found.n == len(somata), found.n
    assert np.all(iou_matrix(masks, truth).max(axis=0) >= 0.5)
    # a working radius well above the somata's keeps the finder's own floor
    assert blob_options(replace(opts, min_size=28), 4.0).min_size == 28


def test_tissue_bounds_are_the_frame_less_its_dark_edge_bands():
    """A scanner's dark band (the full neurofinder frames have 16 dark columns on one side) is cut off; dim tissue
    (neurofinder_dev's top rows stand at 0.45 of the field's median) and a dark vessel inside the field are not."""
    from pmdcompress.demix.pipeline import mirror_outside, tissue_bounds

    rng = np.random.default_rng(11)
    mean = 200.0 + 20.0 * rng.standard_normal((100, 140))
    mean[:30] *= 0.45  # dim tissue at the top
    mean[:, 70:74] = 15.0  # a vessel's shadow across the whole field
    assert tissue_bounds(mean) == (0, 100, 0, 140)
    banded = mean.copy()
    banded[:, :16] = 4.0 + rng.standard_normal((100, 16))  # dark columns on the left ...
    banded[:2] = 3.0  # ... and rows on top
    banded[:, -3:] = 0.0  # ... and right
    bounds = tissue_bounds(banded)
    assert bounds == (2, 100, 16, 137)
    mirrored = mirror_outside(banded, bounds)
    np.testing.assert_array_equal(mirrored[2:, 16:137], banded[2:, 16:137])  # the tissue is untouched
    np.testing.assert_array_equal(mirrored[5:, 15], banded[5:, 16])  # the band mirrors it
    np.testing.assert_array_equal(mirrored[5:, 0], banded[5:, 31])
    np.testing.assert_array_equal(mirrored[0, 20:40], banded[3, 20:40])
    assert mirror_outside(mean, tissue_bounds(mean)) is mean
    assert tissue_bounds(np.full((10, 12), 7.0)) == (0, 10, 0, 12)  # a flat image has no band
    wide = mean.copy()
    wide[:, :60] = 4.0  # dark over more than a quarter of the width: not a scanner's band, left alone
    assert tissue_bounds(wide)[2] == 0


def test_somata_beside_a_dark_edge_band_are_found_as_at_the_frame_edge():
    """Next to a dark band the high-passed mean image steps from tissue to nothing; the mean-image finders see the
    tissue mirrored over the band (as at the frame's own edge) and place nothing in it: the somata along the band
    are found as on the tissue alone, cut by its edge."""
    from dataclasses import replace

    from pmdcompress.demix.pipeline import _mean_footprints, _nucleus_footprints, mirror_outside, tissue_bounds
    from pmdcompress.options import DemixOptions

    rng = np.random.default_rng(5)
    pad, dims = 16, (120, 160)
    tissue = 100.0 + rng.normal(0, 1.0, dims)
    blobs = [(40, 0), (30, 90), (95, 3)]  # filled somata: on the tissue's left edge, inside, 3 px from the edge
    for c in blobs:
        tissue += 30.0 * _disk(dims, c, 5.5)
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    nuclei = [(70, 5), (60, 120)]  # dark nuclei in a bright rim: 5 px from the edge, inside
    for cy, cx in nuclei:
        r = np.hypot(yy - cy, xx - cx)
        tissue += np.where(r < 4.0, -8.0, np.where(r < 6.5, 10.0, 0.0))
    banded = np.concatenate([3.0 + rng.normal(0, 1.0, (dims[0], pad)), tissue], axis=1)
    bounds = tissue_bounds(banded)
    assert bounds == (0, dims[0], pad, dims[1] + pad)
    shape_mean = mirror_outside(banded, bounds)
    opts = DemixOptions.create(fs=7.0, cell_radius=5.5).resolved(600)
    opts = replace(opts, cell_radius=5.5, highpass_sigma=7.7, min_size=int(0.25 * np.pi * 5.5**2))

    def found(finder, mean, width, **kw):
        none = hals.Footprints(np.zeros((0, 2), np.int64), np.zeros((0, 23, 23), np.float32),
                               np.zeros((0, 23, 23), bool), (dims[0], width))
        fp = finder(mean, none, opts, (23, 23), **kw)
        images = np.zeros((fp.n, dims[0], width + 22), bool)
        for j, (y, x) in enumerate(fp.origins):
            images[j, y : y + 23, x : x + 23] = fp.values[j][: dims[0] - y] > 0
        return images[:, :, :width]

    for finder, centres in ((_mean_footprints, blobs), (_nucleus_footprints, nuclei)):
        alone = found(finder, tissue, dims[1])  # the tissue as its own frame
        beside = found(finder, shape_mean, dims[1] + pad, bounds=bounds)
        assert not beside[:, :, :pad].any()  # nothing in the band
        beside = beside[:, :, pad:]
        for cy, cx in centres:
            on = [j for j in range(alone.shape[0]) if alone[j, cy, cx]]
            assert len(on) == 1, (finder.__name__, cy, cx)
            hit = [j for j in range(beside.shape[0]) if beside[j, cy, cx]]
            assert len(hit) == 1, (finder.__name__, cy, cx)
            a, b = alone[on[0]], beside[hit[0]]
            assert (a & b).sum() / (a | b).sum() >= 0.9
        assert beside.shape[0] == alone.shape[0] == len(centres)


# --------------------------------------------------------------------------- a structure with transients of its own


def test_unrelated_pixels_are_the_more_variable_uncorrelated_ones_computed_from_the_factors():
    """unrelated_pixels equals its definition on the movie formed explicitly (numpy: variances and Pearson
    correlations with the seed pixel in its box, the null level from the seed's lag-one autocorrelation)."""
    from pmdcompress.demix.factors import ColumnStack
    from pmdcompress.demix.pipeline import COHERENCE_SDS, unrelated_pixels

    rng = np.random.default_rng(5)
    dims, n_frames, k = (20, 24), 300, 30
    u = sp.random(dims[0] * dims[1], k, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    u2 = sp.random(dims[0] * dims[1], 4, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    v = rng.standard_normal((k + 4, n_frames)).astype(np.float32)
    v = np.cumsum(v, axis=1) * 0.1 + v  # autocorrelated traces
    seeds = np.array([[5, 6], [14, 17], [0, 0]])
    box = (9, 9)
    origins = hals.box_origins(seeds, box, dims)
    yy, xx = np.mgrid[: box[0], : box[1]]
    for factors, frames, radius in ((u, v[:k], None), (ColumnStack(u, -u2), v, None), (u, v[:k], 3.5)):
        got = unrelated_pixels(factors, frames, seeds, origins, box, dims, which=np.array([0, 1]), radius=radius)
        dense = sp.hstack(factors.parts).toarray() if isinstance(factors, ColumnStack) else factors.toarray()
        movie = (dense.astype(np.float64) @ frames.astype(np.float64)).reshape(*dims, n_frames)
        assert not got[2].any()  # not asked for
        for j in (0, 1):
            (sy, sx), (y, x) = seeds[j], origins[j]
            traces = movie[y : y + box[0], x : x + box[1]].reshape(-1, n_frames)
            traces = traces - traces.mean(axis=1, keepdims=True)
            seed = movie[sy, sx] - movie[sy, sx].mean()
            r = traces @ seed / np.sqrt((traces**2).sum(axis=1) * (seed @ seed))
            rho = np.clip(seed[1:] @ seed[:-1] / (seed @ seed), 0.0, 0.99)
            level = COHERENCE_SDS * np.sqrt((1 + rho**2) / ((1 - rho**2) * n_frames))
            want = (r < level) & ((traces**2).sum(axis=1) > seed @ seed)
            if radius is not None:  # only within the radius of the seed
                want &= (((yy + y - sy) ** 2 + (xx + x - sx) ** 2) <= radius**2).ravel()
            np.testing.assert_array_equal(got[j].ravel(), want)
            assert want.any() and not want.all()


def _strip_scene():
    """A soma (disk of radius 5 at (20, 20)) and, beside it, a thin strip with its own, five times larger
    transients (rows 13-14, columns 18-27): a dendrite's cross-section too thin for a seed region."""
    rng = np.random.default_rng(11)
    dims, n_frames = (40, 40), 400
    soma = _disk(dims, (20, 20), 5)
    strip = np.zeros(dims)
    strip[13:15, 18:28] = 1.0
    movie = (soma[None] * _calcium(rng, n_frames, 0.03)[:, None, None]
             + 5.0 * strip[None] * _calcium(rng, n_frames, 0.03)[:, None, None]
             + 0.05 * rng.standard_normal((n_frames, *dims)))
    u = sp.csr_matrix(movie.reshape(n_frames, -1).T.astype(np.float32))
    return dims, u, np.eye(n_frames, dtype=np.float32), soma.astype(bool), strip.astype(bool)


def test_a_footprint_zone_leaves_out_a_structure_with_larger_transients_of_its_own():
    from pmdcompress.demix.pipeline import _new_footprints, unrelated_pixels

    dims, u, v, soma, strip = _strip_scene()
    seeds = np.array([[20, 20]])
    box = (25, 25)
    origins = hals.box_origins(seeds, box, dims)
    regions = np.zeros(dims, np.int32)
    regions[soma] = 1
    image = soma.astype(np.float32)
    unrelated = unrelated_pixels(u, v, seeds, origins, box, dims)
    (y, x), (bh, bw) = origins[0], box
    assert unrelated[0][strip[y : y + bh, x : x + bw]].all()
    assert not unrelated[0][soma[y : y + bh, x : x + bw]].any()
    plain = _new_footprints(image, seeds, regions, box, dims, zone_radius=13.0)
    fp = _new_footprints(image, seeds, regions, box, dims, zone_radius=13.0, unrelated=unrelated, kept=[0])
    inside = strip[y : y + bh, x : x + bw]
    assert plain.zone[0][inside].all()  # without the test the strip is in reach
    assert not fp.zone[0][inside].any()
    assert fp.zone[0][soma[y : y + bh, x : x + bw]].all()
    # ... unless another kept seed's region holds the strip: that seed's component models it.
    seeds2 = np.array([[20, 20], [13, 22]])
    origins2 = hals.box_origins(seeds2, box, dims)
    regions[strip] = 2
    unrelated2 = unrelated_pixels(u, v, seeds2, origins2, box, dims)
    both = _new_footprints(image, seeds2, regions, box, dims, zone_radius=13.0, unrelated=unrelated2,
                           kept=[0, 1])
    y, x = origins2[0]
    assert both.zone[0][strip[y : y + bh, x : x + bw]].all()
    alone = _new_footprints(image, seeds2, regions, box, dims, zone_radius=13.0, unrelated=unrelated2, kept=[0])
    assert not alone.zone[0][strip[y : y + bh, x : x + bw]].any()


def test_a_soma_beside_a_stronger_strip_keeps_its_footprint_through_the_rounds():
    """The alternating rounds from the soma's seed: with the zone the footprint stays on the soma; without it,
    it is drawn onto the strip (the failure the zone prevents)."""
    from pmdcompress.demix.pipeline import _iterate, _new_footprints, unrelated_pixels

    dims, u, v, soma, strip = _strip_scene()
    seeds = np.array([[20, 20]])
    box = (25, 25)
    regions = np.zeros(dims, np.int32)
    regions[soma] = 1
    regions[13:15, 18:22] = 1  # the seed's first region reaches the strip, as a watershed basin can
    image = (regions > 0).astype(np.float32)
    unrelated = unrelated_pixels(u, v, seeds, hals.box_origins(seeds, box, dims), box, dims)
    ious = {}
    for name, kw in (("plain", {}), ("zone", {"unrelated": unrelated, "kept": [0]})):
        fp = _new_footprints(image, seeds, regions, box, dims, zone_radius=13.0, **kw)
        bg = hals.Background(np.zeros((0, *dims)), np.zeros((0, v.shape[1])), 8.0)
        _iterate(u, v.astype(np.float64), fp, bg, np.zeros(1, bool), 8)
        mask = fp.images()[0] > 0.2 * fp.values[0].max()
        ious[name] = (mask & soma).sum() / (mask | soma).sum()
    assert ious["zone"] > 0.7
    assert ious["plain"] < 0.5
