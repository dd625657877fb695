"""The one restricted loader for pickled files written by other tools (suite2p's ``ops.npy`` and ``stat.npy``).

``np.load(..., allow_pickle=True)`` runs whatever a pickle names, so a crafted ``.npy`` executes code. This
loader unpickles with an allow-list: it can build numpy arrays, numpy scalars and dtypes, dicts, lists, tuples,
sets and plain scalars (the opcodes build those without naming a class), ``datetime`` values, and nothing else.
Anything else is refused with an :class:`~pmdcompress.errors.InputError` naming the file and the class it asked for.

Plain (non-object) ``.npy`` files never reach the unpickler: they are read as data.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np

from ..errors import InputError

__all__ = ["load_npy", "load_pickle"]

# (module, name) pairs a pickle may name. numpy moved its internals from numpy.core to numpy._core in 2.0;
# files written by either are accepted.
_ALLOWED = frozenset(
    [(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")]
    + [(core, "_frombuffer") for core in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [("numpy", name) for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                    "uint64", "uint32", "uint16", "uint8", "bool_", "complex128", "complex64",
                                    "str_", "bytes_")]
    + [("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                                       "bool", "str", "bytes", "bytearray", "slice", "range")]
    + [("collections", "OrderedDict"), ("_codecs", "encode")]
    # suite2p 1.x writes date_proc (datetime with a timezone) and timings (timedelta) into ops.npy: plain values.
    + [("datetime", name) for name in ("datetime", "date", "time", "timedelta", "timezone")]
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise InputError(f"{self._source}: refusing to unpickle '{module}.{name}' "
                             "(only numpy arrays, dicts, lists and scalars are read from pickles)")
        return super().find_class(module, name)

    def persistent_load(self, pid):  # pragma: no cover - no legitimate suite2p file uses it
        raise InputError(f"{self._source}: refusing a pickle with persistent ids")


def load_pickle(data: bytes | io.BufferedIOBase, source: str = "<pickle>"):
    """Unpickle ``data`` (bytes or a binary file) building only numpy arrays, containers and scalars."""
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        return _RestrictedUnpickler(stream, source).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError) as exc:
        raise InputError(f"{source}: not a readable pickle ({exc})") from None


def load_npy(path: str | os.PathLike, *, mmap_mode: str | None = None):
    """Load a ``.npy`` file; object arrays (pickles) go through the restricted unpickler.

    Returns the array; a 0-d object array holding a dict (suite2p's ``ops.npy``) is returned as that dict.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise InputError(f"{source}: unsupported .npy version {version}")
            if not dtype.hasobject:
                fh.close()
                return np.load(source, mmap_mode=mmap_mode, allow_pickle=False)
            obj = load_pickle(fh, source)
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{source}: not a readable .npy file ({exc})") from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        if obj.shape != tuple(shape):
            raise InputError(f"{source}: pickled array has shape {obj.shape}, header says {tuple(shape)}")
        if obj.ndim == 0:
            return obj.item()
        return obj
    raise InputError(f"{source}: an object .npy must hold a pickled numpy array, found {type(obj).__name__}")
