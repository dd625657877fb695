"""Session 15: the statistics pass and the fit buffer cost less CPU and give the same floats.

- A fit buffer whose bins are single frames of an integer movie of up to 16 bits keeps the frames as read
  (uint16: half the bytes of float32 to write and to read back); float32 holds every such value exactly, so
  its patches and frames read back are the float32 buffer's to the bit, and a whole compression stores the
  same arrays either way.
- PackBits-compressed TIFF strips (optinist_mouse2p) are read in one piece per chunk and decoded page by page by
  imagecodecs, without tifffile's per-page machinery: the same frames as tifffile reads, and tifffile's route
  (with its error messages) wherever a page does not decode to one frame.
- The box filter of the annulus means (``preprocess._box_mean_kernel``) runs its sums along x four rows side by
  side and divides them afterwards: scipy's uniform filter, its twin below, to the bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

import pmdcompress
from conftest import blobs_movie
from pmdcompress.errors import InputError
from pmdcompress.io.readers import open_movie
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


PACKBITS_FILES = {
    "uint16": dict(dtype=np.uint16),
    "uint16-strips": dict(dtype=np.uint16, rowsperstrip=3),
    "uint16-bigendian": dict(dtype=np.uint16, byteorder=">", rowsperstrip=4),
    "int16-bigtiff": dict(dtype=np.int16, bigtiff=True),
    "uint8": dict(dtype=np.uint8, rowsperstrip=5),
    "float32": dict(dtype=np.float32),
}


def _packbits_movie(tmp_path, name, shape=(13, 11, 9), rowsperstrip=None, **kwargs):
    rng = np.random.default_rng(len(name))
    dtype = np.dtype(kwargs.pop("dtype"))
    data = rng.normal(100, 30, shape)
    data[:, :4, :4] = 7  # runs that PackBits repeats, beside literal runs
    data = data.astype(dtype)
    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, data, compression="packbits", photometric="minisblack", rowsperstrip=rowsperstrip,
                     **kwargs)
    return path, data


@pytest.mark.parametrize("name", sorted(PACKBITS_FILES))
def test_packbits_strips_read_the_frames_tifffile_reads(tmp_path, name):
    path, data = _packbits_movie(tmp_path, name, **PACKBITS_FILES[name])
    want = tifffile.imread(path)
    np.testing.assert_array_equal(want, data)
    with open_movie(path) as movie:
        assert movie._source._packbits and movie.access == "decode"
        assert movie.dtype == want.dtype.newbyteorder("=")
        movie._source._tif.asarray = None  # tifffile's route is not taken: it would fail
        for t0, t1 in [(0, 13), (3, 4), (5, 12)]:
            got = movie.read(t0, t1)
            assert got.dtype == movie.dtype and got.dtype.isnative
            np.testing.assert_array_equal(got, want[t0:t1])
            np.testing.assert_array_equal(movie.view(t0, t1), want[t0:t1])
    with open_movie(path, frames="2:9", crop="1:10,2:8") as movie:
        np.testing.assert_array_equal(movie.read(0, 7), want[2:9, 1:10, 2:8])


def test_packbits_pages_of_one_plane_of_a_stack(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, (5, 3, 8, 9), dtype=np.uint16)  # T Z Y X
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, data, compression="packbits", photometric="minisblack", metadata={"axes": "TZYX"})
    with open_movie(path, plane=1, frames="1:") as movie:
        assert movie._source._packbits
        movie._source._tif.asarray = None
        np.testing.assert_array_equal(movie.read(0, 4), data[1:, 1])


def test_a_packbits_page_that_does_not_decode_to_a_frame_goes_through_tifffile(tmp_path, monkeypatch):
    path, _ = _packbits_movie(tmp_path, "broken", dtype=np.uint16, shape=(6, 16, 20))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[3]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = bytes([0x80]) * count  # PackBits no-ops: page 3 decodes to nothing
    path.write_bytes(bytes(raw))

    def outcome(packbits: bool):
        with open_movie(path) as movie:
            movie._source._packbits = packbits
            try:
                return movie.read(0, 6)
            except InputError as exc:
                return str(exc)

    fallback = []
    read_packbits = type(open_movie(path)._source)._read_packbits

    def recording(self, t0, t1):
        fallback.append(read_packbits(self, t0, t1))
        return fallback[-1]

    monkeypatch.setattr(type(open_movie(path)._source), "_read_packbits", recording)
    got, want = outcome(True), outcome(False)
    assert fallback == [None]  # the page was left to tifffile
    if isinstance(want, str):
        assert got == want and "frame 3" in want
    else:
        np.testing.assert_array_equal(got, want)
