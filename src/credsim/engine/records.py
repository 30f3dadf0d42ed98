"""The master database of records, as growable columns (struct of arrays).

A record is one entry about one entity: an observed behaviour, a false report, an escalation, a
share of a relative's deduction, a score recovery. Its index is its ``record_id``. Ground truth is
kept beside it: ``actor`` is the entity whose real behaviour lies behind it (-1: none), and
``truthful`` says whether that is the very entity the record is about.
"""

from __future__ import annotations

import ctypes

import numpy as np

from credsim._libc import linux_function

STATUS = ["accepted", "rejected_in_review", "overturned_on_appeal", "pending"]
ACCEPTED, REJECTED, OVERTURNED, PENDING = 0, 1, 2, 3
BASIS = [
    "behaviour",
    "false_report",
    "escalation",
    "association",
    "repair",
    "import",
    "favouritism",
]
B_BEHAVIOUR, B_FALSE_REPORT, B_ESCALATION, B_ASSOCIATION, B_REPAIR, B_IMPORT, B_FAVOUR = range(7)
ERRORS = [
    "misidentification",
    "data_entry",
    "false_report",
    "purchase",
    "tampering",
    "favouritism",
]
E_NONE, E_MISID, E_DATA_ENTRY, E_FALSE_REPORT, E_PURCHASE, E_TAMPER, E_FAVOUR = range(-1, 6)

COLUMNS: dict[str, tuple[type, int | float | bool]] = {
    "day": (np.int32, -1),
    "behaviour_day": (np.int32, -1),
    "entity": (np.int32, -1),
    "actor": (np.int32, -1),
    "item": (np.int32, -1),
    "behaviour": (np.int32, -1),
    "channel": (np.int8, -1),
    "agency": (np.int32, -1),
    "points": (np.float64, 0.0),
    "applied": (np.float64, 0.0),
    "status": (np.int8, PENDING),
    "truthful": (np.bool_, False),
    "basis": (np.int8, B_BEHAVIOUR),
    "error": (np.int8, E_NONE),
    "cause": (np.int64, -1),
    "review_day": (np.int32, -1),
    "appeal_day": (np.int32, -1),
    "appealed": (np.bool_, False),
    "import_row": (np.int32, -1),  # data row of an imported event (engine/events.py), -1: none
    "excused": (np.bool_, False),  # the behaviour had a legitimate excuse (context)
}


LAZY = ("review_day", "appeal_day", "appealed", "cause", "error", "excused", "import_row")
"""Record columns that most records leave at their default (no review, no appeal, no cause, no
error, no excuse, not imported): they take no memory until a record needs another value
(:class:`Table`, ``lazy``)."""


_SCALARS = (int, float, bool, np.generic)
"""Values an append broadcasts to every row without looking further."""


