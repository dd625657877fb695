"""Session 15: the statistics pass and the fit buffer cost less CPU and give the same floats.

- A fit buffer whose bins are single frames of an integer movie of up to 16 bits keeps the frames as read
  (uint16: half the bytes of float32 to write and to read back); float32 holds every such value exactly, so
  its patches and frames read back are the float32 buffer's to the bit, and a whole compression stores the
  same arrays either way.
- The box filter of the annulus means (``preprocess._box_mean_kernel``) runs its sums along x four rows side by
  side and divides them afterwards: scipy's uniform filter, its twin below, to the bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import pmdcompress
from conftest import blobs_movie
from pmdcompress.pipeline import compress as compress_module
from pmdcompress.pipeline.scratch import FitBuffer, LazyFrames
from pmdcompress.preprocess import noise_lag_correlation, trend_basis


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_buffer_of_the_movies_integers_reads_back_the_float32_buffers_values(tmp_path, on_disk):
    rng = np.random.default_rng(1)
    n_rows, height, width = 29, 23, 30
    raw = rng.integers(0, 65535, (n_rows, height, width), dtype=np.uint16)
    raw[:, :3] = 65535  # the extremes too
    raw[:, -2:] = 0
    knots = np.array([0.0, 10.0, 28.0])
    trend = rng.normal(0, 50, (len(knots), height, width)).astype(np.float32)
    mean = rng.normal(30000, 100, (height, width)).astype(np.float32)
    scale = rng.uniform(50, 200, (height, width)).astype(np.float32)
    buffers = {}
    for dtype in (np.float32, np.uint16):
        folder = tmp_path / np.dtype(dtype).name if on_disk else None
        if folder is not None:
            folder.mkdir()
        buffer = FitBuffer.create(n_rows, (height, width), (8, 7), folder, dtype)
        for first, last in [(0, 4), (4, 5), (5, 29)]:
            # what the statistics tasks write: float32 bin means, or the frames as read
            rows = raw[first:last].reshape(last - first, -1)
            buffer.write_rows(first, rows.astype(np.float32) if dtype == np.float32 else rows)
        buffer.mean, buffer.scale = mean, scale
        buffer.trend, buffer.basis = trend, trend_basis(np.arange(n_rows) + 0.5, knots)
        buffers[np.dtype(dtype).name] = buffer
    assert buffers["uint16"].raw.dtype == np.uint16
    if on_disk:  # half the bytes
        sizes = {k: (tmp_path / k / "fit-buffer.raw").stat().st_size for k in buffers}
        assert sizes["uint16"] * 2 == sizes["float32"]
    a, b = buffers["float32"], buffers["uint16"]
    # the whole buffer standardised at once, in float32 (what the pipeline did before the scratch)
    whole = raw.astype(np.float32).reshape(n_rows, -1) - a.basis @ trend.reshape(len(knots), -1)
    whole = (whole.reshape(raw.shape) - mean) / scale
    for ys, xs in [(slice(0, 8), slice(0, 7)), (slice(3, 19), slice(5, 30)), (slice(15, 23), slice(20, 30))]:
        got = b.patch(ys, xs)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, a.patch(ys, xs))
        np.testing.assert_array_equal(got, whole[:, ys, xs].reshape(n_rows, -1))
    rows = np.array([7, 3, 4, 28, 0, 8])
    np.testing.assert_array_equal(b.frames(rows), a.frames(rows))
    np.testing.assert_array_equal(b.frames(rows), whole[rows])
    assert noise_lag_correlation(LazyFrames(b)) == noise_lag_correlation(LazyFrames(a))


def test_the_fit_buffer_keeps_frames_as_read_only_where_float32_holds_them():
    assert compress_module._fit_dtype(np.uint16, 1) == np.uint16
    assert compress_module._fit_dtype(np.int16, 1) == np.int16
    assert compress_module._fit_dtype(np.uint8, 1) == np.uint8
    for dtype, fit_bin in [(np.uint16, 2), (np.float32, 1), (np.int32, 1), (np.uint32, 1), (np.float64, 1)]:
        assert compress_module._fit_dtype(dtype, fit_bin) == np.float32
    with pytest.raises(ValueError, match="float32 or integers of at most 16 bits"):
        FitBuffer.create(3, (4, 5), (2, 2), None, np.int32)


def _arrays(path) -> dict:
    group = zarr.open_group(path, mode="r")
    return {name: array[...] for name, array in group.arrays()}


@pytest.mark.parametrize("frames, options", [(90, {"fit_bin": 1}), (130, {"fit_bin": 1, "fit_frames": 60})])
def test_a_compression_stores_the_same_arrays_with_either_fit_buffer(tmp_path, monkeypatch, frames, options):
    # uint16 frames, bins of one frame: the buffer keeps them as read; forced to float32 it holds the same values
    movie, _ = blobs_movie(n_frames=frames, shape=(40, 52), seed=3)
    movie = np.clip(np.round(movie * 40 + 1000), 0, 65535).astype(np.uint16)
    options = dict(patch_shape=16, overlap=4, chunk_frames=32, **options)
    seen = []
    fit_dtype = compress_module._fit_dtype

    def recording(dtype, fit_bin):
        seen.append(fit_dtype(dtype, fit_bin))
        return seen[-1]

    monkeypatch.setattr(compress_module, "_fit_dtype", recording)
    pmdcompress.compress(movie, tmp_path / "as_read.pmd.zarr", workers=1, **options)
    monkeypatch.setattr(compress_module, "_fit_dtype", lambda dtype, fit_bin: np.dtype(np.float32))
    pmdcompress.compress(movie, tmp_path / "float32.pmd.zarr", workers=1, **options)
    assert seen == [np.uint16]
    got, want = _arrays(tmp_path / "as_read.pmd.zarr"), _arrays(tmp_path / "float32.pmd.zarr")
    assert sorted(got) == sorted(want) and "temporal" in got and "spatial" in got
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def box_mean_twin(frame: np.ndarray, r: int) -> np.ndarray:
    """The (2r + 1)^2 box mean of FRAME with zeros outside it: scipy's uniform filter, the numbers that
    preprocess._box_mean_kernel reproduces to the bit (its running sums in scipy's order)."""
    from scipy import ndimage

    return ndimage.uniform_filter(np.asarray(frame, np.float64), size=2 * r + 1, mode="constant")


@pytest.mark.parametrize("height", [1, 2, 3, 4, 5, 7, 8, 9, 13])
@pytest.mark.parametrize("r", [0, 1, 4, 8])
def test_box_mean_kernel_with_four_rows_at_a_time_is_scipys_to_the_bit(height, r):
    # rows in fours (and the rest one by one), the sums divided afterwards: the same quotients as scipy's
    from pmdcompress.preprocess import _box_mean_kernel

    rng = np.random.default_rng(height * 10 + r)
    for width in (1, 3, 6, 17, 40):
        frame = rng.normal(size=(height, width)) * 100
        frame[rng.random(frame.shape) < 0.1] = 0.0
        out = np.full((height, width), np.nan)
        _box_mean_kernel(frame, r, np.empty(width), np.empty((height, width)), out)
        want = box_mean_twin(frame, r)
        assert out.tobytes() == want.tobytes(), (height, width, r)
