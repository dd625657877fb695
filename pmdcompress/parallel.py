"""Parallel execution, kept apart from the numerics.

:func:`map_tasks` maps a function over items with a serial, threaded or
dask.distributed backend; the solver never knows which one runs it.  Threads
are the default on one machine: the heavy work (BLAS, FFT, numba ``nogil``
kernels, zarr/tifffile I/O) releases the GIL, and threads share the movie
buffers without copies.  BLAS is limited to one thread inside each task so that
``workers`` tasks use ``workers`` cores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

log = logging.getLogger("pmdcompress")


def default_workers() -> int:
    """``$PMD_NUM_WORKERS``, else the number of usable cores."""
    env = os.environ.get("PMD_NUM_WORKERS")
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise ValueError(f"PMD_NUM_WORKERS must be an integer, got {env!r}") from exc
        if n < 1:
            raise ValueError(f"PMD_NUM_WORKERS must be >= 1, got {n}")
        return n
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def blas_threads(n: int):
    """Context manager limiting BLAS/OpenMP threads (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def map_tasks(func: Callable, items: Iterable, *, workers: int | None = None, client=None,
              on_done: Callable | None = None) -> list:
    """``[func(item) for item in items]``, in parallel; results in input order.

    Parameters
    ----------
    func : callable
    items : iterable
    workers : int, optional
        Threads on this machine (default :func:`default_workers`); 1 runs serially.
    client : dask.distributed.Client, optional
        Run the tasks on this cluster instead (func and items must pickle).
    on_done : callable, optional
        Called once per finished task (progress reporting).
    """
    items = list(items)
    if client is not None:
        from dask.distributed import as_completed

        futures = client.map(func, items, pure=False)
        for _ in as_completed(futures):
            if on_done:
                on_done()
        return client.gather(futures)
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        results = []
        with blas_threads(1):
            for item in items:
                results.append(func(item))
                if on_done:
                    on_done()
        return results
    from concurrent.futures import ThreadPoolExecutor, as_completed

    results = [None] * len(items)
    with blas_threads(1), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pmd") as pool:
        futures = {pool.submit(func, item): i for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if on_done:
                    on_done()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return results
