"""The tamper-evident ledger of a run: canonical encodings, the record hash chain, table digests.

A sealed run folder carries, besides the file SHA-256s the writer always recorded:

* a ``digest`` column in ``records.parquet``: ``digest_i = sha256(digest_{i-1} || row_i)``, where
  ``row_i`` is the record's canonical encoding (:class:`RecordLayout`: 64-bit words, 224 bytes
  for today's records schema) and ``digest_{-1}`` is the *genesis*, derived from the scheme's
  sha256 and the seed;
* in the manifest, ``ledger`` (encoding, genesis, head = the last digest, record count, first
  record id, the chained columns), ``table_digests`` (a digest of the logical content of every
  table, not of the file's bytes), ``field_digests`` (a short digest of each top-level manifest
  field, to name an altered field) and ``manifest_digest`` (sha256 of the canonical JSON of all
  the other fields).

``docs/integrity.md`` specifies every byte so that the check can be re-implemented elsewhere;
:func:`credsim.store.verify.verify` is this package's implementation of it.

The writer seals a run through :class:`Sealer` (``add`` each table as it is written, then
``finish`` the manifest); records may be added in several chunks, in order, so a writer that
streams records can chain them as they come.

Cost. The chain is inherently sequential, and SHA-256 through :mod:`hashlib` costs 1.3-2 us per
call in CPython (setting up the context dominates). So the chain runs in a Numba loop calling
OpenSSL's one-context ``SHA256_Init/Update/Final`` (the library :mod:`hashlib` itself uses):
about 0.25 us per record. Where that library cannot be found, the same digests are computed with
:mod:`hashlib`, slower; :func:`fast_path` tells which is in use. Rows are built by a Numba kernel
one row at a time (cache-friendly), strings through dictionary indices.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.errors import RunStoreError
from credsim.store.ledger_chain import (  # noqa: F401  (re-exported: the ledger's public API)
    ENCODING,
    _as_type,
    _buf,
    canonical_json,
    chain,
    chain_py,
    digest_array,
    fast_path,
    genesis,
    links,
    links_py,
    stored_digests,
)
from credsim.store.schema import DIGEST_COLUMN, IMPORT_TABLES, RECORDS_CONTENT, SCHEMAS

BATCH_ROWS = 1 << 18
"""Rows encoded and hashed at a time (bounds memory: 2**18 records are ~60 MB of row bytes)."""

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


# --------------------------------------------------------------------------------------------
# The canonical record row


class RecordLayout:
    """The canonical row of a record: 64-bit little-endian words, no padding or gaps.

    Word 0 is the null mask (bit j set when chained column j is null); then each chained
    column in order: one word for an integer, date, double or bool (sign-extended integer,
    days since 1970-01-01, the IEEE-754 bits, 0/1; zero when null), two words (16 bytes) for a
    string (the first 16 bytes of sha256 of its UTF-8; zeros when null).

    The chained columns are named in the manifest (``ledger.columns``, ``"name:type"``), so a
    run stays verifiable when the records schema later gains a column. ``fields`` lists
    (name, arrow type, byte offset, width); ``size`` is the row's length in bytes.
    """

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
        return cls([(f.name, str(f.type)) for f in schema if f.name != DIGEST_COLUMN])

    @classmethod
    def parse(cls, spec: list[str]) -> RecordLayout:
        """From the manifest's ``ledger.columns`` (``["record_id:int64", ...]``)."""
        return cls([tuple(str(c).split(":", 1)) for c in spec])  # type: ignore[misc]

    def spec(self) -> list[str]:
        return [f"{name}:{t}" for name, t in self.columns]


RECORD_LAYOUT = RecordLayout.of_schema(RECORDS_CONTENT)
"""The canonical row for the current records schema; see docs/integrity.md."""


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


def string_hash(value: str) -> bytes:
    """A string's 16 bytes in a canonical record row: the first 16 of sha256(UTF-8)."""
    return hashlib.sha256(value.encode("utf-8")).digest()[:STRING_HASH_BYTES]


