"""The ``credsim-ledger-v1`` canonical record row (:class:`RecordLayout`) and its encoder.

New runs are sealed with ``credsim-ledger-v2`` (:mod:`credsim.store.ledger_packed`); this
encoding stays to verify the runs sealed before it, and for the kernels both share.

:class:`RecordEncoder` turns batches of records into canonical rows (docs/integrity.md): each
fixed-width column is read straight from its Arrow buffers (values and validity bitmap) by a
small Numba kernel into one 64-bit word per row - no filled or cast copies - and the rows are
then assembled one row at a time (cache-friendly). Strings are categories: each distinct value
is hashed once and rows take their hash through dictionary indices. See
:mod:`credsim.store.ledger` for the whole scheme.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.errors import RunStoreError
from credsim.store.ledger_chain import (
    ENCODING_V1,
    _as_type,
    _fast,
    _fill_chain_kernel,
    _room_for,
    chain,
)
from credsim.store.schema import DIGEST_COLUMN, RECORDS_CONTENT

STRING_HASH_BYTES = 16
"""A string in a record's canonical row is the first 16 bytes of the sha256 of its UTF-8."""

_FIXED: dict[str, tuple[str, int]] = {
    # arrow type string -> (little-endian numpy dtype, width in bytes)
    "bool": ("u1", 1),
    "int8": ("i1", 1),
    "int16": ("<i2", 2),
    "int32": ("<i4", 4),
    "int64": ("<i8", 8),
    "double": ("<f8", 8),
    "date32[day]": ("<i4", 4),
}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "date32[day]": pa.date32(),
    "string": pa.string(),
}


class RecordLayout:
    """The v1 canonical row of a record: 64-bit little-endian words, no padding or gaps.

    Word 0 is the null mask (bit j set when chained column j is null); then each chained
    column in order: one word for an integer, date, double or bool (sign-extended integer,
    days since 1970-01-01, the IEEE-754 bits, 0/1; zero when null), two words (16 bytes) for a
    string (the first 16 bytes of sha256 of its UTF-8; zeros when null).

    The chained columns are named in the manifest (``ledger.columns``, ``"name:type"``), so a
    run stays verifiable when the records schema later gains a column. ``fields`` lists
    (name, arrow type, byte offset, width); ``size`` is the row's length in bytes (232 for
    today's records schema).
    """

    encoding = ENCODING_V1

    def __init__(self, columns: list[tuple[str, str]]) -> None:
        if len(columns) > 64:
            raise RunStoreError("the ledger's null mask covers at most 64 record columns")
        self.columns = columns
        self.fields: list[tuple[str, str, int, int]] = [("nulls", "uint64", 0, 8)]
        offset = 8
        for name, t in columns:
            if t != "string" and t not in _FIXED:
                raise RunStoreError(f"ledger: column {name!r} has a type ({t}) it cannot encode")
            width = STRING_HASH_BYTES if t == "string" else 8
            self.fields.append((name, t, offset, width))
            offset += width
        self.size = offset

    @classmethod
    def of_schema(cls, schema: pa.Schema) -> RecordLayout:
        """A dictionary-encoded column counts as its values' type (the same values)."""
        return cls(
            [
                (f.name, str(f.type.value_type if pa.types.is_dictionary(f.type) else f.type))
                for f in schema
                if f.name != DIGEST_COLUMN
            ]
        )

    @classmethod
    def parse(cls, spec: list[str]) -> RecordLayout:
        """From the manifest's ``ledger.columns`` (``["record_id:int64", ...]``)."""
        return cls([tuple(str(c).split(":", 1)) for c in spec])  # type: ignore[misc]

    def spec(self) -> list[str]:
        return [f"{name}:{t}" for name, t in self.columns]

    def genesis_fields(self) -> dict[str, Any]:
        """What the genesis binds besides the scheme sha256 and seed: nothing in v1."""
        return {}


RECORD_LAYOUT = RecordLayout.of_schema(RECORDS_CONTENT)
"""The v1 canonical row for the current records schema; see docs/integrity.md."""


def string_hash(value: str) -> bytes:
    """A string's 16 bytes in a canonical record row: the first 16 of sha256(UTF-8)."""
    return hashlib.sha256(value.encode("utf-8")).digest()[:STRING_HASH_BYTES]


# --------------------------------------------------------------------------------------------
# Kernels


