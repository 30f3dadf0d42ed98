"""Room for a day's arrays where they are to be handed over.

The process drawing days ahead (:class:`credsim.engine.ahead.AheadProcess`) hands each day
back in a slot of memory it shares with the run's process: the day's record columns were
written into fresh arrays of its own, then copied into the slot (at 13 million persons about
36 MB a day: 1.5 s of the child's CPU a year for the copies, and as much again for the fresh
pages each day's arrays took). While a day is drawn there, the arrays that hold its records are
taken from the slot itself (:func:`empty`, a bump allocator over it), so that they are already
where they are handed over and nothing is copied; the pages of a slot are written day after
day, never fresh. Anywhere else, and when the slot is full, :func:`empty` is ``np.empty``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

ALIGN = 64
"""Bytes each array's start is aligned to (a cache line)."""


class Arena:
    """Bytes ``start`` .. ``end`` of ``buffer`` handed out in order (:meth:`take`); ``top`` is
    where the next array would start."""

    def __init__(self, buffer: Any, start: int, end: int) -> None:
        self.buffer, self.start, self.top, self.end = buffer, start, start, end

    def take(self, n: int, dtype: Any) -> np.ndarray | None:
        """``n`` items of ``dtype`` from the arena (contents undefined), or None when there
        is no room left."""
        dt = np.dtype(dtype)
        at = -(-self.top // ALIGN) * ALIGN
        if at + n * dt.itemsize > self.end:
            return None
        self.top = at + n * dt.itemsize
        return np.ndarray((n,), dt, buffer=self.buffer, offset=at)


_active: Arena | None = None


def empty(n: int, dtype: Any) -> np.ndarray:
    """``np.empty(n, dtype)``, from the arena in use if there is one and it has room."""
    arena = _active
    if arena is not None:
        got = arena.take(n, dtype)
        if got is not None:
            return got
    return np.empty(n, dtype)


@contextmanager
def using(buffer: Any, start: int, end: int) -> Iterator[Arena]:
    """Hand out bytes ``start`` .. ``end`` of ``buffer`` to :func:`empty` within the block
    (one arena at a time: the process drawing ahead draws one day at a time)."""
    global _active
    if _active is not None:
        raise RuntimeError("an arena is already in use")
    _active = Arena(buffer, start, end)
    try:
        yield _active
    finally:
        _active = None
