"""Exceptions: one base, each subclassed together with the builtin it refines.

Errors about an option name it by its library parameter (``patch_shape``); the
message is a template with ``{patch_shape}`` where the name goes, so the CLI can
print its flag (``--patch``) instead (see :meth:`PMDError.render`).
"""

from __future__ import annotations

from collections.abc import Mapping


class PMDError(Exception):
    """Base class of every error pmdcompress raises on purpose."""

    #: How the library itself names a parameter in a message, when not by its bare name.
    library_names: Mapping[str, str] = {}

    def __init__(self, template: str = "", *parameters: str):
        self.template, self.parameters = str(template), tuple(parameters)
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message, each parameter named by ``names`` (the CLI's flags) or by the library's name."""
        text = self.template
        for parameter in self.parameters:
            name = (names or {}).get(parameter) or self.library_names.get(parameter, parameter)
            text = text.replace("{" + parameter + "}", name)
        return text

    def __reduce__(self):  # pickles (dask workers) with its parameters
        return type(self), (self.template, *self.parameters)


class InputError(PMDError, ValueError):
    """The input movie (or an option about it) cannot be used: missing, corrupt, wrong shape."""


class OptionError(InputError):
    """An option's value cannot be used; the message names the option."""


class StoreFormatError(PMDError, ValueError):
    """A store is not a pmdcompress store, is incomplete, or has an unknown format version."""


class OutputExistsError(PMDError, FileExistsError):
    """The output path exists and ``overwrite`` was not given."""

    library_names = {"overwrite": "overwrite=True"}


class MissingDependencyError(PMDError, ImportError):
    """An optional package that the requested feature needs is not installed (the message says how to add it)."""


class OutputError(PMDError, OSError):
    """An output cannot be written: it is an input, the disk is full, permission is denied..."""


class OutputBusyError(OutputError):
    """Another process is writing the same output (its lock names it)."""


class ClusterError(PMDError, ConnectionError):
    """A scheduler cannot be reached or a cluster cannot be started."""


class BatchError(PMDError, RuntimeError):
    """A batch ran to its end but some movies failed (the summary lists them)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like an interrupt so that every partial output is cleaned up on the way out."""
