"""One movie split into tasks: the scratch arrays the tasks share, the same store from 1 or 2 threads and from a
LocalCluster, and a driver that never holds the fit buffer or the temporal factors (checked by tracemalloc)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import pmdcompress
from conftest import blobs_movie
from pmdcompress.formats.store import TemporalFactors
from pmdcompress.pipeline import compress as compress_module
from pmdcompress.pipeline.scratch import FILTER_ROWS, Blocks, FitBuffer, LazyFrames, RowBlocks
from pmdcompress.preprocess import noise_neighbour_correlation, trend_basis

# Several chunks of frames, a fit buffer of spread windows (600 bins > 200 fit frames), overlapping patches that
# straddle the scratch's tiles at the edges (48 x 56 is not a multiple of 20).
OPTIONS = {"patch_shape": 20, "overlap": 6, "chunk_frames": 96, "fit_frames": 200, "fit_bin": 1}


# -- the scratch arrays --------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_disk", [False, True])
def test_fit_buffer_patches_and_frames_are_the_whole_buffer_standardised(tmp_path, on_disk):
    rng = np.random.default_rng(0)
    n_rows, height, width = 37, 23, 30
    raw = rng.normal(5, 2, (n_rows, height, width)).astype(np.float32)
    knots = np.array([0.0, 10.0, 25.0, 36.0])
    trend = rng.normal(0, 1, (len(knots), height, width)).astype(np.float32)
    mean = rng.normal(5, 0.1, (height, width)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (height, width)).astype(np.float32)
    buffer = FitBuffer.create(n_rows, (height, width), (8, 7), tmp_path if on_disk else None)
    for first, last in [(0, 5), (5, 6), (6, 30), (30, 37)]:  # rows written by several "tasks", in any order
        buffer.write_rows(first, raw[first:last].reshape(last - first, -1))
    basis = trend_basis(np.arange(n_rows) + 0.5, knots)
    buffer.mean, buffer.scale, buffer.trend, buffer.basis = mean, scale, trend, basis
    # what the pipeline did before the scratch: the whole buffer at once
    whole = raw.reshape(n_rows, -1) - basis @ trend.reshape(len(knots), -1)
    whole = (whole.reshape(raw.shape) - mean) / scale
    for ys, xs in [(slice(0, 8), slice(0, 7)), (slice(3, 19), slice(5, 30)), (slice(15, 23), slice(20, 30))]:
        np.testing.assert_array_equal(buffer.patch(ys, xs), whole[:, ys, xs].reshape(n_rows, -1))
    rows = np.array([7, 3, 4, 36, 0, 8])
    np.testing.assert_array_equal(buffer.frames(rows), whole[rows])
    assert noise_neighbour_correlation(LazyFrames(buffer)) == noise_neighbour_correlation(whole)


def test_row_blocks_round_trip_by_columns_and_by_blocks(tmp_path):
    rng = np.random.default_rng(1)
    n_rows, n_frames = 2 * FILTER_ROWS + 5, 50
    values = rng.normal(size=(n_rows, n_frames)).astype(np.float16)
    for folder in (None, tmp_path):
        rows = RowBlocks(n_rows, n_frames, np.float16, folder)
        for t0 in range(0, n_frames, 16):
            rows.write_columns(t0, values[:, t0 : t0 + 16])
        assert rows.n_blocks == 3
        np.testing.assert_array_equal(np.concatenate([rows.read_block(b) for b in range(3)]), values)
        rows.write_block(2, -values[2 * FILTER_ROWS :])
        expected = np.concatenate([values[: 2 * FILTER_ROWS], -values[2 * FILTER_ROWS :]])
        np.testing.assert_array_equal(rows.read_columns(7, 41), expected[:, 7:41])


def test_an_in_memory_scratch_array_does_not_leave_the_process(tmp_path):
    import pickle

    with pytest.raises(TypeError, match="cannot leave this process"):
        pickle.dumps(Blocks((2, 3, 4), np.float32))
    on_disk = pickle.loads(pickle.dumps(Blocks((2, 3, 4), np.float32, tmp_path / "x.raw")))
    on_disk.write([(1, 1, np.ones((2, 4)))])
    np.testing.assert_array_equal(on_disk.read([(1, 0, 3)])[0], [[0] * 4, [1] * 4, [1] * 4])


# -- whole compressions --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    noisy, _ = blobs_movie(n_frames=600, shape=(48, 56), n_sources=8, seed=4)
    path = tmp_path_factory.mktemp("movie") / "movie.tif"
    tifffile.imwrite(path, np.clip(noisy, 0, 65535).astype(np.uint16))
    return path


def store_arrays(path: Path) -> dict:
    """Every array of a store, by name (the bytes the store's readers see)."""
    group = zarr.open_group(str(path), mode="r")
    out = {}
    for name, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array):
            out[name] = node[...]
    return out


