"""What every ``pmd`` command shares: quietness, progress bars, input options, flag names.

Only click (and the light progress module) is imported here, so commands can use
it without slowing ``pmd --help``.
"""

from __future__ import annotations

import logging
import sys

import click

from .. import progress

#: Library parameters whose CLI flag is not ``--`` + the parameter's name (see :func:`flag_names`).
PARAMETER_FLAGS = {
    "patch_shape": "--patch",
    "n_frames": "--frames",
    "n_neurons": "--neurons",
    "max_num_iter": "--max-iter",
    "output": "--output",
    "heldout": "--no-heldout",
}


class _CurrentStderr(logging.Handler):
    """Log records as ``pmd: message`` lines on whatever ``sys.stderr`` is when they are emitted.

    While a command runs (without ``-v``) warnings are held back: they are
    printed before the command's next message and at its end, and dropped when
    it fails, so that a failure is exactly one line.
    """

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("pmd: %(message)s"))
        self.held: list[str] | None = None

    def emit(self, record):
        try:
            line = self.format(record)
            if self.held is not None and record.levelno < logging.ERROR:
                self.held.append(line)
                return
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def hold(self) -> None:
        self.held = []

    def flush_held(self, *, show: bool) -> None:
        """Print (``show``) or drop the held warnings; go on holding if a command still runs."""
        held, self.held = self.held, (None if self.held is None else [])
        if show and held:
            sys.stderr.write("".join(line + "\n" for line in held))
            sys.stderr.flush()

    def stop(self, *, show: bool) -> None:
        self.flush_held(show=show)
        self.held = None


STDERR_LOG = _CurrentStderr()


def flag_names(command: click.Command | None) -> dict[str, str]:
    """Library parameter -> the flag of ``command`` that sets it (for error messages).

    A parameter the command has no flag for keeps its library name.
    """
    if command is None:
        return {}
    names = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.opts:
            names[param.name] = max(param.opts, key=len)
    for parameter, flag in PARAMETER_FLAGS.items():
        if any(flag in p.opts for p in command.params if isinstance(p, click.Option)):
            names.setdefault(parameter, flag)
    return names


def root_obj(ctx) -> dict:
    """The ``pmd`` group's settings (verbose, quiet), from any sub-command's context."""
    return (ctx.find_root().obj or {}) if ctx is not None else {}


def progress_for(ctx):
    """A progress factory: a bar on a terminal, log lines with ``-v``, nothing with ``-q``."""
    obj = root_obj(ctx)
    if obj.get("quiet"):
        return None
    if sys.stderr.isatty():
        return progress.terminal_progress
    if obj.get("verbose"):
        return progress.log_progress
    return None


def say(ctx, message: str) -> None:
    """A message on stderr, unless ``-q``."""
    if not root_obj(ctx).get("quiet"):
        STDERR_LOG.flush_held(show=True)  # warnings held so far come before the message
        click.echo(message, err=True)


def input_options(f):
    """``--frames``, ``--crop``, ``--plane``, ``--channel``, ``--dataset``, ``--fs``, ``--frame-shape``: which part
    of a movie file to read, and what its metadata lack."""
    f = click.option("--frames", default=None, metavar="A:B", help="Use frames A to B only (Python slice).")(f)
    f = click.option("--crop", default=None, metavar="Y0:Y1,X0:X1",
                     help="Use these rows and columns only (e.g. without the zero-filled or NaN border that motion "
                          "correction leaves); recorded in the store, so pmd report reads the same part.")(f)
    f = click.option("--plane", type=int, default=None,
                     help="Z plane (0-based) of a multi-plane movie (ImageJ hyperstack, ScanImage volume, NWB).")(f)
    f = click.option("--channel", type=int, default=None,
                     help="Channel (0-based, among the saved ones) of a multi-channel TIFF or ScanImage file.")(f)
    f = click.option("--dataset", default=None,
                     help="HDF5 dataset / Zarr array / NWB imaging series name (default: mov, then data).")(f)
    f = click.option("--fs", "frame_rate", default=None, type=float,
                     help="Frame rate in Hz (volume rate for volumes); default: from the file's metadata "
                          "(ScanImage, ImageJ, OME, NWB, suite2p ops), else stored as unknown.")(f)
    f = click.option("--frame-shape", default=None, metavar="HxW",
                     help="Frame size of a raw binary (suite2p data.bin) without its ops.npy.")(f)
    return f
