"""In-memory compressions (the report's photon split and held-out fits) keep their chunks in their own store.

Until session 12 an in-memory store was opened by its name, ``memory://<id of the object>``, which zarr resolves
to fsspec's process-wide memory filesystem: every in-memory store stayed there for the life of the process, and
two compressions whose store objects had the same id (one freed, one new, in the report's two threads) wrote into
each other's chunks (``pmd denoise STORE --report`` stopped with "chunk 'temporal/c/0/0' cannot be read (cannot
reshape array of size 1050 into shape (6,150)); the store is damaged").
"""

import gc

import fsspec
import numpy as np

from pmdcompress.pipeline.compress import compress


def _movie(t, seed):
    rng = np.random.default_rng(seed)
    movie = rng.poisson(20, (t, 24, 24)).astype(np.float32)
    movie[:, 6:14, 6:14] += 25 * np.sin(np.arange(t) / 3.0)[:, None, None]
    return movie


def _global_memory_files() -> set:
    return set(fsspec.filesystem("memory").store)


def test_an_in_memory_compression_leaves_nothing_in_the_process_wide_memory_filesystem():
    before = _global_memory_files()
    fit = compress(_movie(50, 0), None, workers=1)
    assert fit.path is None and fit.read(0, 50).shape == (50, 24, 24)
    assert _global_memory_files() == before
    del fit
    gc.collect()
    assert _global_memory_files() == before


def test_in_memory_stores_are_independent_of_each_other():
    first = compress(_movie(60, 1), None, workers=1)
    kept = first.read(0, 60).copy()
    others = [compress(_movie(40 + 10 * i, 2 + i), None, workers=1) for i in range(3)]
    assert np.array_equal(first.read(0, 60), kept)
    assert [o.shape[0] for o in others] == [40, 50, 60]
