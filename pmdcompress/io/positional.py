"""Whole reads and writes of a file at a byte offset (``preadv``/``pwrite``), for the scratch files that the
compression's fit buffer and the report's photon split keep on disk: nothing is mapped, so reading them does not
grow the process's resident size, and threads may read one file at once.
"""

from __future__ import annotations

import os

__all__ = ["read_exactly", "write_all"]


def read_exactly(fd: int, view: memoryview, offset: int, path) -> None:
    """Fill ``view`` (bytes) from ``fd`` at ``offset`` (``preadv`` may return less than asked)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise OSError(f"{path}: scratch file shorter than expected")
        done += n


def write_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` (bytes) to ``fd`` at ``offset`` (``pwrite`` may write less than asked)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
