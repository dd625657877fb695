"""Named stages where a test can hold a run still (never used otherwise).

``PMD_TEST_PAUSE_AT=STAGE`` or ``STAGE:NAME`` (``NAME`` a glob matched against
the file name the stage concerns) makes a process stop when it reaches that
stage, so that a test can signal it or start a second run at a known point,
without sleeping or timing anything.  With ``PMD_TEST_PAUSE_DIR`` set to a
folder holding two FIFOs, ``paused`` and ``resume``, the process writes one
line ``PID STAGE PATH`` to ``paused`` and then waits until ``resume`` is opened
for writing (and closed); only the first process to reach the stage pauses
(it creates ``claimed`` there), so a retry of the same work runs through.
Without it, the line goes to stderr and the process waits for a byte (or end
of file) on stdin.

Stages: ``locked`` (an output's lock was taken, nothing computed yet),
``commit`` (an output is complete under its temporary name, about to be
renamed into place), ``movie`` (a batch is about to process a movie).
"""

from __future__ import annotations

import fnmatch
import os

ENV_STAGE = "PMD_TEST_PAUSE_AT"
ENV_DIR = "PMD_TEST_PAUSE_DIR"


def checkpoint(stage: str, target=None) -> None:
    """Pause here when ``$PMD_TEST_PAUSE_AT`` names this stage (and ``target``'s file name)."""
    wanted = os.environ.get(ENV_STAGE)
    if not wanted:
        return
    want_stage, _, pattern = wanted.partition(":")
    if want_stage != stage:
        return
    name = os.path.basename(os.fspath(target)) if target is not None else ""
    if pattern and not fnmatch.fnmatchcase(name, pattern):
        return
    line = f"{os.getpid()} {stage} {target}\n"
    folder = os.environ.get(ENV_DIR)
    if folder:
        try:  # only the first process to get here pauses (a retry of the same work runs through)
            os.close(os.open(os.path.join(folder, "claimed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        with open(os.path.join(folder, "paused"), "w") as fifo:
            fifo.write(line)
        with open(os.path.join(folder, "resume")) as fifo:
            fifo.read()
    else:
        os.write(2, f"pmd-test: paused at {line}".encode())
        os.read(0, 1)