class Table:
    """Append-only columns with amortised growth; ``col(name)`` views the filled part.

    A *lazy* column has no array until a row needs a value other than its default (an append
    gives one, or :meth:`col` or :meth:`raw` hands it out to be written): until then every row
    holds the default, nothing is written per append (an append giving only the default
    leaves it so), and :meth:`view` says so with None."""

    def __init__(
        self,
        columns: dict[str, tuple[type, int | float | bool]],
        capacity: int = 1024,
        lazy: tuple[str, ...] = (),
    ) -> None:
        self.columns = columns
        self.n = 0
        self.base = 0
        """Rows below ``base`` are released (:meth:`release`): their memory is given back."""
        self.kept: tuple[str, ...] = ()
        """Columns :meth:`release` keeps whole."""
        self._cap = max(int(capacity), 16)
        # unfilled capacity is left untouched (no page is written before it is used): columns
        # an append does not give get their default there
        self._lazy = set(lazy)
        """Lazy columns with no array yet: every row holds the default."""
        self._ahead: dict[str, int] = {}
        """Per column: the address below which released pages were moved ahead of the rows
        (:func:`_recycle`)."""
        self._cols: dict[str, np.ndarray] = {
            k: np.empty(self._cap, dt) for k, (dt, _) in columns.items() if k not in self._lazy
        }

    def _grow(self, need: int, factor: float = 1.6) -> None:
        if need <= self._cap:
            return
        cap = max(need, int(self._cap * factor))
        for k, (dt, _) in self.columns.items():
            if k in self._lazy:
                continue
            new: np.ndarray = np.empty(cap, dt)
            lo = 0 if k in self.kept else self.base  # released rows are never copied
            new[lo : self.n] = self._cols[k][lo : self.n]
            self._cols[k] = new
        self._ahead.clear()
        self._cap = cap

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` rows at once, so that appends up to it never copy. The
        room costs address space only: no page is written before a row is appended there."""
        if capacity > self._cap:
            self._grow(int(capacity), factor=1.0)

    def append(self, **cols: np.ndarray | int | float | bool) -> np.ndarray:
        """Append records given as equal-length arrays (scalars broadcast); return their ids."""
        columns = self.columns
        m = -1
        for k, val in cols.items():  # one pass: names known, lengths equal (scalars broadcast)
            if k not in columns:
                raise KeyError(f"unknown record columns: {sorted(set(cols) - set(columns))}")
            if isinstance(val, _SCALARS):
                continue
            if isinstance(val, np.ndarray):
                if not val.ndim:
                    continue
                size = val.shape[0]
            elif np.ndim(val):
                size = np.size(val)
            else:
                continue
            if m < 0:
                m = size
            elif size != m:
                raise ValueError(f"record columns of different lengths: {m} and {size} ({k})")
        m = max(m, 0)
        start = self.n
        self._grow(start + m)
        for k, (_, fill) in columns.items():
            v = cols.get(k)
            if v is None:
                if k in self._lazy:
                    continue  # the default, as every row before
                v = fill
            elif k in self._lazy:
                if not np.any(np.asarray(v) != fill):
                    continue  # only the default: the column stays without an array
                self._materialise(k)
            self._cols[k][start : start + m] = v
        self.n = start + m
        return np.arange(start, start + m, dtype=np.int64)

    def col(self, name: str) -> np.ndarray:
        """The filled part of a column (a view: writes go to the buffer)."""
        if name in self._lazy:
            self._materialise(name)
        return self._cols[name][: self.n]

    def raw(self, name: str) -> np.ndarray:
        """The whole backing array (for numba kernels that index by record id)."""
        if name in self._lazy:
            self._materialise(name)
        return self._cols[name]

    def view(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray | None:
        """Rows ``lo`` .. ``hi`` (default: the filled part) of a column to read, or None when
        every row holds the column's default (a lazy column never written): nothing is
        allocated for it."""
        if name in self._lazy:
            return None
        return self._cols[name][lo : self.n if hi is None else hi]

    def arrays(self) -> list[np.ndarray]:
        """The columns' backing arrays (those of the lazy columns written so far)."""
        return list(self._cols.values())

    def _materialise(self, name: str) -> None:
        """Give a lazy column its array, every row so far at the default (the released rows
        below :attr:`base` are never read)."""
        dt, fill = self.columns[name]
        arr: np.ndarray = np.empty(self._cap, dt)
        arr[0 if name in self.kept else self.base : self.n] = fill
        self._cols[name] = arr
        self._lazy.discard(name)

    def release(self, upto: int, keep: tuple[str, ...] = ()) -> None:
        """Give back the memory of rows below ``upto`` (written out, never read again) except
        for the columns in ``keep``; row ids stay valid, so the other rows are untouched.

        The pages are moved ahead of the rows for the next appends (:func:`_recycle`) or
        returned to the system (``madvise(MADV_DONTNEED)``), on Linux; a released row then
        reads as zeros, which is why only rows that nothing reads any more may go. Elsewhere
        the memory is simply kept."""
        upto = min(int(upto), self.n)
        self.kept = tuple(keep)
        if upto <= self.base:
            return
        for k, arr in self._cols.items():
            if k not in keep:
                self._ahead[k] = _recycle(arr, self.base, upto, self.n, self._ahead.get(k, 0))
        self.base = upto


class RecordBuffer(Table):
    """The records of a run (columns: :data:`COLUMNS`)."""

    def __init__(self, capacity: int = 1024) -> None:
        super().__init__(COLUMNS, capacity, LAZY)


def with_defaults(cols: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """Record columns as :meth:`Table.view` gives them, a column that is all default (None)
    filled as an array."""
    n = next(v.shape[0] for v in cols.values() if v is not None)
    return {k: default_column(k, n) if v is None else v for k, v in cols.items()}


def default_column(name: str, n: int) -> np.ndarray:
    """``n`` rows of the record column ``name`` at its default."""
    dtype, fill = COLUMNS[name]
    return np.full(n, fill, dtype)


_MADV_DONTNEED = 4


def _madvise() -> object | None:
    return linux_function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))


_PAGE = 4096


def _pages(arr: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """The addresses of the whole pages within rows ``lo`` .. ``hi`` of ``arr`` (a >= b:
    none)."""
    base = arr.ctypes.data
    return (
        -(-(base + lo * arr.itemsize) // _PAGE) * _PAGE,
        (base + hi * arr.itemsize) // _PAGE * _PAGE,
    )


def _dontneed(arr: np.ndarray, lo: int, hi: int) -> None:
    """Return the whole pages of ``arr[lo:hi]`` to the system (they then read as zeros)."""
    fn = _madvise()
    if fn is None or hi <= lo:
        return
    a, b = _pages(arr, lo, hi)
    if b > a:
        fn(a, b - a, _MADV_DONTNEED)  # type: ignore[operator]


_MREMAP_MAYMOVE, _MREMAP_FIXED, _MREMAP_DONTUNMAP = 1, 2, 4


def _mremap() -> object | None:
    return linux_function(
        "mremap",
        (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p),
        ctypes.c_void_p,
    )


def _recycle(arr: np.ndarray, lo: int, hi: int, n: int, ahead: int) -> int:
    """Release rows ``lo`` .. ``hi`` of ``arr`` (filled up to row ``n``): their whole pages are
    moved (Linux ``mremap``, the old addresses left empty, reading as zeros) to the unwritten
    capacity after row ``n`` and after ``ahead`` (the end of pages moved there before), where
    the next appends write without the system clearing fresh pages for them; where there is
    no room left, or elsewhere than Linux, they are given back (:func:`_dontneed`). Returns
    the new ``ahead``."""
    fn = _mremap()
    a, b = _pages(arr, lo, hi)
    if b <= a:
        return ahead
    written, end = _pages(arr, n, arr.shape[0])  # (the page row n is on is written)
    dest = max(ahead, written)
    if fn is not None and dest + (b - a) <= end:
        flags = _MREMAP_MAYMOVE | _MREMAP_FIXED | _MREMAP_DONTUNMAP
        got = fn(a, b - a, b - a, flags, dest)  # type: ignore[operator]
        if got == dest:
            return dest + (b - a)
    _dontneed(arr, lo, hi)
    return ahead
