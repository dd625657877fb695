"""Parallel execution, kept apart from the numerics.

:class:`Executor` is where the pipeline's tasks run: threads on this machine or
a dask.distributed client.  The pipeline asks it to ``map`` a function, to
``scatter`` data to where the tasks run and how many ``slots`` run at once, and
never talks to dask itself.  :func:`map_tasks` is the same map as a function,
for the solver and the demixing, which never know which backend runs them.  Threads
are the default on one machine: the heavy work (BLAS, FFT, numba ``nogil``
kernels, zarr/tifffile I/O) releases the GIL, and threads share the movie
buffers without copies.  BLAS is limited to one thread inside each task so that
``workers`` tasks use ``workers`` cores.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .errors import OptionError

log = logging.getLogger("pmdcompress")

#: On a cluster, items are sent in batches, about this many per worker thread and map: each task costs
#: the scheduler and the client (the driver) about a millisecond whatever it does.
TASKS_PER_SLOT = 3
#: On a cluster, items per worker thread in one group of :meth:`Executor.groups` (a group is in flight at once).
CLUSTER_ITEMS_PER_SLOT = 32


def default_workers() -> int:
    """``$PMD_NUM_WORKERS``, else the number of usable cores."""
    env = os.environ.get("PMD_NUM_WORKERS")
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise OptionError(f"PMD_NUM_WORKERS must be an integer, got {env!r}") from exc
        if n < 1:
            raise OptionError(f"PMD_NUM_WORKERS must be >= 1, got {n}")
        return n
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


# threadpoolctl's limits are process-wide, and pmd's thread pools can run side by side (the report's held-out fit
# runs in a thread beside its photon split). Independent `threadpool_limits` contexts would then restore each
# other's saved state in whatever order they exit, so a running task's BLAS calls could switch between 1 and N
# threads midway, and a reduction split over N threads rounds differently: the same command gave different reports.
# One shared limit, entered by the first context and restored by the last, keeps every task at one thread.
# (Observed with OpenBLAS 0.3.31, pthreads: a change made from a thread other than the main one can be ignored; when
# such a thread closes the last context, BLAS stays at one thread, which only costs a user's own BLAS calls speed.)
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None


@contextlib.contextmanager
def blas_threads(n: int = 1):
    """Limit BLAS/OpenMP to N threads (threadpoolctl) while the context is open, in this and in every thread.

    Nested and concurrent contexts share one limit: the first opens it and the last closes it. Only ``n=1`` (one
    BLAS thread per pmd worker thread) is used, and only one value can be shared.
    """
    global _blas_users, _blas_limit
    if n != 1:
        raise ValueError(f"blas_threads: only n=1 can be shared between concurrent pools, got {n}")
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = threadpool_limits(limits=n)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


def _run_batch(func: Callable, items: list) -> list:
    """One cluster task: FUNC over a batch of items."""
    return [func(item) for item in items]


def _batches(items: list, client, per_task: int | None) -> list[list]:
    if per_task is None:
        slots = max(int(sum(client.nthreads().values())), 1)
        per_task = max(1, len(items) // (TASKS_PER_SLOT * slots))
    return [items[i : i + per_task] for i in range(0, len(items), per_task)]


def _submit_batches(client, func: Callable, items: list, per_task: int | None = None):
    """FUNC over ITEMS on the cluster, one task per batch (:func:`_batches`); returns the tasks' futures and
    their batch sizes, for :func:`_await_batches`."""
    batches = _batches(items, client, per_task)
    futures = client.map(functools.partial(_run_batch, func), batches, pure=False)
    return futures, [len(b) for b in batches]


def _await_batches(futures: list, sizes: list, on_done: Callable | None) -> None:
    """Wait for every task of :func:`_submit_batches`, calling ON_DONE once per item of each that finishes."""
    from dask.distributed import as_completed

    size = {f.key: n for f, n in zip(futures, sizes, strict=True)}
    for fut in as_completed(futures):
        for _ in range(size[fut.key] if on_done else 0):
            on_done()


def map_tasks(func: Callable, items: Iterable, *, workers: int | None = None, client=None,
              on_done: Callable | None = None, per_task: int | None = None) -> list:
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
        Called once per finished item (progress reporting).
    per_task : int, optional
        On a cluster, items per task (default: about :data:`TASKS_PER_SLOT`
        tasks per worker thread).
    """
    items = list(items)
    if client is not None:
        futures, sizes = _submit_batches(client, func, items, per_task)
        _await_batches(futures, sizes, on_done)
        return [result for batch in client.gather(futures) for result in batch]
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        return list(_ordered_results(func, items, 1, on_done))
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


