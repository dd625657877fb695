"""The ``pmd`` group: logging, and the one place that turns outcomes into exit codes.

Exit codes: 0 success; 2 bad input, usage, or a user's environment problem (a
one-line message, no traceback); 1 unexpected failure (a one-line message; the
traceback only with ``-v``); 130 interrupted (SIGINT); 143 terminated (SIGTERM).
Messages and progress go to stderr; stdout carries only data (``pmd info --json``).
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from .. import __version__
from ..errors import PMDError
from .common import flag_names

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_HELP = """\b
Exit codes: 0 success, 2 bad input or usage, 1 unexpected failure (traceback with -v), 130 interrupted."""


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc`` (the table in the module docstring)."""
    if isinstance(exc, PMDError):
        return EXIT_USER
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BUG


def message(exc: BaseException, names=None) -> str:
    """One line for ``exc``; options named by ``names`` (the command's flags)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = exc.render(names) if isinstance(exc, PMDError) else str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    if isinstance(exc, PMDError):
        return f"error: {text}"
    return f"unexpected error: {type(exc).__name__}: {text}"


class PMDGroup(click.Group):
    """Maps exceptions to exit codes and one-line messages (see :func:`exit_code`)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one place that sets exit codes
            code = exit_code(exc)
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            line = message(exc, flag_names(command))
            if code == EXIT_BUG and not _verbose(ctx):
                line += " (run with -v for the traceback)"
            if _verbose(ctx) and code != EXIT_INTERRUPTED:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"pmd: {line}", err=True)
            ctx.exit(code)


def _verbose(ctx) -> int:
    return (ctx.obj or {}).get("verbose", 0)


@click.group(cls=PMDGroup, epilog=EXIT_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log details to stderr (-vv for debug); tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.version_option(__version__, prog_name="pmd")
@click.pass_context
def main(ctx, verbose, quiet):
    """Compress, denoise and demix functional imaging movies with penalized matrix decomposition."""
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, quiet=quiet)
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="pmd: %(message)s", stream=sys.stderr)
    logging.getLogger("pmdcompress").setLevel(level)
