"""A Parquet writer of our own for the tables a run writes as it goes (the records, the score
snapshots): the same files as Arrow's writer makes for them (the same schema, values, encodings
and compression choices, :func:`credsim.store.parquet.parquet_options`), for a fraction of its
time.

Why: Arrow's writer spent 2 to 12 ns a value on each of the records' 21 columns (about 110 ns a
record besides the digest; 13M persons make 220M records), most of it on what the encodings do
not need here: a boolean costs 5.5 ns, a delta-encoded identifier 12. This writer handles the
few column types the tables have (booleans, 32- and 64-bit integers, doubles, fixed-size
binaries and label columns given as dictionary arrays) with NumPy and two compiled loops
(:mod:`credsim.store.pqencode`), compresses with the same zstd (Arrow's codec), and writes the
Parquet metadata itself (Thrift's compact protocol, below). A table with any other column type
is written by Arrow (:data:`table_writer`).

Layout: each ``write_table`` call writes its rows as row groups of at most ``row_group_size``
rows; each column chunk is one data page (format v1: definition levels, then values; the whole
page compressed), after its dictionary page for a label column. A float column the options store
``BYTE_STREAM_SPLIT`` whose values are whole numbers close together (the scores of a point
scheme: :func:`credsim.store.pqencode.whole_numbers`) is stored with a dictionary of them
instead, the values' indices bit-packed (182M scores of a 13M run: 4.4 against 10 ns a value,
0.73 against 0.54 bytes); any other is stored as the options say. Row groups carry the same
statistics as Arrow writes for the chosen columns (minimum, maximum, null count). The file is
opened for appending (``O_APPEND``): a writer started on a file that already holds bytes (a
checkpoint's next part, :class:`credsim.store.parts.PartedFile`) writes its own magic, pages
and footer after them with the offsets of the file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim import __version__
from credsim.store import pqencode as enc
from credsim.store.parquet import as_strings, label_writer

# Thrift compact protocol types
_BOOL, _BYTE, _I16, _I32, _I64, _BIN, _LIST, _STRUCT = 1, 3, 4, 5, 6, 8, 9, 12
# Parquet enums (parquet.thrift)
_BOOLEAN, _INT32, _INT64, _DOUBLE, _FLBA, _BYTE_ARRAY = 0, 1, 2, 5, 7, 6
_PLAIN, _RLE, _DELTA, _RLE_DICT, _SPLIT = 0, 3, 5, 8, 9
_DATA_PAGE, _DICT_PAGE = 0, 2
_CODECS = {"none": 0, "zstd": 6}
_MAGIC = b"PAR1"
CREATED_BY = f"credsim version {__version__}"
"""The writer named in the files (Parquet's ``created_by``: application, ``version``, number)."""

Field = tuple[int, int, Any]


def _uleb(v: int, out: bytearray) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _struct(fields: Iterable[Field], out: bytearray) -> bytearray:
    """A Thrift struct in the compact protocol: (field id, type, value), ids ascending; a
    value of None is left out."""
    last = 0
    for fid, t, v in fields:
        if v is None:
            continue
        tt = (1 if v else 2) if t == _BOOL else t
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | tt)
        else:
            out.append(tt)
            _uleb((fid << 1) ^ (fid >> 63), out)
        last = fid
        if t != _BOOL:  # (a boolean field's value is its type)
            _value(t, v, out)
    out.append(0)
    return out


def _value(t: int, v: Any, out: bytearray) -> None:
    """A value of Thrift type ``t`` (a field's or a list element's) in the compact protocol."""
    if t in (_I16, _I32, _I64):
        _uleb((v << 1) ^ (v >> 63), out)
    elif t == _BYTE:
        out.append(v & 0xFF)
    elif t == _BIN:
        b = v.encode() if isinstance(v, str) else bytes(v)
        _uleb(len(b), out)
        out += b
    elif t == _STRUCT:
        _struct(v, out)
    elif t == _LIST:
        et, items = v
        out.append(len(items) << 4 | et if len(items) < 15 else 0xF0 | et)
        if len(items) >= 15:
            _uleb(len(items), out)
        for x in items:
            _value(et, x, out)