def _ordered_results(func: Callable, items: list, workers: int, on_done: Callable | None) -> Iterator:
    """``func(item)`` for every item, in parallel on ``workers`` threads, yielded in input order as soon as it and
    the ones before it are done: what waits is a result that finished ahead of an earlier one, not the whole list
    (the statistics pass held every chunk's per-pixel sums of a group before folding them: 3 GB for 16 chunks of
    2048 x 2048 frames)."""
    if workers <= 1 or len(items) <= 1:
        with blas_threads(1):
            for item in items:
                result = func(item)
                if on_done:
                    on_done()
                yield result
        return
    from concurrent.futures import ThreadPoolExecutor

    ahead = 2 * workers  # tasks submitted ahead of the fold: every thread busy, few results waiting
    with blas_threads(1), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pmd") as pool:
        futures = [pool.submit(func, item) for item in items[:ahead]]
        try:
            for i in range(len(items)):
                result = futures[i].result()
                futures[i] = None  # the fold keeps what it needs of it
                if i + ahead < len(items):
                    futures.append(pool.submit(func, items[i + ahead]))
                if on_done:
                    on_done()
                yield result
        except BaseException:
            for fut in futures:
                if fut is not None:
                    fut.cancel()
            raise


def _fold_into(combine: Callable, acc, *batches):
    """One group of :meth:`Executor.map_fold` (its tasks' batches of results) folded into ACC, in order (runs on
    a worker)."""
    for batch in batches:
        for result in batch:
            acc = combine(acc, result)
    return acc


@dataclass
class Outcome:
    """How one task of :meth:`Executor.completed` ended: its ``result``, or the ``error`` it raised, or cancelled."""

    result: object = None
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


