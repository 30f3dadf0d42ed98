"""A C library function of Linux, looked up once (None elsewhere, or when it is missing), a
thread's scheduling priority, and arrays a forked child does not get."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Iterable, Iterator
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


_MADV_DONTFORK, _MADV_DOFORK = 10, 11
_PAGE = 4096
MIN_PRIVATE_BYTES = 1 << 20
"""Arrays smaller than this are left shared by :func:`not_inherited` (little to copy, and
memory the allocator may hand out again while the flag holds)."""


def _pages(arrays: Iterable[Any]) -> list[tuple[int, int]]:
    """The whole pages inside each array's data (an array of :data:`MIN_PRIVATE_BYTES` or
    more), as (address, length)."""
    spans = []
    for a in arrays:
        if a is None or a.nbytes < MIN_PRIVATE_BYTES:
            continue
        lo = -(-a.ctypes.data // _PAGE) * _PAGE
        hi = (a.ctypes.data + a.nbytes) // _PAGE * _PAGE
        if hi > lo:
            spans.append((lo, hi - lo))
    return spans


@contextlib.contextmanager
def not_inherited(arrays: Iterable[Any]) -> Iterator[None]:
    """A process forked within leaves out the whole pages of these arrays (Linux
    ``madvise(MADV_DONTFORK)``, reset to ``MADV_DOFORK`` on the way out, so that later forks
    are as before): for arrays this process goes on writing and a child never reads. Forked
    with them, the child shares their pages copy-on-write, and this process's first write to
    each page after the fork copies it (a 13-million-person run's scores, listings and
    escalation rings: 100,000 such faults, 1.4 s of its main thread). A child that read such
    an array would crash. Elsewhere than Linux, or if the system refuses, nothing changes."""
    fn = linux_function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))
    spans = _pages(arrays) if fn is not None else []
    done = [span for span in spans if fn(span[0], span[1], _MADV_DONTFORK) == 0]
    try:
        yield
    finally:
        for addr, length in done:
            fn(addr, length, _MADV_DOFORK)