def _dictionary_wanted(options: dict[str, Any] | None, name: str) -> bool:
    """Whether ``options`` (Arrow's writer's: ``use_dictionary`` a flag or a list of columns,
    true unless told) give column ``name`` a dictionary."""
    use = (options or {}).get("use_dictionary", True)
    return bool(use) if isinstance(use, bool) else name in use


def supported(schema: pa.Schema, options: dict[str, Any] | None = None) -> bool:
    """Whether every column of ``schema`` is of a type this writer handles, as ``options``
    would have it stored: a string column (other than a dictionary array) only without a
    dictionary (the population's identity codes; it stores strings PLAIN)."""
    kinds = [_kind(f.type) for f in schema]
    return None not in kinds and not any(
        k == "str" and _dictionary_wanted(options, f.name)
        for f, k in zip(schema, kinds, strict=True)
    )


def _kind(t: pa.DataType) -> str | None:
    if pa.types.is_dictionary(t):
        narrow = t.index_type in (pa.int8(), pa.int16(), pa.int32())
        return "label" if pa.types.is_string(t.value_type) and narrow else None
    for name, test in (
        ("bool", pa.types.is_boolean),
        ("i8", lambda x: x == pa.int8()),
        ("i16", lambda x: x == pa.int16()),
        ("date", lambda x: x == pa.date32()),
        ("str", lambda x: x == pa.string()),
        ("i32", lambda x: x == pa.int32()),
        ("i64", lambda x: x == pa.int64()),
        ("f64", lambda x: x == pa.float64()),
        ("flba", pa.types.is_fixed_size_binary),
    ):
        if test(t):
            return name
    return None


class Opener:
    """Makes the writer of a table (``(where, schema) -> writer``, as
    :class:`credsim.store.parts.PartedFile` and the run writer ask): this module's when it
    handles every column of ``schema``, Arrow's otherwise
    (:func:`credsim.store.parquet.label_writer`)."""

    def __call__(self, where: Path | pa.NativeFile, schema: pa.Schema) -> Any:
        options = as_strings(schema)[1]
        if isinstance(where, Path) and supported(schema, options):
            return Writer(where, schema, options)
        return label_writer(where, schema)

    def append(self, path: Path, schema: pa.Schema) -> Writer | None:
        """A writer appending to ``path``, or None (a schema left to Arrow, which cannot)."""
        options = as_strings(schema)[1]
        return Writer(path, schema, options, append=True) if supported(schema, options) else None


table_writer = Opener()
"""The writer of the tables written while a run goes on, and of the records."""

_PHYSICAL = {
    "bool": _BOOLEAN,
    "i8": _INT32,
    "i16": _INT32,
    "date": _INT32,
    "str": _BYTE_ARRAY,
    "i32": _INT32,
    "i64": _INT64,
    "f64": _DOUBLE,
    "flba": _FLBA,
    "label": _BYTE_ARRAY,
}
_NUMPY: dict[str, type] = {"i8": np.int32, "i16": np.int32, "date": np.int32, "i32": np.int32}
_NUMPY |= {"i64": np.int64, "f64": np.float64}
_SMALL = ("i8", "i16", "date")
"""Kinds stored with a dictionary when the options give them one (as Arrow's writer does
with narrow integers and dates) and their values span at most DICTIONARY_SPAN."""
_LOGICAL: dict[str, list[Field]] = {
    "label": [(6, _I32, 0), (10, _STRUCT, [(1, _STRUCT, [])])],  # UTF8; STRING
    "str": [(6, _I32, 0), (10, _STRUCT, [(1, _STRUCT, [])])],
    "i8": [(6, _I32, 15), (10, _STRUCT, [(10, _STRUCT, [(1, _BYTE, 8), (2, _BOOL, True)])])],
    "i16": [(6, _I32, 16), (10, _STRUCT, [(10, _STRUCT, [(1, _BYTE, 16), (2, _BOOL, True)])])],
    "date": [(6, _I32, 6), (10, _STRUCT, [(6, _STRUCT, [])])],  # DATE; DATE
}
"""Each kind's converted type and logical type (parquet.thrift's SchemaElement 6 and 10)."""


