"""What every ``pmd`` command shares: quietness, progress bars, input options, flag names.

Only click (and the light progress module) is imported here, so commands can use
it without slowing ``pmd --help``.
"""

from __future__ import annotations

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
}


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
        click.echo(message, err=True)


def input_options(f):
    """``--frames``, ``--plane``, ``--channel``, ``--dataset``: which part of a movie file to read."""
    f = click.option("--frames", default=None, metavar="A:B", help="Use frames A to B only (Python slice).")(f)
    f = click.option("--plane", type=int, default=None, help="Z plane of a multi-plane movie.")(f)
    f = click.option("--channel", type=int, default=None, help="Channel of a multi-channel movie.")(f)
    f = click.option("--dataset", default=None, help="HDF5 dataset / Zarr array name (default: mov, then data).")(f)
    return f
