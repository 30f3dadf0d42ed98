"""credsim's own Parquet writer (credsim.store.pqwrite, pqencode): the encodings checked
byte for byte on the examples of Parquet's specification, and whole files against pyarrow's
writer (values read back by pyarrow and DuckDB, row-group statistics) on arbitrary tables."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credsim.store import pqencode as enc
from credsim.store.parts import footer
from credsim.store.pqwrite import Writer, supported, table_writer


def test_delta_binary_packed_bytes_computed_by_hand() -> None:
    """1..5: header (block 128, 4 miniblocks, 5 values, first value zigzag 2), one block:
    minimum delta 1 (zigzag 2), every delta minus it 0, so width 0 for the one miniblock
    used, and no packed byte."""
    got = enc.delta(np.array([1, 2, 3, 4, 5]), 64, enc.Scratch())
    assert got is not None
    assert bytes(got) == bytes([0x80, 0x01, 0x04, 0x05, 0x02, 0x02, 0, 0, 0, 0])
    # 7, 5, 3, 1, 2, 3, 4, 5: deltas -2 -2 -2 1 1 1 1, minimum -2 (zigzag 3); minus it
    # 0 0 0 3 3 3 3, width 2: 32 values of 2 bits (padded with 0) = 8 bytes,
    # 00 00 00 11 | 11 11 11 00 ... read from the lowest bit: 0xC0, 0x3F, then zeros
    got = enc.delta(np.array([7, 5, 3, 1, 2, 3, 4, 5]), 32, enc.Scratch())
    assert got is not None
    head = [0x80, 0x01, 0x04, 0x08, 0x0E, 0x03, 2, 0, 0, 0]
    assert bytes(got) == bytes(head + [0xC0, 0x3F] + [0] * 6)
    assert bytes(enc.delta(np.zeros(0, np.int64), 64, enc.Scratch())) == bytes(  # type: ignore[arg-type]
        [0x80, 0x01, 0x04, 0x00, 0x00]
    )


def test_delta_of_an_int32_column_that_overflows_32_bits_is_refused() -> None:
    """An INT32 column is decoded with 32-bit arithmetic: a delta past 2**31 cannot be stored
    (the writer falls back to PLAIN)."""
    big = np.array([-(2**31), 2**31 - 1], np.int64)
    assert enc.delta(big, 32, enc.Scratch()) is None
    assert enc.delta(big, 64, enc.Scratch()) is not None


def test_bit_packed_run_is_the_specifications_example() -> None:
    """Parquet's Encodings.md: 0..7 in 3 bits pack to 10001000 11000110 11111010."""
    head, packed = enc.bitpacked_run(np.arange(8), 3, enc.Scratch())
    assert head == b"\x03" and bytes(packed) == bytes([0b10001000, 0b11000110, 0b11111010])
    head, packed = enc.bitpacked_run(np.array([1, 0, 1]), 1, enc.Scratch())  # padded to 8
    assert head == b"\x03" and bytes(packed) == bytes([0b101])


def test_definition_levels() -> None:
    """A 4-byte length, then a run: bit-packed validity bits (the bits past the last value
    cleared), or one repeated run when every value is present or none is."""
    assert enc.levels(np.array([0xFD], np.uint8), 3, 1) == b"\x02\x00\x00\x00\x03\x05"
    assert enc.levels(None, 300, 0) == b"\x03\x00\x00\x00\xd8\x04\x01"  # 300 << 1 = 600
    assert enc.levels(None, 5, 5) == b"\x02\x00\x00\x00\x0a\x00"


def test_width() -> None:
    assert [enc.width(k) for k in (1, 2, 3, 4, 5, 256, 257)] == [1, 1, 2, 2, 3, 8, 9]


_KINDS = ("i32", "i64", "f64", "bool", "flba", "label8", "label16", "label32")
_KINDS += ("i8", "i16", "date", "str")
_INDEX = {"label8": pa.int8(), "label16": pa.int16(), "label32": pa.int32()}


