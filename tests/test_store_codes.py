"""Store format version 4: every large array as integer codes (formats/store_codes.py): the spatial components,
the mean, the noise and the trend as images predicted from their neighbours, the temporal factors as their
differences within each time chunk; the noise map rounded before the movie is standardised by it.  Same factor
values as version 3 (exact round trips), fewer bytes; versions 1-3 still read (test_formats' fixtures)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
import zarr
from numcodecs import Blosc

import pmdcompress
from conftest import blobs_movie
from pmdcompress.errors import StoreFormatError
from pmdcompress.formats.store import FORMAT_VERSION, read_store, zigzag_decode, zigzag_encode
from pmdcompress.formats.store_codes import (
    delta_codes,
    from_delta_codes,
    image_residuals,
    images_from_residuals,
    mean_step,
    noise_codes,
    noise_from_codes,
    round_noise,
    smoothed_mean_kept,
)
from pmdcompress.pipeline import compress as compress_module
from reference_store import delta_decode_reference, med_decode_reference, med_encode_reference


def test_zigzag_codes_round_trip_exactly_in_the_narrowest_unsigned_dtype():
    rng = np.random.default_rng(0)
    for top, dtype in ((127, np.uint8), (128, np.uint16), (2**15 - 1, np.uint16), (2**15, np.uint32),
                       (2**31 - 2, np.uint32), (2**40, np.uint64)):
        q = rng.integers(-top, top + 1, size=(50, 7))
        q[0, 0], q[0, 1] = -top, top
        z = zigzag_encode(q)
        assert z.dtype == dtype, top
        np.testing.assert_array_equal(zigzag_decode(z), q)
    # The order that makes small magnitudes small codes: 0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4.
    np.testing.assert_array_equal(zigzag_encode(np.array([0, -1, 1, -2, 2])), [0, 1, 2, 3, 4])
    assert zigzag_encode(np.zeros((0, 3), np.int32)).dtype == np.uint8


def test_image_residuals_decode_exactly_and_match_the_numpy_twin():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:13, :9]
    smooth = np.rint(300 * np.exp(-((yy - 6) ** 2 + (xx - 4) ** 2) / 20.0)).astype(np.int64)
    images = np.stack([smooth + rng.integers(-3, 4, smooth.shape), -smooth, rng.integers(-2**40, 2**40, smooth.shape),
                       np.zeros_like(smooth)])
    residuals = image_residuals(images)
    np.testing.assert_array_equal(residuals, med_encode_reference(images))
    np.testing.assert_array_equal(images_from_residuals(residuals), images)
    np.testing.assert_array_equal(med_decode_reference(residuals), images)
    # any leading axes and a non-contiguous view (the store passes its spatial columns transposed)
    stack = rng.integers(-500, 500, (3, 2, 7, 5))
    np.testing.assert_array_equal(image_residuals(stack), med_encode_reference(stack))
    view = stack.reshape(6, 35).T.reshape(7, 5, 6).transpose(2, 0, 1)
    np.testing.assert_array_equal(image_residuals(view), med_encode_reference(view))
    np.testing.assert_array_equal(image_residuals(stack[0, 0, :1]), med_encode_reference(stack[0, 0, :1]))  # 1 row
    # the first row is predicted from the left, the first column from above
    np.testing.assert_array_equal(residuals[0, 0, 1:], np.diff(images[0, 0]))
    np.testing.assert_array_equal(residuals[0, 1:, 0], np.diff(images[0, :, 0]))
    # a smooth image leaves small residuals: fewer bytes through the store's chain than its values
    blosc = Blosc("zstd", 5, Blosc.SHUFFLE)
    assert np.abs(residuals[1]).max() < np.abs(images[1]).max() / 4
    assert len(blosc.encode(zigzag_encode(residuals[1]))) < len(blosc.encode(zigzag_encode(images[1])))
    assert images_from_residuals(np.zeros((0, 3, 4), np.int64)).shape == (0, 3, 4)
    assert image_residuals(np.zeros((0, 3, 4), np.int64)).shape == (0, 3, 4)


def test_delta_codes_round_trip_rows_and_refuse_what_32_bits_cannot_hold():
    rng = np.random.default_rng(2)
    q = np.cumsum(rng.integers(-5, 6, size=(4, 50)), axis=1) + rng.integers(-2**30, 2**30, size=(4, 1))
    z = delta_codes(q)
    assert z.dtype == np.uint32 and int(z[:, 1:].max()) <= 10
    np.testing.assert_array_equal(from_delta_codes(z), q)
    np.testing.assert_array_equal(delta_decode_reference(z), q)
    np.testing.assert_array_equal(from_delta_codes(z[:, :30], 12), q[:, 12:30])  # a later part of a chunk
    with pytest.raises(OverflowError):
        delta_codes(np.array([[-2**31, 2**31]]))


def test_noise_rounds_to_8_bits_of_mantissa_and_its_16_bit_codes_are_exact():
    rng = np.random.default_rng(3)
    noise = np.exp(rng.uniform(-30, 30, size=(40, 30))).astype(np.float32)
    rounded = round_noise(noise)
    assert (np.abs(rounded / noise - 1) <= 2.0**-9).all()
    np.testing.assert_array_equal(round_noise(rounded), rounded)  # idempotent
    codes = noise_codes(rounded)
    assert codes.dtype == np.uint16
    np.testing.assert_array_equal(noise_from_codes(codes), rounded)
    assert noise_codes(noise) is None  # not rounded: no code holds it
    assert noise_codes(np.array([1.0, 0.0], np.float32)) is None and noise_codes(np.array([np.inf])) is None
    assert mean_step(600, 0.005) == pytest.approx(0.01)
    # nothing positive rounds to zero or to infinity
    edge = np.array([1e-45, 3e-39, np.finfo(np.float32).max], np.float32)
    assert (round_noise(edge) > 0).all() and np.isfinite(round_noise(edge)).all()
    np.testing.assert_array_equal(noise_from_codes(noise_codes(round_noise(edge))), round_noise(edge))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codes")
    noisy, _ = blobs_movie(n_frames=200, seed=7)
    tifffile.imwrite(folder / "movie.tif", np.clip(noisy, 0, 65535).astype(np.uint16))
    # chunks of 64 frames: the temporal codes span several chunks, the last one partial
    pmdcompress.compress(folder / "movie.tif", folder / "movie.pmd.zarr", patch_shape=24, overlap=6, workers=1,
                         chunk_frames=64)
    return folder / "movie.pmd.zarr"


def test_a_version_4_store_holds_unsigned_codes_that_read_back_as_the_integers_times_their_steps(store_path):
    contents = read_store(store_path)
    assert contents.metadata.format_version == FORMAT_VERSION == 4
    group = zarr.open_group(str(store_path), mode="r")
    h, w = contents.metadata.patch_shape
    codes = group["spatial"][...]
    assert codes.dtype.kind == "u" and codes.dtype.itemsize <= 2
    k = codes.shape[1]
    q = images_from_residuals(zigzag_decode(codes).T.reshape(k, h, w)).reshape(k, h * w).T
    np.testing.assert_array_equal(contents.spatial, (q * contents.spatial_scale.astype(np.float64)).astype(np.float32))
    temporal = group["temporal"]
    assert temporal.dtype == np.uint32 and temporal.chunks[1] == 64 and temporal.shape[1] == 200
    ints = np.concatenate([from_delta_codes(temporal[:, t0 : t0 + 64]) for t0 in range(0, 200, 64)], axis=1)
    np.testing.assert_array_equal(contents.temporal.integers(), ints)
    np.testing.assert_array_equal(contents.temporal[...], np.multiply(ints, contents.temporal.scale[:, None],
                                                                      dtype=np.float32))
    # the noise map as 16-bit codes, the mean as multiples of the noise times mean_step
    noise = noise_from_codes(images_from_residuals(zigzag_decode(group["noise"][...])))
    np.testing.assert_array_equal(contents.noise, noise)
    step = noise.astype(np.float64) * contents.metadata.mean_step
    mean_codes = images_from_residuals(zigzag_decode(group["mean"][...]))
    np.testing.assert_array_equal(contents.mean, (mean_codes * step).astype(np.float32))
    kept = smoothed_mean_kept(contents.metadata.parameters["mean_smoothing"]) if contents.trend is not None else 1
    assert contents.metadata.mean_step == pytest.approx(mean_step(200, 0.005, kept))


def test_version_4_temporal_factors_read_any_index_as_numpy_would(store_path):
    temporal = read_store(store_path).temporal
    full = temporal[...]
    for key in [(slice(None), slice(60, 70)), (slice(2, 5), slice(63, 129)), (3, slice(None)), (slice(None), 64),
                (1, 199), (-1, -1), (slice(None, None, 2), slice(10, 150, 7)), ([0, 2, 3], slice(5, 80)),
                (slice(1, 3),), 2, (Ellipsis, slice(190, 200)), (slice(None), slice(120, 120))]:
        np.testing.assert_array_equal(temporal[key], full[key], err_msg=str(key))
    with pytest.raises(IndexError):
        temporal[0, 200]


def test_version_4_temporal_factors_written_in_part_keep_the_rest(store_path, tmp_path):
    copy = tmp_path / "copy.pmd.zarr"
    shutil.copytree(store_path, copy)
    temporal = read_store(copy).temporal
    before = temporal.integers()
    temporal.array = zarr.open_group(str(copy), mode="r+")["temporal"]
    patch = -np.arange(3 * 40).reshape(3, 40)
    temporal.set_integers((slice(1, 4), slice(50, 90)), patch)  # within two chunks, some rows
    expected = before.copy()
    expected[1:4, 50:90] = patch
    np.testing.assert_array_equal(temporal.integers(), expected)


def test_a_version_4_store_is_smaller_than_version_3_codes_of_the_same_values(store_path):
    contents = read_store(store_path)
    group = zarr.open_group(str(store_path), mode="r")
    blosc = Blosc("zstd", 5, Blosc.SHUFFLE)
    ints = contents.temporal.integers()
    spatial_ints = np.rint(contents.spatial / contents.spatial_scale).astype(np.int64)
    v4 = sum(len(blosc.encode(np.ascontiguousarray(group["temporal"][:, t0 : t0 + 64]))) for t0 in range(0, 200, 64))
    v3 = sum(len(blosc.encode(np.ascontiguousarray(ints[:, t0 : t0 + 64].astype(np.int32))))
             for t0 in range(0, 200, 64))
    assert v4 < 0.8 * v3
    assert len(blosc.encode(group["spatial"][...])) < len(blosc.encode(zigzag_encode(spatial_ints)))
    assert len(blosc.encode(group["mean"][...])) < 0.75 * len(blosc.encode(contents.mean))


def test_the_stored_noise_is_the_scale_that_standardised_the_movie(tmp_path, monkeypatch):
    noisy, _ = blobs_movie(n_frames=120, shape=(30, 34), seed=4)
    tifffile.imwrite(tmp_path / "m.tif", np.clip(noisy, 0, 65535).astype(np.uint16))
    used = []
    monkeypatch.setattr(compress_module, "round_noise", lambda x: used.append(round_noise(x)) or used[-1])
    store = pmdcompress.compress(tmp_path / "m.tif", tmp_path / "m.pmd.zarr", patch_shape=16, overlap=4, workers=2)
    assert len(used) == 1
    np.testing.assert_array_equal(store.noise, used[0])


def test_a_version_4_store_with_signed_spatial_integers_is_refused(store_path, tmp_path):
    copy = tmp_path / "bad.pmd.zarr"
    shutil.copytree(store_path, copy)
    group = zarr.open_group(str(copy), mode="r+")
    codes = group["spatial"][...]
    del group["spatial"]
    group.create_array("spatial", shape=codes.shape, dtype=np.int32, chunks=codes.shape)[...] = codes
    meta = dict(group.attrs["pmdcompress"])
    meta["manifest"] = None  # the damage test is the dtype's, not the manifest's
    group.attrs["pmdcompress"] = meta
    with pytest.raises(StoreFormatError, match=r"bad\.pmd\.zarr: array 'spatial' must hold unsigned codes"):
        read_store(copy)


def test_a_version_4_noise_map_whose_codes_are_not_a_positive_finite_noise_is_refused(store_path, tmp_path):
    copy = tmp_path / "bad.pmd.zarr"
    shutil.copytree(store_path, copy)
    group = zarr.open_group(str(copy), mode="r+")
    codes = images_from_residuals(zigzag_decode(group["noise"][...]))
    codes[3, 4] = 0xFF00  # an infinite noise
    del group["noise"]
    group.create_array("noise", shape=codes.shape, dtype=np.uint32, chunks=codes.shape)[...] = zigzag_encode(
        image_residuals(codes)).astype(np.uint32)
    meta = dict(group.attrs["pmdcompress"])
    meta["manifest"] = None
    group.attrs["pmdcompress"] = meta
    with pytest.raises(StoreFormatError, match=r"bad\.pmd\.zarr: array 'noise' holds codes of no positive finite"):
        read_store(copy)


def test_the_mean_and_the_mean_plus_trend_are_each_rounded_once_to_half_a_step(tmp_path, monkeypatch):
    from pmdcompress.formats import store as store_format

    noisy, _ = blobs_movie(n_frames=160, shape=(30, 34), seed=5)
    noisy += np.linspace(0, 40, 160)[:, None, None]  # a slow drift: the trend has several knots
    tifffile.imwrite(tmp_path / "m.tif", np.clip(noisy, 0, 65535).astype(np.uint16))
    options = dict(patch_shape=16, overlap=4, workers=1, detrend=True, chunk_frames=40)
    store = pmdcompress.compress(tmp_path / "m.tif", tmp_path / "q.pmd.zarr", **options)
    monkeypatch.setitem(store_format.ROUNDING_ERROR, "float32", 1e-12)  # the same fit, every step the finest
    fine = pmdcompress.open(pmdcompress.compress(tmp_path / "m.tif", tmp_path / "f.pmd.zarr", **options).path)
    assert store.trend is not None and store.trend.shape[0] >= 3
    kept = smoothed_mean_kept(store.metadata.parameters["mean_smoothing"])
    assert store.metadata.mean_step == pytest.approx(mean_step(160, 0.005, kept))
    half = store.noise.astype(np.float64) * store.metadata.mean_step / 2 * (1 + 1e-5) + 1e-4
    np.testing.assert_array_equal(store.noise, fine.noise)
    assert (np.abs(store.mean - fine.mean) <= half).all()
    baseline, fine_baseline = store.mean + store.trend, fine.mean + fine.trend
    assert (np.abs(baseline - fine_baseline) <= half).all()
    # the rounding is a small share of the mean's own noise (noise / sqrt(T))
    assert np.sqrt(np.mean((baseline - fine_baseline) ** 2)) < 0.1 * float(np.median(store.noise)) / np.sqrt(160)
