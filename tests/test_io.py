"""Streaming readers and writers: round trips, selections, error paths, atomicity."""

from __future__ import annotations

import os
import pickle
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from conftest import agree_with_numpy
from pmdcompress.errors import InputError, OutputExistsError, PMDError
from pmdcompress.io import writers
from pmdcompress.io.readers import Movie, open_movie
from pmdcompress.io.writers import open_writer

DATA = Path(__file__).parents[2] / "shared" / "data"


def make_movie(shape=(12, 10, 14), dtype=np.uint16, seed=0):
    """A small random movie with values spanning the dtype's useful range."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(100, 20, shape).astype(dtype)
    hi = min(np.iinfo(dtype).max, 60000)
    lo = max(np.iinfo(dtype).min, -1000)
    return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)


def assert_one_line(exc_info, filename: str) -> None:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    assert filename in msg, msg


def owns_memory(a: np.ndarray) -> bool:
    """True when ``a`` is not a view into a file mapping or into the source array."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.flags.owndata and not isinstance(a, np.memmap)


def snapshot(path: Path) -> tuple:
    """Bytes and mtime of a file, or of every file in a folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(p), p.read_bytes(), p.stat().st_mtime_ns) for p in files)


# --------------------------------------------------------------------------------------
# Fixtures that write one small movie per format.
# --------------------------------------------------------------------------------------


def write_tiff_frames_interleaved(path: Path, data: np.ndarray) -> None:
    """Uncompressed pages, each IFD followed by its data (not one contiguous block)."""
    with tifffile.TiffWriter(path) as tw:
        for frame in data:
            tw.write(frame, photometric="minisblack", metadata=None)


SOURCES = {
    "tiff-contiguous": (lambda p, a: tifffile.imwrite(p, a), ".tif", "memmap"),
    "tiff-interleaved": (write_tiff_frames_interleaved, ".tif", "direct"),
    "tiff-zlib": (lambda p, a: tifffile.imwrite(p, a, compression="zlib"), ".tif", "decode"),
    "tiff-zlib-strips": (lambda p, a: tifffile.imwrite(p, a, compression="zlib", rowsperstrip=3), ".tiff", "decode"),
    "bigtiff": (lambda p, a: tifffile.imwrite(p, a, bigtiff=True), ".btf", "memmap"),
    "bigtiff-zlib": (lambda p, a: tifffile.imwrite(p, a, bigtiff=True, compression="zlib"), ".tif", "decode"),
    "tiff-bigendian": (lambda p, a: tifffile.imwrite(p, a, byteorder=">"), ".tif", "memmap"),
    "imagej": (lambda p, a: tifffile.imwrite(p, a, imagej=True, metadata={"axes": "TYX"}), ".tif", "memmap"),
    "npy": (lambda p, a: np.save(p, a), ".npy", "memmap"),
    "npy-fortran": (lambda p, a: np.save(p, np.asfortranarray(a)), ".npy", "memmap"),
    "zarr-v3": (lambda p, a: zarr.create_array(str(p), data=a, chunks=(5, *a.shape[1:])), ".zarr", "array"),
    "zarr-v2": (
        lambda p, a: zarr.create_array(str(p), data=a, chunks=(4, 5, 5), zarr_format=2),
        ".zarr",
        "array",
    ),
    "zarr-group": (lambda p, a: zarr.open_group(str(p), mode="w").create_array("mov", data=a), ".zarr", "array"),
}


@pytest.mark.parametrize("kind", SOURCES)
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_reader_round_trip(tmp_path, kind, dtype):
    write, suffix, access = SOURCES[kind]
    data = make_movie(dtype=dtype)
    path = tmp_path / f"movie{suffix}"
    write(path, data)
    with open_movie(path) as movie:
        assert isinstance(movie, Movie)
        assert movie.shape == data.shape and len(movie) == data.shape[0]
        assert movie.dtype == data.dtype and movie.dtype.isnative
        assert movie.access == access
        assert movie.is_float == (data.dtype.kind == "f")
        block = movie.read(0, len(movie))
        np.testing.assert_array_equal(block, data)
        assert block.dtype == data.dtype
        part = movie.read(3, 8)
        np.testing.assert_array_equal(part, data[3:8])
        assert part.flags.c_contiguous and part.flags.writeable and owns_memory(part)
        assert movie.read(4, 4).shape == (0, *data.shape[1:])


def test_read_returns_a_copy_the_caller_may_change(tmp_path):
    data = make_movie()
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data)
    before = snapshot(path)
    with open_movie(path) as movie:
        block = movie.read(0, 4)
        block[:] = 0
        np.testing.assert_array_equal(movie.read(0, 4), data[:4])
    assert snapshot(path) == before


@pytest.mark.parametrize("dataset", [None, "data", "group/movie"])
def test_hdf5_round_trip(tmp_path, dataset):
    h5py = pytest.importorskip("h5py")
    data = make_movie()
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset(dataset or "mov", data=data, chunks=(3, 10, 14), compression="gzip")
        fh.create_dataset("other", data=np.zeros(3))
    with open_movie(path, dataset=dataset if dataset != "data" else None) as movie:
        assert movie.format == "hdf5"
        np.testing.assert_array_equal(movie.read(0, 12), data)
        np.testing.assert_array_equal(movie.read(2, 5), data[2:5])


def test_hdf5_missing_dataset_lists_what_is_there(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("a/b", data=make_movie())
        fh.create_dataset("c", data=make_movie())
    with pytest.raises(InputError, match=r"no HDF5 dataset 'mov' or 'data'.*a/b, c.*dataset") as ei:
        open_movie(path)
    assert_one_line(ei, "m.h5")
    with pytest.raises(InputError, match="no HDF5 dataset 'x'"):
        open_movie(path, dataset="x")


def test_hdf5_without_h5py_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install pmdcompress\[hdf5\]"):
        open_movie(path)


def test_zarr_group_needs_dataset_when_ambiguous(tmp_path):
    path = tmp_path / "g.zarr"
    group = zarr.open_group(str(path), mode="w")
    data = make_movie()
    group.create_array("a", data=data)
    group.create_array("b", data=data[:, ::-1])
    with pytest.raises(InputError, match=r"2 arrays \(a, b\); choose one with dataset") as ei:
        open_movie(path)
    assert_one_line(ei, "g.zarr")
    np.testing.assert_array_equal(open_movie(path, dataset="b").read(0, 12), data[:, ::-1])
    with pytest.raises(InputError, match="no array 'c'"):
        open_movie(path, dataset="c")


@pytest.mark.parametrize("make", [np.asarray, lambda a: zarr.create_array({}, data=a)])
def test_in_memory_arrays(make):
    data = make_movie()
    movie = open_movie(make(data), frames="2:9")
    assert movie.format == "array" and movie.path is None and movie.shape == (7, 10, 14)
    block = movie.read(0, 7)
    np.testing.assert_array_equal(block, data[2:9])
    block[:] = 0  # the caller owns reads; the source array stays intact
    np.testing.assert_array_equal(movie.read(0, 7), data[2:9])
    assert movie.input_identity() == {
        "name": "<array>",
        "size_bytes": data.nbytes,
        "format": "array",
        "shape": [7, 10, 14],
        "dtype": "uint16",
        "frame_rate": None,
        "frame_rate_source": None,
        "frames": [2, 9],
    }


def test_big_endian_array_reads_native():
    data = make_movie().astype(">u2")
    movie = open_movie(data)
    assert movie.dtype == np.dtype("uint16") and movie.dtype.isnative
    block = movie.read(0, 3)
    assert block.dtype.isnative
    np.testing.assert_array_equal(block, data[:3])


# --------------------------------------------------------------------------------------
# ImageJ hyperstacks and multi-dimensional series.
# --------------------------------------------------------------------------------------


@pytest.fixture
def hyperstack(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (6, 3, 2, 10, 14), dtype=np.uint16)  # T Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    return path, data


@pytest.mark.parametrize(("plane", "channel"), [(0, 0), (2, 1), (1, 0)])
def test_imagej_hyperstack_selects_plane_and_channel(hyperstack, plane, channel):
    path, data = hyperstack
    with open_movie(path, plane=plane, channel=channel) as movie:
        assert movie.shape == (6, 10, 14) and (movie.plane, movie.channel) == (plane, channel)
        np.testing.assert_array_equal(movie.read(0, 6), data[:, plane, channel])
        np.testing.assert_array_equal(movie.read(2, 4), data[2:4, plane, channel])


def test_compressed_hyperstack_decodes_selected_pages(tmp_path):
    data = make_movie((5, 3, 8, 9))  # T Z Y X
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack", metadata={"axes": "TZYX"})
    with open_movie(path, plane=1, frames="1:") as movie:
        assert movie.access == "decode"
        np.testing.assert_array_equal(movie.read(0, 4), data[1:, 1])


def test_hyperstack_single_plane_needs_only_channel(tmp_path):
    data = make_movie((4, 1, 2, 8, 9))
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    np.testing.assert_array_equal(open_movie(path, channel=1).read(0, 4), data[:, 0, 1])
    np.testing.assert_array_equal(open_movie(path, channel=1, plane=0).read(0, 4), data[:, 0, 1])


# --------------------------------------------------------------------------------------
# Frame selection and chunking.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (None, slice(None)),
        ("2:5", slice(2, 5)),
        (":3", slice(None, 3)),
        ("-3:", slice(-3, None)),
        ("5:", slice(5, None)),
        (" 1 : -1 ", slice(1, -1)),
        (":", slice(None)),
        (slice(1, -1), slice(1, -1)),
        (slice(-100, 100), slice(None)),
    ],
)
def test_frames_selection(tmp_path, frames, expected):
    data = make_movie()
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data, compression="zlib")
    want = data[expected]
    with open_movie(path, frames=frames) as movie:
        assert movie.shape == want.shape
        np.testing.assert_array_equal(movie.read(0, len(movie)), want)
        np.testing.assert_array_equal(movie.read(1, 2), want[1:2])  # frame 0 = first selected
        selected = range(12)[expected]
        assert movie.frame_range == (selected.start, selected.stop)
        with pytest.raises(IndexError):
            movie.read(0, len(movie) + 1)


@pytest.mark.parametrize("frames", ["5:5", "9:3", "-1:-2", "20:", slice(4, 4)])
def test_empty_frame_selection_is_an_error(frames):
    with pytest.raises(InputError, match="selects no frames"):
        open_movie(make_movie(), frames=frames)


@pytest.mark.parametrize("frames", ["3", "a:b", "1:2:3", slice(0, 6, 2), 5])
def test_bad_frame_selection_is_an_error(frames):
    with pytest.raises(InputError, match="frames"):
        open_movie(make_movie(), frames=frames)


@pytest.mark.parametrize("chunk", [1, 3, 5, 12, 100])
@pytest.mark.parametrize("kind", ["tiff-contiguous", "tiff-interleaved", "tiff-zlib", "zarr-v3"])
def test_iter_chunks_covers_every_frame_once(tmp_path, kind, chunk):
    write, suffix, _ = SOURCES[kind]
    data = make_movie()
    path = tmp_path / f"m{suffix}"
    write(path, data)
    with open_movie(path, frames="1:-1") as movie:
        starts, blocks = zip(*movie.iter_chunks(chunk), strict=True)
    assert list(starts) == list(range(0, 10, chunk))
    assert all(len(b) <= chunk for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), data[1:-1])


def test_iter_chunks_rejects_zero():
    with pytest.raises(ValueError, match="chunk_frames"):
        next(open_movie(make_movie()).iter_chunks(0))


def test_input_identity_and_close(tmp_path):
    data = make_movie()
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data)
    movie = open_movie(path, frames="2:")
    assert movie.input_identity() == {
        "name": "m.tif",
        "size_bytes": path.stat().st_size,
        "format": "tiff",
        "shape": [10, 10, 14],
        "dtype": "uint16",
        "frame_rate": None,
        "frame_rate_source": None,
        "frames": [2, 12],
    }
    movie.close()
    movie.close()
    with pytest.raises(ValueError, match="closed"):
        movie.read(0, 1)


def test_movie_pickles_by_reopening(tmp_path, hyperstack):
    path, data = hyperstack
    with open_movie(path, frames="1:4", plane=1, channel=1) as movie:
        clone = pickle.loads(pickle.dumps(movie))
    with clone:
        assert clone.shape == (3, 10, 14)
        np.testing.assert_array_equal(clone.read(0, 3), data[1:4, 1, 1])


# --------------------------------------------------------------------------------------
# Error paths: one-line InputError messages that name the file.
# --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file") as ei:
        open_movie(tmp_path / "absent.tif")
    assert_one_line(ei, "absent.tif")
    with pytest.raises(InputError, match="no such file"):
        open_movie(tmp_path / "absent.zarr")


def test_text_file_named_tif(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("these are not pixels\nsecond line\n")
    with pytest.raises(InputError, match="not a TIFF file") as ei:
        open_movie(path)
    assert_one_line(ei, "notes.tif")


def test_empty_tif(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="not a TIFF") as ei:
        open_movie(path)
    assert_one_line(ei, "empty.tif")


def test_unknown_format(tmp_path):
    path = tmp_path / "movie.mkv"
    path.write_bytes(b"RIFF....AVI ")
    with pytest.raises(InputError, match=r"unknown format '\.mkv'") as ei:
        open_movie(path)
    assert_one_line(ei, "movie.mkv")


def test_format_sniffed_without_extension(tmp_path):
    data = make_movie()
    path = tmp_path / "movie.raw"
    tifffile.imwrite(path, data)
    np.testing.assert_array_equal(open_movie(path).read(0, 12), data)


def test_folder_that_is_not_zarr(tmp_path):
    with pytest.raises(InputError, match="not a Zarr") as ei:
        open_movie(tmp_path)
    assert_one_line(ei, tmp_path.name)
    path = tmp_path / "m.zarr"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match="not a Zarr folder") as ei:
        open_movie(path)
    assert_one_line(ei, "m.zarr")


TRUNCATION_CASES = {
    "contiguous": (lambda p, a: tifffile.imwrite(p, a), (0.5, 0.9)),
    "zlib": (lambda p, a: tifffile.imwrite(p, a, compression="zlib"), (0.5, 0.9, -8)),
    "imagej": (lambda p, a: tifffile.imwrite(p, a, imagej=True), (0.5, 0.9)),
    "bigtiff": (lambda p, a: tifffile.imwrite(p, a, bigtiff=True), (0.5, 0.9)),
    "interleaved": (write_tiff_frames_interleaved, (0.5, 0.9, -8)),
}


@pytest.mark.parametrize(
    ("layout", "keep"),
    [(layout, keep) for layout, (_, keeps) in TRUNCATION_CASES.items() for keep in keeps],
)
def test_truncated_tiff(tmp_path, layout, keep):
    """A file cut short is refused at open (or, at the latest, when the cut page is read).

    keep: fraction of the file kept, or bytes cut from the end.  tifffile puts the
    IFDs of a contiguous series after the pixel data, so cutting a few bytes from
    those files loses no pixels; they are cut inside the data instead.
    """
    write, _ = TRUNCATION_CASES[layout]
    good = tmp_path / "good.tif"
    write(good, make_movie((20, 16, 16)))
    raw = good.read_bytes()
    cut = int(len(raw) * keep) if keep > 0 else len(raw) + keep
    path = tmp_path / "cut.tif"
    path.write_bytes(raw[:cut])
    with pytest.raises(InputError, match="truncated|corrupt") as ei:
        with open_movie(path) as movie:
            movie.read(0, len(movie))
    assert_one_line(ei, "cut.tif")


def test_corrupt_page_names_the_frame(tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, make_movie(), compression="zlib")
    with tifffile.TiffFile(good) as tif:
        page = tif.series[0][5]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    raw = bytearray(good.read_bytes())
    raw[offset : offset + count] = b"\xff" * count
    path = tmp_path / "bad.tif"
    path.write_bytes(bytes(raw))
    with open_movie(path, frames="2:") as movie:
        np.testing.assert_array_equal(movie.read(0, 3), make_movie()[2:5])
        with pytest.raises(InputError, match=r"frame 5 \(page 5\) cannot be decoded") as ei:
            movie.read(0, 6)
    assert_one_line(ei, "bad.tif")


def test_2d_image(tmp_path):
    path = tmp_path / "still.tif"
    tifffile.imwrite(path, make_movie()[0])
    with pytest.raises(InputError, match=r"single 2-D image \(Y, X\); need a movie") as ei:
        open_movie(path)
    assert_one_line(ei, "still.tif")
    with pytest.raises(InputError, match="single 2-D image"):
        open_movie(make_movie()[0])


def test_4d_without_plane(tmp_path):
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, make_movie((5, 3, 8, 9)), photometric="minisblack", metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match=r"Z axis has 3 planes; pick one with plane \(0-2\)") as ei:
        open_movie(path)
    assert_one_line(ei, "tz.tif")


def test_5d_without_plane_or_channel_names_both(hyperstack):
    path, _ = hyperstack
    with pytest.raises(InputError, match=r"3 planes.*plane.*2 channels.*channel") as ei:
        open_movie(path)
    assert_one_line(ei, path.name)
    with pytest.raises(InputError, match=r"C axis has 2 channels; pick one with channel"):
        open_movie(path, plane=0)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"plane": 3, "channel": 0}, r"plane 3 out of range; the movie has 3 planes"),
        ({"plane": -1, "channel": 0}, r"plane -1 out of range"),
        ({"plane": 0, "channel": 2}, r"channel 2 out of range; the movie has 2 channels"),
    ],
)
def test_bad_plane_or_channel_index(hyperstack, kwargs, pattern):
    path, _ = hyperstack
    with pytest.raises(InputError, match=pattern) as ei:
        open_movie(path, **kwargs)
    assert_one_line(ei, path.name)


def test_plane_on_3d_movie(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, make_movie())
    assert open_movie(path, plane=0).shape == (12, 10, 14)
    with pytest.raises(InputError, match="plane 1 out of range; the movie has 1 plane "):
        open_movie(path, plane=1)


def test_rgb(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, make_movie((4, 8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB") as ei:
        open_movie(path)
    assert_one_line(ei, "rgb.tif")


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, object])
def test_unsupported_dtype(tmp_path, dtype):
    data = np.zeros((3, 4, 5), dtype=dtype)
    with pytest.raises(InputError, match="unsupported dtype"):
        open_movie(data)
    if dtype is not object:
        path = tmp_path / "m.npy"
        np.save(path, data)
        with pytest.raises(InputError, match="unsupported dtype") as ei:
            open_movie(path)
        assert_one_line(ei, "m.npy")


def test_complex_tiff(tmp_path):
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.complex64), photometric="minisblack")
    with pytest.raises(InputError, match="unsupported dtype complex64") as ei:
        open_movie(path)
    assert_one_line(ei, "c.tif")


def test_object_npy(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.empty((2, 2, 2), object), allow_pickle=True)
    with pytest.raises(InputError, match="unsupported dtype object") as ei:
        open_movie(path)
    assert_one_line(ei, "o.npy")


def test_4d_npy_and_options_that_do_not_apply(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros((2, 3, 4, 5), np.uint16))
    with pytest.raises(InputError, match=r"4-D array .* need a 3-D movie") as ei:
        open_movie(path)
    assert_one_line(ei, "m.npy")
    np.save(path, make_movie())
    with pytest.raises(InputError, match="plane applies only to TIFF"):
        open_movie(path, plane=0)
    with pytest.raises(InputError, match="dataset applies only"):
        open_movie(path, dataset="mov")


def test_truncated_npy(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, make_movie())
    path = tmp_path / "cut.npy"
    path.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated or corrupt") as ei:
        open_movie(path)
    assert_one_line(ei, "cut.npy")


# --------------------------------------------------------------------------------------
# Inputs are never modified; reads stay bounded in memory.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tiff-contiguous", "tiff-interleaved", "tiff-zlib", "npy", "zarr-v3"])
def test_inputs_never_modified(tmp_path, kind):
    write, suffix, _ = SOURCES[kind]
    path = tmp_path / f"m{suffix}"
    write(path, make_movie())
    before = snapshot(path)
    with open_movie(path) as movie:
        for _, block in movie.iter_chunks(5):
            block += 1
        movie.input_identity()
    assert snapshot(path) == before


@pytest.mark.parametrize("kind", ["tiff-contiguous", "tiff-interleaved", "tiff-zlib", "npy", "zarr-v3"])
def test_streaming_memory_is_bounded_by_the_chunk(tmp_path, kind):
    write, suffix, _ = SOURCES[kind]
    data = make_movie((400, 64, 64))  # 3.3 MB on disk
    path = tmp_path / f"m{suffix}"
    write(path, data)
    del data
    chunk_bytes = 8 * 64 * 64 * 2
    with open_movie(path) as movie:
        tracemalloc.start()
        try:
            for _ in movie.iter_chunks(8):
                pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * chunk_bytes + 400_000, peak


# --------------------------------------------------------------------------------------
# Writers.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "dtype", "kwargs"),
    [
        (".tif", np.uint16, {}),
        (".tif", np.float32, {}),
        (".tiff", np.int16, {}),
        (".tif", np.uint16, {"bigtiff": True}),
        (".zarr", np.uint16, {}),
        (".zarr", np.float32, {"chunk_frames": 4}),
        (".npy", np.uint16, {}),
        (".npy", np.float64, {}),
    ],
)
def test_writer_round_trip(tmp_path, suffix, dtype, kwargs):
    data = make_movie((13, 10, 14), dtype)
    path = tmp_path / f"out{suffix}"
    with open_writer(path, data.shape, dtype, metadata={"note": "test"}, **kwargs) as w:
        for t0, t1 in [(0, 1), (1, 6), (6, 6), (6, 13)]:
            w.write(data[t0:t1])
        assert not path.exists()  # appears only on close
        assert w.frames_written == 13
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with open_movie(path) as movie:
        assert movie.dtype == data.dtype
        np.testing.assert_array_equal(movie.read(0, 13), data)
    if suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            assert tif.is_bigtiff == bool(kwargs.get("bigtiff"))
            assert tif.series[0].shape == data.shape
            np.testing.assert_array_equal(tif.asarray(), data)
            if tif.is_imagej:
                assert "test" in tif.imagej_metadata["info"]
            else:
                assert tif.shaped_metadata[0]["note"] == "test"
        with open_movie(path) as movie:
            assert movie.access == "memmap"
    elif suffix == ".zarr":
        arr = zarr.open_array(str(path / "0"), mode="r")  # an OME-Zarr image: the movie is array "0"
        assert arr.metadata.zarr_format == 3
        assert arr.chunks == (kwargs.get("chunk_frames", 13), 10, 14)
        assert arr.attrs["note"] == "test"
    else:
        np.testing.assert_array_equal(np.load(path), data)


def test_imagej_output_when_dtype_allows(tmp_path):
    path = tmp_path / "ij.tif"
    data = make_movie()
    with open_writer(path, data.shape, data.dtype) as w:
        w.write(data)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["frames"] == 12
        assert tif.series[0].axes == "TYX"


def test_bigtiff_chosen_automatically_for_large_output(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "BIGTIFF_THRESHOLD", 1000)
    path = tmp_path / "big.tif"
    data = make_movie()
    with open_writer(path, data.shape, data.dtype) as w:
        w.write(data)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        np.testing.assert_array_equal(tif.asarray(), data)


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".npy"])
def test_writer_exception_leaves_nothing(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    data = make_movie()
    with pytest.raises(RuntimeError, match="boom"):
        with open_writer(path, data.shape, data.dtype) as w:
            w.write(data[:5])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".npy"])
def test_writer_too_few_frames_raises_and_removes(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    data = make_movie()
    with pytest.raises(PMDError, match="only 5 of 12 frames"):
        with open_writer(path, data.shape, data.dtype) as w:
            w.write(data[:5])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".npy"])
def test_writer_existing_output(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    old, new = make_movie(seed=1), make_movie(seed=2)
    with open_writer(path, old.shape, old.dtype) as w:
        w.write(old)
    before = snapshot(path)
    with pytest.raises(OutputExistsError, match="exists"):
        open_writer(path, new.shape, new.dtype)
    assert snapshot(path) == before
    # A failed overwrite keeps the old output.
    with pytest.raises(RuntimeError):
        with open_writer(path, new.shape, new.dtype, overwrite=True) as w:
            raise RuntimeError
    assert snapshot(path) == before
    with open_writer(path, new.shape, new.dtype, overwrite=True) as w:
        w.write(new)
    np.testing.assert_array_equal(open_movie(path).read(0, 12), new)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_writer_argument_errors(tmp_path):
    data = make_movie()
    with pytest.raises(InputError, match=r"out\.avi: unknown output format"):
        open_writer(tmp_path / "out.avi", data.shape, data.dtype)
    with pytest.raises(InputError, match="unsupported output dtype"):
        open_writer(tmp_path / "out.tif", data.shape, np.complex64)
    with pytest.raises(ValueError, match="shape"):
        open_writer(tmp_path / "out.tif", (0, 3, 4), np.uint16)
    with pytest.raises(TypeError, match="JSON"):
        open_writer(tmp_path / "out.tif", data.shape, data.dtype, metadata={"x": object()})
    assert list(tmp_path.iterdir()) == []
    with open_writer(tmp_path / "out.npy", data.shape, data.dtype) as w:
        with pytest.raises(ValueError, match="block of shape"):
            w.write(data[:, :5])
        with pytest.raises(TypeError, match="convert"):
            w.write(data.astype(np.float32))
        w.write(data[:10].astype(np.uint8))  # safe casts are fine
        with pytest.raises(ValueError, match="exceed"):
            w.write(data)
        w.write(data[10:])
    with pytest.raises(ValueError, match="closed"):
        w.write(data[:1])


def test_writer_streams_from_reader(tmp_path):
    """Read a compressed TIFF chunk by chunk and write each format; nothing changes."""
    data = make_movie((30, 10, 14))
    src = tmp_path / "src.tif"
    tifffile.imwrite(src, data, compression="zlib")
    for suffix in (".tif", ".zarr", ".npy"):
        out = tmp_path / f"copy{suffix}"
        with open_movie(src) as movie, open_writer(out, movie.shape, movie.dtype) as w:
            for _, block in movie.iter_chunks(7):
                w.write(block)
        np.testing.assert_array_equal(open_movie(out).read(0, 30), data)


# --------------------------------------------------------------------------------------
# Real movies, when the shared data folder is present.
# --------------------------------------------------------------------------------------

REAL = [
    ("optinist_mouse2p", (2000, 128, 128), "uint16", (1500, 1800)),
    ("sima_ca1_example", (20, 128, 256), "uint16", (0, 20)),
    ("inscopix_1p_part2", (63, 123, 108), "float32", (10, 63)),
]


@pytest.mark.parametrize(("folder", "shape", "dtype", "span"), REAL, ids=[r[0] for r in REAL])
def test_real_movies(folder, shape, dtype, span):
    path = DATA / folder / "movie.tif"
    if not path.exists():
        pytest.skip(f"real test movie not present: {path} (shared/data is not checked out)")
    before = os.stat(path).st_mtime_ns
    t0, t1 = span
    with open_movie(path) as movie:
        assert movie.shape == shape and str(movie.dtype) == dtype
        got = movie.read(t0, t1)
    want = tifffile.imread(path, key=range(t0, t1))
    np.testing.assert_array_equal(got, want.reshape(got.shape))
    assert os.stat(path).st_mtime_ns == before


# -- session 9: files written by other tools' habits ------------------------------------------------------------


def _frames(n=20, shape=(16, 16), seed=0):
    return np.random.default_rng(seed).poisson(50, (n, *shape)).astype(np.uint16)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_tiff_written_frame_by_frame_is_one_movie(tmp_path, compression):
    # tifffile.TiffWriter.write() once per frame makes one "shaped" 2-D series per frame; it is still one movie
    movie = _frames()
    with tifffile.TiffWriter(tmp_path / "loop.tif") as tw:
        for frame in movie:
            tw.write(frame, compression=compression)
    with open_movie(tmp_path / "loop.tif") as m:
        assert m.shape == movie.shape
        np.testing.assert_array_equal(m.read(0, len(movie)), movie)


def test_pages_of_different_shapes_are_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        for frame in _frames(12):
            tw.write(frame)
        for frame in _frames(3, (8, 8)):
            tw.write(frame)
    with pytest.raises(InputError, match=r"mixed\.tif: pages of different shapes or types: pages 0-11 are 16x16 "
                                         r"uint16, page 12 is 8x8 uint16"):
        open_movie(tmp_path / "mixed.tif")


def test_a_damaged_tiff_is_noticed_while_tifffile_is_quieted(tmp_path):
    # the CLI sets tifffile's logger to CRITICAL (its lines would precede ours); the damage it logs must still count
    import logging

    tifffile.imwrite(tmp_path / "ok.tif", _frames(40), compression="zlib")
    data = bytearray((tmp_path / "ok.tif").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200] = b"\xff" * 200
    (tmp_path / "bad.tif").write_bytes(bytes(data))
    tlog = logging.getLogger("tifffile")
    level = tlog.level
    tlog.setLevel(logging.CRITICAL)
    try:
        with pytest.raises(InputError, match=r"bad\.tif: truncated or corrupt TIFF"):
            open_movie(tmp_path / "bad.tif")
        assert tlog.level == logging.CRITICAL
    finally:
        tlog.setLevel(level)


def test_an_hdf5_movie_whose_data_cannot_be_read_is_bad_input(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "ext.h5", "w") as f:  # its frames live in a raw file that is gone
        f.create_dataset("mov", (20, 16, 16), dtype=np.uint16, external=[("gone.raw", 0, 20 * 16 * 16 * 2)])
    with open_movie(tmp_path / "ext.h5") as m, pytest.raises(InputError, match=r"ext\.h5:/mov: frames 0-9 cannot "
                                                                              r"be read \(OSError"):
        m.read(0, 10)


@pytest.mark.parametrize("layout", ["TYX1", "1TYX", "T1YX", "1TYX1"])
@pytest.mark.parametrize("fmt", ["npy", "hdf5", "zarr"])
def test_axes_of_length_one_are_dropped(tmp_path, layout, fmt):
    """(T, Y, X, 1), (1, T, Y, X), ...: the movie is read exactly, by every route; more than 3 long axes is refused."""
    movie = make_movie((7, 5, 6))
    shape = {"TYX1": (7, 5, 6, 1), "1TYX": (1, 7, 5, 6), "T1YX": (7, 1, 5, 6), "1TYX1": (1, 7, 5, 6, 1)}[layout]
    data = movie.reshape(shape)
    if fmt == "npy":
        path = tmp_path / "m.npy"
        np.save(path, data)
    elif fmt == "hdf5":
        h5py = pytest.importorskip("h5py")
        path = tmp_path / "m.h5"
        with h5py.File(path, "w") as fh:
            fh["mov"] = data
    else:
        path = tmp_path / "m.zarr"
        zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=data.shape)[:] = data
    with open_movie(path) as m:
        assert m.shape == movie.shape
        np.testing.assert_array_equal(m.read(2, 6), movie[2:6])
        np.testing.assert_array_equal(m.view(0, 7), movie)
    with open_movie(data) as m:  # an in-memory array too
        np.testing.assert_array_equal(m.read(0, 7), movie)


def test_tiff_with_a_trailing_axis_of_one(tmp_path):
    """tifffile keeps a (T, Y, X, 1) movie's last axis in its shaped series (axes QYXQ); each page is one frame."""
    movie = make_movie((6, 5, 7))
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, movie[..., None])
    with open_movie(path) as m:
        assert m.shape == movie.shape
        np.testing.assert_array_equal(m.read(0, 6), movie)


