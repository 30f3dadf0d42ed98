"""Content digests of tables (``credsim-table-v1``; see docs/integrity.md): what a table holds,
independent of how Parquet laid its bytes out. The records' digest derives from their chain
instead (:func:`credsim.store.ledger.records_digest`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.errors import RunStoreError
from credsim.store.dictcodes import label_streams
from credsim.store.ledger_chain import _as_type, _buf, stored_digests
from credsim.store.ledger_encode import _FIXED
from credsim.store.schema import IMPORT_TABLES, SCHEMAS

BATCH_ROWS = 1 << 18
"""Rows hashed at a time (bounded memory for the byte streams)."""


def batches(table: pa.Table, rows: int = BATCH_ROWS) -> Iterable[pa.Table]:
    """``table`` in slices of ``rows`` rows (an empty table: itself, once)."""
    if table.num_rows == 0:
        yield table
        return
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)


def _fixed_values(arr: pa.Array, t: str) -> np.ndarray:
    """Values of a fixed-width column as a little-endian numpy array, nulls as zero."""
    if t == "date32[day]":
        arr = arr.cast(pa.int32())
    if t == "bool":
        if arr.null_count:
            arr = pc.fill_null(arr, False)
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool).view(np.uint8)
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(0, arr.type))
    return np.asarray(arr.to_numpy(zero_copy_only=False)).astype(_FIXED[t][0], copy=False)


def _validity(arr: pa.Array) -> np.ndarray:
    """1 where the value is present, 0 where null (uint8)."""
    if arr.null_count == 0:
        return np.ones(len(arr), np.uint8)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool).view(np.uint8)


class TableHasher:
    """Streaming content digest of one table (``credsim-table-v1``; see docs/integrity.md).

    Per column, three SHA-256 streams: validity (one byte per row, 1 = present), values
    (fixed-width little-endian, nulls as zeros; strings: int64 byte length per row) and data
    (strings: UTF-8 bytes in row order). The column digest binds name, type, row count and the
    three stream digests; the table digest binds the table name and its column digests in
    schema order. Batches may be of any size: the result depends only on the content.
    """

    def __init__(self, name: str, schema: pa.Schema | None = None) -> None:
        self.name = name
        if schema is None:
            schema = SCHEMAS[name] if name in SCHEMAS else IMPORT_TABLES[name]
        self.schema = schema
        self.rows = 0
        self._streams = [
            (hashlib.sha256(), hashlib.sha256(), hashlib.sha256()) for _ in self.schema
        ]

    def update(self, batch: pa.Table | pa.RecordBatch) -> None:
        for field, (hv, hx, hd) in zip(self.schema, self._streams, strict=True):
            column = batch.column(field.name)
            t = str(field.type)
            if t == "string" and _update_labels(column, hv, hx, hd):
                continue
            arr = _as_type(column, field.type)
            hv.update(_buf(_validity(arr)))
            if t == "string":
                if arr.null_count:
                    arr = pc.fill_null(arr, "")
                offsets = np.frombuffer(arr.buffers()[1], np.int32)
                off = offsets[arr.offset : arr.offset + len(arr) + 1]
                hx.update(_buf(np.diff(off).astype("<i8")))
                if len(arr):
                    hd.update(memoryview(arr.buffers()[2])[int(off[0]) : int(off[-1])])
            elif t.startswith("fixed_size_binary["):
                hx.update(_buf(stored_digests(arr, arr.type.byte_width)))
            elif t in _FIXED:
                hx.update(_buf(_fixed_values(arr, t)))
            else:  # pragma: no cover - the schemas hold no other types
                raise RunStoreError(f"table {self.name!r}: cannot digest column type {t}")
        self.rows += batch.num_rows

    def update_table(self, table: pa.Table) -> None:
        """:meth:`update` with every row of ``table``, in bounded batches."""
        for batch in batches(table):
            self.update(batch)

    def hexdigest(self) -> str:
        h = hashlib.sha256(b"credsim-table-v1\0" + self.name.encode() + b"\0")
        h.update(len(self.schema).to_bytes(4, "little"))
        for field, (hv, hx, hd) in zip(self.schema, self._streams, strict=True):
            c = hashlib.sha256(b"credsim-column-v1\0" + field.name.encode() + b"\0")
            c.update(str(field.type).encode() + b"\0")
            c.update(self.rows.to_bytes(8, "little"))
            c.update(hv.digest() + hx.digest() + hd.digest())
            h.update(c.digest())
        return h.hexdigest()


def _update_labels(column: pa.Array | pa.ChunkedArray, hv: Any, hx: Any, hd: Any) -> bool:
    """Hash a string column kept as a dictionary (labels as codes: the population's, the
    scores' grade) straight from its codes (:func:`~credsim.store.dictcodes.label_streams`):
    the same three streams as the strings it stands for, without building them (casting a
    3M-row grade column to strings and filling its nulls took 52 to 112 ms of 102 to 167 for
    the whole snapshot). False, having hashed nothing, for any other column (and for a
    dictionary holding nulls itself)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not pa.types.is_dictionary(column.type) or column.type.value_type != pa.string():
        return False
    if any(chunk.dictionary.null_count for chunk in chunks):
        return False
    for chunk in chunks:
        valid, lengths, data = label_streams(chunk)
        hv.update(_buf(valid))
        hx.update(_buf(lengths.astype("<i8", copy=False)))
        hd.update(_buf(data))
    return True


def table_digest(name: str, table: pa.Table, schema: pa.Schema | None = None) -> str:
    """Content digest of a whole table (see :class:`TableHasher`)."""
    hasher = TableHasher(name, schema)
    hasher.update_table(table)
    return hasher.hexdigest()
