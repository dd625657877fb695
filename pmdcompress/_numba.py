"""numba options, defined once.

Every kernel in the package is compiled through :func:`jit` so that caching,
``nogil`` and the fastmath policy are chosen here and nowhere else.  Set
``NUMBA_DISABLE_JIT=1`` to run the kernels as plain Python (coverage, debugging).
"""

from __future__ import annotations

import numba

# fastmath would let the compiler reorder float sums; results would then depend
# on the build, and the numpy twins in the tests could not be compared tightly.
FASTMATH = False
#: The one exception a kernel may ask for (``jit(fastmath=CONTRACT)``): fusing ``a + b * c`` into one rounding, and
#: nothing else (no reordering).  For a kernel that replaces a BLAS call whose kernels fuse it (the PMD deflation,
#: BLAS's ``sger``), so that its floats stay those of the call it replaced.
CONTRACT = {"contract"}
CACHE = True
NOGIL = True


def jit(*args, parallel: bool = False, **kwargs):
    """``numba.njit`` with the project's options (cache, nogil, fastmath policy)."""
    options = dict(cache=CACHE, nogil=NOGIL, fastmath=FASTMATH, parallel=parallel)
    options.update(kwargs)
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)


prange = numba.prange