class Executor:
    """Where tasks run: a pool of ``workers`` threads here, or the workers of a dask ``client``.

    Parameters
    ----------
    workers : int, optional
        Threads on this machine (default :func:`default_workers`); also the
        threads of the steps that always run here (see :meth:`local`).
    client : dask.distributed.Client, optional
        Run :meth:`map` on this cluster (functions and items must pickle).
    """

    def __init__(self, workers: int | None = None, client=None):
        self.workers = default_workers() if workers is None else int(workers)
        self.client = client

    @property
    def distributed(self) -> bool:
        """True when tasks run on a cluster (in other processes, maybe other machines)."""
        return self.client is not None

    @property
    def slots(self) -> int:
        """How many tasks run at once: the cluster's worker threads, or the local threads."""
        if self.client is not None:
            return max(int(sum(self.client.nthreads().values())), 1)
        return max(self.workers, 1)

    def local(self) -> Executor:
        """The same number of threads, on this machine only (for data that cannot leave this process)."""
        return self if self.client is None else Executor(self.workers)

    def map(self, func: Callable, items: Iterable, *, on_done: Callable | None = None) -> list:
        """``[func(item) for item in items]`` in parallel, results in input order (see :func:`map_tasks`)."""
        return map_tasks(func, items, workers=self.workers, client=self.client, on_done=on_done)

    def map_fold(self, func: Callable, items: Iterable, combine: Callable, *, on_done: Callable | None = None,
                 finish: Callable | None = None):
        """``combine(...combine(combine(None, func(items[0])), func(items[1]))..., func(items[-1]))``.

        The map runs in parallel, by :meth:`groups`; the fold takes the results
        in input order, so that float sums are the same however many workers
        ran them.  On a cluster the fold runs there too, one task per group
        (each after the previous one), and only its final value comes to this
        process: the results themselves go from worker to worker.  ``finish``,
        when given, is applied to that final value where the fold ran (on a
        cluster: one more task), and only its result comes here.
        """
        items = list(items)
        if self.client is None:
            acc = None
            for members in self.groups(items):
                for result in _ordered_results(func, members, self.workers, on_done):
                    acc = combine(acc, result)
                    del result  # folded: only the sum is kept
            return acc if finish is None else finish(acc)
        from dask.distributed import wait

        acc = None
        for members in self.groups(items):
            futures, sizes = _submit_batches(self.client, func, members)
            acc = self.client.submit(_fold_into, combine, acc, *futures, pure=False)
            _await_batches(futures, sizes, on_done)
            wait([acc])  # one group in flight at a time: bounded memory on the workers
            if acc.status == "error":
                acc.result()  # raises the first task's error now, not after every group
            del futures
        if acc is None:  # no items
            return None if finish is None else finish(None)
        if finish is not None:
            acc = self.client.submit(finish, acc, pure=False)
        return acc.result()

    def scatter(self, obj, *, broadcast: bool = True):
        """OBJ where every task can read it without shipping it per task.

        On a cluster: a future of OBJ held by the workers (``broadcast``: a copy
        on every worker); here: OBJ itself, shared by the threads.
        """
        if self.client is None:
            return obj
        return self.client.scatter(obj, broadcast=broadcast, hash=False)

    def scatter_each(self, items: list) -> list:
        """One future per item, each sent straight to a worker (not through the task graph); here: the items."""
        if self.client is None:
            return items
        return self.client.scatter(items)

    def groups(self, items: Iterable, per_slot: int | None = None, least: int = 16) -> list[list]:
        """Consecutive groups of ITEMS, ``per_slot`` per slot: bounds what is in flight (and in memory) at once.

        Default: 8 per slot here, :data:`CLUSTER_ITEMS_PER_SLOT` on a cluster,
        whose tasks take their data from the file system, so that a group's
        batches (:data:`TASKS_PER_SLOT` per slot) carry several items each.
        """
        if per_slot is None:
            per_slot = CLUSTER_ITEMS_PER_SLOT if self.client is not None else 8
        size = max(least, per_slot * self.slots)
        items = list(items)
        return [items[i : i + size] for i in range(0, len(items), size)]

    def small_result_groups(self, items: Iterable) -> list[list]:
        """:meth:`groups` for tasks whose results are small (a patch's components, a block's three numbers per
        row): here, one group of every item, since the threads hold only the tasks that run (no barrier where
        the slowest task of each group kept the other threads idle); on a cluster, :meth:`groups`."""
        items = list(items)
        if self.client is not None:
            return self.groups(items)
        return [items] if items else []

    def completed(self, func: Callable, items: Iterable, *, name: str = "pmd-task", **kwargs) -> Iterator:
        """Run ``func(item, **kwargs)`` for every item; yield ``(index, Outcome)`` as each task ends.

        Long, independent tasks (a batch's movies): on a cluster they run in any
        order and one that fails, or whose worker dies, is an ``Outcome`` with
        its ``error``, not an exception here; here, they run one after the other
        in this thread.  If the caller stops early or an exception (an
        interrupt) reaches this generator, the tasks not yet finished are
        cancelled.  Use it as ``with contextlib.closing(executor.completed(...))``.
        """
        items = list(items)
        if self.client is None:
            for i, item in enumerate(items):
                yield i, Outcome(result=func(item, **kwargs))
            return
        from dask.distributed import as_completed

        token = uuid.uuid4().hex[:8]
        futures = {self.client.submit(func, item, **kwargs, key=f"{name}-{i}-{token}", pure=False): i
                   for i, item in enumerate(items)}
        finished = False
        try:
            for fut in as_completed(list(futures)):
                if fut.status == "finished":
                    outcome = Outcome(result=fut.result())
                elif fut.status == "cancelled":
                    outcome = Outcome(cancelled=True)
                else:
                    outcome = Outcome(error=fut.exception())
                fut.release()
                yield futures[fut], outcome
            finished = True
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    self.client.cancel(list(futures), force=True)
