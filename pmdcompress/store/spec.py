"""The store's metadata, mirroring docs/format.md (format version 1).

Pure Python on purpose: no numerical imports, so the spec can be read, checked
and migrated without the solver.  Every field has one parser that raises
:class:`StoreFormatError` with the store's path and the field's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import StoreFormatError

FORMAT_NAME = "pmdcompress-store"
FORMAT_VERSION = 1
ATTRS_KEY = "pmdcompress"

# Arrays of a version-1 store: name -> (ndim, required).
ARRAYS = {
    "mean": (2, True),
    "noise": (2, True),
    "patch_origins": (2, True),
    "patch_ranks": (1, True),
    "weights_y": (2, True),
    "weights_x": (2, True),
    "spatial": (2, True),
    "temporal": (2, True),
    "trend": (3, False),
    "trend_frames": (1, False),
}

FACTOR_DTYPES = ("float32", "float16")
METHODS = ("svd", "pmd")


@dataclass(frozen=True, kw_only=True)
class StoreMetadata:
    """Group attributes of a store (``zarr.json`` → ``attributes["pmdcompress"]``)."""

    shape: tuple[int, int, int]
    input_dtype: str
    factor_dtype: str
    method: str
    patch_shape: tuple[int, int]
    overlap: tuple[int, int]
    n_patches: int
    total_rank: int
    software_version: str
    input: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    created: str = ""
    format: str = field(default=FORMAT_NAME, init=False)
    format_version: int = field(default=FORMAT_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["patch_shape"] = list(self.patch_shape)
        d["overlap"] = list(self.overlap)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "store") -> StoreMetadata:
        if not isinstance(d, dict):
            raise StoreFormatError(f"{where}: not a pmdcompress store (no '{ATTRS_KEY}' attributes)")
        if d.get("format") != FORMAT_NAME:
            raise StoreFormatError(f"{where}: not a pmdcompress store (format={d.get('format')!r})")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreFormatError(
                f"{where}: store format version {version!r} is not supported by this pmdcompress "
                f"(reads version {FORMAT_VERSION}); upgrade pmdcompress"
            )
        return cls(
            shape=_ints(d, "shape", 3, where),
            input_dtype=_str(d, "input_dtype", where),
            factor_dtype=_choice(d, "factor_dtype", FACTOR_DTYPES, where),
            method=_choice(d, "method", METHODS, where),
            patch_shape=_ints(d, "patch_shape", 2, where),
            overlap=_ints(d, "overlap", 2, where),
            n_patches=_ints(d, "n_patches", None, where),
            total_rank=_ints(d, "total_rank", None, where),
            software_version=_str(d, "software_version", where),
            input=_dict(d, "input", where),
            parameters=_dict(d, "parameters", where),
            timings=_dict(d, "timings", where),
            created=str(d.get("created", "")),
        )


def _get(d, key, where):
    if key not in d:
        raise StoreFormatError(f"{where}: store metadata lacks '{key}'")
    return d[key]


def _ints(d, key, n, where):
    value = _get(d, key, where)
    if n is None:
        if not isinstance(value, int) or value < 0:
            raise StoreFormatError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
        return value
    if not (isinstance(value, list | tuple) and len(value) == n and all(isinstance(v, int) and v >= 0 for v in value)):
        raise StoreFormatError(f"{where}: '{key}' must be {n} non-negative integers, got {value!r}")
    return tuple(value)


def _str(d, key, where):
    value = _get(d, key, where)
    if not isinstance(value, str):
        raise StoreFormatError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def _choice(d, key, choices, where):
    value = _str(d, key, where)
    if value not in choices:
        raise StoreFormatError(f"{where}: '{key}' is {value!r}, expected one of {', '.join(choices)}")
    return value


def _dict(d, key, where):
    value = d.get(key, {})
    if not isinstance(value, dict):
        raise StoreFormatError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
    return value
