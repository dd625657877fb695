"""Batches of movies: ``pmd batch``.

A batch is a list of movies (from globs, paths, or a CSV/YAML manifest that
may give per-movie options), an output folder, and steps to run on each
movie.  Each movie gets its own folder under the output folder::

    out/
      batch-summary.json            # the last run: done, skipped, failed, interrupted
      mouse1/day1/movie/            # one folder per movie (its path below the glob's base)
        status.json                 # state, timings, versions, errors
        movie.pmd.zarr              # step "compress"
        denoised.zarr               # step "denoise" (float32 reconstruction)
        movie.demix.zarr            # step "demix" (+ .contours.png, .traces.png with figures)

Movies are tasks on a dask.distributed cluster (see :mod:`pmdcompress.pipeline.cluster`):
each worker opens its movie itself and runs the whole pipeline on it with its
own threads, so nothing but a small status record travels back to this
process.  ``status.json`` is written by whoever knows the state (the worker
while it runs, this process when a worker dies or the batch is interrupted),
always by an atomic rename.

Resume rules: a movie is skipped when its ``status.json`` says ``done`` for
every requested step, with the same options and the same input (size and
modification time), and its outputs are complete; otherwise it is redone
(``pending``, ``running``, ``failed`` and ``interrupted`` movies alike).
Steps already done for the same options and input are kept, so adding
``demix`` to a compressed batch runs only ``demix``.  ``overwrite``
redoes everything.  A failing movie is recorded and the batch goes on; the
summary lists it.  SIGINT and SIGTERM stop the batch cleanly: workers are
stopped, unfinished movies are marked ``interrupted`` and the next run
completes them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import glob
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import checkpoints
from .._package_version import __version__
from ..errors import BatchError, InputError, OptionError, PMDError, StoreFormatError, Terminated
from ..formats.batch_status import BATCH_STATUS, json_default, write_status
from ..formats.batch_status import read_status as formats_read_status
from ..io.atomic import remove_path
from ..io.readers import is_movie_path
from ..options import CompressOptions, DemixOptions, parse_pair
from ..parallel import Executor, Outcome
from ..progress import null_progress
from .cluster import SchedulerSpec, dashboard_link, emit_sbatch, open_client, parse_memory, parse_scheduler
from .compress import compress
from .decompress import decompress
from .demix import demix

__all__ = [
    "BatchError",
    "MovieJob",
    "STEPS",
    "parse_settings",
    "plan_batch",
    "prepare_sbatch",
    "process_movie",
    "read_status",
    "run_batch",
]

log = logging.getLogger("pmdcompress")

#: Steps a batch can run, in pipeline order.
STEPS = ("compress", "denoise", "demix")
#: Steps each step needs first.
_PREREQUISITES = {"compress": (), "denoise": ("compress",), "demix": ("compress",)}

STATUS_NAME = "status.json"
SUMMARY_NAME = "batch-summary.json"
MANIFEST_NAME = "batch-manifest.yaml"
LOCK_NAME = ".lock"
STATUS_FORMAT = BATCH_STATUS.name
STATUS_VERSION = BATCH_STATUS.version
DENOISED_NAME = "denoised.zarr"

MANIFEST_SUFFIXES = (".csv", ".yaml", ".yml")
#: Input-selection keys a manifest row may carry besides the compression options.
INPUT_KEYS = ("frames", "plane", "channel", "dataset", "crop", "frame_rate", "frame_shape")
#: Demixing options carry this prefix (``demix_cell_radius``): ``seed`` and others exist in both steps.
DEMIX_PREFIX = "demix_"
#: Other spellings accepted in manifests and ``--set`` (CLI option names).
_ALIASES = {"patch": "patch_shape", "movie": "path", "file": "path", "fs": "demix_fs", "kind": "demix_kind"}


@dataclass(frozen=True)
class MovieJob:
    """One movie of a batch.

    Attributes
    ----------
    index : int
        Position in the batch (``--array-index`` counts these).
    path : pathlib.Path
        The movie (absolute).
    name : str
        Its folder below the output folder (``/``-separated, relative).
    options : dict
        Input selection (``frames``, ``plane``, ``channel``, ``dataset``) and
        compression options (fields of :class:`~pmdcompress.CompressOptions`),
        already converted to their types.
    """

    index: int
    path: Path
    name: str
    options: dict = field(default_factory=dict)

    def folder(self, output_dir) -> Path:
        return Path(output_dir) / self.name

    @property
    def store_name(self) -> str:
        return f"{Path(self.name).name}.pmd.zarr"


# ---------------------------------------------------------------------------
# Planning: inputs -> jobs, with options checked before anything is written.
# ---------------------------------------------------------------------------


def plan_batch(inputs, output_dir=None, *, options: dict | None = None) -> list[MovieJob]:
    """Resolve globs, paths and manifests into the movies of a batch.

    Parameters
    ----------
    inputs : str, PathLike, dict, or a sequence of them
        Glob patterns (``"recordings/**/*.tif"``; ``**`` recurses), paths, or
        manifests: a ``.csv`` with a ``path`` column, or a ``.yaml`` holding
        either a list of rows or ``{"options": {...}, "movies": [rows]}``.
        A row is a path, or a mapping with ``path``, an optional ``name``
        (its output folder) and any option of :class:`~pmdcompress.CompressOptions`
        or of the input selection (``frames``, ``plane``, ``channel``,
        ``dataset``).  CSV cells left empty take the default.  Relative paths
        in a manifest are relative to the manifest.  Dicts may also be passed
        directly.
    output_dir : path, optional
        The batch output folder; files inside it are never taken as inputs.
    options : dict, optional
        Options for every movie; a manifest row's own values win.

    Returns
    -------
    list of MovieJob
        In input order, duplicates removed.

    Raises
    ------
    InputError
        A glob matching nothing, an unreadable manifest, an unknown option or
        a bad option value (naming the manifest row), two movies wanting the
        same output folder.
    """
    defaults = _convert_options(options or {}, "options")
    output_dir = Path(output_dir).resolve() if output_dir is not None else None
    items = [inputs] if isinstance(inputs, (str, os.PathLike, dict)) else list(inputs)
    if not items:
        raise InputError("no inputs given: pass glob patterns, movie paths or a manifest")
    rows: list[tuple[Path, Path, str | None, dict, str]] = []  # path, base, name, options, where
    for item in items:
        if isinstance(item, dict):
            rows.append(_row(item, Path.cwd(), defaults, "input row"))
        elif Path(item).suffix.lower() in MANIFEST_SUFFIXES:
            rows.extend(_manifest_rows(Path(item), defaults))
        elif glob.has_magic(str(item)):
            matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True))]
            matches = [m for m in matches if not _inside(m, output_dir) and not m.name.startswith(".")]
            if not matches:
                raise InputError(f"{item}: no files match this pattern")
            others = [m for m in matches if not is_movie_path(m)]  # notes, logs, a rig's XML beside the movies
            if others and len(others) < len(matches):
                log.warning("%s: left out %d matched file%s that no reader takes (%s)", item, len(others),
                            "s" * (len(others) > 1), ", ".join(m.name for m in others[:5]) + ", ..." * (
                                len(others) > 5))
                matches = [m for m in matches if m not in others]
            base = _glob_base(str(item))
            rows.extend((m.resolve(), base, None, dict(defaults), str(m)) for m in matches)
        else:
            p = Path(item).expanduser()
            rows.append((p.resolve(), p.resolve().parent, None, dict(defaults), str(p)))
    return _name_jobs(rows)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _glob_base(pattern: str) -> Path:
    """The folder a glob pattern starts from: its components before the first wildcard."""
    parts = Path(pattern).expanduser().parts
    literal = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        literal.append(part)
    return Path(*literal).resolve() if literal else Path.cwd().resolve()


def _manifest_rows(manifest: Path, defaults: dict):
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such manifest")
    base = manifest.resolve().parent
    try:
        if manifest.suffix.lower() == ".csv":
            with open(manifest, newline="", encoding="utf-8") as f:
                lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
            reader = csv.DictReader(lines, skipinitialspace=True)
            entries = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
            if reader.fieldnames is None or not any(_key(k) == "path" for k in reader.fieldnames):
                raise InputError(f"{manifest}: a CSV manifest needs a 'path' column (found: "
                                 f"{', '.join(reader.fieldnames or []) or 'no header'})")
            first_line = 2
        else:
            import yaml

            data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                unknown = set(data) - {"movies", "options"}
                if unknown or not isinstance(data.get("movies"), list):
                    raise InputError(f"{manifest}: a YAML manifest is a list of movies or a mapping with"
                                     f" 'movies' (a list) and optional 'options'; found keys {sorted(data)}")
                defaults = {**defaults, **_convert_options(data.get("options") or {}, f"{manifest}: options")}
                data = data["movies"]
            if not isinstance(data, list):
                raise InputError(f"{manifest}: a YAML manifest is a list of movies, found {type(data).__name__}")
            entries = data
            first_line = 1
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise InputError(f"{manifest}: unreadable manifest ({_one_line(exc)})") from exc
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        raise InputError(f"{manifest}: unreadable manifest ({_one_line(exc)})") from exc
    if not entries:
        raise InputError(f"{manifest}: the manifest lists no movies")
    rows = []
    for i, entry in enumerate(entries):
        where = f"{manifest}: {'row' if manifest.suffix.lower() == '.csv' else 'item'} {i + first_line}"
        if isinstance(entry, (str, os.PathLike)):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected a path or a mapping, found {type(entry).__name__}")
        rows.append(_row(entry, base, defaults, where))
    return rows


def _row(entry: dict, base: Path, defaults: dict, where: str):
    entry = {_key(k): v for k, v in entry.items()}
    raw_path = entry.pop("path", None)
    if raw_path is None or str(raw_path).strip() == "":
        raise InputError(f"{where}: no 'path'")
    name = entry.pop("name", None)
    name = None if name is None or str(name).strip() == "" else _check_name(str(name).strip(), where)
    path = Path(str(raw_path).strip()).expanduser()
    if not path.is_absolute():
        path = base / path
    opts = {**defaults, **_convert_options(entry, where)}
    return path.resolve(), base, name, opts, where


def _key(key) -> str:
    k = str(key).strip().lower().replace("-", "_")
    return _ALIASES.get(k, k)


def _check_name(name: str, where: str) -> str:
    parts = Path(name).parts
    if Path(name).is_absolute() or not parts or any(p in ("..", ".") for p in parts):
        raise InputError(f"{where}: name {name!r} must be a relative folder name without '..'")
    return "/".join(parts)


def _option_kinds() -> dict[str, str]:
    def kind(t: str) -> str:
        return "pair" if "tuple" in t else "int" if t.startswith("int") else "float" if t.startswith("float") \
            else "bool" if t.startswith("bool") else "str"

    kinds = {f.name: kind(str(f.type)) for f in dataclasses.fields(CompressOptions)}
    kinds.update(frames="str", plane="int", channel="int", dataset="str", frame_rate="float", frame_shape="pair")
    kinds.update({DEMIX_PREFIX + f.name: kind(str(f.type)) for f in dataclasses.fields(DemixOptions)})
    return kinds


def _convert_options(raw: dict, where: str) -> dict:
    """Typed options from manifest cells / YAML values / ``--set`` strings; empty cells dropped."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: options must be a mapping, found {type(raw).__name__}")
    kinds = _option_kinds()
    out = {}
    for key, value in raw.items():
        k = _key(key)
        if k not in kinds:
            raise InputError(f"{where}: unknown option {key!r}; known: path, name, {', '.join(sorted(kinds))}")
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        out[k] = _convert(k, kinds[k], value, where)
    compress_opts = {k: v for k, v in out.items() if k not in INPUT_KEYS and not k.startswith(DEMIX_PREFIX)}
    demix_opts = _demix_options(out)
    try:
        if compress_opts:
            CompressOptions.create(**compress_opts)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from exc
    try:
        if demix_opts:
            DemixOptions.create(**demix_opts)
    except OptionError as exc:  # the manifest's names of demixing options carry a prefix
        raise InputError(f"{where}: {exc.render({p: DEMIX_PREFIX + p for p in exc.parameters})}") from exc
    return out