class Writer:
    """Write a Parquet file of ``schema`` (label columns as dictionary arrays) at ``path``,
    with ``options`` as :func:`credsim.store.parquet.parquet_options` gives them (over the
    schema with the labels as strings). ``append``: after the bytes the file holds (see the
    module docstring); otherwise the file is emptied first."""

    def __init__(
        self, path: Path, schema: pa.Schema, options: dict[str, Any], *, append: bool = False
    ) -> None:
        self.schema = schema
        kinds = [_kind(f.type) for f in schema]
        if None in kinds:
            raise TypeError(f"{path}: a column type this writer does not handle: {schema}")
        self._kinds = [str(k) for k in kinds]
        names = schema.names
        comp = options.get("compression", "zstd")
        self._codec = [comp.get(c, "none") if isinstance(comp, dict) else comp for c in names]
        enc_of = options.get("column_encoding") or {}
        self._enc = [enc_of.get(c, "PLAIN") for c in names]
        self._dict = [_dictionary_wanted(options, c) for c in names]
        st = options.get("write_statistics", True)
        self._stats = [
            k in _NUMPY and (st is True or c in st) for k, c in zip(self._kinds, names, strict=True)
        ]
        self._zstd = pa.Codec("zstd")
        self._scratch = enc.Scratch()
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd = os.open(path, flags, 0o644)
        self._pos = os.fstat(self._fd).st_size
        self._groups: list[list[Field]] = []
        self._rows = 0
        self._write(_MAGIC)

    def _write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            done = os.write(self._fd, view)
            view = view[done:]
            self._pos += done

    def write_table(self, table: pa.Table, row_group_size: int) -> None:
        """Append ``table`` (the writer's columns, in order) as row groups of at most
        ``row_group_size`` rows."""
        kinds = [_kind(f.type) for f in table.schema]
        if table.schema.names != self.schema.names or kinds != self._kinds:
            raise TypeError(f"table schema differs from the writer's: {table.schema}")
        step = max(1, int(row_group_size))
        for start in range(0, table.num_rows, step):
            self._row_group(table.slice(start, step))

    def _row_group(self, group: pa.Table) -> None:
        start, chunks, total = self._pos, [], 0
        for i, f in enumerate(self.schema):
            col = group.column(i)
            if col.num_chunks != 1:
                col = col.unify_dictionaries() if self._kinds[i] == "label" else col
                col = pa.chunked_array([pa.concat_arrays(col.chunks)], col.type)
            meta, size = self._column(i, f, col.chunk(0))
            chunks.append(meta)
            total += size
        self._groups.append(
            [
                (1, _LIST, (_STRUCT, chunks)),
                (2, _I64, total),
                (3, _I64, group.num_rows),
                (5, _I64, start),
                (6, _I64, self._pos - start),
                (7, _I16, len(self._groups)),
            ]
        )
        self._rows += group.num_rows

    def _column(self, i: int, f: pa.Field, arr: pa.Array) -> tuple[list[Field], int]:
        """Write column ``i``'s chunk of a row group: (its ColumnChunk, its uncompressed
        size)."""
        kind, n, nulls = self._kinds[i], len(arr), arr.null_count
        parts: list[Any] = []
        if f.nullable:
            parts.append(enc.levels(_validity(arr) if 0 < nulls < n else None, n, nulls))
        if nulls:
            arr = pc.drop_null(arr)
        chunk_start = self._pos
        dict_offset, used, stats = None, 0, None
        encodings = {_RLE}
        whole = None
        if kind == "date":
            arr = arr.cast(pa.int32())
        if kind == "f64" and self._enc[i] == "BYTE_STREAM_SPLIT" and len(arr):
            whole = enc.whole_numbers(arr.to_numpy(zero_copy_only=False))
        elif kind in _SMALL and self._dict[i] and len(arr):
            whole = enc.small_integers(arr.to_numpy(zero_copy_only=False))
        if kind == "label" or whole is not None:
            if whole is None:
                names = arr.dictionary.to_pylist()
                words: Any = enc.plain_strings(names)
                count = len(names)
                codes = arr.indices.to_numpy(zero_copy_only=False) if len(arr) else None
            else:  # whole numbers: a score, an age, a date (a float column's as if it had one)
                words, codes = whole
                count = len(words)
            dict_offset = self._pos
            used = self._page(_DICT_PAGE, i, [words], count, _PLAIN)
            w = enc.width(count)
            parts.append(bytes([w]))
            if codes is not None:
                parts += enc.bitpacked_run(codes, w, self._scratch)
            encoding = _RLE_DICT
            encodings.add(_PLAIN)
            if whole is not None and self._stats[i]:
                stats = _minmax(whole[0]) + [(3, _I64, nulls)]
        elif kind == "bool":
            parts.append(_bits(arr))
            encoding = _PLAIN
        elif kind == "str":
            parts.append(enc.plain_byte_arrays(arr))
            encoding = _PLAIN
        elif kind == "flba":
            size = arr.type.byte_width
            buf = np.frombuffer(arr.buffers()[1], np.uint8) if len(arr) else np.zeros(0, np.uint8)
            parts.append(buf[arr.offset * size : (arr.offset + len(arr)) * size])
            encoding = _PLAIN
        else:
            values = arr.to_numpy(zero_copy_only=False)
            if self._stats[i]:
                stats = _minmax(values) + [(3, _I64, nulls)]
            encoded, encoding = self._numbers(i, kind, values)
            parts.append(encoded)
        data_offset = self._pos
        used += self._page(_DATA_PAGE, i, parts, n, encoding)
        encodings.add(encoding)
        meta: list[Field] = [
            (1, _I32, _PHYSICAL[kind]),
            (2, _LIST, (_I32, sorted(encodings))),
            (3, _LIST, (_BIN, [f.name])),
            (4, _I32, _CODECS[self._codec[i]]),
            (5, _I64, n),
            (6, _I64, used),
            (7, _I64, self._pos - chunk_start),
            (9, _I64, data_offset),
            (11, _I64, dict_offset),
            (12, _STRUCT, sorted(stats, key=lambda x: x[0]) if stats is not None else None),
        ]
        return [(2, _I64, chunk_start), (3, _STRUCT, meta)], used

    def _numbers(self, i: int, kind: str, values: np.ndarray) -> tuple[Any, int]:
        """Column ``i``'s non-null numbers encoded as its options say: (bytes, encoding).
        An INT32 column whose deltas overflow 32 bits is stored PLAIN."""
        if self._enc[i] == "DELTA_BINARY_PACKED":
            packed = enc.delta(values, 64 if kind == "i64" else 32, self._scratch)
            if packed is not None:
                return packed, _DELTA
        elif self._enc[i] == "BYTE_STREAM_SPLIT":
            return enc.byte_stream_split(values), _SPLIT
        return np.ascontiguousarray(values, _NUMPY[kind]), _PLAIN

    def _page(self, kind: int, i: int, parts: list[Any], count: int, encoding: int) -> int:
        """Write one page (its header, then ``parts`` compressed as column ``i``'s codec
        says): its uncompressed size with its header."""
        raw = parts[0] if len(parts) == 1 else b"".join(memoryview(p).cast("B") for p in parts)
        size = memoryview(raw).nbytes
        body = self._zstd.compress(raw) if self._codec[i] == "zstd" else raw
        if kind == _DICT_PAGE:
            sub: Field = (7, _STRUCT, [(1, _I32, count), (2, _I32, encoding)])
        else:
            levels = [(3, _I32, _RLE), (4, _I32, _RLE)]
            sub = (5, _STRUCT, [(1, _I32, count), (2, _I32, encoding), *levels])
        head = [(1, _I32, kind), (2, _I32, size), (3, _I32, memoryview(body).nbytes), sub]
        header = _struct(head, bytearray())
        self._write(header)
        self._write(body)
        return len(header) + size

    def close(self) -> None:
        """Write the footer and close the file."""
        if self._fd < 0:
            return
        try:
            # every column's values ordered by their type (TYPE_ORDER)
            orders: list[list[Field]] = [[(1, _STRUCT, [])] for _ in self.schema]
            meta = _struct(
                [
                    (1, _I32, 2),
                    (2, _LIST, (_STRUCT, _schema(self.schema))),
                    (3, _I64, self._rows),
                    (4, _LIST, (_STRUCT, self._groups)),
                    (6, _BIN, CREATED_BY),
                    (7, _LIST, (_STRUCT, orders)),
                ],
                bytearray(),
            )
            self._write(bytes(meta) + len(meta).to_bytes(4, "little") + _MAGIC)
        finally:
            os.close(self._fd)
            self._fd = -1


