"""Making or connecting a dask.distributed client, and SLURM job scripts.

``pmd batch`` and ``pmd compress --scheduler`` run on dask.distributed; this
module turns the ``--scheduler`` option into a client:

==========================  ==================================================
``None`` / ``"local"``      a :class:`~distributed.LocalCluster` on this machine
                            (``$DASK_SCHEDULER_ADDRESS`` wins when ``None``)
``"sync"``                  no cluster: everything runs in this process
``"tcp://host:8786"``       connect to a running scheduler (also ``tls://``,
                            ``ucx://``, ``ws://``, ``wss://``, ``inproc://``;
                            a bare ``host:port`` means ``tcp://``)
``"path/scheduler.json"``   connect through a scheduler file
``"slurm"``                 a dask-jobqueue ``SLURMCluster`` (optional extra:
                            ``pip install "pmdcompress[slurm]"``)
==========================  ==================================================

dask.distributed is imported only inside the functions that need it; the
SLURM job-array script of :func:`emit_sbatch` needs neither dask-jobqueue nor
a scheduler.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterError, InputError
from ..parallel import default_workers

__all__ = [
    "SCHEDULER_ENV",
    "ClusterError",
    "SchedulerSpec",
    "dashboard_link",
    "emit_sbatch",
    "open_client",
    "parse_memory",
    "parse_scheduler",
]

log = logging.getLogger("pmdcompress")

#: Environment variable naming a scheduler to connect to (dask's own convention).
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
#: What to install for ``--scheduler slurm``.
SLURM_EXTRA = 'pip install "pmdcompress[slurm]"'
#: Seconds to wait for a scheduler (and, on a LocalCluster, for its workers).
CONNECT_TIMEOUT_S = 30
_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")
#: dask settings of a LocalCluster started here (its scheduler and nannies live in this process): no
#: statistical profiler in the workers (a 10 ms stack sampler, of no use to pmd's tasks), and the event loops'
#: watchdog tick and the system monitor at 200 ms and 2 s instead of 20 ms and 0.5 s.  Measured idle on this
#: 2-core machine (2 workers): 0.012 instead of 0.034 CPU-s per second in this process, 0.006 instead of
#: 0.023 in each worker; that housekeeping grows with wall time, not work, and was most of the driver's CPU.
#: The memory monitors (each nanny's, in this process, and each worker's) poll at 500 ms instead of 100 ms: the
#: nannies' polls were the largest part of the rest (idle, 2 workers, session 8: 0.0141-0.0146 -> 0.009 CPU-s
#: per second here).  A nanny then stops a worker that runs past 95 % of its memory limit (by default the
#: machine's memory over the workers) up to 0.4 s later; pmd's tasks hold bounded memory (~0.5 GB a worker).
#: Session 10: the tick at 1 s, the system monitor (the dashboard's statistics) at 10 s and the memory monitors
#: at 1 s halve the rest (idle, 2 workers, same run, load ~17: 0.0147-0.0157 -> 0.0076-0.0089 CPU-s per second
#: here); a nanny may now stop a runaway worker up to 0.9 s late, and the event loops' "unresponsive" warnings
#: (3 s) still come.
QUIET_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "10s",
    "distributed.worker.memory.monitor-interval": "1s",
}
_WALLTIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")


@dataclass(frozen=True)
class SchedulerSpec:
    """What ``--scheduler`` asked for.

    Attributes
    ----------
    kind : str
        ``"sync"``, ``"local"``, ``"address"``, ``"file"`` or ``"slurm"``.
    target : str or None
        The address (``"address"``) or scheduler-file path (``"file"``).
    """

    kind: str
    target: str | None = None

    def describe(self) -> str:
        """A short phrase for messages and ``status.json``."""
        if self.kind == "local":
            return "a local cluster"
        if self.kind == "sync":
            return "this process (no cluster)"
        if self.kind == "slurm":
            return "a SLURM cluster (dask-jobqueue)"
        return f"the scheduler at {self.target}"


def parse_scheduler(scheduler: str | None = None) -> SchedulerSpec:
    """Interpret a ``--scheduler`` value.

    Parameters
    ----------
    scheduler : str or None
        ``local``, ``sync``, ``slurm``, a scheduler address or a
        ``scheduler.json`` path.  None (or empty) means
        ``$DASK_SCHEDULER_ADDRESS`` if set, else ``local``.

    Returns
    -------
    SchedulerSpec

    Raises
    ------
    InputError
        An unrecognised value, an unknown address scheme, or a scheduler
        file that does not exist.
    """
    if scheduler is None or not str(scheduler).strip():
        env = os.environ.get(SCHEDULER_ENV, "").strip()
        if not env:
            return SchedulerSpec("local")
        spec = _parse_target(env, f"${SCHEDULER_ENV}")
        if spec.kind not in ("address", "file"):
            raise InputError(f"${SCHEDULER_ENV}={env!r}: expected a scheduler address or a scheduler.json file")
        return spec
    return _parse_target(str(scheduler).strip(), "--scheduler")


def _parse_target(value: str, where: str) -> SchedulerSpec:
    lowered = value.lower()
    if lowered in ("local", "localcluster"):
        return SchedulerSpec("local")
    if lowered in ("sync", "none", "serial"):
        return SchedulerSpec("sync")
    if lowered == "slurm":
        return SchedulerSpec("slurm")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise InputError(f"{where} {value!r}: unknown scheme {scheme!r}; expected one of "
                             + ", ".join(f"{s}://" for s in _SCHEMES))
        return SchedulerSpec("address", value)
    if lowered.endswith(".json"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(f"{where} {value!r}: no such scheduler file")
        return SchedulerSpec("file", str(path))
    if re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d+", value):
        return SchedulerSpec("address", f"tcp://{value}")
    raise InputError(f"{where} {value!r}: expected local, sync, slurm, a scheduler address (tcp://host:8786)"
                     " or a scheduler.json file")


def parse_memory(memory_limit: str | int | None, where: str = "--memory-limit") -> int | None:
    """Bytes from ``"4GB"``, ``"512MiB"``, ``4e9`` ...; None stays None (dask's ``auto``)."""
    if memory_limit is None or (isinstance(memory_limit, str) and memory_limit.strip().lower() in ("", "auto")):
        return None
    from dask.utils import parse_bytes

    try:
        n = int(parse_bytes(memory_limit)) if isinstance(memory_limit, str) else int(memory_limit)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where} {memory_limit!r}: expected a size such as 4GB or 512MiB") from exc
    if n <= 0:
        raise InputError(f"{where} {memory_limit!r}: must be positive")
    return n