def _demix_options(options: dict) -> dict:
    return {k[len(DEMIX_PREFIX):]: v for k, v in options.items() if k.startswith(DEMIX_PREFIX)}


def _step_options(job: MovieJob, step: str) -> dict:
    """The options a step's output depends on (compress and denoise do not depend on demixing options)."""
    if step == "demix":
        return _jsonable(job.options)
    return _jsonable({k: v for k, v in job.options.items() if not k.startswith(DEMIX_PREFIX)})


def _convert(key: str, kind: str, value, where: str):
    bad = InputError(f"{where}: {key}={value!r}: expected "
                     + {"pair": "N or HxW (e.g. 32 or 32x48)", "int": "an integer", "float": "a number",
                        "str": "text", "bool": "true or false"}[kind])
    if kind == "bool":
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in ("true", "false", "yes", "no", "1", "0"):
            return value if isinstance(value, bool) else text in ("true", "yes", "1")
        raise bad
    if isinstance(value, bool):
        raise bad
    try:
        if kind == "pair":
            return parse_pair(value, key)
        if kind == "int":
            return _as_int(value.strip() if isinstance(value, str) else value)
        if kind == "float":
            return float(value)
        if isinstance(value, (dict, list)):
            raise bad
        return str(value).strip()
    except (TypeError, ValueError) as exc:
        raise bad from exc