def test_two_long_extra_axes_are_still_refused(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.zeros((4, 5, 6, 2), np.uint16))
    with pytest.raises(InputError, match=r"4-D array with shape \(4, 5, 6, 2\)") as ei:
        open_movie(path)
    assert_one_line(ei, "c.npy")


@pytest.mark.parametrize("ome", [True, False])
def test_a_stack_of_z_slices_is_read_as_time_with_a_warning(tmp_path, caplog, ome):
    """OME's or ImageJ's Z as the only axis: ImageJ and converters save plain movies so; say how it was read."""
    movie = make_movie((9, 5, 6))
    path = tmp_path / ("z.ome.tif" if ome else "z.tif")
    tifffile.imwrite(path, movie, ome=ome, imagej=not ome, metadata={"axes": "ZYX"})
    with caplog.at_level("WARNING", logger="pmdcompress"), open_movie(path) as m:
        np.testing.assert_array_equal(m.read(0, 9), movie)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and path.name in warned[0] and "Z (9 slices)" in warned[0] and "9 frames" in warned[0]


@pytest.mark.parametrize("ome", [True, False])
def test_one_image_of_channels_is_not_a_movie(tmp_path, ome):
    path = tmp_path / ("c.ome.tif" if ome else "c.tif")
    tifffile.imwrite(path, make_movie((3, 5, 6)), ome=ome, imagej=not ome, metadata={"axes": "CYX"})
    with pytest.raises(InputError, match=r"one image of 3 channels .* no time axis") as ei:
        open_movie(path)
    assert_one_line(ei, path.name)