class RecordEncoder:
    """Encodes batches of records into canonical rows (reusing one buffer between batches).

    Strings are categories: each distinct value is hashed once (cached) and rows take their
    hash through the column's dictionary indices (Parquet's own dictionary when the batch was
    read with ``read_dictionary``, else :func:`pyarrow.compute.dictionary_encode`).
    """

    def __init__(self, layout: RecordLayout | None = None) -> None:
        self.layout = layout or RECORD_LAYOUT
        self._cache: dict[str, bytes] = {}
        self._buf = np.empty((0, self.layout.size // 8), np.uint64)

    def encode(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        """(n, layout.size) uint8 canonical rows; valid until the next call.

        Columns are taken by name (others, like ``digest``, are ignored) and cast to the
        layout's types.
        """
        n = batch.num_rows
        if self._buf.shape[0] < n:
            self._buf = np.empty((max(n, BATCH_ROWS), self.layout.size // 8), np.uint64)
        rows = self._buf[:n]
        kinds = [t for _, t in self.layout.columns]
        n_str = kinds.count("string")
        fixed = np.empty((len(kinds) - n_str + 1, n), np.uint64)  # row 0: the null mask
        fixed_at = [0]
        strings = np.empty((n_str, n), np.intp)
        strings_at: list[int] = []
        tables: list[np.ndarray] = []
        base = 0
        nulls = fixed[0]
        nulls[:] = 0
        for j, (name, t, off, _) in enumerate(self.layout.fields[1:]):
            arr = batch.column(name)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            if t == "string":
                table, idx = self._strings(arr)
                strings[len(strings_at)] = idx + base
                strings_at.append(off // 8)
                tables.append(table)
                base += table.shape[0]
            else:
                arr = _as_type(arr, _ARROW_TYPES[t])
                word = fixed[len(fixed_at)]
                if t == "double":
                    word.view(np.float64)[:] = _fixed_values(arr, t)
                else:
                    word.view(np.int64)[:] = _fixed_values(arr, t)
                fixed_at.append(off // 8)
            if arr.null_count:
                nulls |= (1 - _validity(arr)).astype(np.uint64) << np.uint64(j)
        table = np.concatenate(tables) if tables else np.zeros((1, STRING_HASH_BYTES), np.uint8)
        if n:
            _fill(
                rows,
                fixed,
                np.array(fixed_at, np.intp),
                strings,
                np.ascontiguousarray(table).view("<u8"),
                np.array(strings_at, np.intp),
            )
        out = rows.view(np.uint8)
        if sys.byteorder != "little":  # pragma: no cover - the words are little-endian
            out = rows.byteswap().view(np.uint8)
        return out

    def _strings(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(table, idx): row i's 16 bytes are table[idx[i]]; the last table row (zeros) is
        for nulls."""
        if pa.types.is_dictionary(arr.type):
            dictionary, indices = arr.dictionary, arr.indices
            if not pa.types.is_string(dictionary.type):
                dictionary = dictionary.cast(pa.string())
        else:
            enc = pc.dictionary_encode(_as_type(arr, pa.string()))
            dictionary, indices = enc.dictionary, enc.indices
        words = dictionary.to_pylist()
        k = len(words)
        table = np.zeros((k + 1, STRING_HASH_BYTES), np.uint8)
        for i, w in enumerate(words):
            if w is not None:
                h = self._cache.get(w)
                if h is None:
                    h = self._cache[w] = string_hash(w)
                table[i] = np.frombuffer(h, np.uint8)
        if indices.null_count:
            indices = pc.fill_null(indices, k)
        idx = np.asarray(indices.to_numpy(zero_copy_only=False)).astype(np.intp, copy=False)
        return table, idx


# --------------------------------------------------------------------------------------------
# Table content digests


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
            arr = _as_type(batch.column(field.name), field.type)
            hv.update(_buf(_validity(arr)))
            t = str(field.type)
            if t == "string":
                if arr.null_count:
                    arr = pc.fill_null(arr, "")
                offsets = np.frombuffer(arr.buffers()[1], np.int32)
                off = offsets[arr.offset : arr.offset + len(arr) + 1]
                hx.update(_buf(np.diff(off).astype("<i8")))
                if len(arr):
                    hd.update(memoryview(arr.buffers()[2])[int(off[0]) : int(off[-1])])
            elif t == "fixed_size_binary[32]":
                hx.update(_buf(stored_digests(arr)))
            elif t in _FIXED:
                hx.update(_buf(_fixed_values(arr, t)))
            else:  # pragma: no cover - the schemas hold no other types
                raise RunStoreError(f"table {self.name!r}: cannot digest column type {t}")
        self.rows += batch.num_rows

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


def table_digest(name: str, table: pa.Table, schema: pa.Schema | None = None) -> str:
    """Content digest of a whole table (see :class:`TableHasher`)."""
    hasher = TableHasher(name, schema)
    for batch in _batches(table):
        hasher.update(batch)
    return hasher.hexdigest()


def records_digest(n: int, head: bytes, layout: RecordLayout) -> str:
    """Content digest of the records table: derived from the chain, which already covers every
    record's content, order and number (hashing the records a second time would double the
    cost). sha256("credsim-table-v1\\0records\\0" || canonical JSON of the chained columns ||
    record count (uint64 LE) || head)."""
    h = hashlib.sha256(b"credsim-table-v1\0records\0" + canonical_json(layout.spec()))
    h.update(n.to_bytes(8, "little") + head)
    return h.hexdigest()


def _batches(table: pa.Table) -> Iterable[pa.Table]:
    if table.num_rows == 0:
        yield table
        return
    for start in range(0, table.num_rows, BATCH_ROWS):
        yield table.slice(start, BATCH_ROWS)


# --------------------------------------------------------------------------------------------
# The manifest


SELF_FIELDS = ("field_digests", "manifest_digest")
"""Manifest fields not covered by ``field_digests`` (they are the digests)."""


def field_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """First 16 hex digits of sha256(canonical JSON) of each top-level field: a locator only."""
    return {
        k: hashlib.sha256(canonical_json(v)).hexdigest()[:16]
        for k, v in sorted(manifest.items())
        if k not in SELF_FIELDS
    }


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of every manifest field except ``manifest_digest``."""
    return hashlib.sha256(
        canonical_json({k: v for k, v in manifest.items() if k != "manifest_digest"})
    ).hexdigest()


# --------------------------------------------------------------------------------------------
# Sealing a run as it is written


class Sealer:
    """Seal a run while it is written: ``add`` every table (records in order, possibly in
    chunks), then ``finish`` the manifest.

    ``add("records", t)`` returns ``t`` with its ``digest`` column (re)computed as the last
    column; other tables are returned unchanged. Tables must already be conformed.
    """

    def __init__(self, manifest: Mapping[str, Any]) -> None:
        self.genesis = genesis(manifest)
        self._head = self.genesis
        self._records = 0
        self._first_id: int | None = None
        self._next_id: int | None = None
        self._contiguous = True
        self._encoder: RecordEncoder | None = None
        self._hashers: dict[str, TableHasher | None] = {}  # None: records (digest from chain)

    def add(self, name: str, table: pa.Table) -> pa.Table:
        if name == "records":
            self._hashers["records"] = None
            return self._chain(table)
        hasher = self._hashers.get(name)
        if hasher is None:
            hasher = self._hashers[name] = TableHasher(name, table.schema)
        for batch in _batches(table):
            hasher.update(batch)
        return table

    def _chain(self, table: pa.Table) -> pa.Table:
        if DIGEST_COLUMN in table.column_names:
            table = table.drop_columns([DIGEST_COLUMN])
        if self._encoder is None:
            self._encoder = RecordEncoder(RecordLayout.of_schema(table.schema))
        parts = []
        for batch in _batches(table):
            rows = self._encoder.encode(batch)
            digests = chain(rows, self._head)
            if len(digests):
                self._head = digests[-1].tobytes()
            parts.append(digests)
            ids = batch.column("record_id").to_numpy()
            if len(ids):
                if self._first_id is None:
                    self._first_id = self._next_id = int(ids[0])
                start = int(self._next_id or 0)
                expect = np.arange(start, start + len(ids), dtype=np.int64)
                self._contiguous = self._contiguous and bool(np.array_equal(ids, expect))
                self._next_id = int(ids[-1]) + 1
        self._records += table.num_rows
        digests = np.concatenate(parts) if parts else np.zeros((0, 32), np.uint8)
        return table.append_column(
            pa.field(DIGEST_COLUMN, pa.binary(32), nullable=False), digest_array(digests)
        )

    def ledger(self) -> dict[str, Any]:
        """The manifest's ``ledger`` section."""
        return {
            "encoding": ENCODING,
            "genesis": self.genesis.hex(),
            "head": self._head.hex(),
            "records": self._records,
            "first_record_id": self._first_id,
            "contiguous_ids": self._contiguous,
            "columns": self.layout.spec(),
        }

    @property
    def layout(self) -> RecordLayout:
        return self._encoder.layout if self._encoder is not None else RECORD_LAYOUT

    def table_digests(self) -> dict[str, str]:
        return {
            name: h.hexdigest()
            if h is not None
            else records_digest(self._records, self._head, self.layout)
            for name, h in self._hashers.items()
        }

    def finish(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``manifest`` with ``ledger``, ``table_digests``, ``field_digests`` and
        ``manifest_digest`` set (in that order, last in the file)."""
        out = {k: v for k, v in manifest.items() if k not in ("ledger", "table_digests")}
        out = {k: v for k, v in out.items() if k not in SELF_FIELDS}
        out["ledger"] = self.ledger()
        out["table_digests"] = self.table_digests()
        out["field_digests"] = field_digests(out)
        out["manifest_digest"] = manifest_digest(out)
        return out
