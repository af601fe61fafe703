"""``njit`` that caches compiled kernels on disk, and still works where it cannot.

numba's ``cache=True`` keeps compiled machine code next to the source (``__pycache__``)
or, when that is read-only, in the user's cache folder, so a command compiles a kernel
once rather than on every start. Where neither is writable (a read-only install under a
read-only home), numba refuses at decoration time and the import itself would fail;
this wrapper then compiles in memory on each run instead.
"""

from __future__ import annotations

import numba


def njit(*args, **options):
    """``numba.njit`` with ``cache=True`` by default; used as ``@njit`` or
    ``@njit(nogil=True, ...)``."""
    if args and callable(args[0]):  # bare @njit
        return _compile(args[0], {})
    return lambda func: _compile(func, options)


def _compile(func, options: dict):
    options = {"cache": True, **options}
    try:
        return numba.njit(**options)(func)
    except RuntimeError as e:  # "cannot cache function ...: no locator available"
        if not options["cache"] or "cannot cache" not in str(e):
            raise
        return numba.njit(**{**options, "cache": False})(func)