def _as_int(value) -> int:
    if isinstance(value, str):
        return int(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _name_jobs(rows) -> list[MovieJob]:
    """Drop repeated (path, options) rows; give each movie a unique folder name."""
    seen = set()
    unique = []
    for path, base, name, opts, where in rows:
        key = (str(path), json.dumps(_jsonable(opts), sort_keys=True))
        if key in seen:
            log.info("%s: listed twice; processed once", path)
            continue
        seen.add(key)
        explicit = name is not None
        if name is None:
            try:
                rel = path.relative_to(base)
            except ValueError:
                rel = Path(path.name)
            name = _check_name(str(rel.with_suffix("")) if rel.suffix else str(rel), where)
        unique.append((path, name, opts, where, explicit))
    counts: dict[str, int] = {}
    for _, name, _, _, _ in unique:
        counts[name] = counts.get(name, 0) + 1
    unique = _name_by_folders(unique, counts)
    counts = {}
    for _, name, _, _, _ in unique:
        counts[name] = counts.get(name, 0) + 1
    jobs = []
    for path, name, opts, where, explicit in unique:
        if counts[name] > 1:
            if explicit:
                raise InputError(f"{where}: name {name!r} is given to more than one movie")
            # Same derived folder (movie.tif and movie.h5, or one file with two planes): a stable suffix.
            digest = hashlib.sha1((str(path) + json.dumps(_jsonable(opts), sort_keys=True)).encode()).hexdigest()
            name = f"{name}-{digest[:8]}"
        jobs.append(MovieJob(index=len(jobs), path=path, name=name, options=opts))
    return jobs


def _name_by_folders(unique, counts) -> list:
    """Derived names that collide (``a/movie.tif`` and ``b/movie.tif`` given as paths) take as many of their
    parent folders as tell them apart (``a/movie``, ``b/movie``), so every folder says which movie it holds."""
    clashing = [i for i, (_, name, _, _, explicit) in enumerate(unique) if counts[name] > 1 and not explicit]
    if not clashing:
        return unique
    unique = list(unique)
    paths = {i: unique[i][0] for i in clashing}
    for depth in range(1, max(len(p.parts) for p in paths.values())):
        names = {i: "/".join(p.with_suffix("").parts[-depth - 1:]) for i, p in paths.items()}
        if len(set(names.values())) == len(names):
            for i, name in names.items():
                path, _, opts, where, explicit = unique[i]
                unique[i] = (path, _check_name(name.lstrip("/"), where), opts, where, explicit)
            break
    return unique  # the same path twice (two planes, other options): a digest suffix tells them apart


def _normalize_steps(steps) -> tuple[str, ...]:
    if isinstance(steps, str):
        steps = [s for s in steps.replace(" ", "").split(",") if s]
    steps = [str(s).strip().lower() for s in steps]
    if not steps:
        raise OptionError(f"{{steps}}: no step given; available: {', '.join(STEPS)}", "steps")
    for s in steps:
        if s not in STEPS:
            raise OptionError(f"{{steps}}: unknown step {s!r}; available: {', '.join(STEPS)}", "steps")
    wanted = set(steps)
    for s in steps:
        wanted.update(_PREREQUISITES[s])
    return tuple(s for s in STEPS if s in wanted)


def parse_settings(settings: Iterable[str]) -> dict:
    """``["patch=48", "max_rank=30"]`` -> options (for ``--set``); values converted by :func:`plan_batch`."""
    out = {}
    for item in settings:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{{settings}} {item!r}: expected KEY=VALUE, e.g. patch=48", "settings")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------------
# status.json
# ---------------------------------------------------------------------------


def read_status(folder) -> dict | None:
    """A movie folder's ``status.json`` as a dict; None when missing or unreadable."""
    try:
        return formats_read_status(Path(folder) / STATUS_NAME).content
    except StoreFormatError:
        return None


def _write_json(path: Path, data: dict) -> None:
    """Write JSON by an atomic rename: readers see the old file or the new one, never half of one."""
    write_status(path, data)


def _jsonable(value):
    return json.loads(json.dumps(value, default=json_default))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _input_identity(path: Path) -> dict:
    """What says whether a movie changed since a step was done: its path, size and modification time.  A folder
    (a TIFF sequence, a Bruker T-series, a Zarr array) changes in its files, which the folder's own time does not
    see when a file is rewritten in place: its size is that of all its files and its time the newest of any."""
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path), "exists": False}
    size, mtime = st.st_size, st.st_mtime_ns
    if path.is_dir():
        size = 0
        for root, dirs, files in os.walk(path):
            for names, is_file in ((dirs, False), (files, True)):
                for name in names:
                    try:
                        entry = os.stat(os.path.join(root, name))
                    except OSError:
                        continue
                    mtime = max(mtime, entry.st_mtime_ns)
                    size += entry.st_size if is_file else 0
    return {"path": str(path), "exists": True, "size_bytes": size, "mtime_ns": mtime}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"pmdcompress": __version__, "python": sys.version.split()[0]}
    for pkg in ("numpy", "scipy", "numba", "zarr", "tifffile", "dask", "distributed"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _new_status(job: MovieJob, steps, previous: dict | None) -> dict:
    status = {
        "format": STATUS_FORMAT, "format_version": STATUS_VERSION, "name": job.name, "state": "pending",
        "input": _input_identity(job.path), "options": _jsonable(job.options), "requested_steps": list(steps),
        "steps": {}, "attempts": 0, "error": None, "queued_at": None, "started_at": None, "finished_at": None,
        "wall_s": None, "host": None, "pid": None, "worker": None, "versions": None,
    }
    if previous:
        status["steps"] = previous.get("steps") or {}
        status["attempts"] = int(previous.get("attempts") or 0)
        status["history"] = (previous.get("history") or [])[-9:]
        if previous.get("state") in ("failed", "interrupted", "running"):
            status["history"].append({k: previous.get(k) for k in ("state", "started_at", "finished_at", "error",
                                                                     "host", "worker")})
    return status


def _step_check(job: MovieJob, folder: Path, step: str, previous: dict | None) -> str | None:
    """None when ``step`` was done for these options and this input and its output is complete; else why not."""
    record = ((previous or {}).get("steps") or {}).get(step) or {}
    if record.get("state") != "done":
        return f"step {step} not done"
    if record.get("options") != _step_options(job, step):
        return "options changed"
    if record.get("input") != list(_identity_key(_input_identity(job.path))):
        return "input changed"
    output = record.get("output")
    if not output or not _output_complete(folder / output, step):
        return f"step {step} output missing or incomplete"
    return None


def _identity_key(identity: dict | None) -> tuple:
    identity = identity or {}
    return identity.get("path"), identity.get("size_bytes"), identity.get("mtime_ns")


def _output_complete(path: Path, step: str) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if step == "compress":
        return "pmdcompress" in (meta.get("attributes") or {})
    if step == "demix":
        return "pmdcompress-demix" in (meta.get("attributes") or {})
    return meta.get("node_type") in ("array", "group")


def _decide(job: MovieJob, output_dir: Path, steps, overwrite: bool) -> tuple[bool, str]:
    """(run?, why) for one movie."""
    folder = job.folder(output_dir)
    previous = read_status(folder)
    if previous is None:
        return True, "new" if not (folder / STATUS_NAME).exists() else "unreadable status.json"
    if overwrite:
        return True, "--overwrite"
    if previous.get("state") != "done":
        return True, f"previous run {previous.get('state')}"
    for step in steps:
        why = _step_check(job, folder, step, previous)
        if why is not None:
            return True, why
    return False, "done"


# ---------------------------------------------------------------------------
# One movie (runs on a worker, or in this process with scheduler "sync").
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _movie_lock(folder: Path):
    """An exclusive lock on a movie folder (released when the process dies); yields False if held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield True
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def _clean_partials(folder: Path) -> None:
    """Remove what an earlier, killed attempt left: half-written outputs and their locks.

    Called under the movie folder's own lock, so no other process writes here; an
    output lock left by a worker killed on another node would otherwise stop the retry.
    """
    for entry in folder.iterdir():
        stale_lock = entry.name.endswith(".lock") and entry.name != LOCK_NAME
        if entry.name.startswith(".") and (entry.name.endswith((".partial", ".old", ".tmp")) or stale_lock):
            remove_path(entry)


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # noqa: BLE001 - not running on a dask worker
        return None


def _step_compress(job: MovieJob, folder: Path, threads: int) -> dict:
    opts = {k: v for k, v in job.options.items() if not k.startswith(DEMIX_PREFIX)}
    selection = {k: opts.pop(k) for k in INPUT_KEYS if k in opts}
    store = compress(job.path, folder / job.store_name, overwrite=True, workers=threads, **selection, **opts)
    info = store.info()
    return {"output": job.store_name, "total_rank": info.get("total_rank"), "n_patches": info.get("n_patches"),
            "shape": info.get("shape"), "bytes_on_disk": info.get("bytes_on_disk"),
            "compression_ratio_bytes": info.get("compression_ratio_bytes"), "timings": info.get("timings")}


def _step_denoise(job: MovieJob, folder: Path, threads: int) -> dict:
    result = decompress(folder / job.store_name, folder / DENOISED_NAME, dtype="float32", overwrite=True,
                        workers=threads)
    return {"output": DENOISED_NAME, "shape": list(result["shape"]), "dtype": str(result["dtype"])}


def _step_demix(job: MovieJob, folder: Path, threads: int) -> dict:
    name = f"{Path(job.name).name}.demix.zarr"
    result = demix(folder / job.store_name, folder / name, overwrite=True, **_demix_options(job.options))
    return {"output": name, "n_components": int(result.n_components),
            "timings": (result.metadata or {}).get("timings")}


_STEP_FUNCTIONS: dict[str, Callable] = {"compress": _step_compress, "denoise": _step_denoise,
                                        "demix": _step_demix}


def process_movie(job: MovieJob, output_dir, steps: Sequence[str] = ("compress",), *, overwrite: bool = False,
                  threads: int = 1) -> dict:
    """Run ``steps`` on one movie and keep its ``status.json`` current; return the final status.

    This is the task a batch sends to a worker.  Exceptions from a step are
    recorded (state ``failed``) and not raised; an interrupt is recorded
    (state ``interrupted``) and re-raised.  When another process holds the
    movie's lock the status is left alone and ``{"state": "busy"}`` is returned.
    """
    steps = _normalize_steps(steps)
    folder = job.folder(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with _movie_lock(folder) as locked:
        if not locked:
            return {"name": job.name, "state": "busy", "error": None}
        previous = read_status(folder)
        _clean_partials(folder)
        status = _new_status(job, steps, previous)
        status.update(state="running", started_at=_now(), attempts=status["attempts"] + 1, host=socket.gethostname(),
                      pid=os.getpid(), worker=_worker_address(), versions=_versions(), threads=threads,
                      queued_at=(previous or {}).get("queued_at"))
        _write_json(folder / STATUS_NAME, status)
        start = time.perf_counter()
        current = None
        redo = overwrite
        try:
            checkpoints.checkpoint("movie", job.path)
            for step in steps:
                current = step
                if not redo and _step_check(job, folder, step, previous) is None:
                    status["steps"][step]["reused"] = True
                    continue
                # A new compression invalidates everything made from the old one.
                for stale in (STEPS if step == "compress" else (step,)):
                    status["steps"].pop(stale, None)
                redo = redo or step == "compress"
                t0 = time.perf_counter()
                record = _STEP_FUNCTIONS[step](job, folder, threads)
                record.update(state="done", seconds=round(time.perf_counter() - t0, 3), finished_at=_now(),
                              options=_step_options(job, step), input=list(_identity_key(status["input"])))
                status["steps"][step] = record
                _write_json(folder / STATUS_NAME, status)
            status["state"] = "done"
        except Exception as exc:  # noqa: BLE001 - one failing movie never stops the batch
            status["state"] = "failed"
            status["error"] = _error_record(exc, current)
            log.warning("%s: %s failed: %s", job.path, current, status["error"]["message"])
        except BaseException as exc:
            status["state"] = "interrupted"
            status["error"] = {"type": type(exc).__name__, "message": "interrupted", "step": current}
            raise
        finally:
            status["finished_at"] = _now()
            status["wall_s"] = round(time.perf_counter() - start, 3)
            _write_json(folder / STATUS_NAME, status)
    return status


def _error_record(exc: BaseException, step: str | None) -> dict:
    return {"type": type(exc).__name__, "message": _one_line(exc), "step": step,
            "expected": isinstance(exc, PMDError),
            "traceback": "".join(traceback.format_exception(exc))[-8000:]}


def _one_line(exc) -> str:
    text = exc.render({p: f"--set {p}=..." for p in exc.parameters}) if isinstance(exc, PMDError) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


# ---------------------------------------------------------------------------
# The batch.
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _interrupts_raise():
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if signum == signal.SIGTERM:
            raise Terminated(f"signal {signal.Signals(signum).name}")
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _is_client(obj) -> bool:
    return obj is not None and hasattr(obj, "submit") and hasattr(obj, "gather")


def run_batch(inputs, output_dir, *, steps=("compress",), scheduler=None, workers: int | None = None,
              threads_per_worker: int = 1, memory_limit=None, overwrite: bool = False, options: dict | None = None,
              progress=None, array_index: int | None = None, slurm_queue: str | None = None,
              slurm_account: str | None = None, walltime: str | None = None,
              on_start: Callable[[dict], None] | None = None) -> dict:
    """Run ``steps`` on every movie of a batch, each in its own output folder; resume what is unfinished.

    Parameters
    ----------
    inputs : str, PathLike, dict or a sequence of them
        Globs, paths or manifests (see :func:`plan_batch`).
    output_dir : path
        Created if needed; one folder per movie with a ``status.json``.
    steps : sequence of str or str
        Any of ``"compress"``, ``"denoise"`` (float32 reconstruction) and
        ``"demix"`` (neurons), e.g. ``"compress,demix"``; a step's
        prerequisites are added.
    scheduler : str, dask Client or None
        ``local`` (default: a LocalCluster), ``sync`` (this process, one movie
        at a time), a scheduler address or ``scheduler.json``, ``slurm``, or
        an existing ``Client`` (left open).  See :mod:`pmdcompress.pipeline.cluster`.
    workers, threads_per_worker, memory_limit
        Cluster size for ``local`` and ``slurm``; each movie runs with
        ``threads_per_worker`` threads (also in ``sync``).
    overwrite : bool
        Redo movies already done.
    options : dict, optional
        Compression options for every movie (a manifest's values win).
    progress : callable, optional
        Progress factory ``(label, total) -> bar``; one step per movie.
    array_index : int, optional
        Process only movie number ``array_index`` (0-based; SLURM array
        tasks).  Defaults the scheduler to ``sync`` and writes no summary.
    slurm_queue, slurm_account, walltime : str, optional
        For ``scheduler="slurm"``.
    on_start : callable, optional
        Called once the cluster is up with a dict: ``total``, ``to_run``,
        ``skipped``, ``scheduler`` (a phrase), ``dashboard`` (URL or None).

    Returns
    -------
    dict
        The summary, also written to ``OUTPUT_DIR/batch-summary.json``:
        ``total``, ``done``, ``skipped``, ``failed`` (name, path, error),
        ``interrupted``, ``busy`` (names), ``elapsed_s``, ``input_bytes``,
        ``throughput_mb_s``, ``scheduler``, ``steps``.

    Raises
    ------
    InputError
        Bad inputs, options or steps (before anything is written).
    KeyboardInterrupt
        SIGINT or SIGTERM; unfinished movies are marked ``interrupted``
        and the summary says so before this is raised.
    """
    started_at, t0 = _now(), time.perf_counter()
    steps = _normalize_steps(steps)
    output_dir = Path(output_dir)
    jobs = plan_batch(inputs, output_dir, options=options)
    if array_index is not None:
        jobs = [_array_job(jobs, array_index)]
        if scheduler is None:
            scheduler = "sync"
    if _is_client(scheduler):
        spec = SchedulerSpec("address", getattr(scheduler, "scheduler", None) and scheduler.scheduler.address)
    else:
        spec = parse_scheduler(scheduler)
    _make_output_dir(output_dir)
    to_run, skipped = [], []
    for job in jobs:
        run, why = _decide(job, output_dir, steps, overwrite)
        (to_run if run else skipped).append(job)
        log.info("%s: %s (%s)", job.name, "run" if run else "skip", why)
    results: dict[str, dict] = {}
    summary_path = None if array_index is not None else output_dir / SUMMARY_NAME

    def summarize(interrupted: bool) -> dict:
        summary = _summary(jobs, skipped, results, output_dir, steps, spec, started_at, t0, interrupted)
        if summary_path is not None:
            _write_json(summary_path, summary)
        return summary

    to_run = _queue(to_run, output_dir, steps, results)
    if not to_run:
        if on_start:
            on_start({"total": len(jobs), "to_run": 0, "skipped": len(skipped), "scheduler": spec.describe(),
                      "dashboard": None})
        return summarize(False)

    progress = progress or null_progress
    try:
        with _interrupts_raise(), _client_for(scheduler, spec, workers, threads_per_worker, memory_limit,
                                              slurm_queue, slurm_account, walltime) as client:
            if on_start:
                on_start({"total": len(jobs), "to_run": len(to_run), "skipped": len(skipped),
                          "scheduler": spec.describe(), "dashboard": dashboard_link(client)})
            bar = progress("movies", len(to_run))
            try:
                _run_movies(Executor(1, client), to_run, output_dir, steps, overwrite, threads_per_worker, results,
                            bar)
            finally:
                bar.close()
    except KeyboardInterrupt:
        _mark_interrupted(to_run, output_dir, results)
        summarize(True)
        raise
    return summarize(False)


def _array_job(jobs: list, array_index) -> MovieJob:
    """Movie ``array_index`` of the batch (a SLURM array task's share)."""
    if not 0 <= int(array_index) < len(jobs):
        raise InputError(f"--array-index {array_index}: the batch has {len(jobs)} movies (0-{len(jobs) - 1})")
    return jobs[int(array_index)]


def _make_output_dir(output_dir: Path) -> None:
    if not output_dir.exists():
        if not output_dir.parent.exists():
            raise InputError(f"{output_dir}: parent folder {output_dir.parent} does not exist")
        output_dir.mkdir()
    elif not output_dir.is_dir():
        raise InputError(f"{output_dir}: exists and is not a folder")


def _queue(to_run: list, output_dir: Path, steps, results: dict) -> list:
    """Mark each movie "pending" (earlier step records kept for reuse); leave out those another batch holds."""
    queued = []
    for job in to_run:
        folder = job.folder(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with _movie_lock(folder) as free:
            if not free:  # another batch is processing it right now: leave it alone
                log.warning("%s: being processed by another batch; skipped", job.name)
                results[job.name] = {"name": job.name, "state": "busy", "error": None}
                continue
            status = _new_status(job, steps, read_status(folder))
            status["queued_at"] = _now()
            _write_json(folder / STATUS_NAME, status)
            queued.append(job)
    return queued


@contextlib.contextmanager
def _client_for(scheduler, spec, workers, threads_per_worker, memory_limit, queue, account, walltime):
    if _is_client(scheduler):
        yield scheduler
        return
    if spec.kind == "sync":
        yield None
        return
    with open_client(spec, workers=workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                     slurm_queue=queue, slurm_account=account, walltime=walltime) as client:
        yield client


def _run_movies(executor: Executor, to_run, output_dir, steps, overwrite, threads, results, bar) -> None:
    """Each movie of TO_RUN through :func:`process_movie`, on the executor's cluster or in this thread."""
    tasks = executor.completed(process_movie, to_run, name="pmd-movie", output_dir=str(output_dir), steps=steps,
                               overwrite=overwrite, threads=threads)
    with contextlib.closing(tasks):
        for i, outcome in tasks:
            job = to_run[i]
            results[job.name] = outcome.result if outcome.ok else _record_lost(job, output_dir, outcome)
            bar.update()


def _record_lost(job: MovieJob, output_dir: Path, outcome: Outcome) -> dict:
    """A task that never returned a status (its worker died, or it was cancelled): mark it failed."""
    if outcome.cancelled:
        exc: BaseException = RuntimeError("the task was cancelled by the scheduler")
    else:
        exc = outcome.error
    message = _one_line(exc)
    if type(exc).__name__ == "KilledWorker":
        message = (f"every dask worker that ran it died ({message}); if they ran out of memory,"
                   " raise --memory-limit or run fewer workers per node")
    folder = job.folder(output_dir)
    status = read_status(folder) or _new_status(job, (), None)
    if status.get("state") in ("done", "failed"):  # the worker recorded it after all
        return status
    status.update(state="failed", finished_at=_now(),
                  error={"type": type(exc).__name__, "message": message, "step": None, "expected": False})
    _write_json(folder / STATUS_NAME, status)
    return status


def _mark_interrupted(to_run, output_dir: Path, results: dict) -> None:
    for job in to_run:
        if job.name in results and results[job.name].get("state") in ("done", "failed"):
            continue
        folder = job.folder(output_dir)
        status = read_status(folder)
        if status is None or status.get("state") in ("done", "failed"):
            if status is not None:
                results[job.name] = status
            continue
        status.update(state="interrupted", finished_at=_now(),
                      error={"type": "KeyboardInterrupt", "message": "the batch was interrupted", "step": None})
        with contextlib.suppress(OSError):
            _write_json(folder / STATUS_NAME, status)
        results[job.name] = status


def _summary(jobs, skipped, results, output_dir, steps, spec, started_at, t0, interrupted) -> dict:
    done, failed, stopped, busy = [], [], [], []
    input_bytes = 0
    for job in jobs:
        if job in skipped:
            continue
        status = results.get(job.name)
        state = status.get("state") if status else "interrupted"
        if state == "done":
            done.append(job.name)
            size = ((status.get("input") or {}).get("size_bytes")) or 0
            input_bytes += int(size)
        elif state == "failed":
            error = status.get("error") or {}
            failed.append({"name": job.name, "path": str(job.path), "step": error.get("step"),
                           "error": f"{error.get('type', 'Error')}: {error.get('message', '')}"})
        elif state == "busy":
            busy.append(job.name)
        else:
            stopped.append(job.name)
    elapsed = time.perf_counter() - t0
    return {
        "output_dir": str(output_dir), "steps": list(steps), "scheduler": spec.describe(),
        "started_at": started_at, "finished_at": _now(), "elapsed_s": round(elapsed, 3),
        "total": len(jobs), "done": done, "skipped": [j.name for j in skipped], "failed": failed,
        "interrupted": stopped, "busy": busy, "batch_interrupted": interrupted,
        "input_bytes": input_bytes, "throughput_mb_s": round(input_bytes / 1e6 / elapsed, 3) if elapsed else None,
    }


def prepare_sbatch(inputs, output_dir, script, *, steps=("compress",), options: dict | None = None,
                   overwrite: bool = False, threads_per_worker: int = 1, memory_limit=None,
                   slurm_queue: str | None = None, slurm_account: str | None = None,
                   walltime: str | None = "04:00:00", max_parallel: int | None = None) -> dict:
    """Freeze a batch into ``OUTPUT_DIR/batch-manifest.yaml`` and write an sbatch job-array script for it.

    One array task per movie runs ``pmd batch MANIFEST -o OUTPUT_DIR --scheduler sync --array-index N``
    (see :func:`pmdcompress.pipeline.cluster.emit_sbatch`); nothing is computed here.

    Returns
    -------
    dict
        ``script``, ``manifest`` (paths) and ``n_tasks``.
    """
    steps = _normalize_steps(steps)
    output_dir = Path(output_dir)
    jobs = plan_batch(inputs, output_dir, options=options)
    memory = parse_memory(memory_limit)
    if not output_dir.parent.exists():
        raise InputError(f"{output_dir}: parent folder {output_dir.parent} does not exist")
    output_dir.mkdir(exist_ok=True)
    manifest = output_dir / MANIFEST_NAME
    import yaml

    rows = [{"path": str(j.path), "name": j.name, **_jsonable(j.options)} for j in jobs]
    tmp = manifest.with_name(f".{manifest.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text("# Written by pmd batch --emit-sbatch; array task N processes movie N (0-based).\n"
                   + yaml.safe_dump({"movies": rows}, sort_keys=False), encoding="utf-8")
    os.replace(tmp, manifest)
    script = emit_sbatch(script, manifest=manifest, output_dir=output_dir, n_tasks=len(jobs), steps=steps,
                         threads_per_task=threads_per_worker,
                         memory=f"{max(memory // 2**20, 1)}M" if memory else "8G",
                         queue=slurm_queue, account=slurm_account, walltime=walltime, max_parallel=max_parallel,
                         overwrite=overwrite)
    return {"script": str(script), "manifest": str(manifest), "n_tasks": len(jobs)}