@st.composite
def _tables(draw: st.DrawFn) -> tuple[pa.Table, dict[str, object]]:
    n = draw(st.integers(0, 70))
    cols: dict[str, pa.Array] = {}
    fields = []
    options: dict[str, dict[str, str] | list[str]] = {
        "compression": {},
        "column_encoding": {},
        "write_statistics": [],
        "use_dictionary": [],
    }
    for c in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(_KINDS))
        name = f"c{c}"
        nullable = draw(st.booleans())
        mask = None
        if nullable:
            p = draw(st.sampled_from([0.0, 0.3, 1.0]))
            mask = (
                np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
                if p == 0.3
                else np.full(n, p == 1.0)
            )
        arr: pa.Array
        if kind in ("i32", "i64"):
            bits = 32 if kind == "i32" else 64
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            small = draw(st.booleans())
            ints = st.integers(-50, 50) if small else st.integers(lo, hi)
            vals = np.array(draw(st.lists(ints, min_size=n, max_size=n)), np.int64)
            if draw(st.booleans()):
                vals = np.sort(vals)
            arr = pa.array(vals.astype(np.int32 if bits == 32 else np.int64), mask=mask)
            if draw(st.booleans()):
                options["column_encoding"][name] = "DELTA_BINARY_PACKED"  # type: ignore[index]
        elif kind in ("i8", "i16", "date"):  # (a dictionary when asked for and they span little)
            bits = {"i8": 8, "i16": 16, "date": 32}[kind]
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            if kind == "date":  # (days Python's dates hold: years 1 to 9999)
                lo, hi = -719_162, 2_932_896
            wide = draw(st.sampled_from([5, 300, enc.DICTIONARY_SPAN, hi]))
            ints = st.integers(max(lo, -wide), min(hi, wide))
            vals = np.array(draw(st.lists(ints, min_size=n, max_size=n)), np.int64)
            t = {"i8": pa.int8(), "i16": pa.int16(), "date": pa.int32()}[kind]
            arr = pa.array(vals, t, mask=mask)
            if kind == "date":
                arr = arr.cast(pa.date32())
            how = draw(st.sampled_from(["dictionary", "delta", "plain"]))
            if how == "dictionary":
                options["use_dictionary"].append(name)  # type: ignore[union-attr]
            elif how == "delta":
                options["column_encoding"][name] = "DELTA_BINARY_PACKED"  # type: ignore[index]
        elif kind == "str":
            text = st.text(max_size=20) | st.sampled_from(["", "320505199001011234"])
            gone = mask if mask is not None else np.zeros(n, bool)
            words = draw(st.lists(text, min_size=n, max_size=n))
            arr = pa.array([None if gone[i] else words[i] for i in range(n)], pa.string())
        elif kind == "f64":
            floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0])
            if draw(st.booleans()):  # whole numbers (scores): a dictionary when they span little
                span = draw(st.sampled_from([3, 200, enc.DICTIONARY_SPAN]))
                floats = st.integers(-span, span).map(float) | st.sampled_from([0.0, -0.0])
            arr = pa.array(
                np.array(draw(st.lists(floats, min_size=n, max_size=n)), np.float64), mask=mask
            )
            if draw(st.booleans()):
                options["column_encoding"][name] = "BYTE_STREAM_SPLIT"  # type: ignore[index]
        elif kind == "bool":
            arr = pa.array(
                np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool), mask=mask
            )
        elif kind == "flba":
            raw = draw(st.binary(min_size=4 * n, max_size=4 * n))
            gone = mask if mask is not None else np.zeros(n, bool)
            values = [None if gone[i] else raw[4 * i : 4 * i + 4] for i in range(n)]
            arr = pa.array(values, pa.binary(4))
        else:
            size = draw(st.sampled_from([1, 2, 3, 9, 130, 300]))
            names = [f"v{j}é" for j in range(size)]
            codes = np.array(
                draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n)), np.int64
            )
            index = _INDEX[kind]
            if index == pa.int8() and size > 127:
                index = pa.int16()
            arr = pa.DictionaryArray.from_arrays(pa.array(codes, index, mask=mask), pa.array(names))
            options["use_dictionary"].append(name)  # type: ignore[union-attr]
        if draw(st.booleans()):
            options["compression"][name] = "zstd"  # type: ignore[index]
        if kind in ("i32", "i64", "f64", "i8", "i16", "date") and draw(st.booleans()):
            options["write_statistics"].append(name)  # type: ignore[union-attr]
        cols[name] = arr
        fields.append(pa.field(name, arr.type, nullable or arr.null_count > 0))
    table = pa.table(cols, schema=pa.schema(fields))
    cut = draw(st.integers(0, 9))  # an offset not a multiple of 8, and several chunks
    if cut and n > cut:
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)]).slice(1)
    return table, options


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with its label columns as strings (as a Parquet reader gives them back)."""
    fields = [
        pa.field(
            f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, f.nullable
        )
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


@settings(max_examples=150, deadline=None)
@given(_tables(), st.integers(1, 40))
def test_tables_read_back_as_pyarrow_writes_them(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[pa.Table, dict[str, object]], group: int
) -> None:
    """Any table of the types handled (nulls or none, offsets, chunks, every index width,
    NaN and -0.0, integers at their bounds), with any choice of encodings, compression and
    statistics: pyarrow and DuckDB read back the values written, and each row group carries
    the statistics pyarrow's own writer gives it with the same options."""
    table, options = case
    folder = tmp_path_factory.mktemp("pq")
    ours, theirs = folder / "ours.parquet", folder / "theirs.parquet"
    w = Writer(ours, table.schema, options)
    w.write_table(table, row_group_size=group)
    w.close()
    want = _plain(table)
    arrow = pq.ParquetWriter(theirs, want.schema, **options)  # type: ignore[arg-type]
    arrow.write_table(want, row_group_size=group)
    arrow.close()
    got = pq.read_table(ours)
    assert got.schema.remove_metadata() == want.schema.remove_metadata()
    assert _rows(got.to_pylist()) == _rows(want.to_pylist())  # (NaN, -0.0 not 0.0)
    read = [duckdb.sql(f"select * from '{p}'").fetchall() for p in (ours, theirs)]
    assert _rows(read[0]) == _rows(read[1])
    a, b = pq.read_metadata(ours), pq.read_metadata(theirs)
    assert a.num_rows == b.num_rows == table.num_rows
    # (pyarrow writes an empty table as one empty row group; this writer as none)
    theirs_groups = [b.row_group(g) for g in range(b.num_row_groups) if b.row_group(g).num_rows]
    assert [a.row_group(g).num_rows for g in range(a.num_row_groups)] == [
        g.num_rows for g in theirs_groups
    ]
    for g, other in enumerate(theirs_groups):
        for c in range(a.num_columns):
            if table.schema.names[c] not in options["write_statistics"]:  # type: ignore[operator]
                continue
            sa, sb = a.row_group(g).column(c).statistics, other.column(c).statistics
            assert sa is not None and sb is not None
            assert sa.null_count == sb.null_count and sa.has_min_max == sb.has_min_max
            if sb.has_min_max:
                assert _same(sa.min, sb.min) and _same(sa.max, sb.max)