def test_a_trailing_axis_of_one_on_three_axes(tmp_path, caplog):
    """(A, B, 1): a .npy keeps the frames as saved (A frames of B x 1) and says so; a TIFF of it is one page."""
    data = make_movie((8, 5, 1))
    path = tmp_path / "line.npy"
    np.save(path, data)
    with caplog.at_level("WARNING", logger="pmdcompress"), open_movie(path) as m:
        np.testing.assert_array_equal(m.read(0, 8), data)
    assert any("line.npy" in r.getMessage() and "8 frames of 5x1 pixels" in r.getMessage() for r in caplog.records)
    path = tmp_path / "line.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(InputError, match=r"single 2-D image") as ei:
        open_movie(path)
    assert_one_line(ei, "line.tif")


def test_a_folder_of_tiffs_is_one_movie(tmp_path, caplog):
    """An image sequence (one 2-D image per file) or an acquisition split into files, in natural name order
    (frame_2 before frame_10); files of another frame size are refused naming both files.  Files of many frames
    may also be separate recordings: a warning (not for an image sequence) says how they were joined."""
    movie = make_movie((25, 6, 7))
    seq, split = tmp_path / "seq", tmp_path / "split"
    seq.mkdir()
    split.mkdir()
    for i in range(25):
        tifffile.imwrite(seq / f"frame_{i}.tif", movie[i])
    for name, part in (("a_1.tif", movie[:10]), ("a_2.tif", movie[10:18]), ("a_10.tif", movie[18:])):
        tifffile.imwrite(split / name, part)
    (split / "notes.txt").write_text("not a frame")
    for folder in (seq, split):
        caplog.clear()
        with caplog.at_level("INFO", logger="pmdcompress"), open_movie(folder) as m:
            assert m.shape == movie.shape and m.format == "tiff"
        joined = [r for r in caplog.records if "TIFF files read as one movie of 25 frames" in r.getMessage()]
        assert [r.levelname for r in joined] == ["INFO" if folder == seq else "WARNING"]
        assert (folder == split) == ("a_1.tif ... a_10.tif); if they are separate recordings, give the files"
                                     in joined[0].getMessage())
        with open_movie(folder) as m:
            np.testing.assert_array_equal(m.read(0, 25), movie)
            np.testing.assert_array_equal(m.read(7, 21), movie[7:21])
        with open_movie(folder, frames="5:12") as m:
            np.testing.assert_array_equal(m.read(0, 7), movie[5:12])
        with open_movie(folder) as m:  # workers reopen the movie from its pickle
            np.testing.assert_array_equal(pickle.loads(pickle.dumps(m)).read(3, 19), movie[3:19])
    tifffile.imwrite(seq / "frame_30.tif", movie[0, :4])
    with pytest.raises(InputError, match=r"frame_30\.tif holds 4x7 .* but frame_0\.tif 6x7") as ei:
        open_movie(seq)
    assert_one_line(ei, str(seq))



