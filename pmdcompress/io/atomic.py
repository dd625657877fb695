"""Safe outputs: never an input, one writer at a time, complete or absent.

Every file or folder pmdcompress writes goes through :func:`atomic_output`:

- **inputs are sacred**: an output that resolves to, contains, or lies inside
  one of the run's inputs is refused, with or without ``overwrite``;
- ``overwrite`` replaces only a file where a file is written, or a folder that
  pmd itself wrote (a Zarr store, a report, a suite2p export), or an empty one;
- **one writer per output**: a lock file beside the output
  (``.NAME.lock``) records the host, process id and its start time; a second
  writer is refused naming the holder.  A lock or half-written output left by
  a dead process on this host is cleaned up; one from another host is
  reported with the command that removes it;
- the output is written under a temporary name (``.NAME.<pid>-<host>-<id>.partial``)
  and renamed into place only when complete; a failure, an interrupt or a
  full disk removes it and leaves any previous output untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

from .. import checkpoints
from ..errors import OutputBusyError, OutputError, OutputExistsError

#: Suffixes of outputs that are folders (anything without a suffix is a folder too: report folders).
FOLDER_SUFFIXES = (".zarr", ".suite2p")
#: Single-file formats: a folder output (a store, a result, a report) under such a name would pass for a movie
#: of that format and fool every reader (and the user), so it is refused.
FILE_SUFFIXES = (".tif", ".tiff", ".btf", ".npy", ".npz", ".h5", ".hdf5", ".nwb", ".avi", ".bin", ".mmap", ".mat",
                 ".json", ".csv", ".png", ".html")
#: errno values that mean "the user's disk or permissions", not a bug.
USER_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "read-only file system", errno.EFBIG: "file too large for the file system"}


# ---------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------


def resolved(path: str | os.PathLike) -> Path:
    """``path`` made absolute with every symbolic link followed (the path need not exist)."""
    return Path(os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path)))))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(output: str | os.PathLike, inputs) -> None:
    """Refuse an output that is, contains, or lies inside one of ``inputs`` (paths; others ignored)."""
    out = resolved(output)
    for item in inputs or ():
        if not isinstance(item, (str, os.PathLike)):
            continue
        src = resolved(item)
        if out == src or _same_file(out, src):
            raise OutputError(f"{output}: is the input {item}; choose another output path (inputs are never "
                              "replaced, even with {overwrite})", "overwrite")
        if out in src.parents:
            raise OutputError(f"{output}: contains the input {item}; choose another output path", "overwrite")
        if src in out.parents:
            raise OutputError(f"{output}: is inside the input {item}; choose another output path", "overwrite")


def check_not_source(output: str | os.PathLike, store) -> None:
    """Refuse to write a reconstruction of ``store`` over the raw movie it was made from.

    The store records its input's name; the movie of that name beside the store is taken for that input (by
    name alone: a lossy reconstruction of the same size would otherwise pass), even with ``overwrite``.
    """
    path = getattr(store, "path", None)
    name = ((getattr(getattr(store, "metadata", None), "input", None) or {}).get("name") or "")
    if path is None or not name or name.startswith("<") or Path(name).name != name:
        return
    source = Path(path).parent / name
    if not source.exists():
        return
    out = resolved(output)
    if out == resolved(source) or _same_file(out, source):
        raise OutputError(f"{output}: is the raw movie {Path(path).name} was made from; a reconstruction never "
                          "replaces it, even with {overwrite}; choose another output path", "overwrite")


def input_paths(*items) -> list:
    """The paths among ``items``: inputs given as paths, or objects with a ``path`` (a Movie, a store)."""
    out = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            out.append(item)
        elif isinstance(getattr(item, "path", None), (str, os.PathLike)):
            out.append(item.path)
    return out


def is_folder_output(path: str | os.PathLike) -> bool:
    """Whether the output at ``path`` is a folder (by its suffix: .zarr, .suite2p, or none)."""
    suffix = Path(path).suffix.lower()
    return suffix in FOLDER_SUFFIXES or suffix == ""


def written_by_pmd(folder: Path) -> bool:
    """Whether ``folder`` is something pmd writes (and may replace): a Zarr node, a report, a suite2p export.

    An empty folder counts too: replacing it loses nothing.
    """
    try:
        entries = {e.name for e in os.scandir(folder)}
    except OSError:
        return False
    if not entries:
        return True
    if entries & {"zarr.json", ".zgroup", ".zarray"}:
        return True
    if "report.json" in entries:
        try:
            report = json.loads((folder / "report.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(report, dict) and str(report.get("format", "")).startswith("pmdcompress")
    if folder.name.endswith(".suite2p") and entries <= {"plane0"}:
        return True
    return False


def check_output_path(path: str | os.PathLike, *, overwrite: bool, inputs=(), folder: bool | None = None) -> Path:
    """Check an output before any work; return it as a ``Path``.

    Refuses (see the module docstring) an output that is or holds an input, an
    existing output without ``overwrite``, an existing one of another kind or
    that pmd did not write, and a missing or read-only parent folder.
    """
    path = Path(path)
    check_not_input(path, inputs)
    folder = is_folder_output(path) if folder is None else folder
    parent = path.parent
    if not parent.exists():
        raise OutputExistsError(f"{path}: parent folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write in folder {parent} (permission denied)")
    if os.path.lexists(path):
        if not overwrite:
            raise OutputExistsError(f"{path}: output exists; pass {{overwrite}} to replace it", "overwrite")
        if path.is_dir() and not path.is_symlink():
            if not folder:
                raise OutputError(f"{path}: is a folder and the output is a file; {{overwrite}} replaces only "
                                  "an output of the same kind; remove it yourself or choose another path",
                                  "overwrite")
            if not written_by_pmd(path):
                raise OutputError(f"{path}: is a folder pmd did not write; {{overwrite}} replaces only pmd's own "
                                  "outputs; remove it yourself or choose another path", "overwrite")
        elif folder and path.exists():
            raise OutputError(f"{path}: is a file and the output is a folder; {{overwrite}} replaces only an "
                              "output of the same kind; remove it yourself or choose another path", "overwrite")
    if folder and path.suffix.lower() in FILE_SUFFIXES:
        raise OutputError(f"{path}: this output is a folder (a Zarr store, a result or a report folder), but "
                          f"{path.suffix} names a file format; choose another name (a store: .pmd.zarr)")
    return path


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree; missing paths are ignored."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # a writer thread was still adding files: once more
            shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free bytes for this user in ``folder`` (None when the file system does not say)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_free_space(path: str | os.PathLike, needed: int, what: str, parameters=()) -> bool:
    """Refuse (OutputError) when the folder of ``path`` has less than ``needed`` bytes free.

    Returns False when the free space cannot be known (the caller may warn).
    """
    free = free_bytes(Path(path).parent)
    if free is None:
        return False
    if needed > free:
        raise OutputError(f"{path}: needs up to {_mb(needed)} ({what}) but only {_mb(free)} are free in "
                          f"{Path(path).parent}", *parameters)
    return True


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def user_error(exc: OSError, target) -> OutputError | None:
    """The user-facing error for an ``OSError`` that is the disk's or the permissions' fault, else None."""
    reason = USER_ERRNOS.get(getattr(exc, "errno", None))
    if reason is None:
        return None
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{target}: {reason} while writing it (the partial output was removed)")
    where = f" ({exc.filename})" if exc.filename and Path(str(exc.filename)).name != Path(str(target)).name \
        and ".partial" not in str(exc.filename) else ""
    return OutputError(f"{target}: {reason}{where}")


# ---------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------

_HELD: dict[Path, int] = {}
_HELD_GUARD = threading.Lock()


def lock_path(path: str | os.PathLike) -> Path:
    """Where the lock of the output ``path`` lives (beside it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (tells a reused pid apart), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` (started at ``start``) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _process_start(pid)
    return start is None or now is None or now == start


def _holder(record: dict) -> str:
    when = record.get("started_at", "?")
    return f"pmd (pid {record.get('pid', '?')} on host {record.get('host', '?')}, since {when})"


def _read_lock(lock: Path) -> dict | None:
    try:
        record = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _my_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


#: What follows ``.NAME.`` in the names of NAME's own leftovers: a partial output (``<pid>-<host id>-<random>``, or
#: the older ``<random>``) and an output moved aside (``<random>.old``).  Anything else beginning with ``.NAME.``
#: is another output's (``.NAME.tif.<pid>-...partial`` is the partial of NAME.tif, written beside a report folder
#: NAME: ``pmd denoise -o NAME.tif --report NAME``, whose folder's lock removed the movie being written).
_LEFTOVER = re.compile(r"(?:\d+-[0-9a-f]{8}-)?[0-9a-f]{8}\.(?:partial|old)")


def _clean_leftovers(path: Path) -> None:
    """Remove what dead writers of ``path`` on this host left: partial outputs; restore an output moved aside."""
    prefix = f".{path.name}."
    try:
        entries = [e for e in os.scandir(path.parent)
                   if e.name.startswith(prefix) and _LEFTOVER.fullmatch(e.name[len(prefix):])]
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(prefix):]
        if rest.endswith(".partial") and not _partial_is_live(rest[: -len(".partial")]):
            remove_path(Path(entry.path))
        elif rest.endswith(".old"):
            # A run died between moving the old output aside and renaming the new one in.
            if not os.path.lexists(path):
                os.replace(entry.path, path)
            else:
                remove_path(Path(entry.path))


def _partial_is_live(tag: str) -> bool:
    """Whether the partial output tagged ``<pid>-<host id>-<random>`` belongs to a running process."""
    parts = tag.split("-")
    if len(parts) != 3 or not parts[0].isdigit():
        return False  # an older name: no live writer can hold it, since we hold the lock
    pid, host = int(parts[0]), parts[1]
    if host != _host_id():
        return True  # another host's: leave it to that host
    return pid == os.getpid() or _alive(pid, None)


def _host_id() -> str:
    import hashlib

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def partial_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: hidden, naming this process and host, ending in ``.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{_host_id()}-{uuid.uuid4().hex[:8]}.partial")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike):
    """Hold the lock of output ``path`` (re-entrant within this process).

    Raises :class:`~pmdcompress.errors.OutputBusyError` naming the holder
    when another process writes ``path``.  A lock left by a dead process on
    this host is taken over, and that process's partial outputs are removed.
    """
    path = Path(path)
    key = resolved(path)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    lock = lock_path(path)
    _acquire(path, lock)
    with _HELD_GUARD:
        _HELD[key] = 1
    try:
        _clean_leftovers(path)
        checkpoints.checkpoint("locked", path)
        yield
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _acquire(path: Path, lock: Path) -> None:
    mine = json.dumps(_my_record())
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            record = _read_lock(lock)
            if record is None:
                continue  # released meanwhile
            if not _stale(record, lock):
                if record.get("host") not in (None, socket.gethostname()):
                    raise OutputBusyError(f"{path}: locked by {_holder(record)}; if no pmd runs there any more, "
                                          f"remove the lock: rm {lock}") from None
                raise OutputBusyError(f"{path}: being written by another {_holder(record)}; wait for it to "
                                      "finish or stop it") from None
            # A dead process's lock: take it over (rename first, so two runs never both take it).
            taken = lock.with_name(f"{lock.name}.{uuid.uuid4().hex[:8]}.stale")
            try:
                os.rename(lock, taken)
            except FileNotFoundError:
                continue
            if _read_lock(taken) != record:  # someone else's fresh lock: put it back, we lost the race
                with contextlib.suppress(OSError):
                    os.link(taken, lock)
                remove_path(taken)
                raise OutputBusyError(f"{path}: being written by another pmd process; wait for it to finish") from None
            remove_path(taken)
            continue
        except OSError as exc:
            err = user_error(exc, path)
            if err is not None:
                raise err from exc
            raise
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        return
    raise OutputBusyError(f"{path}: its lock {lock} keeps changing hands; another pmd is writing it")


def _stale(record: dict, lock: Path) -> bool:
    """A lock whose writer is dead on this host (an unreadable or empty lock counts as stale)."""
    host, pid = record.get("host"), record.get("pid")
    if host is None or not isinstance(pid, int):
        return True
    if host != socket.gethostname():
        return False
    return not _alive(pid, record.get("pid_start"))


# ---------------------------------------------------------------------------
# Atomic outputs
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False, inputs=(), folder: bool | None = None):
    """Yield a temporary sibling path; on success rename it to ``path``.

    The output is checked first (:func:`check_output_path`) and locked for the
    whole block (:func:`output_lock`).  On any exception, an interrupt included,
    the temporary path is removed and ``path`` is left untouched; a full disk
    or a permission problem becomes an :class:`~pmdcompress.errors.OutputError`
    naming ``path`` (never the temporary name).
    """
    final = check_output_path(path, overwrite=overwrite, inputs=inputs, folder=folder)
    with output_lock(final):
        tmp = partial_path(final)
        try:
            yield tmp
            checkpoints.checkpoint("commit", final)
            _commit(tmp, final, overwrite=overwrite, folder=folder)
        except BaseException as exc:
            remove_path(tmp)
            if isinstance(exc, OSError) and not isinstance(exc, (OutputError, OutputExistsError)):
                err = user_error(exc, final)
                if err is not None:
                    raise err from exc
            raise


@contextlib.contextmanager
def atomic_outputs(paths, *, overwrite: bool = False, inputs=(), folders=None):
    """Like :func:`atomic_output` for outputs that belong together (a movie and its ground truth).

    Yields the temporary paths; all outputs are renamed into place only once
    every one is complete, so an interrupt or a failure leaves none of them.
    """
    finals = [Path(p) for p in paths]
    folders = list(folders) if folders is not None else [None] * len(finals)
    for final, folder in zip(finals, folders, strict=True):
        check_output_path(final, overwrite=overwrite, inputs=inputs, folder=folder)
    with contextlib.ExitStack() as locks:
        for final in finals:
            locks.enter_context(output_lock(final))
        tmps = [partial_path(final) for final in finals]
        try:
            yield tmps
            for final in finals:
                checkpoints.checkpoint("commit", final)
            for tmp, final, folder in zip(tmps, finals, folders, strict=True):
                _commit(tmp, final, overwrite=overwrite, folder=folder)
        except BaseException as exc:
            for tmp in tmps:
                remove_path(tmp)
            if isinstance(exc, OSError) and not isinstance(exc, (OutputError, OutputExistsError)):
                err = user_error(exc, finals[0])
                if err is not None:
                    raise err from exc
            raise


def _commit(tmp: Path, final: Path, *, overwrite: bool, folder: bool | None) -> None:
    if not os.path.lexists(tmp):
        raise OutputError(f"{final}: nothing was written")
    if os.path.lexists(final):
        # Checked again under the lock: another run may have finished it meanwhile.
        check_output_path(final, overwrite=overwrite, folder=folder)
        # Overwrite: move the old output aside first so a failure in between loses nothing.
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        remove_path(old)
    else:
        os.replace(tmp, final)