@numba.njit(cache=True, nogil=True)
def _put_values(dst, values, start, bitmap, nulls, bit):  # type: ignore[no-untyped-def]
    """dst[i] = values[start + i] sign-extended to 64 bits (a double's bits when ``values`` is
    a view of them), or 0 and ``bit`` set in ``nulls[i]`` where the validity bitmap (bits
    from ``start``; empty: no nulls) says null."""
    n = dst.shape[0]
    if bitmap.shape[0] == 0:
        for i in range(n):
            dst[i] = np.int64(values[start + i])
        return
    for i in range(n):
        k = start + i
        if (bitmap[k >> 3] >> (k & 7)) & 1:
            dst[i] = np.int64(values[k])
        else:
            dst[i] = 0
            nulls[i] |= bit


@numba.njit(cache=True, nogil=True)
def _put_bools(dst, bits, start, bitmap, nulls, bit):  # type: ignore[no-untyped-def]
    """As :func:`_put_values` for a bit-packed boolean column: 0/1, 0 when null."""
    n = dst.shape[0]
    for i in range(n):
        k = start + i
        if bitmap.shape[0] != 0 and not (bitmap[k >> 3] >> (k & 7)) & 1:
            dst[i] = 0
            nulls[i] |= bit
        else:
            dst[i] = (bits[k >> 3] >> (k & 7)) & 1