def _same(x: object, y: object) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y and math.copysign(1, x) == math.copysign(1, y)
    return x == y


def _rows(rows: list) -> list:
    """Rows (dicts or tuples) with each float as its 8 bytes: NaN equal to itself, -0.0 not
    to 0.0."""

    def norm(v: object) -> object:
        return struct.pack("<d", v) if isinstance(v, float) else v

    return [tuple(map(norm, r.values() if isinstance(r, dict) else r)) for r in rows]


def test_whole_number_floats_are_stored_with_a_dictionary(tmp_path: Path) -> None:
    """A float column to be stored BYTE_STREAM_SPLIT whose values are whole numbers within
    DICTIONARY_SPAN of each other (a point scheme's scores) is stored as a dictionary of them
    and the values' indices: read back the same; any other such column as before."""
    cases = {
        "scores": [150.0, 147.0, 150.0, 200.0, -3.0, 150.0, None],
        "fraction": [150.0, 147.5],
        "negative zero": [1.0, -0.0],
        "nan": [1.0, math.nan],
        "infinite": [1.0, math.inf],
        "too wide": [0.0, float(enc.DICTIONARY_SPAN)],
    }
    for name, values in cases.items():
        path = tmp_path / f"{name}.parquet"
        table = pa.table({"score": pa.array(values, pa.float64())})
        opts = {"compression": "zstd", "column_encoding": {"score": "BYTE_STREAM_SPLIT"}}
        w = Writer(path, table.schema, {**opts, "write_statistics": ["score"]})
        w.write_table(table, row_group_size=100)
        w.close()
        got = pq.read_table(path)
        assert _rows(got.to_pylist()) == _rows(table.to_pylist()), name
        chunk = pq.read_metadata(path).row_group(0).column(0)
        assert ("RLE_DICTIONARY" in chunk.encodings) == (name == "scores"), name
        assert ("BYTE_STREAM_SPLIT" in chunk.encodings) == (name != "scores"), name
        if name == "scores":
            assert (chunk.statistics.min, chunk.statistics.max) == (-3.0, 200.0)
            assert chunk.statistics.null_count == 1
    words, codes = enc.whole_numbers(np.array([150.0, 147.0, 150.0, 200.0, -3.0]))  # type: ignore[misc]
    assert words.tolist() == [-3.0, 147.0, 150.0, 200.0] and codes.tolist() == [2, 1, 2, 3, 0]