def _validity(arr: pa.Array) -> np.ndarray:
    """The validity bitmap's bytes from ``arr``'s first value on (bit i: value i)."""
    bitmap = arr.buffers()[0]
    if arr.offset % 8 == 0:
        return np.frombuffer(bitmap, np.uint8)[arr.offset // 8 :]
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return np.packbits(valid, bitorder="little")


def _bits(arr: pa.Array) -> np.ndarray:
    """PLAIN booleans (bit-packed, the first value in the lowest bit) of a null-free array."""
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint8)
    if arr.offset % 8:
        return np.packbits(arr.to_numpy(zero_copy_only=False), bitorder="little")
    first = arr.offset // 8
    data = np.frombuffer(arr.buffers()[1], np.uint8)[first : first + -(-n // 8)].copy()
    if n % 8:
        data[-1] &= (1 << (n % 8)) - 1
    return data


def _schema(schema: pa.Schema) -> list[list[Field]]:
    out: list[list[Field]] = [[(4, _BIN, "schema"), (5, _I32, len(schema))]]
    for f in schema:
        kind = _kind(f.type)
        el: list[Field] = [
            (1, _I32, _PHYSICAL[str(kind)]),
            (2, _I32, f.type.byte_width if kind == "flba" else None),
            (3, _I32, 1 if f.nullable else 0),
            (4, _BIN, f.name),
        ]
        el += _LOGICAL.get(str(kind), [])
        out.append(el)
    return out


def _minmax(values: np.ndarray) -> list[Field]:
    """Statistics' max and min (PLAIN bytes; none for no value) of non-null ``values``."""
    if not len(values):
        return []
    if values.dtype.kind == "f":
        flo, fhi, k = enc.float_range(values)
        if not k:
            return []
        lo_f, hi_f = (-0.0 if flo == 0 else float(flo)), (0.0 if fhi == 0 else float(fhi))
        pack = struct.Struct("<d").pack
        return [(5, _BIN, pack(hi_f)), (6, _BIN, pack(lo_f))]
    fmt = "<q" if values.dtype.itemsize == 8 else "<i"
    ilo, ihi = enc.int_range(values)
    lo, hi = int(ilo), int(ihi)
    hi_b, lo_b = struct.pack(fmt, hi), struct.pack(fmt, lo)
    return [(1, _BIN, hi_b), (2, _BIN, lo_b), (5, _BIN, hi_b), (6, _BIN, lo_b)]
