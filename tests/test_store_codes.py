"""Store format version 3: the spatial factors as zigzag codes in the narrowest unsigned dtype (smaller
stores, same values), refused when damaged into signed integers; version 2 stores still read (test_formats)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from numcodecs import Blosc

import pmdcompress
from conftest import blobs_movie
from pmdcompress.errors import StoreFormatError
from pmdcompress.formats.store import FORMAT_VERSION, read_store, zigzag_decode, zigzag_encode


def test_zigzag_codes_round_trip_exactly_in_the_narrowest_unsigned_dtype():
    rng = np.random.default_rng(0)
    for top, dtype in ((127, np.uint8), (128, np.uint16), (2**15 - 1, np.uint16), (2**15, np.uint32),
                       (2**31 - 2, np.uint32)):
        q = rng.integers(-top, top + 1, size=(50, 7))
        q[0, 0], q[0, 1] = -top, top
        z = zigzag_encode(q)
        assert z.dtype == dtype, top
        np.testing.assert_array_equal(zigzag_decode(z), q)
    # The order that makes small magnitudes small codes: 0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4.
    np.testing.assert_array_equal(zigzag_encode(np.array([0, -1, 1, -2, 2])), [0, 1, 2, 3, 4])
    assert zigzag_encode(np.zeros((0, 3), np.int32)).dtype == np.uint8


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codes")
    noisy, _ = blobs_movie(n_frames=200, seed=7)
    tifffile.imwrite(folder / "movie.tif", np.clip(noisy, 0, 65535).astype(np.uint16))
    pmdcompress.compress(folder / "movie.tif", folder / "movie.pmd.zarr", patch_shape=24, overlap=6, workers=1)
    return folder / "movie.pmd.zarr"


def test_a_version_3_store_holds_unsigned_spatial_codes_that_are_smaller_than_int32(store_path):
    contents = read_store(store_path)
    assert contents.metadata.format_version == FORMAT_VERSION == 3
    codes = zarr.open_group(str(store_path), mode="r")["spatial"][...]
    assert codes.dtype.kind == "u" and codes.dtype.itemsize <= 2
    q = zigzag_decode(codes)
    # What is read is the integer times its column's step, exactly as version 2 read its int32 array.
    expected = (q.astype(np.float64) * contents.spatial_scale).astype(np.float32)
    np.testing.assert_array_equal(contents.spatial, expected)
    # Same values, same codec chain (byte shuffle + zstd): the codes take fewer bytes than int32.
    blosc = Blosc("zstd", 5, Blosc.SHUFFLE)
    assert len(blosc.encode(codes)) < len(blosc.encode(q.astype(np.int32)))


def test_a_version_3_store_with_signed_spatial_integers_is_refused(store_path, tmp_path):
    import shutil

    copy = tmp_path / "bad.pmd.zarr"
    shutil.copytree(store_path, copy)
    group = zarr.open_group(str(copy), mode="r+")
    codes = group["spatial"][...]
    del group["spatial"]
    group.create_array("spatial", shape=codes.shape, dtype=np.int32, chunks=codes.shape)[...] = codes
    meta = dict(group.attrs["pmdcompress"])
    meta["manifest"] = None  # the damage test is the dtype's, not the manifest's
    group.attrs["pmdcompress"] = meta
    with pytest.raises(StoreFormatError, match=r"bad\.pmd\.zarr: array 'spatial' must hold unsigned zigzag codes"):
        read_store(copy)
