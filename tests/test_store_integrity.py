"""Store format version 2: damage is found and named (exit 2), non-finite factors are refused,
version-1 stores still read (with a warning), and the factors' quantization stays far below the noise."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

import pmdcompress
from conftest import blobs_movie
from pmdcompress.cli import main
from pmdcompress.errors import StoreFormatError
from pmdcompress.formats.store import StoreMetadata, TemporalFactors, create_store, finish_store, read_store

V1 = Path(__file__).parent / "fixtures" / "v1" / "sim.pmd.zarr"


@pytest.fixture(scope="module")
def movie_and_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    noisy, clean = blobs_movie(n_frames=300, seed=4)
    movie = folder / "movie.tif"
    tifffile.imwrite(movie, np.clip(noisy, 0, 65535).astype(np.uint16))
    store = pmdcompress.compress(movie, folder / "movie.pmd.zarr", patch_shape=24, overlap=6)
    return movie, folder / "movie.pmd.zarr", clean, store


@pytest.fixture
def damaged(movie_and_store, tmp_path):
    """A fresh copy of the store to damage."""
    copy = tmp_path / "copy.pmd.zarr"
    shutil.copytree(movie_and_store[1], copy)
    return copy


def chunk_files(store: Path, array: str) -> list[Path]:
    return sorted(p for p in (store / array / "c").rglob("*") if p.is_file())


def pmd(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_version_2_store_has_checksums_a_manifest_and_a_frame_rate_field(movie_and_store):
    _, path, _, _ = movie_and_store
    meta = read_store(path).metadata
    assert meta.format_version >= 2 and meta.frame_rate is None
    codecs = zarr.open_group(str(path), mode="r")["temporal"].metadata.to_dict()["codecs"]
    assert codecs[-1]["name"] == "crc32c"
    for name in ("mean", "noise", "spatial", "temporal", "spatial_scale", "temporal_scale", "weights_y"):
        assert {f"c/{p.relative_to(path / name / 'c').as_posix()}" for p in chunk_files(path, name)} \
            == set(meta.manifest[name]), name


@pytest.mark.parametrize("array", ["spatial", "temporal", "mean", "noise", "patch_ranks"])
def test_a_missing_chunk_is_an_error_naming_the_store_and_the_chunk(damaged, array):
    victim = chunk_files(damaged, array)[-1]
    victim.unlink()
    key = f"{array}/{victim.relative_to(damaged / array).as_posix()}"
    with pytest.raises(StoreFormatError, match=rf"copy.pmd.zarr: chunk '{key}' is missing"):
        pmdcompress.open(damaged)
    result = pmd("decompress", damaged, "-o", damaged.with_name("out.tif"))
    assert result.exit_code == 2 and f"chunk '{key}' is missing" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not damaged.with_name("out.tif").exists()


def test_a_truncated_chunk_is_named(damaged):
    victim = chunk_files(damaged, "temporal")[0]
    victim.write_bytes(victim.read_bytes()[:-7])
    with pytest.raises(StoreFormatError, match=r"chunk 'temporal/c/0/0' has \d+ bytes.*truncated or replaced"):
        pmdcompress.open(damaged)


@pytest.mark.parametrize("how", ["flipped bit", "random bytes"])
@pytest.mark.parametrize("array", ["temporal", "spatial", "noise"])
def test_an_altered_chunk_of_the_same_size_fails_its_checksum(damaged, array, how):
    victim = chunk_files(damaged, array)[0]
    data = bytearray(victim.read_bytes())
    if how == "flipped bit":
        data[len(data) // 2] ^= 0x10
    else:
        data[:] = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    victim.write_bytes(bytes(data))
    key = f"{array}/{victim.relative_to(damaged / array).as_posix()}"
    with pytest.raises(StoreFormatError, match=rf"copy.pmd.zarr: chunk '{key}' cannot be read.*damaged"):
        pmdcompress.open(damaged)[:]
    result = pmd("demix", damaged, "-o", damaged.with_name("d.demix.zarr"))
    assert result.exit_code == 2 and f"chunk '{key}' cannot be read" in result.output
    result = pmd("decompress", damaged, "-o", damaged.with_name("out.tif"))
    assert result.exit_code == 2 and f"chunk '{key}' cannot be read" in result.output
    assert sorted(p.name for p in damaged.parent.iterdir()) == ["copy.pmd.zarr"]  # nothing half-written left


def test_non_finite_factors_are_refused_on_write(tmp_path):
    md = StoreMetadata(shape=(4, 2, 2), input_dtype="float32", factor_dtype="float32", method="svd",
                       patch_shape=(2, 2), overlap=(0, 0), n_patches=1, total_rank=1, software_version="t")
    arrays = {"mean": np.zeros((2, 2), np.float32), "noise": np.ones((2, 2), np.float32),
              "patch_origins": np.zeros((1, 2), np.int32), "patch_ranks": np.ones(1, np.int32),
              "weights_y": np.ones((1, 2), np.float32), "weights_x": np.ones((1, 2), np.float32),
              "spatial": np.ones((4, 1), np.float32)}
    with pytest.raises(StoreFormatError, match="non-finite values into 'mean'"):
        create_store(tmp_path / "a.pmd.zarr", md, dict(arrays, mean=np.full((2, 2), np.nan, np.float32)),
                     temporal_chunk=4)
    _, temporal = create_store(tmp_path / "b.pmd.zarr", md, arrays, temporal_chunk=4)
    with pytest.raises(StoreFormatError, match="non-finite values into 'temporal'"):
        temporal[:, 0:4] = np.array([[0.0, np.inf, 1.0, 2.0]])


def test_version_1_stores_still_read_with_a_warning(caplog, monkeypatch):
    from pmdcompress.formats import store as fmt

    monkeypatch.setattr(fmt, "_warned_v1", set())  # warned once per store and process
    with caplog.at_level(logging.WARNING, logger="pmdcompress"):
        store = pmdcompress.open(V1)
    assert store.metadata.format_version == 1 and store.metadata.frame_rate is None
    assert store.metadata.manifest is None and store.spatial_scale is None
    assert "carries no checksums" in caplog.text and str(V1) in caplog.text


def test_damage_to_a_version_1_store_is_a_one_line_error_naming_the_chunk(tmp_path):
    copy = tmp_path / "v1.pmd.zarr"
    shutil.copytree(V1, copy)
    victim = chunk_files(copy, "temporal")[0]
    victim.write_bytes(np.random.default_rng(1).integers(0, 256, victim.stat().st_size, np.uint8).tobytes())
    with pytest.raises(StoreFormatError, match=r"v1.pmd.zarr: chunk 'temporal/c/0/0' cannot be read"):
        pmdcompress.open(copy)[:]
    result = pmd("decompress", copy, "-o", tmp_path / "out.npy")
    assert result.exit_code == 2 and "chunk 'temporal/c/0/0' cannot be read" in result.output


@pytest.mark.parametrize("array", ["spatial", "temporal"])
def test_non_finite_values_in_a_version_1_store_are_detected_on_read(tmp_path, array):
    copy = tmp_path / "v1.pmd.zarr"
    shutil.copytree(V1, copy)
    z = zarr.open_group(str(copy), mode="r+")[array]
    z[0, 0] = np.nan
    with pytest.raises(StoreFormatError, match=f"'{array}' holds non-finite values"):
        pmdcompress.open(copy)[:]


def test_frame_rate_is_stored_and_checked():
    md = StoreMetadata(shape=(4, 2, 2), input_dtype="uint16", factor_dtype="int32", method="svd",
                       patch_shape=(2, 2), overlap=(0, 0), n_patches=1, total_rank=1, software_version="t",
                       frame_rate=30.5)
    assert StoreMetadata.from_dict(md.to_dict()).frame_rate == 30.5
    for bad in (0, -1.0, "30", float("nan")):
        with pytest.raises(StoreFormatError, match="'frame_rate' must be a positive number or null"):
            StoreMetadata.from_dict(dict(md.to_dict(), frame_rate=bad))


def test_temporal_factors_round_to_their_step():
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=(2, 5), dtype="int32", chunks=(2, 5))
    factors = TemporalFactors(array, np.array([0.5, 0.25], np.float32), "mem")
    values = np.array([[0.2, 0.3, -1.1, 7.0, 0.0], [0.2, 0.3, -1.1, 7.0, 0.1]])
    factors[:, :] = values
    assert np.abs(factors[:, :] - values).max() <= 0.25 + 1e-7
    np.testing.assert_allclose(factors[1], [0.25, 0.25, -1.0, 7.0, 0.0])


def test_quantization_adds_far_less_than_one_percent_to_the_error(movie_and_store, tmp_path, monkeypatch):
    movie, _, clean, store = movie_and_store
    from pmdcompress.formats import store as fmt

    monkeypatch.setitem(fmt.ROUNDING_ERROR, "float32", 1e-9)  # a reference with negligible rounding
    fine = pmdcompress.compress(movie, tmp_path / "fine.pmd.zarr", patch_shape=24, overlap=6)
    err_fine = np.sqrt(np.mean((fine[:] - clean) ** 2))
    err = np.sqrt(np.mean((store[:] - clean) ** 2))
    assert abs(err / err_fine - 1) < 0.01, (err, err_fine)
    # Rounding happens once, after the temporal filter: each factor is within half its step of the reference.
    assert np.abs(store.temporal[...] - fine.temporal[...]).max() <= store.temporal.scale.max() / 2 + 1e-3
    assert store.bytes_on_disk < fine.bytes_on_disk


def test_the_metadata_stays_strict_json(tmp_path):
    import json

    md = StoreMetadata(shape=(4, 2, 2), input_dtype="float32", factor_dtype="float32", method="svd",
                       patch_shape=(2, 2), overlap=(0, 0), n_patches=1, total_rank=1, software_version="t",
                       parameters={"noise_correlation": [float("nan"), 0.1]}, timings={"x": float("inf")})
    arrays = {"mean": np.zeros((2, 2), np.float32), "noise": np.ones((2, 2), np.float32),
              "patch_origins": np.zeros((1, 2), np.int32), "patch_ranks": np.ones(1, np.int32),
              "weights_y": np.ones((1, 2), np.float32), "weights_x": np.ones((1, 2), np.float32),
              "spatial": np.full((4, 1), 0.5, np.float32)}
    writer, temporal = create_store(tmp_path / "s.pmd.zarr", md, arrays, temporal_chunk=4)
    temporal[:, :] = np.ones((1, 4))
    finish_store(writer, md)
    attrs = json.loads((tmp_path / "s.pmd.zarr" / "zarr.json").read_text())["attributes"]["pmdcompress"]
    assert attrs["parameters"]["noise_correlation"] == [None, 0.1] and attrs["timings"]["x"] is None
    store = pmdcompress.open(tmp_path / "s.pmd.zarr")
    # mean 0 + noise 1 * U V, each factor within half its step (unfiltered: about 0.17 of the noise).
    step_v, step_u = float(store.temporal.scale[0]), float(store.spatial_scale[0])
    assert abs(float(store.temporal[0, 0]) - 1) <= step_v / 2 and abs(float(store.spatial[0, 0]) - 0.5) <= step_u / 2
    np.testing.assert_allclose(store[:], store.spatial[0, 0] * store.temporal[0, 0], rtol=1e-6)
