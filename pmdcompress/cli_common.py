"""What every ``pmd`` command shares: quietness, progress bars, the patch option.

Only click is imported here, so commands can use it without slowing ``pmd --help``.
"""

from __future__ import annotations

import sys

import click


def root_obj(ctx) -> dict:
    """The ``pmd`` group's settings (verbose, quiet), from any sub-command's context."""
    return (ctx.find_root().obj or {}) if ctx is not None else {}


def progress_for(ctx):
    """A progress factory: a bar on a terminal, log lines with ``-v``, nothing with ``-q``."""
    obj = root_obj(ctx)
    if obj.get("quiet"):
        return None
    from . import progress

    if sys.stderr.isatty():
        return progress.terminal_progress
    if obj.get("verbose"):
        return progress.log_progress
    return None


def say(ctx, message: str) -> None:
    """A message on stderr, unless ``-q``."""
    if not root_obj(ctx).get("quiet"):
        click.echo(message, err=True)


def parse_patch(value) -> tuple[int, int]:
    """``"32"`` or ``"32x48"`` -> (height, width)."""
    from .errors import InputError

    try:
        parts = [int(v) for v in str(value).lower().replace("x", ",").split(",")]
    except ValueError as exc:
        raise InputError(f"--patch {value!r}: expected N or HxW, e.g. 32 or 32x48") from exc
    return (parts[0], parts[0]) if len(parts) == 1 else tuple(parts[:2])