def assert_same_store(a: Path, b: Path) -> None:
    arrays_a, arrays_b = store_arrays(a), store_arrays(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name], err_msg=name)
    meta_a, meta_b = pmdcompress.open(a).metadata, pmdcompress.open(b).metadata
    assert meta_a.total_rank == meta_b.total_rank > 0
    volatile = {"workers"}
    assert ({k: v for k, v in meta_a.parameters.items() if k not in volatile}
            == {k: v for k, v in meta_b.parameters.items() if k not in volatile})


def no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def reference(movie, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "one.pmd.zarr"
    pmdcompress.compress(movie, out, workers=1, hash_input=False, **OPTIONS)
    return out


def test_two_threads_give_the_store_of_one(movie, reference, tmp_path):
    out = tmp_path / "two.pmd.zarr"
    pmdcompress.compress(movie, out, workers=2, hash_input=False, **OPTIONS)
    assert_same_store(reference, out)
    assert no_leftovers(tmp_path) == []  # the scratch folder is gone with the store's temporary one


def test_an_in_memory_compression_gives_the_same_factors(movie, reference):
    store = pmdcompress.compress(str(movie), None, workers=2, hash_input=False, **OPTIONS)
    ref = pmdcompress.open(reference)
    np.testing.assert_array_equal(store.spatial, ref.spatial)
    np.testing.assert_array_equal(store.temporal[...], ref.temporal[...])


def test_a_failed_compression_leaves_no_scratch(movie, tmp_path, monkeypatch):
    def fail(args):
        raise RuntimeError("stop in the temporal filter")

    monkeypatch.setattr(compress_module, "_factors_task", fail)
    with pytest.raises(RuntimeError, match="stop in the temporal filter"):
        pmdcompress.compress(movie, tmp_path / "x.pmd.zarr", workers=2, hash_input=False, **OPTIONS)
    assert no_leftovers(tmp_path) == [] and not (tmp_path / "x.pmd.zarr").exists()


def test_a_local_cluster_gives_the_same_store_and_the_driver_never_holds_the_buffers(movie, reference, client,
                                                                                     tmp_path, monkeypatch):
    touched = []  # scratch reads and writes in this process (the driver); the workers are other processes
    for name in ("read", "write"):
        original = getattr(Blocks, name)
        monkeypatch.setattr(Blocks, name,
                            lambda self, parts, _f=original, _n=name: touched.append(_n) or _f(self, parts))
    getitem = TemporalFactors.__getitem__  # nor does the store's final rounding read the factors here
    monkeypatch.setattr(TemporalFactors, "__getitem__",
                        lambda self, key: touched.append("temporal") or getitem(self, key))
    out = tmp_path / "cluster.pmd.zarr"
    pmdcompress.compress(movie, out, client=client, workers=1, hash_input=False, **OPTIONS)
    assert_same_store(reference, out)
    assert no_leftovers(tmp_path) == []
    assert touched == []  # neither the fit buffer nor the factors pass through the driver
    monkeypatch.undo()

    # Everything this process allocates at once (the driver's thread, and the LocalCluster's scheduler and
    # nannies, which live here) stays below half of the fit buffer, the largest array of the compression.
    options = dict(OPTIONS, fit_frames=600)
    tracemalloc.start()
    try:
        store = pmdcompress.compress(movie, tmp_path / "traced.pmd.zarr", client=client, workers=1,
                                     hash_input=False, **options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_frames, height, width = store.shape
    fit_buffer = store.metadata.parameters["fit_frames_used"] * height * width * 4
    assert store.metadata.parameters["fit_frames_used"] == 600 and peak < fit_buffer / 2, (peak, fit_buffer)


@pytest.mark.parametrize("options", [dict(detrend=True, dtype="float16"), dict(temporal_filter=False)],
                         ids=["detrended-float16", "unfiltered"])
def test_other_settings_give_the_same_store_on_the_cluster(movie, client, tmp_path, options):
    options = dict(OPTIONS, **options)
    pmdcompress.compress(movie, tmp_path / "local.pmd.zarr", workers=1, hash_input=False, **options)
    pmdcompress.compress(movie, tmp_path / "cluster.pmd.zarr", client=client, workers=1, hash_input=False, **options)
    assert_same_store(tmp_path / "local.pmd.zarr", tmp_path / "cluster.pmd.zarr")
    assert ("trend" in store_arrays(tmp_path / "cluster.pmd.zarr")) == bool(options.get("detrend"))


def test_the_scratch_sits_beside_the_stores_temporary_folder(movie, tmp_path, monkeypatch):
    seen = []
    original = compress_module._neighbour_task

    def spy(fit):
        seen.append(Path(fit.raw.path))
        return original(fit)

    monkeypatch.setattr(compress_module, "_neighbour_task", spy)
    pmdcompress.compress(movie, tmp_path / "s.pmd.zarr", workers=1, hash_input=False, **OPTIONS)
    (path,) = seen
    assert path.parent.parent == tmp_path and path.parent.name.startswith(".s.pmd.zarr.")
    assert path.parent.name.endswith(".scratch.partial") and not path.exists()
    assert os.listdir(tmp_path) == ["s.pmd.zarr"]


def test_map_fold_on_the_cluster_sums_in_input_order_and_raises_the_tasks_error(client):
    from pmdcompress.parallel import Executor

    rng = np.random.default_rng(5)
    parts = [(rng.normal(size=50) * 10.0 ** rng.integers(-8, 8), rng.normal(size=50), 3, 7) for _ in range(40)]
    here = Executor(2).map_fold(tuple, parts, compress_module._add_sums)
    there = Executor(1, client).map_fold(tuple, parts, compress_module._add_sums)
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same float sums, bit for bit
    with pytest.raises(ValueError, match="invalid literal"):
        Executor(1, client).map_fold(int, ["1"] * 20 + ["x"] + ["2"] * 30, lambda acc, x: (acc or 0) + x)


def test_map_fold_finishes_where_the_fold_ran(client):
    from pmdcompress.parallel import Executor

    parts = [(np.full(3, float(i)), np.ones(3), 1, 1) for i in range(30)]

    def finish(acc):
        return float(acc[0].sum()), os.getpid()

    (here, pid_here), (there, pid_there) = (Executor(e, c).map_fold(tuple, parts, compress_module._add_sums,
                                                                    finish=finish)
                                            for e, c in ((2, None), (1, client)))
    assert here == there == 3 * sum(range(30))
    assert pid_here == os.getpid() != pid_there  # on the cluster, a worker finished it
    assert Executor(1, client).map_fold(tuple, [], compress_module._add_sums, finish=lambda acc: acc) is None


def test_cluster_maps_report_every_item_once_and_keep_the_order(client):
    """map_tasks and map_fold share the cluster batching: results in input order, one on_done per item."""
    from pmdcompress.parallel import Executor, map_tasks

    items = list(range(37))
    done = []
    assert map_tasks(abs, [-i for i in items], client=client, on_done=lambda: done.append(1), per_task=5) == items
    assert len(done) == len(items)
    done.clear()
    folded = Executor(1, client).map_fold(str, items, lambda acc, x: (acc or "") + x + ",",
                                          on_done=lambda: done.append(1))
    assert folded == "".join(f"{i}," for i in items) and len(done) == len(items)


def test_on_a_cluster_a_worker_hashes_the_input_not_the_driver(movie, client, tmp_path, monkeypatch):
    import hashlib

    expected = hashlib.sha256(movie.read_bytes()).hexdigest()

    def refuse(*args, **kwargs):
        raise AssertionError("the driver read the input to hash it")

    monkeypatch.setattr(hashlib, "file_digest", refuse)  # this process only: the workers keep theirs
    store = pmdcompress.compress(movie, tmp_path / "hashed.pmd.zarr", client=client, workers=1, **OPTIONS)
    assert store.metadata.input["sha256"] == expected


def test_a_local_cluster_runs_without_the_workers_profiler(client):
    import dask

    from pmdcompress.pipeline.cluster import QUIET_CONFIG

    # QUIET_CONFIG reached the worker processes (their housekeeping was most of an idle cluster's CPU)
    for key in ("distributed.worker.profile.enabled", "distributed.admin.tick.interval",
                "distributed.admin.system-monitor.interval", "distributed.worker.memory.monitor-interval"):
        assert set(client.run(lambda key=key: dask.config.get(key)).values()) == {QUIET_CONFIG[key]}, key


def test_slurm_jobs_get_the_workers_profiler_off_in_their_environment():
    from pmdcompress.pipeline.cluster import _worker_env

    env = _worker_env(2)
    assert env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] == "False" and env["PMD_NUM_WORKERS"] == "2"


def test_blocks_gather_reads_scattered_rows_of_every_block_from_the_file(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(5, 40, 7)).astype(np.float32)
    on_disk, in_memory = Blocks(values.shape, np.float32, tmp_path / "b.raw"), Blocks(values.shape, np.float32)
    for blocks in (on_disk, in_memory):
        blocks.write((b, 0, values[b]) for b in range(5))
    rows = np.array([0, 3, 4, 17, 39])
    np.testing.assert_array_equal(on_disk.gather(rows), values[:, rows])
    np.testing.assert_array_equal(in_memory.gather(rows), values[:, rows])
    assert on_disk.gather(np.zeros(0, np.int64)).shape == (5, 0, 7)


def test_on_a_cluster_a_worker_reads_the_sampled_frames_and_the_driver_still_warns(client, tmp_path, monkeypatch,
                                                                                    caplog):
    from pmdcompress import preflight

    noisy, _ = blobs_movie(n_frames=300, shape=(40, 48), n_sources=6, seed=5)
    frames = np.clip(noisy, 0, 65535).astype(np.uint16)
    frames[:6] = frames[:6] // 20  # the shutter opens at frame 6
    path = tmp_path / "dark.tif"
    tifffile.imwrite(path, frames)
    with caplog.at_level("WARNING", logger="pmdcompress"):
        here = preflight.check_sampled_frames(pmdcompress.io.readers.open_movie(path))
    assert here["dark"] == [0, 1, 2, 3, 4, 5]
    expected = [r.getMessage() for r in caplog.records if "read are dark" in r.getMessage()]
    caplog.clear()

    def refuse(frame):
        raise AssertionError("the driver read a sampled frame")

    monkeypatch.setattr(preflight, "_frame_summary", refuse)  # this process only: the workers keep theirs
    with caplog.at_level("WARNING", logger="pmdcompress"):
        pmdcompress.compress(path, tmp_path / "dark.pmd.zarr", client=client, workers=1, hash_input=False, **OPTIONS)
    assert [r.getMessage() for r in caplog.records if "read are dark" in r.getMessage()] == expected != []