@numba.njit(cache=True, nogil=True)
def _fill(
    rows: np.ndarray,
    fixed: np.ndarray,
    fixed_at: np.ndarray,
    strings: np.ndarray,
    table: np.ndarray,
    strings_at: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Write the canonical rows (n, words) one row at a time: ``fixed[k]`` (one word per row)
    goes to word ``fixed_at[k]``; string column ``s`` takes the two words ``table[j]`` with
    ``j = strings[s, i]`` at words ``strings_at[s]`` and the next."""
    for i in range(rows.shape[0]):
        for k in range(fixed.shape[0]):
            rows[i, fixed_at[k]] = fixed[k, i]
        for s in range(strings.shape[0]):
            j = strings[s, i]
            w = strings_at[s]
            rows[i, w] = table[j, 0]
            rows[i, w + 1] = table[j, 1]


_EMPTY = np.zeros(0, np.uint8)


def _bytes(buf: pa.Buffer | None) -> np.ndarray:
    return _EMPTY if buf is None else np.frombuffer(buf, np.uint8)


def _put_fixed(dst: np.ndarray, arr: pa.Array, t: str, nulls: np.ndarray, j: int) -> None:
    """Column ``j`` (type ``t``) as one int64 word per row into ``dst``, its nulls into the
    null mask ``nulls``: straight from the Arrow buffers."""
    bit = np.uint64(1) << np.uint64(j)
    n = len(arr)
    if arr.null_count == n:  # all null (possibly without data buffers)
        dst[:] = 0
        nulls |= bit
        return
    bufs = arr.buffers()
    bitmap = _bytes(bufs[0]) if arr.null_count else _EMPTY
    if t == "bool":
        _put_bools(dst, _bytes(bufs[1]), arr.offset, bitmap, nulls, bit)
        return
    dtype = "<i8" if t == "double" else _FIXED[t][0]  # a double's IEEE-754 bits
    values = np.frombuffer(bufs[1], dtype)
    if not bitmap.shape[0]:
        dst[:] = values[arr.offset : arr.offset + n]  # numpy sign-extends
        return
    _put_values(dst, values, arr.offset, bitmap, nulls, bit)


# --------------------------------------------------------------------------------------------
# The encoder


class RecordEncoder:
    """Encodes batches of records into canonical rows (reusing one buffer between batches).

    Strings are categories: each distinct value is hashed once (cached) and rows take their
    hash through the column's dictionary indices: those of a dictionary array (the engine's
    codes, as it builds its label columns, or Parquet's own dictionary when the batch was read
    with ``read_dictionary``), else :func:`pyarrow.compute.dictionary_encode`.
    """

    def __init__(self, layout: RecordLayout | None = None) -> None:
        self.layout = layout or RECORD_LAYOUT
        self._cache: dict[str, bytes] = {}
        self._buf = np.empty((0, self.layout.size // 8), np.uint64)
        self._fixed = np.empty((0, 0), np.uint64)
        self.unknown: np.ndarray | None = None  # (v1 hashes any string: never an unknown one)

    def encode(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        """(n, layout.size) uint8 canonical rows; valid until the next call.

        Columns are taken by name (others, like ``digest``, are ignored) and cast to the
        layout's types.
        """
        n = batch.num_rows
        if self._buf.shape[0] < n:
            self._buf = np.empty((n, self.layout.size // 8), np.uint64)
        rows = self._buf[:n]
        if n:
            _fill(rows, *self.parts(batch))
        out = rows.view(np.uint8)
        if sys.byteorder != "little":  # pragma: no cover - the words are little-endian
            out = rows.byteswap().view(np.uint8)
        return out

    def chain(self, batch: pa.Table | pa.RecordBatch, prev: bytes, out: np.ndarray) -> bytes:
        """The chain over the batch's rows (:func:`~credsim.store.ledger_chain.chain`) into
        ``out`` ((n, 32) uint8: v1 records store whole digests), each row hashed as soon as
        it is assembled; returns the last digest (``prev`` for no rows), as
        :meth:`~credsim.store.ledger_packed.PackedEncoder.chain` does."""
        n = batch.num_rows
        if n == 0:
            return prev
        fast = _fast()
        if fast is None or sys.byteorder != "little":
            chain(self.encode(batch), prev, out=out)
        else:
            prev_arr = np.frombuffer(prev, np.uint8).copy()
            _fill_chain_kernel(*self.parts(batch), self.layout.size // 8, prev_arr, out, *fast)
        return out[n - 1].tobytes()

    def parts(
        self, batch: pa.Table | pa.RecordBatch
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the rows are assembled from (see :func:`_fill`): fixed, fixed_at, strings,
        table (as 64-bit words) and strings_at."""
        n = batch.num_rows
        kinds = [t for _, t in self.layout.columns]
        n_str = kinds.count("string")
        k = len(kinds) - n_str + 1
        if self._fixed.shape[0] != k or self._fixed.shape[1] < n:
            self._fixed = np.empty((k, n + 8), np.uint64)  # (not a power of two apart: _PAD)
        fixed = self._fixed[:, :n]  # row 0: the null mask
        fixed_at = [0]
        strings = np.empty((n_str, n), np.intp)
        strings_at: list[int] = []
        tables: list[np.ndarray] = []
        base = 0
        nulls = fixed[0]
        nulls[:] = 0
        for j, (name, t, off, _) in enumerate(self.layout.fields[1:]):
            arr = _column(batch, name)
            if t == "string":
                table, idx = self._strings(arr)
                row = strings[len(strings_at)]
                row[:] = idx
                row += base
                strings_at.append(off // 8)
                tables.append(table)
                base += table.shape[0]
                if arr.null_count:
                    bit = np.uint64(1) << np.uint64(j)
                    nulls |= (idx == table.shape[0] - 1).astype(np.uint64) * bit
            else:
                arr = _as_type(arr, _ARROW_TYPES[t])
                _put_fixed(fixed[len(fixed_at)].view(np.int64), arr, t, nulls, j)
                fixed_at.append(off // 8)
        table = np.concatenate(tables) if tables else np.zeros((1, STRING_HASH_BYTES), np.uint8)
        return (
            fixed,
            np.array(fixed_at, np.intp),
            strings,
            np.ascontiguousarray(table).view("<u8"),
            np.array(strings_at, np.intp),
        )

    def _strings(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(table, idx): row i's 16 bytes are table[idx[i]]; the last table row (zeros) is
        for null rows (and only they point to it)."""
        if pa.types.is_dictionary(arr.type):
            dictionary, indices = arr.dictionary, arr.indices
            if not pa.types.is_string(dictionary.type):
                dictionary = dictionary.cast(pa.string())
        else:
            enc = pc.dictionary_encode(_as_type(arr, pa.string()))
            dictionary, indices = enc.dictionary, enc.indices
        words = dictionary.to_pylist()
        k = len(words)
        table = self._table(words)
        if indices.null_count:
            indices = pc.fill_null(_room_for(indices, k), k)
        idx = np.asarray(indices.to_numpy(zero_copy_only=False)).astype(np.intp, copy=False)
        return table, idx

    def _table(self, words: Sequence[str | None]) -> np.ndarray:
        """(k + 1, 16): the hash of each word (zeros for None), then zeros (for nulls)."""
        table = np.zeros((len(words) + 1, STRING_HASH_BYTES), np.uint8)
        for i, w in enumerate(words):
            if w is not None:
                h = self._cache.get(w)
                if h is None:
                    h = self._cache[w] = string_hash(w)
                table[i] = np.frombuffer(h, np.uint8)
        return table


def _column(batch: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    arr = batch.column(name)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    return arr
