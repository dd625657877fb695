"""The one versioning rule every on-disk format follows.

Each format has a :class:`FormatId`: a name, the integer version this code
writes, and the versions it reads.  :func:`header` gives the fields that
identify a file; :func:`read_version` checks them and returns the version, with
a :class:`StoreFormatError` that names the file otherwise.  A newer file than
this code knows is refused with "upgrade pmdcompress"; an older one is read by
the format's own reader, which branches on the returned version.

Two formats predate this rule and keep their historical fields so that their
files stay byte for byte what they were: the simulated truth (``"version":
"pmd-simulate/1"``, style ``"tag"``) and the null cache (the version inside
its cache ``key``, style ``"key"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreFormatError


@dataclass(frozen=True)
class FormatId:
    """Identity of an on-disk format."""

    name: str  #: the value of the ``format`` field
    version: int  #: the version this code writes
    readable: tuple[int, ...]  #: every version this code reads
    what: str  #: what a file of this format is, for messages ("store", "demix result", ...)
    style: str = "header"  #: where the version lives: "header", "tag" or "key" (see the module docstring)


def header(fmt: FormatId) -> dict[str, Any]:
    """The identifying fields to write at the top of a file's metadata."""
    if fmt.style == "tag":
        return {"version": f"{fmt.name}/{fmt.version}"}
    if fmt.style == "key":
        return {"version": fmt.version}
    return {"format": fmt.name, "format_version": fmt.version}


def read_version(meta: Any, fmt: FormatId, where: str) -> int:
    """The version of ``meta`` (a file's metadata mapping), checked against ``fmt``."""
    if not isinstance(meta, dict):
        raise StoreFormatError(f"{where}: not a pmdcompress {fmt.what} (no metadata)")
    if fmt.style == "tag":
        tag = meta.get("version")
        name, _, number = str(tag).rpartition("/")
        if name != fmt.name or not number.isdigit():
            raise StoreFormatError(f"{where}: not a pmdcompress {fmt.what} (version {tag!r})")
        version = int(number)
    elif fmt.style == "key":
        version = meta.get("version")
    else:
        if meta.get("format") != fmt.name:
            raise StoreFormatError(f"{where}: not a pmdcompress {fmt.what} (format={meta.get('format')!r})")
        version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoreFormatError(f"{where}: {fmt.what} format version {version!r} is not an integer")
    if version not in fmt.readable:
        newer = version > max(fmt.readable)
        shown = f"{version} ({meta.get('version')!r})" if fmt.style == "tag" else f"{version}"
        raise StoreFormatError(
            f"{where}: {fmt.what} format version {shown} is not supported by this pmdcompress "
            f"(reads {', '.join(map(str, fmt.readable))})" + ("; upgrade pmdcompress" if newer else "")
        )
    return version


def read_json(path: Path, what: str) -> Any:
    """The JSON content of PATH; a missing or unreadable file is a :class:`StoreFormatError` naming it as WHAT."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StoreFormatError(f"{path}: no such {what}") from exc
    except (OSError, ValueError) as exc:
        raise StoreFormatError(f"{path}: not a readable {what} ({exc})") from exc