def dashboard_link(client) -> str | None:
    """The dask dashboard URL of ``client``, or None when there is none to show.

    The dashboard needs bokeh; without it distributed still reports a link
    that serves nothing, so none is returned.
    """
    if client is None or importlib.util.find_spec("bokeh") is None:
        return None
    try:
        return client.dashboard_link
    except Exception:  # noqa: BLE001 - a missing dashboard is not an error
        return None


@contextlib.contextmanager
def open_client(scheduler: str | SchedulerSpec | None = None, *, workers: int | None = None,
                threads_per_worker: int = 1, memory_limit: str | int | None = None,
                slurm_queue: str | None = None, slurm_account: str | None = None,
                walltime: str | None = None, dashboard: bool = True) -> Iterator:
    """Start or connect to a dask cluster; yield a ``Client`` (None for ``sync``).

    A cluster started here (local or SLURM) is shut down on exit, which stops
    its workers; a scheduler only connected to is left running.

    Parameters
    ----------
    scheduler : str, SchedulerSpec or None
        See :func:`parse_scheduler`.
    workers : int, optional
        Worker processes to start (local: default cores // threads_per_worker;
        SLURM: jobs, default 1).  Ignored, with a warning, when connecting.
    threads_per_worker : int
        Threads per worker process; each movie task uses that many threads.
    memory_limit : str or int, optional
        Memory per worker (``"4GB"``); a worker going over it is restarted
        by its nanny.  Default: dask's ``auto`` (machine memory / workers).
    slurm_queue, slurm_account, walltime : str, optional
        ``SLURMCluster`` partition, account and time limit (``HH:MM:SS``).
    dashboard : bool
        Serve the dask dashboard of a local cluster (on a free port).

    Raises
    ------
    InputError
        Bad option values.
    ClusterError
        The scheduler cannot be reached or the cluster does not start.
    ImportError
        ``slurm`` without dask-jobqueue installed.
    """
    spec = scheduler if isinstance(scheduler, SchedulerSpec) else parse_scheduler(scheduler)
    threads_per_worker = _positive(threads_per_worker, "--threads-per-worker")
    if workers is not None:
        workers = _positive(workers, "--workers")
    memory = parse_memory(memory_limit)
    if walltime is not None and not _WALLTIME_RE.match(walltime):
        raise InputError(f"--walltime {walltime!r}: expected [D-]HH:MM:SS, e.g. 04:00:00")
    if spec.kind != "slurm" and (slurm_queue or slurm_account or walltime):
        log.warning("--slurm-queue/--slurm-account/--walltime apply only to --scheduler slurm; ignored")
    if spec.kind in ("address", "file") and (workers is not None or memory is not None):
        log.warning("--workers/--memory-limit do not apply to an existing cluster (%s); ignored", spec.target)

    if spec.kind == "sync":
        yield None
        return
    if spec.kind in ("address", "file"):
        with _connect(spec) as client:
            yield client
        return
    import dask
    from dask.distributed import Client

    # the settings are read when the scheduler, nannies, workers and client start (and by a restarted worker,
    # whose nanny keeps them)
    with dask.config.set(QUIET_CONFIG if spec.kind == "local" else {}):
        if spec.kind == "local":
            cluster = _local_cluster(workers, threads_per_worker, memory, dashboard)
        else:
            cluster = _slurm_cluster(workers, threads_per_worker, memory, slurm_queue, slurm_account, walltime)
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    try:
        with client:
            yield client
    finally:
        cluster.close()


