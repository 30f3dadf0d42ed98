"""Days computed ahead, in a forked process or on a second thread (see
``Simulation._ahead_of``), and when it is worth it.

:class:`AheadProcess` (Linux) and :class:`Ahead` (a thread) hold the computations of the next
few days, in day order. The day loop asks for a day: the result if that day was computed ahead,
else None (and the loop computes it in turn). Every draw of a day is keyed by the day
(:mod:`credsim.engine.rng`), so a day computed ahead is the same as one computed in turn, as
long as it reads nothing the days before it change.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import mmap
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Generic, Protocol, TypeVar

import numpy as np
from numba.core.compiler_lock import global_compiler_lock

from credsim._libc import not_inherited
from credsim.engine import arena
from credsim.engine.shards import LocalRunner, Runner

T = TypeVar("T")

AHEAD_DAYS = 2
"""Days drawn ahead at most: two absorb the jitter of a day that takes longer than the one
being scored, at the memory of a day's draws."""
AHEAD_MIN_CANDIDATES = 2000
"""Days are drawn ahead only when a day is expected to hold at least this many candidate
behaviours: below, handing a day over costs more than drawing it (reference model, 2 cores:
30,000 persons, 2,000 a day, 0.35 s a year either way; 1,000 persons 0.13 s in turn, 0.23 s
ahead)."""
AHEAD_BYTES = 48
"""Bytes a day drawn ahead takes per expected candidate (the behaviour of each, 4 bytes, and
the columns of the records they make, 41 bytes each), to size the slots that bring days back
from the process drawing ahead."""


class _Drawn(Protocol):
    """What the policy below reads of :class:`~credsim.engine.behave.Behaviour`."""

    lam: np.ndarray
    runner: Runner


def worth_it(behave: _Drawn) -> bool:
    """Whether days are worth drawing ahead: the run may use two cores (not ``--workers 1``)
    and a day holds enough to hand over (:data:`AHEAD_MIN_CANDIDATES`)."""
    return behave.runner.workers >= 2 and float(behave.lam.sum()) >= AHEAD_MIN_CANDIDATES


def drawer(
    compute: Callable[[int], T],
    behave: _Drawn,
    private: Callable[[], list[np.ndarray]] = list,
) -> Ahead[T] | AheadProcess[T]:
    """Where days are drawn ahead: a forked process (Linux, local workers), which runs free of
    this interpreter's lock, else a thread (Ray's runtime is not to be forked). ``private``:
    the arrays the days drawn ahead never read (see :class:`AheadProcess`)."""
    runner = behave.runner
    if not (can_fork() and isinstance(runner, LocalRunner)):
        return Ahead(compute)
    per_day = float(behave.lam.sum())  # expected candidates of a day
    # the child's thread pools were this process's (their threads are not there)
    return AheadProcess(
        compute, int(per_day * AHEAD_BYTES * 1.25), AHEAD_DAYS, runner.forget_pool, private
    )


def own_copy(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A batch whose arrays are lent (:attr:`AheadProcess.borrowed`) as arrays of its own."""
    return type(batch)({k: v.copy() for k, v in batch.items()})


MIN_SLOT = 1 << 20
"""Bytes of shared memory a day drawn ahead in a process has at least (:class:`AheadProcess`)."""

_DAY = struct.Struct("<q")
"""A day asked of the process drawing ahead, as it goes down the pipe (an empty message: stop).
Raw bytes, not a pickle: ``Connection.send`` builds a pickler with a copy of the reducer table
per message, which cost more than the rest of the exchange."""

_RINGS: dict[int, mmap.mmap] = {}
"""The shared rings of this process's children drawing ahead, by key (:class:`_InRing`): an
array in a child's answer unpickles straight into a view of its ring."""
_ring_keys = itertools.count()


class Ahead(Generic[T]):
    """``compute(day)`` for the next few days, in order, on a thread of its own."""

    borrowed = False
    """Whether a result's arrays are only lent: valid until the days after the next are asked
    for (by the next day's step), so that a caller keeping them longer copies them."""

    def __init__(self, compute: Callable[[int], T]) -> None:
        self.compute = compute
        self._pool: ThreadPoolExecutor | None = None
        self._queued: dict[int, Future[T]] = {}  # day -> its computation, in day order

    def start(self, first: int, last: int | None = None) -> None:
        """Compute the days ``first`` .. ``last`` (default: ``first``) on the second thread,
        those not already queued; what is queued for other days is dropped."""
        last = first if last is None else last
        if self._queued and next(iter(self._queued)) != first:
            self._drop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="credsim-ahead")
        for day in range(first, last + 1):
            if day not in self._queued:
                self._queued[day] = self._pool.submit(self.compute, day)

    def take(self, day: int) -> T | None:
        """The result for ``day`` if it was computed ahead (waiting for it), else None; what
        was queued for other days is dropped."""
        future = self._queued.pop(day, None)
        if future is None:
            self._drop()
            return None
        return future.result()

    def close(self) -> None:
        """Drop what is queued and stop the thread."""
        self._drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _drop(self) -> None:
        for future in self._queued.values():
            future.cancel()
        self._queued.clear()


