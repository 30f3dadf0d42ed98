"""A C library function of Linux, looked up once (None elsewhere, or when it is missing)."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any


@functools.cache
def linux_function(name: str, argtypes: tuple[Any, ...], restype: Any = ctypes.c_int) -> Any:
    """``name`` from the C library with these argument and result types, or None where it
    cannot be called (not Linux, or a library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn
