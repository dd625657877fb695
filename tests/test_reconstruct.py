"""Reading frames back: the kept time chunks of the temporal factors change nothing."""

import numpy as np
import pytest

import pmdcompress
from conftest import agree_with_numpy, blobs_movie


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    noisy, _ = blobs_movie(n_frames=120, shape=(24, 24), n_sources=3, noise=2.0, seed=1)
    path = tmp_path_factory.mktemp("reconstruct") / "m.pmd.zarr"
    return pmdcompress.compress(noisy, path, method="svd", patch_shape=12, overlap=4, chunk_frames=32, workers=1)


@pytest.mark.parametrize("windows", [[(0, 10), (10, 40), (35, 37), (90, 120)], [(0, 120)],
                                     [(31, 33), (0, 1), (100, 65)]])
def test_temporal_blocks_equal_the_stored_factors(store, windows):
    reopened = pmdcompress.open(store.path)  # a fresh reader: nothing kept yet
    direct = np.asarray(reopened.temporal[...], np.float32)
    for t0, t1 in windows:
        np.testing.assert_array_equal(reopened.temporal_block(t0, t1), direct[:, t0:t1])


def test_reads_in_any_order_equal_one_read(store):
    reopened = pmdcompress.open(store.path)
    whole = reopened.read(0, 120, dtype=np.uint16)
    for t0, t1 in [(70, 90), (0, 5), (5, 64), (64, 120), (33, 34)]:
        np.testing.assert_array_equal(reopened.read(t0, t1, dtype=np.uint16), whole[t0:t1])


