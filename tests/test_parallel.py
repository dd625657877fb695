"""parallel.Executor: the pipeline's only way to run tasks (threads here; a dask client is covered in test_batch)."""

from __future__ import annotations

import contextlib

import pytest

from pmdcompress.parallel import Executor, Outcome


def test_map_keeps_input_order_whatever_the_threads():
    def square(x):
        return x * x

    items = list(range(50))
    assert Executor(4).map(square, items) == [x * x for x in items]
    assert Executor(1).map(square, items) == [x * x for x in items]


def test_groups_bound_what_is_in_flight():
    ex = Executor(3)
    assert ex.slots == 3
    groups = ex.groups(range(70))
    assert [len(g) for g in groups] == [24, 24, 22]  # 8 per slot
    assert [x for g in groups for x in g] == list(range(70))
    assert [len(g) for g in Executor(1).groups(range(20))] == [16, 4]  # never fewer than 16


def test_without_a_cluster_data_stays_in_this_process():
    ex = Executor(2)
    data = [object(), object()]
    assert ex.scatter(data[0]) is data[0]
    assert ex.scatter_each(data) is data
    assert ex.local() is ex and not ex.distributed


def test_completed_runs_every_task_and_stops_on_an_error():
    outcomes = list(Executor(1).completed(lambda x, scale: x * scale, [1, 2, 3], scale=10))
    assert outcomes == [(0, Outcome(result=10)), (1, Outcome(result=20)), (2, Outcome(result=30))]
    assert all(o.ok for _, o in outcomes)

    ran = []

    def fail_on_two(x):
        ran.append(x)
        if x == 2:
            raise KeyboardInterrupt  # an interrupt reaches the caller; later tasks never start
        return x

    with pytest.raises(KeyboardInterrupt), contextlib.closing(Executor(1).completed(fail_on_two, [1, 2, 3])) as it:
        list(it)
    assert ran == [1, 2]


def _record(acc, x):
    return (acc or ()) + (x,)


class _Counted:
    """A result that counts how many of its kind are alive at once."""

    alive = 0
    most = 0

    def __init__(self, value):
        self.value = value
        type(self).alive += 1
        type(self).most = max(type(self).most, type(self).alive)

    def __del__(self):
        type(self).alive -= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_map_fold_folds_each_result_as_it_comes(workers):
    """A group's results are folded one by one, in input order, not held until the group is done: a chunk's
    per-pixel sums are large (192 MB for 16 frames of 2048 x 2048), and a group holds 16 chunks."""
    _Counted.alive = _Counted.most = 0
    total = Executor(workers).map_fold(_Counted, range(40), lambda acc, r: (acc or 0) + r.value)
    assert total == sum(range(40)) and _Counted.alive == 0
    assert _Counted.most <= 2 + 2 * workers  # the tasks ahead of the fold (2 per thread), not the group of 16


def test_map_fold_takes_the_results_in_input_order():
    done = []
    folded = Executor(3).map_fold(lambda x: x * x, range(40), _record, on_done=lambda: done.append(1))
    assert folded == tuple(x * x for x in range(40)) and len(done) == 40
    assert Executor(1).map_fold(lambda x: x, [], _record) is None


def _blas_thread_counts():
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_overlapping_blas_limits_hold_until_the_last_one_closes():
    # Two pools side by side (the report's held-out fit beside its photon split): the first context to close must
    # not give the other one's running tasks back their N BLAS threads (a reduction over N threads rounds
    # differently), and the last one must restore what the process had.
    import threading

    from pmdcompress.parallel import blas_threads

    before = _blas_thread_counts()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    with blas_threads(1):  # the process is at N threads again only after this one closes
        pass
    assert _blas_thread_counts() == before
    second_open, first_closed, seen = threading.Event(), threading.Event(), {}

    def second():  # opens while the first context is open, and still runs tasks after the first one closes
        with blas_threads(1):
            second_open.set()
            first_closed.wait(10)
            seen["after_first_closed"] = _blas_thread_counts()

    thread = threading.Thread(target=second)
    with blas_threads(1):
        thread.start()
        assert second_open.wait(10)
    first_closed.set()
    thread.join(10)
    assert seen["after_first_closed"] == [1] * len(before)
    with pytest.raises(ValueError, match="only n=1"):
        with blas_threads(2):
            pass


def test_small_result_groups_are_one_group_here_and_the_cluster_groups_there():
    local = Executor(2)
    assert local.small_result_groups(range(100)) == [list(range(100))]
    assert local.small_result_groups([]) == []

    class Client:  # what groups() asks of a cluster
        def nthreads(self):
            return {"a": 1, "b": 1}

    remote = Executor(2, Client())
    assert remote.small_result_groups(range(100)) == remote.groups(range(100))
    assert len(remote.groups(range(100))) == 2
