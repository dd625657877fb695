"""The rank-test null cache: ``$PMD_CACHE_DIR/null-<digest>.json`` (default ``~/.cache/pmdcompress``).

One file per null: ``{"key": {...}, "spatial": s, "temporal": t}``, where ``key``
holds everything the thresholds depend on (solver parameters, patch shape,
frames, simulations, false-pass rate, seed, noise correlation) and the format's
``version``; the file name is the first 24 hex digits of the SHA-256 of the
key's sorted JSON, so a changed version or parameter never reads an old file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreFormatError
from ._version import FormatId, header, read_version

NULL_CACHE = FormatId("pmdcompress-null-cache", 1, (1,), "null cache", style="key")


@dataclass(frozen=True)
class NullCacheEntry:
    """The thresholds of one null and the key they were computed for."""

    key: dict
    spatial: float
    temporal: float

    @property
    def format_version(self) -> int:
        return int(self.key["version"])


def cache_key(**fields) -> dict:
    """The key of a null: the format's version first, then ``fields`` in the order given."""
    return {**header(NULL_CACHE), **fields}


def write_null_cache(path, entry: NullCacheEntry) -> None:
    """Write ``entry`` to ``path`` by an atomic rename (concurrent writers of one key agree)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": entry.key, "spatial": entry.spatial, "temporal": entry.temporal}))
    os.replace(tmp, path)


def read_null_cache(path) -> NullCacheEntry:
    """Read one cache file; :class:`StoreFormatError` if it is unreadable or of an unknown version."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreFormatError(f"{path}: not a readable null cache ({exc})") from exc
    if not isinstance(d, dict):
        raise StoreFormatError(f"{path}: not a null cache")
    read_version(d.get("key"), NULL_CACHE, str(path))
    try:
        entry = NullCacheEntry(d["key"], float(d["spatial"]), float(d["temporal"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreFormatError(f"{path}: null cache lacks its thresholds ({exc})") from exc
    if not (math.isfinite(entry.spatial) and math.isfinite(entry.temporal)):
        raise StoreFormatError(f"{path}: null cache thresholds are not finite")
    return entry