def _positive(value, option: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{option} must be an integer, got {value!r}") from exc
    if n < 1:
        raise InputError(f"{option} must be >= 1, got {n}")
    return n


@contextlib.contextmanager
def _connect(spec: SchedulerSpec):
    from dask.distributed import Client

    try:
        if spec.kind == "file":
            client = Client(scheduler_file=spec.target, timeout=CONNECT_TIMEOUT_S)
        else:
            client = Client(spec.target, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the dask scheduler at {spec.target} ({_one_line(exc)})") from exc
    with client:
        yield client


def _worker_env(threads_per_worker: int) -> dict:
    # Each movie task uses the worker's threads and nothing more: pmdcompress's
    # own pool, BLAS and numba all see the same number.
    # dask's statistical profiler off (about a quarter of a busy worker's CPU; see QUIET_CONFIG): also for the
    # SLURM jobs, whose workers do not get this process's dask settings
    n = str(threads_per_worker)
    return {"PMD_NUM_WORKERS": n, "NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


def _local_cluster(workers, threads_per_worker, memory, dashboard):
    from dask.distributed import LocalCluster

    if workers is None:
        workers = max(default_workers() // threads_per_worker, 1)
    try:
        return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                            memory_limit=memory if memory is not None else "auto",
                            dashboard_address=":0" if dashboard and importlib.util.find_spec("bokeh") else None,
                            env=_worker_env(threads_per_worker))
    except Exception as exc:  # noqa: BLE001 - any start failure becomes one clear message
        raise ClusterError(f"cannot start a local dask cluster of {workers} workers ({_one_line(exc)})") from exc


def _slurm_cluster(workers, threads_per_worker, memory, queue, account, walltime):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ImportError(f"--scheduler slurm needs dask-jobqueue; install it with: {SLURM_EXTRA}") from exc
    memory_text = f"{max(memory // 2**20, 1)}MiB" if memory is not None else "4GiB"
    kwargs = dict(cores=threads_per_worker, processes=1, memory=memory_text,
                  job_env_vars=[f"export {k}={v}" for k, v in _worker_env(threads_per_worker).items()])
    if queue:
        kwargs["queue"] = queue
    if account:
        kwargs["account"] = account
    if walltime:
        kwargs["walltime"] = walltime
    try:
        cluster = SLURMCluster(**kwargs)
        cluster.scale(jobs=workers or 1)
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"cannot start a SLURM cluster ({_one_line(exc)})") from exc
    return cluster


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------
# sbatch job-array scripts, for sites without dask-jobqueue.
# ---------------------------------------------------------------------------


def emit_sbatch(script, *, manifest, output_dir, n_tasks: int, steps: Sequence[str] = ("compress",),
                threads_per_task: int = 1, memory: str | None = "8G", queue: str | None = None,
                account: str | None = None, walltime: str | None = "04:00:00", max_parallel: int | None = None,
                job_name: str = "pmd-batch", overwrite: bool = False, pmd: str | None = None) -> Path:
    """Write a SLURM job-array script with one array task per movie.

    Each array task runs ``pmd batch MANIFEST -o OUTPUT_DIR --scheduler sync
    --array-index $SLURM_ARRAY_TASK_ID``: it processes movie number
    ``SLURM_ARRAY_TASK_ID`` of the manifest in its own process, with the
    same ``status.json`` bookkeeping (and resume) as any batch.  Submit it with
    ``sbatch SCRIPT``; re-submitting skips the movies already done.

    Parameters
    ----------
    script : path
        The script to write (made executable).
    manifest : path
        A batch manifest (see :func:`pmdcompress.pipeline.batch.plan_batch`); the array
        index counts its rows from 0.
    output_dir : path
        The batch output folder (per-movie folders, logs ``slurm-JOB_TASK.out``).
    n_tasks : int
        Rows in the manifest (the array is ``0-(n_tasks-1)``).
    steps : sequence of str
        Steps each task runs.
    threads_per_task : int
        ``--cpus-per-task``; the task's threads.
    memory : str or None
        ``--mem`` per task (SLURM syntax, ``8G``); None leaves the site default.
    queue, account, walltime : str or None
        ``--partition``, ``--account``, ``--time``.
    max_parallel : int, optional
        At most this many array tasks at once (``--array=0-N%M``).
    job_name : str
    overwrite : bool
        Pass ``--overwrite`` to every task (recompute finished movies).
    pmd : str, optional
        Command that runs pmd on the compute nodes; default this Python's
        ``python -m pmdcompress.cli``.

    Returns
    -------
    pathlib.Path
    """
    script = Path(script)
    n_tasks = _positive(n_tasks, "number of movies")
    threads_per_task = _positive(threads_per_task, "--threads-per-worker")
    if walltime is not None and not _WALLTIME_RE.match(walltime):
        raise InputError(f"--walltime {walltime!r}: expected [D-]HH:MM:SS, e.g. 04:00:00")
    array = f"0-{n_tasks - 1}" + (f"%{_positive(max_parallel, 'max_parallel')}" if max_parallel else "")
    output_dir = Path(output_dir).resolve()
    manifest = Path(manifest).resolve()
    command = pmd or f"{shlex.quote(sys.executable)} -m pmdcompress.cli"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array={array}",
        f"#SBATCH --cpus-per-task={threads_per_task}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --output={output_dir}/slurm-%A_%a.out",
    ]
    if memory:
        lines.append(f"#SBATCH --mem={memory}")
    if walltime:
        lines.append(f"#SBATCH --time={walltime}")
    if queue:
        lines.append(f"#SBATCH --partition={queue}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines += [
        "#",
        f"# Written by pmdcompress: one array task per movie of {manifest.name} ({n_tasks} movies).",
        "# Submit with: sbatch " + shlex.quote(str(script)),
        "# Re-submitting skips movies already done (their status.json says so).",
        "set -euo pipefail",
        'export PMD_NUM_WORKERS="${SLURM_CPUS_PER_TASK:-1}"',
        "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1",
        f"exec {command} batch {shlex.quote(str(manifest))} -o {shlex.quote(str(output_dir))} \\",
        "    --scheduler sync --array-index \"$SLURM_ARRAY_TASK_ID\" \\",
        f"    --threads-per-worker \"${{SLURM_CPUS_PER_TASK:-1}}\" --steps {shlex.quote(','.join(steps))}"
        + (" --overwrite" if overwrite else ""),
        "",
    ]
    tmp = script.with_name(f".{script.name}.tmp")
    tmp.write_text("\n".join(lines))
    tmp.chmod(0o755)
    os.replace(tmp, script)
    return script
