"""A day computed ahead on a second thread (see ``Simulation._ahead_of``).

:class:`Ahead` holds at most one day's computation in flight. The day loop asks it for a day:
the result if that day was computed ahead, else None (and the loop computes it in turn). Every
draw of a day is keyed by the day (:mod:`credsim.engine.rng`), so a day computed ahead is the
same as one computed in turn, as long as it reads nothing the days before it change.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """``compute(day)`` for one day at a time, on a thread of its own."""

    def __init__(self, compute: Callable[[int], T]) -> None:
        self.compute = compute
        self._pool: ThreadPoolExecutor | None = None
        self._day: int | None = None
        self._future: Future[T] | None = None

    def start(self, day: int) -> None:
        """Compute ``day`` now, on the second thread (replacing anything not taken)."""
        self._drop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="credsim-ahead")
        self._day, self._future = day, self._pool.submit(self.compute, day)

    def take(self, day: int) -> T | None:
        """The result for ``day`` if it was computed ahead (waiting for it), else None; what
        was computed for another day is dropped."""
        if self._future is None or self._day != day:
            self._drop()
            return None
        future, self._future, self._day = self._future, None, None
        return future.result()

    def close(self) -> None:
        """Drop what is in flight and stop the thread."""
        self._drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _drop(self) -> None:
        if self._future is not None:
            self._future.cancel()
        self._future = self._day = None
