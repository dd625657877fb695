"""pmdcompress: compress, denoise and demix functional imaging movies with
penalized matrix decomposition (Buchanan, Kinsella, Zhou et al., bioRxiv 334706).

The public names load on first use, so ``pmd --help`` starts without numba.
"""

from __future__ import annotations

import importlib

from ._package_version import __version__

_EXPORTS = {
    "CompressOptions": ".options",
    "DemixOptions": ".options",
    "compress": ".pipeline.compress",
    "InputError": ".errors",
    "OutputExistsError": ".errors",
    "PMDError": ".errors",
    "StoreFormatError": ".errors",
    "open_movie": ".io.readers",
    "PMDStore": ".reconstruct",
    "open_store": ".reconstruct",
    "decompress": ".pipeline.decompress",
    "simulate_movie": ".simulate",
}

__all__ = ["__version__", "open", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name == "open":  # pmdcompress.open(path) is the documented entry point
        return importlib.import_module(".reconstruct", __name__).open_store
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # cached: later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'pmdcompress' has no attribute {name!r}")


def __dir__():
    # The lazy names too, so that tab completion and dir() show the public API.
    return sorted(set(globals()) | set(__all__))
