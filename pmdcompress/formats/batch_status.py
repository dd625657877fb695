"""A batch movie folder's ``status.json``: state, timings, versions, errors (docs/scaling.md).

JSON indented by two spaces, written by an atomic rename so that a reader sees
the old file or the new one, never half of one.  The keys ``format``/
``format_version`` (:data:`BATCH_STATUS`) identify it; ``state`` is one of
:data:`STATES`.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreFormatError
from ._version import FormatId, read_json, read_version

BATCH_STATUS = FormatId("pmdcompress-batch-status", 1, (1,), "batch status")
STATUS_NAME = "status.json"
STATES = ("pending", "queued", "running", "done", "failed", "interrupted", "skipped")


@dataclass(frozen=True, eq=False)
class BatchStatus:
    """A ``status.json`` as read: its version, state and whole content."""

    format_version: int
    state: str
    content: dict


def write_status(path, data: dict) -> None:
    """Write ``data`` (which starts with the header of :data:`BATCH_STATUS`) to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_status(path) -> BatchStatus:
    """Read and check a ``status.json``."""
    path = Path(path)
    content = read_json(path, "batch status")
    version = read_version(content, BATCH_STATUS, str(path))
    state = content.get("state")
    if state not in STATES:
        raise StoreFormatError(f"{path}: batch status 'state' is {state!r}, expected one of {', '.join(STATES)}")
    return BatchStatus(version, state, content)


def json_default(obj):
    """JSON for numpy scalars, paths, sets and tuples; ``str`` for anything else."""
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