def test_appending_writes_the_files_offsets(tmp_path: Path) -> None:
    """A writer started on a file holding bytes writes after them, its pages at the file's
    offsets: its footer read where it ends locates them."""
    path = tmp_path / "t.parquet"
    t = pa.table({"x": np.arange(1000, dtype=np.int64)})
    w = Writer(path, t.schema, {})
    w.write_table(t, row_group_size=300)
    w.close()
    first = path.stat().st_size
    w = Writer(path, t.schema, {}, append=True)
    w.write_table(t.slice(10, 20), row_group_size=300)
    w.close()
    assert pq.read_table(path).equals(t.slice(10, 20))
    meta = footer(path, path.stat().st_size)
    assert meta.row_group(0).column(0).data_page_offset > first
    assert pq.read_table(pa.BufferReader(path.read_bytes()[:first])).equals(t)
    Writer(path, t.schema, {}).close()  # not appending: the file starts again
    assert pq.read_table(path).num_rows == 0


def test_the_opener_leaves_other_types_to_arrow(tmp_path: Path) -> None:
    plain = pa.schema([pa.field("s", pa.list_(pa.string()))])
    assert not supported(plain)
    w = table_writer(tmp_path / "s.parquet", plain)
    assert w is not None and not isinstance(w, Writer)
    w.close()
    assert table_writer.append(tmp_path / "s.parquet", plain) is None
    labels = pa.schema([pa.field("s", pa.dictionary(pa.int16(), pa.string()))])
    w = table_writer(tmp_path / "l.parquet", labels)
    assert isinstance(w, Writer)
    w.close()
    # strings given as strings: a label (stored with a dictionary) left to Arrow, an
    # identity code (no dictionary: distinct values) written here, PLAIN
    for name, ours in (("rule", False), ("code", True)):
        strings = pa.schema([pa.field(name, pa.string())])
        w = table_writer(tmp_path / f"{name}.parquet", strings)
        assert isinstance(w, Writer) is ours, name
        w.write_table(pa.table({name: ["320505199001011234", "é"]}), 10)
        w.close()
        assert pq.read_table(tmp_path / f"{name}.parquet")[name].to_pylist()[1] == "é"
    with pytest.raises(TypeError):
        Writer(tmp_path / "x.parquet", plain, {})
