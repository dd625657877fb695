from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run and machine: CI must not fail on a new random draw.
settings.register_profile("pmd", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("pmd")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _sigint_delivered():
    # A background job of a non-interactive shell (`nohup pytest &`) starts with SIGINT ignored, and its children
    # inherit that: the Ctrl-C cases would wait for an interrupt that never comes. Install the handler an
    # interactive run has (children then start with SIGINT at its default).
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_session(tmp_path_factory):
    # Null thresholds are cached on disk; tests use their own cache folder. Session scope, so that module-scoped
    # fixtures (instantiated before any function-scoped one) never read or fill the user's ~/.cache either.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "null-cache"))
        patch.setenv("PMD_NUM_WORKERS", os.environ.get("PMD_NUM_WORKERS", "2"))
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(_isolated_cache_session, tmp_path_factory, monkeypatch):
    # Tests that change the cache folder or the worker count get them back afterwards.
    monkeypatch.setenv("PMD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "null-cache"))
    monkeypatch.setenv("PMD_NUM_WORKERS", os.environ.get("PMD_NUM_WORKERS", "2"))


def shared_movie(name: str) -> Path:
    path = SHARED_DATA / name / "movie.tif"
    if not path.exists():
        pytest.skip(f"real movie {path} not available (../shared/data is absent)")
    return path


def blobs_movie(n_frames=400, shape=(48, 56), n_sources=6, noise=5.0, seed=0, offset=100.0):
    """A small low-rank movie (Gaussian blobs with calcium-like traces) plus white noise."""
    rng = np.random.default_rng(seed)
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    clean = np.full((n_frames, height, width), offset, np.float64)
    kernel = np.exp(-np.arange(60) / 12.0)
    for _ in range(n_sources):
        cy, cx = rng.uniform(4, height - 4), rng.uniform(4, width - 4)
        footprint = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
        trace = np.convolve(rng.random(n_frames) < 0.03, kernel)[:n_frames] * 25
        clean += trace[:, None, None] * footprint
    noisy = clean + rng.normal(0, noise, clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A real LocalCluster of 2 single-threaded worker processes, started through pmdcompress.pipeline.cluster."""
    from pmdcompress.pipeline import cluster

    with pytest.MonkeyPatch.context() as mp:
        # Workers are spawned processes: give them the session's null cache (conftest sets it per test only).
        mp.setenv("PMD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "null-cache"))
        with cluster.open_client("local", workers=2, threads_per_worker=1, dashboard=False) as c:
            c.wait_for_workers(2, timeout=60)
            yield c


def _random_index_entry(rng, n):
    """One index entry for an axis of length ``n``, of every kind numpy takes (and some it refuses)."""
    kind = rng.integers(0, 8)
    if kind == 0:
        return int(rng.integers(-n - 1, n + 1))  # one past either end: refused by both
    if kind == 1:
        start, stop = (int(v) if rng.random() < 0.8 else None for v in rng.integers(-n - 3, n + 3, 2))
        return slice(start, stop, [None, 1, 2, 3, -1, -2, 5][rng.integers(0, 7)])
    if kind == 2:
        return [int(v) for v in rng.integers(-n, n, rng.integers(0, 5))]  # [] too, which numpy reads as integers
    if kind == 3:
        return rng.random(n) < 0.3
    if kind == 4:
        return rng.integers(0, n, (2, 2))
    if kind == 5:
        return np.array(rng.integers(-n, n))  # 0-d
    return None if kind == 6 else Ellipsis


def agree_with_numpy(lazy, whole: np.ndarray, rng, n_keys: int) -> None:
    """``lazy[key]`` equals ``whole[key]`` (values and shape), or both refuse, for ``n_keys`` random keys of every
    kind (pmdcompress.indexing: basic and advanced indexing, ``...``, ``None``); both sides must be exercised."""
    agreed = refused = 0
    for _ in range(n_keys):
        key, axis = [], 0
        for _ in range(rng.integers(1, 5)):
            entry = _random_index_entry(rng, whole.shape[min(axis, 2)])
            key.append(entry)
            axis += entry is not None and entry is not Ellipsis
        key = tuple(key)
        try:
            expected = whole[key]
        except IndexError:
            with pytest.raises(IndexError):
                lazy[key]
            refused += 1
            continue
        got = lazy[key]
        assert got.shape == expected.shape and got.dtype == expected.dtype, key
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4, err_msg=repr(key))
        agreed += 1
    assert agreed > n_keys // 2 and refused > n_keys // 12