class AheadProcess(Generic[T]):
    """``compute(day)`` for the next few days, in order, in a child process forked from this
    one (Linux): it shares every array the computation reads, copy-on-write, and runs without
    contending for this interpreter's lock, which a second thread does for every step in
    Python. A result's arrays come back through shared memory, one slot per day in flight
    (``slot_bytes`` each, ``depth`` + 1 slots: the days in flight and the day in use), with no
    copy on this side: day d's arrays stay valid until day d + ``depth`` + 1 is asked for, so
    a caller that keeps them longer copies them (:attr:`borrowed`). A result larger than its
    slot comes through the pipe instead (a copy).

    ``after_fork`` runs first in the child (to drop thread pools it inherits without their
    threads). ``private()`` gives the arrays the computation never reads and this process
    goes on writing (the run's scores, listings, records): the child is forked without them
    (:func:`credsim._libc.not_inherited`), so that this process's writes do not copy their
    pages. The child ignores Ctrl-C (this process stops it), dies with this process, and
    its errors are raised here with its traceback."""

    borrowed = True

    def __init__(
        self,
        compute: Callable[[int], T],
        slot_bytes: int,
        depth: int,
        after_fork: Callable[[], None] = lambda: None,
        private: Callable[[], list[np.ndarray]] = list,
    ) -> None:
        self.compute = compute
        self.after_fork = after_fork
        self.private = private
        self.depth = max(1, int(depth))
        self.slots = self.depth + 1
        self.slot_bytes = max(MIN_SLOT, -(-int(slot_bytes) // 4096) * 4096)
        self.pid: int | None = None
        """The child's process id while it runs."""
        self.pid_was: int | None = None
        """The child's process id, kept after it ends."""
        self._conn: Connection | None = None
        self._key = next(_ring_keys)
        """This child's ring in :data:`_RINGS` (there while the child runs)."""
        self._asked: list[int] = []  # days asked for and not taken, in order
        self._reaper: threading.Thread | None = None
        self.delivered = 0
        """Days taken from the child (for tests and timings)."""
        self.unavailable: str | None = None
        """Why no child could be forked (the days are then drawn in turn), or None."""

    # -- this process ------------------------------------------------------------------------
    def start(self, first: int, last: int | None = None) -> None:
        """Ask for the days ``first`` .. ``last`` (default: ``first``) not already asked for;
        what is asked for other days is dropped."""
        # at most ``depth`` days in flight: with the day in use, one slot each
        last = min(first if last is None else last, first + self.depth - 1)
        if self._asked and self._asked[0] != first:
            self._drop()
        if self.unavailable:
            return
        if self.pid is None:
            try:
                self._fork()
            except OSError as e:  # no process to be had (limits, memory): days drawn in turn
                self.unavailable = f"{type(e).__name__}: {e}"
                return
        assert self._conn is not None
        for day in range(first, last + 1):
            if day not in self._asked:
                self._conn.send_bytes(_DAY.pack(day))
                self._asked.append(day)

    def take(self, day: int) -> T | None:
        """The result for ``day`` if it was asked for (waiting for it), else None."""
        if not self._asked or self._asked[0] != day:
            self._drop()
            return None
        self._asked.pop(0)
        result = self._receive()
        self.delivered += 1
        return result

    def close(self) -> None:
        """Tell the child to stop (it ends once the days it was asked for are drawn; on a
        thread of its own it is waited for, and killed if it has not ended in 10 s)."""
        self._asked.clear()
        conn, pid = self._conn, self.pid
        self._conn = self.pid = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send_bytes(b"")
            conn.close()
        if pid is not None:  # the child ends as soon as it reads the stop: reap it aside
            self._reaper = threading.Thread(
                target=_reap, args=(pid,), name="credsim-reap", daemon=True
            )
            self._reaper.start()
        _RINGS.pop(self._key, None)  # unmapped when the last view of it goes

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the child stopped by :meth:`close` is gone; whether it is."""
        if self._reaper is not None:
            self._reaper.join(timeout)
            return not self._reaper.is_alive()
        return self.pid is None

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def _drop(self) -> None:
        while self._asked:  # the child answers in order: read the answers nobody wants
            self._asked.pop(0)
            self._receive()

    def _receive(self) -> T:
        assert self._conn is not None
        try:  # the arrays of an answer in the ring come back as views of it (_InRing)
            kind, day, body = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as e:
            self.close()
            raise RuntimeError("the process drawing days ahead ended unexpectedly") from e
        if kind == "error":
            self.close()
            raise RuntimeError(f"drawing day {day} ahead failed in the child process:\n{body}")
        return body  # type: ignore[no-any-return]

    def _fork(self) -> None:
        _RINGS[self._key] = mmap.mmap(-1, self.slots * self.slot_bytes)  # shared, anonymous
        parent, child = multiprocessing.Pipe(duplex=True)
        try:
            # Numba's compiler lock is held over the fork: another thread of the run (the
            # tables', the sealing one) may be compiling or loading a kernel from the cache
            # under it, and the child, which first calls its own kernels there, would wait
            # forever for a lock whose owner it does not have.
            with (
                warnings.catch_warnings(),
                global_compiler_lock,
                not_inherited(self.private()),
            ):
                # Python 3.12+ warns of forking with threads: the child uses none
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            parent.close()
            child.close()
            _RINGS.pop(self._key, None)
            raise
        if pid == 0:  # pragma: no cover - runs in the child (its coverage is not collected)
            code = 1
            try:
                parent.close()
                _die_with_parent()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                self.after_fork()
                self._serve(child)
                code = 0
            finally:
                os._exit(code)
        child.close()
        self.pid = self.pid_was = pid
        self._conn = parent

    # -- the child ---------------------------------------------------------------------------
    def _serve(self, conn: Connection) -> None:  # pragma: no cover - runs in the child
        ring = _RINGS[self._key]
        origin = np.frombuffer(ring, np.uint8).ctypes.data  # (the ring's address)
        while True:
            try:
                msg = conn.recv_bytes()
            except EOFError:
                return
            if not msg:
                return
            (day,) = _DAY.unpack(msg)
            try:
                base = (day % self.slots) * self.slot_bytes
                # the day's record columns taken from its slot: handed over where they are
                with arena.using(ring, base, base + self.slot_bytes) as room:
                    result = self.compute(day)
                end = base + self.slot_bytes
                laid = _Layout(ring, self._key, room.top, end, (origin, base, room.top))
                skeleton = laid.put(result)
                answer = ("ok", day, skeleton if laid.fits else result)
                data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
            except BaseException:  # noqa: BLE001 - reported to the parent, which raises
                conn.send_bytes(pickle.dumps(("error", day, traceback.format_exc())))
                return
            conn.send_bytes(data)


class _InRing:
    """An array left in the shared ring: which ring (its key in :data:`_RINGS`), where it
    starts, its dtype and its shape. Unpickled, it is the array itself: a view of the ring."""

    __slots__ = ("ring", "at", "dtype", "shape")

    def __init__(self, ring: int, at: int, dtype: str, shape: tuple[int, ...]) -> None:
        self.ring, self.at, self.dtype, self.shape = ring, at, dtype, shape

    def __reduce__(self) -> tuple:
        return (_ring_view, (self.ring, self.at, self.dtype, self.shape))


def _ring_view(ring: int, at: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The array an :class:`_InRing` stands for, a view of its ring (registered in
    :data:`_RINGS`)."""
    return np.ndarray(shape, np.dtype(dtype), buffer=_RINGS[ring], offset=at)


class _Layout:  # pragma: no cover - runs in the child
    """Copies the arrays of a result into a slot of the ring (each 64-byte aligned) and gives
    the result with :class:`_InRing` in their place (``key``: the ring's in :data:`_RINGS`);
    :attr:`fits` false when the slot is too small (the result then goes whole through the
    pipe). An array already in the slot (:attr:`placed`: the ring's address and the bytes of
    the slot its arena handed out, :mod:`credsim.engine.arena`) stays where it is."""

    def __init__(
        self, ring: mmap.mmap, key: int, at: int, end: int, placed: tuple = (0, 0, 0)
    ) -> None:
        self.ring, self.key, self.end, self.fits = ring, key, end, True
        self.at = -(-at // 64) * 64
        self.placed = placed

    def put(self, obj: object) -> object:
        if isinstance(obj, np.ndarray) and self.fits:
            origin, lo, hi = self.placed
            where = obj.__array_interface__["data"][0] - origin
            if obj.flags.c_contiguous and lo <= where and where + obj.nbytes <= hi:
                return _InRing(self.key, where, obj.dtype.str, obj.shape)
            arr = np.ascontiguousarray(obj)
            if self.at + arr.nbytes > self.end:
                self.fits = False
                return None
            dst = np.ndarray(arr.shape, arr.dtype, buffer=self.ring, offset=self.at)
            dst[...] = arr
            placed = _InRing(self.key, self.at, arr.dtype.str, arr.shape)
            self.at = -(-(self.at + arr.nbytes) // 64) * 64
            return placed
        if isinstance(obj, tuple):
            return tuple(self.put(x) for x in obj)
        if isinstance(obj, list):
            return [self.put(x) for x in obj]
        if isinstance(obj, dict):
            return type(obj)((k, self.put(v)) for k, v in obj.items())
        return obj


def _reap(pid: int, wait: float = 10.0) -> None:
    """Wait for a child to end; kill it after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to kill this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def can_fork() -> bool:
    """Whether days may be drawn ahead in a forked process (Linux only: elsewhere forking a
    process that runs threads is not safe)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")
