"""Write outputs under a temporary name and rename them into place only when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from ..errors import OutputExistsError


def check_output_path(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; return the path as a ``Path``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: output exists; pass {{overwrite}} to replace it", "overwrite")
    if not path.parent.exists():
        raise OutputExistsError(f"{path}: parent folder {path.parent} does not exist")
    return path


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree; missing paths are ignored."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False):
    """Yield a temporary sibling path; on success rename it to ``path``.

    The temporary name starts with a dot and ends with ``.partial`` so that a run
    killed half-way leaves nothing that looks like a finished output.  On any
    exception the temporary path is removed and ``path`` is left untouched.
    """
    final = check_output_path(path, overwrite=overwrite)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    if final.exists():
        # Overwrite: move the old output aside first so a failure in between loses nothing.
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        remove_path(old)
    else:
        os.replace(tmp, final)
