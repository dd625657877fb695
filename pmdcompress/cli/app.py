"""The ``pmd`` group: logging, and the one place that turns outcomes into exit codes.

Exit codes: 0 success; 2 bad input, usage, or a user's environment problem (a
one-line message, no traceback); 1 unexpected failure (a one-line message; the
traceback only with ``-v``); 130 interrupted (SIGINT); 143 terminated (SIGTERM).
A full disk, a permission denied and running out of memory are the user's
problems (2), as is any :class:`~pmdcompress.errors.PMDError`.
Messages and progress go to stderr; stdout carries only data (``pmd info --json``).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import traceback

import click

from .._package_version import __version__
from ..errors import PMDError, Terminated
from ..io.atomic import user_error
from .common import STDERR_LOG as _STDERR
from .common import flag_names

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_HELP = """\b
Exit codes: 0 success, 2 bad input, usage, full disk, permission denied or out of memory, 1 unexpected failure
(traceback with -v), 130 interrupted (SIGINT), 143 terminated (SIGTERM)."""


def _as_user_error(exc: BaseException) -> PMDError | None:
    """``exc`` as the user's problem: our own errors, and a full disk or a permission denied anywhere."""
    if isinstance(exc, PMDError):
        return exc
    if isinstance(exc, OSError):
        return user_error(exc, exc.filename or "output")
    if isinstance(exc, MemoryError):
        # Not a bug of ours: the machine has less free memory than the step needs.  The
        # outputs are already removed by then (atomic writes); say what to change.
        detail = " ".join(str(exc).split())
        return PMDError(f"out of memory{f' ({detail})' if detail else ''}: free memory or use a machine with "
                        "more; `pmd compress` needs less with a smaller --fit-frames and fewer "
                        "--workers")
    return None


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc`` (the table in the module docstring)."""
    if isinstance(exc, Terminated):
        return EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if _as_user_error(exc) is not None:
        return EXIT_USER
    return EXIT_BUG


def message(exc: BaseException, names=None) -> str:
    """One line for ``exc``; options named by ``names`` (the command's flags)."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM); partial outputs removed"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT); partial outputs removed"
    user = _as_user_error(exc)
    if user is not None:
        return "error: " + (" ".join(user.render(names).split()) or type(exc).__name__)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error: {type(exc).__name__}: {text}"


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM raises :class:`Terminated` in the main thread while a command runs (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: The group's own flags, which users also type after the command (``pmd compress movie.tif -q``).
GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "-vv", "-vvv", "--verbose"})


def _global_flags_first(args: list[str]) -> list[str]:
    """``args`` with the group's flags that follow the command (before any ``--``) moved in front of it, where
    click looks for them: ``pmd compress movie.tif -q`` is ``pmd -q compress movie.tif``."""
    command = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
    rest = args[command + 1 :]
    end = rest.index("--") if "--" in rest else len(rest)
    moved = [arg for arg in rest[:end] if arg in GLOBAL_FLAGS]
    if not moved:
        return args
    return [*args[:command], *moved, args[command], *(a for a in rest[:end] if a not in GLOBAL_FLAGS), *rest[end:]]


class PMDGroup(click.Group):
    """Maps exceptions to exit codes and one-line messages (see :func:`exit_code`)."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, _global_flags_first(list(args)))

    def invoke(self, ctx):
        if not _verbose(ctx):
            _STDERR.hold()
        try:
            with _signals_raise():
                result = super().invoke(ctx)
            _STDERR.stop(show=True)
            return result
        except click.exceptions.Exit as exc:
            _STDERR.stop(show=exc.exit_code == 0)
            raise
        except (click.ClickException, click.exceptions.Abort):
            _STDERR.stop(show=False)
            raise
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one place that sets exit codes
            _STDERR.stop(show=False)  # a failure is one line; -v shows everything
            code = exit_code(exc)
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            line = message(exc, flag_names(command))
            if code == EXIT_BUG and not _verbose(ctx):
                line += " (run with -v for the traceback)"
            if _verbose(ctx) and code != EXIT_INTERRUPTED:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"pmd: {line}", err=True)
            ctx.exit(code)




def _skip_exit_collection() -> None:
    """At exit, freeze what is left instead of letting the interpreter's last collections walk it.

    numba's, scipy's and zarr's objects make those walks cost 0.3-0.7 CPU-s per command (s9 demix profile);
    every output is complete and closed before exit, so nothing waits on them.  Registered at exit rather
    than now so that in-process callers (tests) keep a working collector.
    """
    global _EXIT_COLLECTION_SKIPPED
    if not _EXIT_COLLECTION_SKIPPED:
        atexit.register(gc.freeze)
        _EXIT_COLLECTION_SKIPPED = True


_EXIT_COLLECTION_SKIPPED = False

#: The BLAS and OpenMP libraries' own thread pools. pmd runs its work on its own threads (``--workers``) and each
#: of them calls BLAS on one thread (:func:`pmdcompress.parallel.blas_threads`), so a pool of one thread per core
#: only costs: OpenBLAS starts it when numpy loads and its threads spin on every core for a while after each call
#: (0.2-0.4 CPU-s of a neurofinder_dev compression on 2 cores, more with more cores; stores equal either way).
LIBRARY_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _one_library_thread() -> None:
    """In a fresh ``pmd`` process, size the BLAS/OpenMP pools to one thread where the user has not sized them.

    Only before numpy loads (the pools read these variables once, when their library loads): a caller that has
    imported numpy already (a script, the tests' in-process runner) keeps its pools as they are.  Child
    processes (a local cluster's workers, ``pmd batch``'s) inherit the same.
    """
    if "numpy" in sys.modules:
        return
    for name in LIBRARY_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


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
    _one_library_thread()
    _skip_exit_collection()
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    if quiet:
        level = logging.ERROR
    if verbose:
        _STDERR.stop(show=True)  # -v: every record at once, as it comes
    root = logging.getLogger()
    if _STDERR not in root.handlers:
        root.addHandler(_STDERR)
    _STDERR.setLevel(level)
    root.setLevel(min(level, root.level or logging.WARNING))
    logging.getLogger("pmdcompress").setLevel(level)
    # Readers turn a damaged file into one line of ours; the libraries' own warnings (and Python
    # warnings such as numpy's RuntimeWarning) would print before it, so they show only with -v.
    logging.captureWarnings(True)
    for library in ("tifffile", "zarr", "numcodecs", "py.warnings", "h5py", "pynwb", "hdmf"):
        logging.getLogger(library).setLevel(level if verbose else logging.CRITICAL)