def test_reads_into_any_output_layout_equal_the_dense_model(store):
    """Cells of every width (multiples of 8 or not), into a whole output or a strided view, all as in the format."""
    import reference

    model = reference.dense_model(store)
    expected = np.clip(np.floor(model.astype(np.float32) + np.float32(0.5)), 0, 65535)
    whole = store.read(0, 120, dtype=np.uint16)
    np.testing.assert_allclose(whole, expected, atol=1)  # float32 sums of the cells vs float64 ones
    padded = np.zeros((120, 30, 33), np.uint16)
    view = padded[:, 3:27, 5:29]  # not contiguous: the cells are written through the view
    store.read(0, 120, dtype=np.uint16, out=view)
    np.testing.assert_array_equal(view, whole)
    assert not padded[:, :3].any() and not padded[:, :, :5].any() and not padded[:, :, 29:].any()
    crop = store.read(10, 50, (1, 23), (8, 24), dtype=np.float32)  # crop: cells cut at odd widths
    np.testing.assert_allclose(crop, model[10:50, 1:23, 8:24], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("bounds, message", [((5, 121), "frames 5:121 are outside the store's 120 frames (0:120)"),
                                             ((9, 3), "frames 9:3 are outside"),
                                             ((0, 4, (0, 25)), "rows 0:25 are outside the store's 24 rows"),
                                             ((0, 4, None, (-1, 3)), "columns -1:3 are outside")])
def test_a_read_outside_the_movie_says_which_bound(store, bounds, message):
    with pytest.raises(IndexError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.read(*bounds)


def test_float16_frames_are_the_float32_frames_rounded_once(store):
    # numba cannot write float16: the frames are made in float32 and cast (as numpy rounds), into a new or a given
    # array, whole or through a strided view
    frames = store.read(4, 30, (2, 20), (3, 24))
    np.testing.assert_array_equal(store.read(4, 30, (2, 20), (3, 24), dtype=np.float16), frames.astype(np.float16))
    padded = np.zeros((26, 20, 25), np.float16)
    store.read(4, 30, (2, 20), (3, 24), out=padded[:, 1:19, 2:23])
    np.testing.assert_array_equal(padded[:, 1:19, 2:23], frames.astype(np.float16))
    assert not padded[:, 0].any() and not padded[:, :, :2].any()


def test_a_read_into_the_wrong_output_says_what_it_needs(store):
    with pytest.raises(ValueError, match=r"out has shape \(3, 24, 24\); frames 0:2 .* need \(2, 24, 24\)"):
        store.read(0, 2, out=np.empty((3, 24, 24), np.float32))
    for dtype in (bool, np.complex64, np.longdouble):
        with pytest.raises(TypeError, match="need an integer or float dtype of at most 64 bits"):
            store.read(0, 2, dtype=dtype)


def test_zero_d_integer_arrays_index_as_integers_and_booleans_do_not(store):
    whole = store[:]
    np.testing.assert_array_equal(store[np.array(7), np.int64(3)], whole[7, 3])
    brightest = np.asarray(np.argmax(whole.mean(axis=(1, 2))))  # 0-d, as numpy's reductions return through asarray
    np.testing.assert_array_equal(store[brightest], whole[int(brightest)])
    for key in (True, np.bool_(False), (slice(None), True)):
        with pytest.raises(IndexError, match="a boolean does not index a movie"):
            store[key]


def test_every_index_numpy_takes_gives_numpy_s_frames(store):
    """Basic and advanced indexing as numpy's on the whole movie: the same values and shape, or both refuse
    (with one quirk kept: an ellipsis that covers no axis still separates two index arrays)."""
    whole = store[:]
    shape = store.shape
    agree_with_numpy(store, whole, np.random.default_rng(7), 600)
    region = np.zeros(shape[1:], bool)
    region[3:9, 10:14] = True
    np.testing.assert_array_equal(store[:, region], whole[:, region])  # a (Y, X) mask: the region's traces
    with pytest.raises(IndexError, match=r"a boolean index of shape \(5, 5\) does not fit axes 1-2"):
        store[:, np.ones((5, 5), bool)]


def test_a_frame_selection_makes_only_those_frames(store, monkeypatch):
    reopened = pmdcompress.open(store.path)
    whole = store[:]
    made = []
    read = type(reopened).read

    def counting(self, t0=0, t1=None, *args, **kwargs):
        made.append(t1 - t0)
        return read(self, t0, t1, *args, **kwargs)

    monkeypatch.setattr(type(reopened), "read", counting)
    np.testing.assert_array_equal(reopened[::40, 2], whole[::40, 2])
    assert sum(made) == 3  # frames 0, 40, 80: not the 120 the slice spans
    made.clear()
    np.testing.assert_array_equal(reopened[[90, 5, 6, 7, 90, -1]], whole[[90, 5, 6, 7, 90, -1]])
    assert sorted(made) == [1, 1, 3]  # runs 5-7, 90, 119: each frame made once


def test_asarray_reads_the_whole_movie_once(store, monkeypatch):
    whole = store[:]
    reopened = pmdcompress.open(store.path)
    calls = []
    read = type(reopened).read
    monkeypatch.setattr(type(reopened), "read", lambda self, *a, **k: calls.append(a) or read(self, *a, **k))
    np.testing.assert_array_equal(np.asarray(reopened), whole)
    assert len(calls) == 1  # not one read per frame, as numpy's sequence protocol would do
    np.testing.assert_array_equal(np.asarray(reopened, dtype=np.float64), whole.astype(np.float64))
    np.testing.assert_array_equal(np.array(reopened, dtype=np.int16), whole.astype(np.int16))  # numpy's cast
    with pytest.raises(ValueError, match="no array to view without a copy"):
        np.asarray(reopened, copy=False)


def test_a_read_takes_its_crop_as_pairs_or_slices(store):
    np.testing.assert_array_equal(store.read(3, 9, slice(2, 20), slice(None, -4)), store.read(3, 9, (2, 20), (0, 20)))
    np.testing.assert_array_equal(store.read(0, 2, slice(-5, 100)), store.read(0, 2, (19, 24)))  # as Python clips
    with pytest.raises(ValueError, match="a crop of rows takes every one: slice"):
        store.read(0, 2, slice(0, 10, 2))


def test_numpy_functions_take_the_store_as_its_frames(store):
    whole = store[:]
    assert np.mean(store) == pytest.approx(float(whole.mean()))  # the store's `mean` is its mean image, not a method
    np.testing.assert_array_equal(np.max(store, axis=0), whole.max(axis=0))
    np.testing.assert_array_equal(np.percentile(store, 90, axis=0), np.percentile(whole, 90, axis=0))
    np.testing.assert_array_equal(np.concatenate([store, store[:3]]), np.concatenate([whole, whole[:3]]))
    assert np.shape(store) == whole.shape and np.ndim(store) == 3 and np.size(store) == whole.size


def test_a_long_read_of_a_small_crop_decodes_only_its_rows(store, monkeypatch):
    """A pixel's or a region's trace over many time chunks takes only the temporal rows its cells use, a chunk at a
    time: the same frames as through every row."""
    reopened = pmdcompress.open(store.path)
    k = reopened.temporal.shape[0]
    crops = [((5, 6), (7, 8)), ((0, 9), (14, 24))]
    few = {crop: reopened._rows_of(reopened.cells(*crop)) for crop in crops}
    assert all(rows is not None and rows.size <= k // 2 for rows in few.values())
    band = ((10, 14), (0, 24))  # a band across the field uses every row: read as a whole
    assert reopened._rows_of(reopened.cells(*band)) is None
    fast = {crop: reopened.read(0, 120, *crop) for crop in crops}  # 120 frames, 4 time chunks of 32
    monkeypatch.setattr(type(reopened), "_rows_of", lambda self, cells: None)  # every row, as before
    for crop, frames in fast.items():
        np.testing.assert_array_equal(frames, reopened.read(0, 120, *crop))
    np.testing.assert_array_equal(store[:, 5, 7], fast[crops[0]][:, 0, 0])


def test_a_long_read_is_made_in_blocks_of_frames(store, monkeypatch):
    """read() makes RENDER_FRAMES at a time (a cell's product stays in cache): the same floats as the reads of
    those blocks one by one, into a new array or a strided view."""
    from pmdcompress import reconstruct

    monkeypatch.setattr(reconstruct, "RENDER_FRAMES", 32)
    reopened = pmdcompress.open(store.path)
    parts = np.concatenate([reopened.read(a, min(a + 32, 120)) for a in range(0, 120, 32)])
    np.testing.assert_array_equal(reopened.read(0, 120), parts)
    padded = np.zeros((120, 26, 26), np.float32)
    reopened.read(0, 120, out=padded[:, 1:25, 2:26])
    np.testing.assert_array_equal(padded[:, 1:25, 2:26], parts)


def test_decompress_to_no_output_says_where_the_frames_in_memory_are(store):
    from pmdcompress.errors import OptionError

    with pytest.raises(OptionError, match=r"decompress writes a movie file: give output .* index the store"):
        pmdcompress.decompress(store, None)


def test_to_dask_refuses_empty_chunks(store):
    assert store.to_dask(chunks=(8, -1, -1)).chunks[1:] == ((24,), (24,))
    with pytest.raises(ValueError, match=r"chunks 0: a chunk holds at least one frame"):
        store.to_dask(chunks=0)
