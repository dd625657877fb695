"""pmdcompress: compress, denoise and demix functional imaging movies with
penalized matrix decomposition (Buchanan, Kinsella, Zhou et al., bioRxiv 334706).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .compress import CompressOptions, compress  # noqa: E402
from .errors import InputError, OutputExistsError, PMDError, StoreFormatError  # noqa: E402
from .io.readers import open_movie  # noqa: E402
from .store.zarr_store import PMDStore, open_store  # noqa: E402

open = open_store  # noqa: A001  (pmdcompress.open(path) is the documented entry point)

__all__ = [
    "__version__",
    "CompressOptions",
    "InputError",
    "OutputExistsError",
    "PMDError",
    "PMDStore",
    "StoreFormatError",
    "compress",
    "open",
    "open_movie",
    "open_store",
]
