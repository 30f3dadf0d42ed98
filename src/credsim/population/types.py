"""The synthetic population as columnar arrays (the contract between population and engine).

Entities are numbered 0..n-1: persons first (0..n_persons-1), then organisations. Persons are
stored in household order, so the members of household ``h`` are the contiguous range
``hh_start[h]:hh_start[h+1]``.

Identity codes (18-character RIC for persons, USCC for organisations) are kept as one
``(N, 18)`` uint8 array of ASCII characters (18 bytes an entity, against about 80 for a Python
str and its pointer): the run store wants them as an Arrow string column, which
:meth:`Population.code_array` builds over those bytes without a copy. ``Population.codes``, the
same codes as an object array of str, is made on first use only.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from credsim.population.codetext import code_strings

PERSON = 0
ORGANIZATION = 1


@dataclass
class Population:
    n_persons: int
    n_orgs: int
    kind: np.ndarray  # int8[N]: PERSON or ORGANIZATION
    district: np.ndarray  # int16[N], index into district_ids (organisations too)
    group: np.ndarray  # int16[N], index into group_ids; -1 for organisations
    sex: np.ndarray  # int8[N]: 0 female, 1 male, -1 organisation
    age: np.ndarray  # int16[N] in years at day 0; -1 for organisations
    birth_date: np.ndarray  # int32[N] days since 1970-01-01; -1 for organisations
    income_decile: np.ndarray  # int8[N] 1..10; 0 for organisations
    household: np.ndarray  # int32[N] household index; -1 for organisations
    hh_start: np.ndarray  # int64[H+1] offsets of households in person order
    employer: np.ndarray  # int32[N] entity id of the employing organisation, -1 if none
    code_bytes: np.ndarray  # uint8[N, 18] ASCII: 18-digit RIC for persons, 18-char USCC for orgs
    district_ids: list[str]
    group_ids: list[str]
    friends_indptr: np.ndarray | None = None  # int64[n_persons+1] CSR over persons
    friends: np.ndarray | None = None  # int32[...] friend entity ids (symmetric graph)
    pending: Future[None] | None = field(default=None, repr=False, compare=False)
    """The identity codes (and the birth dates they move) being written on another thread
    (:func:`~credsim.population.generate.generate_population`'s ``helper``): see
    :meth:`complete`."""

    def complete(self) -> None:
        """Wait until :attr:`code_bytes` and :attr:`birth_date` are written (raising the error
        that stopped them); at once if they were written with the rest."""
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    @property
    def n(self) -> int:
        return self.n_persons + self.n_orgs

    @property
    def n_households(self) -> int:
        return int(self.hh_start.shape[0] - 1)

    @cached_property
    def codes(self) -> np.ndarray:
        """object[N] of str: the identity codes as Python strings (made on first use, then
        kept; a run does not need them: see :meth:`code_array`)."""
        self.complete()
        return code_strings(self.code_bytes)

    def code_array(self) -> pa.Array | pa.ChunkedArray:
        """The identity codes as an Arrow string array over :attr:`code_bytes` (no copy)."""
        self.complete()
        return codes_arrow(self.code_bytes)


_MAX_ARROW_ROWS = (2**31 - 1) // 18
"""Rows of 18 characters an Arrow string array (int32 offsets) holds at most."""


def codes_arrow(
    code_bytes: np.ndarray, max_rows: int = _MAX_ARROW_ROWS
) -> pa.Array | pa.ChunkedArray:
    """An Arrow ``string`` array of the ``(n, w)`` ASCII rows of ``code_bytes``: its data buffer
    is their memory (no copy; a C-contiguous array is expected and made if not), offsets step by
    ``w``. The same array as ``pa.array(codes.tolist(), pa.string())``; a chunked array of
    ``max_rows`` rows a chunk if the offsets would not fit in int32 (as ``pa.array`` does)."""
    n, w = code_bytes.shape
    flat = np.ascontiguousarray(code_bytes, dtype=np.uint8).reshape(-1)
    step = max(1, min(max_rows, (2**31 - 1) // max(w, 1)))
    offsets = np.arange(0, w * (min(n, step) + 1), w, dtype=np.int32)

    def piece(s: int, e: int) -> pa.Array:
        return pa.StringArray.from_buffers(
            e - s, pa.py_buffer(offsets[: e - s + 1]), pa.py_buffer(flat[s * w : e * w])
        )

    if n <= step:
        return piece(0, n)
    return pa.chunked_array(
        [piece(s, min(s + step, n)) for s in range(0, n, step)], type=pa.string()
    )