def test_a_tiff_of_several_series_says_only_the_first_is_read(tmp_path, caplog):
    """A multi-position OME-TIFF holds one series per field of view: the first is read, and a warning says so."""
    movie = make_movie((6, 5, 7))
    path = tmp_path / "pos.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as w:
        w.write(movie, metadata={"axes": "TYX"})
        w.write(movie[:4, :3], metadata={"axes": "TYX"})
    with caplog.at_level("WARNING", logger="pmdcompress"), open_movie(path) as m:
        np.testing.assert_array_equal(m.read(0, 6), movie)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"{path}: the file holds 2 image series (6x5x7, 4x3x7); only the first is read"]


def test_hdf5_chunked_along_time_gets_a_cache_that_holds_a_row_of_chunks(tmp_path):
    """Chunks spanning all frames: every block of frames touches every chunk, so the cache must hold them all
    or each is decompressed again per block; frame-sized chunks keep h5py's default cache."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "pix.h5"
    with h5py.File(path, "w") as fh:
        default = fh.id.get_access_plist().get_cache()[2]
    n_frames = default // (64 * 64 * 2) + 10  # a row of (T, 16, 16) chunks larger than the default cache
    movie = make_movie((n_frames, 64, 64))
    with h5py.File(path, "w") as fh:
        fh.create_dataset("mov", data=movie, chunks=(n_frames, 16, 16), compression="gzip")
        fh.create_dataset("frames", data=movie, chunks=(1, 64, 64), compression="gzip")
    with open_movie(path) as m:
        assert m._source._array.file.id.get_access_plist().get_cache()[2] >= movie.nbytes
        np.testing.assert_array_equal(np.concatenate([b for _, b in m.iter_chunks(97)]), movie)
    with open_movie(path, dataset="frames") as m:
        assert m._source._array.file.id.get_access_plist().get_cache()[2] == default
        np.testing.assert_array_equal(m.read(3, 9), movie[3:9])


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_a_movie_indexes_as_numpy_reading_only_what_is_asked(tmp_path, monkeypatch, suffix):
    """``open_movie(...)[key]`` is numpy's ``key`` of the selected, cropped frames (every kind of index), and
    ``np.asarray(movie)`` all of them; a frame selection reads only its frames."""
    movie = make_movie((30, 12, 9))
    path = tmp_path / f"m{suffix}"
    tifffile.imwrite(path, movie) if suffix == ".tif" else np.save(path, movie)
    with open_movie(path, frames="3:27", crop="1:11,2:9") as m:
        part = movie[3:27, 1:11, 2:9]
        agree_with_numpy(m, part, np.random.default_rng(3), 400)
        np.testing.assert_array_equal(np.asarray(m), part)
        assert np.asarray(m, dtype=np.float32).dtype == np.float32
        reads = []
        read = Movie.read
        monkeypatch.setattr(Movie, "read", lambda self, t0, t1: reads.append(t1 - t0) or read(self, t0, t1))
        np.testing.assert_array_equal(m[::10, 4], part[::10, 4])
        assert sorted(reads) == [1, 1, 1]  # frames 0, 10, 20 of the selection, not the 24 the slice spans
        reads.clear()
        monkeypatch.setattr("pmdcompress.io.readers.READ_BYTES", 5 * 10 * 7 * 2)  # 5 (cropped) frames a read
        np.testing.assert_array_equal(m[:, 3, 4], part[:, 3, 4])
        assert reads == [5, 5, 5, 5, 4]  # a pixel's trace: the frames a few at a time, not all at once
