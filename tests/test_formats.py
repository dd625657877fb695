"""Every on-disk format: the checked-in fixtures of earlier versions still read, and writer -> reader round trips."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import zarr

import pmdcompress
from pmdcompress.demix.result import DemixResult, open_demix, write_result
from pmdcompress.errors import StoreFormatError
from pmdcompress.formats._version import FormatId, header, read_version
from pmdcompress.formats.batch_status import BATCH_STATUS, read_status, write_status
from pmdcompress.formats.demix import DEMIX
from pmdcompress.formats.null_cache import NULL_CACHE, NullCacheEntry, cache_key, read_null_cache, write_null_cache
from pmdcompress.formats.report import REPORT, read_report, write_report
from pmdcompress.formats.store import (
    STORE,
    StoreMetadata,
    create_store,
    finish_store,
    read_store,
)
from pmdcompress.formats.store_codes import round_noise
from pmdcompress.formats.truth import TRUTH, create_truth, finish_truth, read_truth
from pmdcompress.simulate import load_truth
from pmdcompress.solver.null import NULL_VERSION

V1 = Path(__file__).parent / "fixtures" / "v1"
V2 = Path(__file__).parent / "fixtures" / "v2"  # the store, and a report made by session 3's code
V3 = Path(__file__).parent / "fixtures" / "v3"  # the store (zigzag spatial codes), made by session 8's code
ALL_FORMATS = [STORE, DEMIX, TRUTH, REPORT, BATCH_STATUS, NULL_CACHE]


# -- the version-1 fixtures (made by tests/fixtures/make_fixtures.py) ----------------------------------------


@pytest.mark.parametrize("version, folder", [(1, V1), (2, V2), (3, V3)])
def test_store_fixtures_reconstruct_the_simulated_movie_within_its_noise(version, folder):
    store = pmdcompress.open(folder / "sim.pmd.zarr")
    truth = load_truth(V1 / "sim.truth.zarr")  # both stores were made from this movie
    assert store.metadata.format_version == version and store.shape == truth.shape == (40, 20, 20)
    denoised = store[:]
    clean = truth.read(0, 40)
    raw_noise = float(np.median(store.noise))
    error = float(np.sqrt(np.mean((denoised - clean) ** 2)))
    assert np.isfinite(denoised).all() and 0 < error < raw_noise
    np.testing.assert_allclose(store.read(5, 9, (3, 11), (2, 20), dtype="uint16"),
                               np.clip(np.floor(denoised[5:9, 3:11, 2:] + 0.5), 0, 65535))
    assert store.info()["format_version"] == version and store.to_dask().shape == store.shape


def test_v1_demix_fixture_reads_and_its_label_image_is_what_was_stored():
    result = open_demix(V1 / "sim.demix.zarr")
    assert result.metadata["format_version"] == 1 and result.spikes is None  # spikes arrived in version 2
    assert result.footprints.shape == (400, result.n_components) and result.n_components >= 1
    assert result.traces.shape == (result.n_components, 40)
    stored_labels = zarr.open_group(str(V1 / "sim.demix.zarr"), mode="r")["labels"][...]
    np.testing.assert_array_equal(result.label_image(), stored_labels)


def test_v1_truth_fixture_reads():
    truth = read_truth(V1 / "sim.truth.zarr")
    assert truth.format_version == 1 and truth.shape == (40, 20, 20)
    assert truth.footprints.shape == (3, 20, 20) and truth.traces.shape == (3, 40)
    # The clean movie is offset + gain * (footprints @ traces + neuropil): check the model holds.
    rate = np.einsum("nyx,nt->tyx", truth.footprints, truth.traces)
    rate += np.einsum("kyx,kt->tyx", truth.neuropil_spatial, truth.neuropil_traces)
    np.testing.assert_allclose(truth.read(0, 40), truth.offset + truth.gain * rate, rtol=1e-4, atol=1e-3)


def test_v2_report_reads_with_its_refused_split_as_written():
    """A version-2 report (sima_ca1_example, trimmed) reads; its refused split still holds scores (v3: none)."""
    report = read_report(V2 / "report.json")
    assert report.format_version == 2 and REPORT.version == 5
    split = report.content["photon_split"]
    assert split["ok"] is False and "share noise" in split["reason"]
    assert "scored" not in split and split["all"]["error_reduction"] > 1  # v2: the whole crop was scored


def test_v1_report_status_and_null_cache_fixtures_read():
    report = read_report(V1)
    assert report.format_version == 1 and report.content["inputs"]["shape"] == [40, 20, 20]
    status = read_status(V1 / "status.json")
    assert status.format_version == 1 and status.state == "done"
    entry = read_null_cache(V1 / "null-cache.json")
    assert entry.format_version == 1 and entry.spatial > 0 and entry.temporal > 0
    # The same key must still hash to a name the current code looks up.
    assert entry.key["version"] == NULL_VERSION
    assert len(hashlib.sha256(json.dumps(entry.key, sort_keys=True).encode()).hexdigest()[:24]) == 24


# -- round trips ---------------------------------------------------------------------------------------------


def _metadata(**over):
    d = dict(shape=(6, 5, 4), input_dtype="uint16", factor_dtype="int32", method="pmd", patch_shape=(5, 4),
             overlap=(0, 0), n_patches=1, total_rank=2, software_version="test", input={"name": "m.tif"},
             parameters={"seed": 0}, timings={"total_s": 1.0}, created="2026-01-01T00:00:00+00:00")
    d.update(over)
    return StoreMetadata(**d)


def test_store_metadata_round_trip_and_store_round_trip(tmp_path):
    md = _metadata()
    assert StoreMetadata.from_dict(json.loads(json.dumps(md.to_dict()))) == md
    rng = np.random.default_rng(0)
    arrays = {"mean": rng.random((5, 4), np.float32), "noise": rng.random((5, 4), np.float32) + 1,
              "patch_origins": np.zeros((1, 2), np.int32), "patch_ranks": np.array([2], np.int32),
              "weights_y": np.ones((1, 5), np.float32), "weights_x": np.ones((1, 4), np.float32),
              "spatial": rng.standard_normal((20, 2)).astype(np.float32)}
    group, temporal = create_store(tmp_path / "s.pmd.zarr", md, arrays, temporal_chunk=4)
    v = rng.standard_normal((2, 6)).astype(np.float32)
    temporal[...] = v
    finish_store(group, md)
    back = read_store(tmp_path / "s.pmd.zarr")
    # version 4: the step of the mean relative to the noise, sqrt(12 * 0.005 / T) (formats.store_codes.mean_step)
    assert back.metadata == dataclasses.replace(md, manifest=back.metadata.manifest, mean_step=0.1)
    assert set(back.metadata.manifest) == set(arrays) | {"temporal", "temporal_scale", "spatial_scale"}
    for name, data in arrays.items():
        if name not in ("spatial", "mean", "noise"):
            np.testing.assert_array_equal(getattr(back, name), data)
    # The noise map to 8 bits of mantissa (what a compression standardises by), the mean to 0.1 of it.
    assert (np.abs(back.noise / arrays["noise"] - 1) <= 2.0**-9).all() and (back.noise != arrays["noise"]).any()
    np.testing.assert_array_equal(back.noise, round_noise(arrays["noise"]))
    assert (np.abs(back.mean - arrays["mean"]) <= back.noise * 0.1 / 2 * (1 + 1e-6)).all()
    # Quantized factors: within half a step of what was written.
    assert np.abs(back.temporal[...] - v).max() <= back.temporal.scale.max() / 2 + 1e-6
    assert (np.abs(back.spatial - arrays["spatial"]) <= back.spatial_scale / 2 + 1e-7).all()
    # The model of docs/format.md, one patch, unit weights.
    store = pmdcompress.open(tmp_path / "s.pmd.zarr")
    expected = back.mean + back.noise * (back.spatial @ back.temporal[...]).T.reshape(6, 5, 4)
    np.testing.assert_allclose(store[:], expected, rtol=1e-5, atol=1e-5)


def test_demix_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    n, t = 2, 7
    a = sp.random(30, n, density=0.3, random_state=1, format="csc", dtype=np.float32)
    result = DemixResult(
        footprints=a, traces=rng.random((n, t), np.float32), raw_traces=rng.random((n, t), np.float32),
        baseline=rng.random((n, t), np.float32), dff=rng.random((n, t), np.float32), centers=rng.random((n, 2)),
        background_spatial=rng.random((1, 5, 6), np.float32), background_temporal=rng.random((1, t), np.float32),
        background_static=rng.random((5, 6), np.float32), metrics={"snr": np.arange(n, dtype=np.float32)},
        images={"mean": rng.random((5, 6), np.float32)},
        metadata={**header(DEMIX), "dims": [5, 6], "n_components": n, "fs": 30.0, "metrics": ["snr"],
                  "images": ["mean"], "ring": None, "parameters": {"footprint_threshold": 0.2}},
    )
    write_result(result, tmp_path / "r.demix.zarr")
    back = open_demix(tmp_path / "r.demix.zarr")
    assert (back.footprints != a).nnz == 0
    for name in ("traces", "raw_traces", "baseline", "dff", "centers", "background_spatial",
                 "background_temporal", "background_static"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    np.testing.assert_array_equal(back.metrics["snr"], result.metrics["snr"])
    assert back.metadata == result.metadata


def test_truth_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    small = {name: rng.random(shape, np.float32) for name, shape in
             [("footprints", (2, 4, 5)), ("traces", (2, 6)), ("background", (4, 5)),
              ("neuropil_spatial", (1, 4, 5)), ("neuropil_traces", (1, 6))]}
    small["spikes"] = rng.integers(0, 3, (2, 6)).astype(np.uint8)
    small["source_kind"] = np.array([0, 1], np.uint8)
    group, clean = create_truth(tmp_path / "t.truth.zarr", small, 6, 4, 5, time_chunk=4)
    clean[...] = rng.random((6, 4, 5), np.float32)
    finish_truth(group, {**header(TRUTH), "gain": 2.0, "offset": 100.0, "read_noise": 1.0})
    back = read_truth(tmp_path / "t.truth.zarr")
    assert back.attrs["version"] == "pmd-simulate/2" and back.gain == 2.0
    for name, data in small.items():
        np.testing.assert_array_equal(getattr(back, name), data)


def test_report_status_and_null_cache_round_trips(tmp_path):
    report = {**header(REPORT), "metrics": {"gain": np.float32(2.5), "nan": float("nan"), "big": float("inf")}}
    write_report(tmp_path, report)
    back = read_report(tmp_path / "report.json")
    assert back.content["metrics"] == {"gain": 2.5, "nan": None, "big": "inf"}  # strict JSON
    status = {**header(BATCH_STATUS), "name": "m", "state": "failed", "error": "boom", "path": tmp_path}
    write_status(tmp_path / "status.json", status)
    assert read_status(tmp_path / "status.json").content == dict(status, path=str(tmp_path))
    entry = NullCacheEntry(cache_key(patch_shape=[8, 8], seed=0), 1.5, 2.5)
    write_null_cache(tmp_path / "c" / "null-x.json", entry)
    assert read_null_cache(tmp_path / "c" / "null-x.json") == entry
    assert not list((tmp_path / "c").glob("*.tmp"))


# -- the shared versioning rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_every_format_reads_its_own_header_and_refuses_newer_or_foreign_ones(fmt):
    assert read_version(header(fmt), fmt, "f") == fmt.version
    newer = FormatId(fmt.name, max(fmt.readable) + 1, (max(fmt.readable) + 1,), fmt.what, fmt.style)
    with pytest.raises(StoreFormatError, match=rf"f: {fmt.what} format version {newer.version}.*upgrade"):
        read_version(header(newer), fmt, "f")
    if fmt.style != "key":  # the null cache's key names no format
        foreign = FormatId("something-else", fmt.version, (fmt.version,), fmt.what, fmt.style)
        with pytest.raises(StoreFormatError, match="not a pmdcompress"):
            read_version(header(foreign), fmt, "f")
    with pytest.raises(StoreFormatError, match="f: "):
        read_version(None, fmt, "f")


def test_a_damaged_fixture_copy_names_the_file(tmp_path):
    copy = tmp_path / "bad.json"
    shutil.copy(V1 / "status.json", copy)
    copy.write_text(copy.read_text()[:50])
    with pytest.raises(StoreFormatError, match="bad.json: not a readable batch status"):
        read_status(copy)
    with pytest.raises(StoreFormatError, match="no such report"):
        read_report(tmp_path / "missing.json")


@pytest.mark.parametrize("folder, array, opener", [
    ("sim.demix.zarr", "traces", open_demix), ("sim.truth.zarr", "footprints", read_truth)])
def test_a_damaged_chunk_of_a_demix_result_or_truth_is_named(tmp_path, folder, array, opener):
    copy = tmp_path / folder
    shutil.copytree(V1 / folder, copy)
    chunk = next(p for p in (copy / array / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"\0" * chunk.stat().st_size)
    with pytest.raises(StoreFormatError, match=rf"{folder}: chunk '{array}/c/[0/]+' cannot be read"):
        opener(copy)
