"""Compatibility: the store's spec now lives in :mod:`pmdcompress.formats.store`."""

from ..formats.store import (  # noqa: F401
    ARRAYS,
    ATTRS_KEY,
    FACTOR_DTYPES,
    FORMAT_NAME,
    FORMAT_VERSION,
    METHODS,
    StoreMetadata,
)
