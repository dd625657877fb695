"""Exceptions: one base, each subclassed together with the builtin it refines."""

from __future__ import annotations


class PMDError(Exception):
    """Base class of every error pmdcompress raises on purpose."""


class InputError(PMDError, ValueError):
    """The input movie (or an option about it) cannot be used: missing, corrupt, wrong shape."""


class StoreFormatError(PMDError, ValueError):
    """A store is not a pmdcompress store, is incomplete, or has an unknown format version."""


class OutputExistsError(PMDError, FileExistsError):
    """The output path exists and ``overwrite`` was not given."""


class ClusterError(PMDError, ConnectionError):
    """A scheduler cannot be reached or a cluster cannot be started."""


class BatchError(PMDError, RuntimeError):
    """A batch ran to its end but some movies failed (the summary lists them)."""
