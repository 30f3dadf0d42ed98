"""Label columns remembered with the integer codes they were built from.

The engine builds its categorical columns (``item``, ``status``, ...) as plain strings from small
integer codes (:func:`credsim.engine.output.records_table`). The ledger needs each row's string
as an index into the distinct values, which it would otherwise re-derive by hashing every
string (:func:`pyarrow.compute.dictionary_encode`). :func:`remember` keeps the codes next to a
table's string arrays for as long as the table lives; :func:`codes_of` finds them again for any
slice of such an array (the writer conforms and slices tables without copying the strings).

An array is recognised by the addresses of its validity, offsets and data buffers, which the
registry keeps alive (it holds the array) and which Arrow never changes: the same addresses are
the same strings. Nothing here is stored; it only spares work.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

_Key = tuple[int, int, int]
_KNOWN: dict[_Key, tuple[pa.Array, np.ndarray, list[str]]] = {}


def _key(arr: pa.Array) -> _Key | None:
    bufs = arr.buffers()
    if len(bufs) != 3 or bufs[1] is None or bufs[2] is None:
        return None
    return (0 if bufs[0] is None else bufs[0].address, bufs[1].address, bufs[2].address)


def compact_codes(codes: np.ndarray, names: list[str], null: int) -> np.ndarray:
    """``codes`` as the smallest unsigned type, null (``code == null``) as ``len(names)``."""
    k = len(names)
    dtype = np.uint8 if k < 255 else np.uint16 if k < 65535 else np.int64
    return np.where(codes == null, k, codes).astype(dtype)


def remember(table: pa.Table, columns: Mapping[str, tuple[np.ndarray, list[str]]]) -> None:
    """Remember, while ``table`` lives, that its string column ``name`` holds
    ``names[codes[i]]`` in row i (null where ``codes[i] == -1``) for each
    ``name: (codes, names)``. The codes are kept as given (not copied: they must not change
    while the table lives) and made compact (:func:`compact_codes`) when asked for."""
    keys = []
    for name, (codes, names) in columns.items():
        column = table.column(name)
        if column.num_chunks != 1:
            continue
        arr = column.chunk(0)
        key = _key(arr)
        if key is None or arr.offset != 0 or len(arr) != len(codes):
            continue
        _KNOWN[key] = (arr, codes, list(names))
        keys.append(key)
    if keys:
        weakref.finalize(table, _forget, keys)


def _forget(keys: list[_Key]) -> None:
    for key in keys:
        _KNOWN.pop(key, None)


def codes_of(arr: pa.Array) -> tuple[np.ndarray, list[str]] | None:
    """(codes, names) for the rows of ``arr`` when it is a remembered column or a slice of
    one: row i holds ``names[codes[i]]``, or null where ``codes[i] == len(names)``."""
    if not pa.types.is_string(arr.type):
        return None
    key = _key(arr)
    found = _KNOWN.get(key) if key is not None else None
    if found is None:
        return None
    whole, codes, names = found
    if arr.offset + len(arr) > len(whole):
        return None
    return compact_codes(codes[arr.offset : arr.offset + len(arr)], names, -1), names
