"""Progress reporting: the library calls a factory; the CLI decides what is shown.

A factory is ``factory(label, total) -> bar`` where ``bar.update(n)`` and
``bar.close()`` exist.  The default shows nothing.  The CLI picks:

- on a terminal, :func:`terminal_progress`: a tqdm bar on stderr with the count,
  the rate and the time left (tqdm: well kept, tiny, and it already knows how to
  redraw one line, size it to the terminal and estimate rates);
- without a terminal but with ``-v``, :func:`log_progress`: plain log lines (the
  start and the end of each step), nothing redrawn, so log files stay readable;
- with ``-q``, nothing.
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
    """A tqdm bar on stderr (count, rate, elapsed and remaining time); safe to update from threads."""

    def __init__(self, label: str, total: int, stream=None):
        from tqdm import tqdm

        self.lock = threading.Lock()
        self._bar = tqdm(total=max(int(total), 0), desc=f"{label:<12}", file=stream or sys.stderr,
                         mininterval=0.1, dynamic_ncols=True, leave=True, unit="step",
                         bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")

    def update(self, n: int = 1) -> None:
        with self.lock:
            self._bar.update(n)

    def close(self) -> None:
        with self.lock:
            self._bar.close()


class LogBar(NullBar):
    """Logs the start and end of a step (for ``-v`` without a terminal)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.start = label, total, time.monotonic()
        log.info("%s: %d steps", label, total)

    def close(self) -> None:
        log.info("%s: done in %.2f s", self.label, time.monotonic() - self.start)


def terminal_progress(label: str, total: int):
    return TerminalBar(label, total)


def log_progress(label: str, total: int):
    return LogBar(label, total)
