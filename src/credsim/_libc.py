"""A C library function of Linux, looked up once (None elsewhere, or when it is missing), and
a thread's scheduling priority."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
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


def yield_to_others(nice: int) -> None:
    """Lower the calling thread's scheduling priority by ``nice`` (Linux: a thread has its own
    nice value; elsewhere, or if the system refuses, nothing changes). For a thread off a
    pipeline's critical path: on a machine with fewer cores than busy threads, the ones the
    run waits for get the cores first, and this one takes what they leave, never less than
    a share of them (a nice value only weighs the shares)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass
