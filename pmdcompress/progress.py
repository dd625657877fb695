"""Progress reporting: the library calls a factory; the CLI decides what is shown.

A factory is ``factory(label, total) -> bar`` where ``bar.update(n)`` and
``bar.close()`` exist.  The default shows nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("pmdcompress")


class NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def null_progress(label: str, total: int) -> NullBar:
    return NullBar()


class TerminalBar:
    """A one-line bar on stderr, redrawn at most 10 times a second; thread-safe."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total, self.done = label, max(int(total), 1), 0
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.lock = threading.Lock()
        self._draw(force=True)

    def _draw(self, force=False):
        now = time.monotonic()
        if not force and now - self.last < 0.1 and self.done < self.total:
            return
        self.last = now
        frac = min(self.done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        self.stream.write(f"\r{self.label:<12} [{bar}] {self.done}/{self.total} {now - self.start:6.1f}s")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            self._draw()

    def close(self) -> None:
        with self.lock:
            self.done = min(self.done, self.total)
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


class LogBar(NullBar):
    """Logs the start and end of a stage (for ``-v`` without a terminal)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.start = label, total, time.monotonic()
        log.info("%s: %d steps", label, total)

    def close(self) -> None:
        log.info("%s: done in %.2f s", self.label, time.monotonic() - self.start)


def terminal_progress(label: str, total: int):
    return TerminalBar(label, total)


def log_progress(label: str, total: int):
    return LogBar(label, total)
