"""The fast write path stores exactly what the simple one did.

The record encoders read Arrow buffers with Numba kernels, the writer chains the records in
groups and writes each row group while the next is chained, with per-column Parquet options,
and the label columns are built with a ``take``. None of that may change a stored value or a
digest: here every canonical row is compared with a slow reference encoder (struct and
hashlib, after docs/integrity.md; ``credsim-ledger-v3``, ``-v2`` and ``-v1``), the v1 chain
head of a fixed synthetic table with the head the code before these changes gave, and every
table read back with the table given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import credsim
from credsim.engine.output import _dictionary, _labels, _nullable
from credsim.engine.records import BASIS, ERRORS, STATUS
from credsim.schemes.compile import ALL_CHANNELS
from credsim.store import ledger, write_run
from credsim.store.reader import RunStore
from credsim.store.schema import RECORDS_CONTENT, SCHEMAS, conform
from credsim.store.verify import verify
from tiny import STRUCT_FORMAT, v7_link

# Head of the v1 chain over synthetic_records(5000) sealed with MANIFEST, computed with the
# encoder and writer as they were before the fast path (commit 582d537).
MANIFEST: dict[str, Any] = {"seed": 1, "scheme": {"sha256": "ab" * 32}}
HEAD_BEFORE = "145b2bb1e4dddbf81f4162eef1f1ffdacfabde4e48afe4920af53f57173b24e7"
V1 = ledger.ENCODING_V1

_WORD = {"bool": "q", "int8": "q", "int16": "q", "int32": "q", "int64": "q", "double": "d"}


def _mask(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return rng.random(n) < p


def synthetic_records(n: int, seed: int = 3) -> pa.Table:
    """A records table (the content schema) with nulls, negatives, NaN and -0.0, unicode."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {}
    for f in RECORDS_CONTENT:
        t = str(f.type)
        null = _mask(rng, n, 0.3) if f.nullable else None
        if f.name == "record_id":
            arr = pa.array(np.arange(10, 10 + n, dtype=np.int64))
        elif t == "string":
            vocab = {
                "channel": ALL_CHANNELS,
                "status": STATUS,
                "basis": BASIS,
                "error": ERRORS,
            }.get(f.name, ["a", "bé", "", "行为", "x" * 40])
            codes = rng.integers(0, len(vocab), n)
            arr = pa.array([vocab[c] for c in codes], pa.string(), mask=null)
        elif t == "bool":
            arr = pa.array(rng.random(n) < 0.5, mask=null)
        elif t == "double":
            v = rng.normal(0, 100, n)
            v[::7] = np.nan
            v[1::11] = -0.0
            arr = pa.array(v, mask=null)
        else:
            dtype = f.type.to_pandas_dtype()
            info = np.iinfo(dtype)
            v = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
            arr = pa.array(v, f.type, mask=null)
        cols[f.name] = arr
    return pa.Table.from_pydict(cols, schema=RECORDS_CONTENT)


def reference_row(rec: dict[str, Any], layout: ledger.RecordLayout) -> bytes:
    """docs/integrity.md with struct and hashlib only."""
    nulls, parts = 0, []
    for j, (name, t) in enumerate(layout.columns):
        v = rec[name]
        if v is None:
            nulls |= 1 << j
        if t == "string":
            parts.append(bytes(16) if v is None else hashlib.sha256(v.encode()).digest()[:16])
            continue
        if v is None:
            v = 0
        elif isinstance(v, dt.date):
            v = (v - dt.date(1970, 1, 1)).days
        parts.append(struct.pack("<" + _WORD.get(t, "q"), v))
    return struct.pack("<Q", nulls) + b"".join(parts)


def reference_rows(table: pa.Table) -> np.ndarray:
    layout = ledger.RECORD_LAYOUT
    data = b"".join(reference_row(r, layout) for r in table.to_pylist())
    return np.frombuffer(data, np.uint8).reshape(table.num_rows, layout.size)


_NATURAL = STRUCT_FORMAT


def reference_row_v2(
    rec: dict[str, Any],
    columns: list[str],
    vocabularies: dict[str, list[str]],
    compact: bool = False,
) -> bytes:
    """docs/integrity.md (credsim-ledger-v2) with struct only: ``columns`` as in the manifest's
    ``ledger.columns``; ``compact``: as in credsim-ledger-v7, a null column takes no bytes."""
    nulls, fmt, values = 0, "", []
    for j, spec in enumerate(columns):
        name, t, *code = spec.split(":")
        v = rec[name]
        if v is None:
            nulls |= 1 << j
            if compact:
                continue
        if t == "string":
            fmt += {"u16": "H", "u32": "I"}[code[0]]
            values.append(0 if v is None else vocabularies[name].index(v))
            continue
        fmt += _NATURAL[t]
        if v is None:
            v = 0
        elif isinstance(v, dt.date):
            v = (v - dt.date(1970, 1, 1)).days
        values.append(v)
    return struct.pack("<" + ("I" if len(columns) <= 32 else "Q") + fmt, nulls, *values)


def reference_rows_v2(table: pa.Table, ledger_section: dict[str, Any]) -> np.ndarray:
    columns, vocab = ledger_section["columns"], ledger_section["vocabularies"]
    data = [reference_row_v2(r, columns, vocab) for r in table.to_pylist()]
    size = len(reference_row_v2(table.slice(0, 1).to_pylist()[0], columns, vocab))
    return np.frombuffer(b"".join(data), np.uint8).reshape(table.num_rows, size)


def v2_layout(table: pa.Table, labels: dict[str, list[str]] | None = None) -> Any:
    """The v2 layout a sealer gives ``table`` (vocabularies: ``labels``, then what it holds)."""
    strings = [f.name for f in table.schema if f.type == pa.string()]
    vocab = ledger.vocabularies(labels or {}, table, strings)
    return ledger.PackedLayout.of_schema(table.schema, vocab, ledger.ENCODING_V6)


def _section(layout: Any) -> dict[str, Any]:
    return {"columns": layout.spec(), "vocabularies": layout.vocabularies}


@pytest.mark.parametrize("start,length", [(0, 2000), (37, 1500), (1999, 1)])
def test_encoder_rows_match_the_reference(start: int, length: int) -> None:
    table = synthetic_records(2000).slice(start, length)  # sliced: arrays with an offset
    expected = reference_rows(table)
    enc = ledger.RecordEncoder()
    assert np.array_equal(enc.encode(table), expected)
    batch = table.combine_chunks().to_batches()[0]  # a record batch
    assert np.array_equal(enc.encode(batch), expected)
    strings = [f.name for f in RECORDS_CONTENT if f.type == pa.string()]
    as_dict = table.combine_chunks()
    for name in strings:  # dictionary strings, as verify reads them
        i = as_dict.schema.get_field_index(name)
        as_dict = as_dict.set_column(i, name, as_dict.column(name).dictionary_encode())
    assert np.array_equal(enc.encode(as_dict), expected)


def _nullable_all_null(table: pa.Table) -> pa.Table:
    """``table`` with every nullable records column entirely null."""
    for f in RECORDS_CONTENT:
        if f.nullable:
            i = table.schema.get_field_index(f.name)
            table = table.set_column(i, f, pa.nulls(table.num_rows, f.type))
    return table


def test_encoder_all_null_and_empty_columns() -> None:
    table = _nullable_all_null(synthetic_records(50))
    assert np.array_equal(ledger.RecordEncoder().encode(table), reference_rows(table))
    assert ledger.RecordEncoder().encode(table.slice(0, 0)).shape == (0, ledger.RECORD_LAYOUT.size)


def test_chain_head_is_unchanged_and_independent_of_groups() -> None:
    table = synthetic_records(5000)
    sealed = ledger.Sealer(MANIFEST, encoding=V1).add("records", table)
    assert sealed.schema.remove(sealed.schema.get_field_index("digest")) == RECORDS_CONTENT
    assert sealed.schema.field("digest").type == pa.binary(32)  # whole digests before v3
    assert sealed.column("digest")[-1].as_py().hex() == HEAD_BEFORE
    prev = ledger.genesis(MANIFEST, V1)
    digests = sealed.column("digest").to_pylist()
    for row, digest in zip(reference_rows(table), digests, strict=True):
        prev = hashlib.sha256(prev + row.tobytes()).digest()
        assert prev == digest
    for group in (1, 333, 4096, 10_000):
        sealer = ledger.Sealer(MANIFEST, encoding=V1)
        digests = np.concatenate([d for _, d in sealer.records(table, group)])
        assert digests[-1].tobytes().hex() == HEAD_BEFORE
        assert sealer.ledger()["head"] == HEAD_BEFORE
        assert sealer.ledger()["contiguous_ids"] is True
        assert sealer.ledger()["first_record_id"] == 10


@pytest.mark.parametrize("gap_at", [1, 1000, 2999, 4999])
def test_a_gap_in_the_record_ids_is_noticed_in_any_group(
    gap_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger says the ids run first, first + 1, ... only when they do: one id skipped
    at the second record, at a batch's first, in its middle or at the very end, the records chained
    in batches of 1,000 and groups that cut through them."""
    monkeypatch.setattr(ledger, "BATCH_ROWS", 1000)
    table = synthetic_records(5000)
    ids = np.arange(10, 5010)
    ids[gap_at:] += 1
    gapped = table.set_column(0, "record_id", pa.array(ids))
    for group, t, contiguous in [(5000, table, True), (5000, gapped, False), (777, gapped, False)]:
        sealer = ledger.Sealer(MANIFEST)
        for _ in sealer.records(t, group):
            pass
        lg = sealer.ledger()
        assert lg["contiguous_ids"] is contiguous and lg["first_record_id"] == 10
        assert sealer.state()["next_record_id"] == int(t.column("record_id")[-1].as_py()) + 1


@pytest.mark.parametrize("start,length", [(0, 2000), (37, 1500), (1999, 1)])
def test_v2_encoder_rows_match_the_reference(start: int, length: int) -> None:
    whole = synthetic_records(2000)
    layout = v2_layout(whole, {"channel": ALL_CHANNELS, "status": STATUS})
    assert layout.vocabularies["status"] == STATUS and layout.size == 81
    assert layout.vocabularies["item"] == sorted(["a", "bé", "", "行为", "x" * 40])
    table = whole.slice(start, length)
    expected = reference_rows_v2(table, _section(layout))
    enc = ledger.PackedEncoder(layout)
    assert np.array_equal(enc.encode(table), expected) and enc.unknown is None
    batch = table.combine_chunks().to_batches()[0]
    assert np.array_equal(enc.encode(batch), expected)
    as_dict = table.combine_chunks()
    for i, f in enumerate(as_dict.schema):
        if f.type == pa.string():  # dictionaries as verify reads them (in another order)
            values = as_dict.column(i).chunk(0)
            order = pa.array(sorted(set(values.drop_null().to_pylist()))[::-1], pa.string())
            ix = pc.index_in(values, value_set=order)
            as_dict = as_dict.set_column(i, f.name, pa.DictionaryArray.from_arrays(ix, order))
    assert np.array_equal(enc.encode(as_dict), expected)


def test_v2_encoder_all_null_and_empty_columns() -> None:
    table = _nullable_all_null(synthetic_records(50))
    layout = v2_layout(table)
    assert layout.vocabularies["error"] == [] and layout.vocabularies["status"] == sorted(STATUS)
    enc = ledger.PackedEncoder(layout)
    assert np.array_equal(enc.encode(table), reference_rows_v2(table, _section(layout)))
    assert enc.encode(table.slice(0, 0)).shape == (0, 81)


@pytest.mark.parametrize(
    ("encoding", "stored"), [("credsim-ledger-v3", 8), ("credsim-ledger-v2", 32)]
)
def test_v2_chain_matches_hashlib_and_is_independent_of_groups(encoding: str, stored: int) -> None:
    """The packed rows' chain (v3 stores 8 bytes of each digest, v2 all 32)."""
    table = synthetic_records(5000)
    sealer = ledger.Sealer(MANIFEST, encoding=encoding)
    sealed = sealer.add("records", table)
    lg = sealer.ledger()
    assert lg["encoding"] == encoding
    basis = {"scheme_sha256": "ab" * 32, "seed": 1, **_section(v2_layout(table))}
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    prev = hashlib.sha256(encoding.encode() + b"\0" + text.encode()).digest()
    assert prev.hex() == lg["genesis"]
    assert sealed.schema.field("digest").type == pa.binary(stored)
    digests = sealed.column("digest").to_pylist()
    for row, digest in zip(reference_rows_v2(table, lg), digests, strict=True):
        prev = hashlib.sha256(prev + row.tobytes()).digest()
        assert prev[:stored] == digest
    assert prev.hex() == lg["head"]
    for group in (1, 333, 4096, 10_000):
        again = ledger.Sealer(MANIFEST, encoding=encoding)
        got = np.concatenate([d for _, d in again.records(table, group)])
        assert got.shape == (5000, stored) and got[-1].tobytes() == prev[:stored]
        assert again.ledger() == lg


def test_labels_match_a_dictionary_cast() -> None:
    rng = np.random.default_rng(0)
    for names in (["a", "bé", "", "xyz"], ["person", "organization"], [""], ["x" * 40, "y"]):
        # random codes, and every column of one value (built from the bytes, not taken)
        cases = [rng.integers(-1, len(names), n) for n in (0, 1, 5, 1000)]
        cases += [np.full(n, k) for n in (1, 7, 1000) for k in range(-1, len(names))]
        for codes in cases:
            for dtype in (np.int8, np.int32, np.int64):
                c = codes.astype(dtype)
                ix = pa.array(np.where(c == -1, 0, c).astype(np.int32), mask=c == -1)
                expected = pa.DictionaryArray.from_arrays(ix, pa.array(names)).cast(pa.string())
                got = _labels(c, names)
                got.validate(full=True)
                assert got.type == pa.string() and got.equals(expected)
    for bad in ([0, 2], [2, 2], [-2, -2]):  # outside the names, of one value or not
        with pytest.raises(IndexError):
            _labels(np.array(bad), ["a", "b"])


def test_dictionary_and_nullable_arrays_match_arrow_built_ones() -> None:
    rng = np.random.default_rng(1)
    for names in (["a", "bé", "", "xyz"], ["x"]):
        for n in (0, 1, 5, 1000):
            for codes in (rng.integers(-1, len(names), n), np.full(n, -1), np.full(n, 0)):
                for dtype in (np.int8, np.int16, np.int32, np.int64):
                    c = codes.astype(dtype)
                    got = _dictionary(c, names)
                    got.validate(full=True)
                    # narrow codes are the indices as they are; wider ones become int32
                    narrow = np.dtype(dtype).itemsize <= 4
                    assert got.indices.type == pa.from_numpy_dtype(dtype if narrow else np.int32)
                    assert got.cast(pa.string()).equals(_labels(c, names))
                    assert got.null_count == int((c == -1).sum())
                    plain = _nullable(c)
                    plain.validate(full=True)
                    assert plain.equals(pa.array(c, mask=c == -1))
    assert _nullable(np.array([3, -1], np.int32), type_=pa.int64()).to_pylist() == [3, None]
    for bad in ([0, 2], [2, 2], [-2, 0]):
        with pytest.raises(IndexError, match="outside the 2 names"):
            _dictionary(np.array(bad, np.int8), ["a", "b"])
    with pytest.raises(ValueError, match="repeated label names"):  # pandas: unique categories
        _dictionary(np.array([0, 1], np.int8), ["a", "a"])


def _hand_label_digest(values: list[str | None], version: int, name: str = "grade") -> str:
    """A one-column string table's content digest, computed as docs/integrity.md words it:
    credsim-table-v2 (BLAKE3): validity bits (row i: bit i % 8 of byte i // 8), int32 byte
    lengths (0 for null), the UTF-8 bytes of the present values; v1 (SHA-256): a validity byte
    a row, int64 lengths, the same bytes."""
    raw = [v.encode() if v is not None else b"" for v in values]
    if version == 2:
        h: Any = blake3.blake3
        bits = bytes(
            sum(1 << k for k, v in enumerate(values[i : i + 8]) if v is not None)
            for i in range(0, len(values), 8)
        )
        streams = (bits, b"".join(struct.pack("<i", len(r)) for r in raw), b"".join(raw))
    else:
        h = hashlib.sha256
        streams = (
            bytes(v is not None for v in values),
            b"".join(struct.pack("<q", len(r)) for r in raw),
            b"".join(raw),
        )
    v = str(version).encode()
    col = h(b"credsim-column-v" + v + b"\0" + name.encode() + b"\0" + b"string\0")
    col.update(len(values).to_bytes(8, "little"))
    col.update(b"".join(h(x).digest() for x in streams))
    table = h(b"credsim-table-v" + v + b"\0t\0" + (1).to_bytes(4, "little"))
    table.update(col.digest())
    return str(table.hexdigest())


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.integers(-1, 3), max_size=60),
    st.integers(0, 60),
    st.sampled_from([np.int8, np.int16, np.int32, np.int64]),
    st.integers(1, 3),
)
def test_label_columns_digest_from_their_codes_as_their_strings(
    codes: list[int], start: int, dtype: type, chunks: int
) -> None:
    """A label column kept as a dictionary (the population's labels, the scores' grade) is
    digested from its codes: the digest is the strings' digest, by hand and by the generic
    path, for slices, chunks, index widths, nulls, empty and non-ASCII words."""
    words = ["AAA", "bé", "", "数据"]
    c = np.array(codes, dtype)
    whole = _dictionary(c, words)
    part = whole.slice(min(start, len(c)))
    cut = [part.slice(i * len(part) // chunks, len(part) // chunks) for i in range(chunks)]
    if chunks > 1:  # the chunks cover the part: the rest goes into the last one
        cut[-1] = part.slice((chunks - 1) * (len(part) // chunks))
    column = pa.chunked_array(cut, part.type)
    schema = pa.schema([pa.field("grade", pa.string())])
    values = column.to_pylist()
    for version in (2, 1):
        got = ledger.table_digest("t", pa.table({"grade": column}), schema, version)
        strings = pa.table({"grade": column.cast(pa.string())})
        plain = ledger.table_digest("t", strings, schema, version)
        assert got == plain == _hand_label_digest(values, version), version


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), max_size=70),
    st.lists(st.integers(1, 20), max_size=8),
)
def test_table_v2_digest_by_hand_whatever_the_batches(
    values: list[int | None], cuts: list[int]
) -> None:
    """credsim-table-v2 of a nullable int32 column, by hand (BLAKE3; validity bits, row i at
    bit i % 8 of byte i // 8; values little-endian, nulls as 0; no data), equals the hasher's
    whatever batches the rows come in: batches of any length carry their last bits over."""
    schema = pa.schema([pa.field("n", pa.int32(), nullable=True)])
    table = pa.table({"n": pa.array(values, pa.int32())}, schema=schema)
    hasher = ledger.TableHasher("t", schema)
    at = 0
    for k in [*cuts, len(values)]:
        hasher.update(table.slice(at, k))
        at += k
        if at >= len(values):
            break
    bits = bytes(
        sum(1 << k for k, v in enumerate(values[i : i + 8]) if v is not None)
        for i in range(0, len(values), 8)
    )
    fixed = b"".join(struct.pack("<i", v or 0) for v in values)
    col = blake3.blake3(b"credsim-column-v2\0n\0int32\0" + len(values).to_bytes(8, "little"))
    col.update(b"".join(blake3.blake3(x).digest() for x in (bits, fixed, b"")))
    want = blake3.blake3(b"credsim-table-v2\0t\0" + (1).to_bytes(4, "little") + col.digest())
    assert hasher.hexdigest() == want.hexdigest() == ledger.table_digest("t", table, schema)


def test_label_column_digest_refuses_an_index_outside_its_words() -> None:
    bad = pa.DictionaryArray.from_arrays(pa.array([0, 5], pa.int32()), pa.array(["a"]), safe=False)
    schema = pa.schema([pa.field("grade", pa.string())])
    with pytest.raises(credsim.errors.RunStoreError, match="outside its 1 values"):
        ledger.table_digest("t", pa.table({"grade": bad}), schema)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pa.Table]]:
    result = credsim.simulate("nanjing", population=1500, days=45, seed=4)
    out = tmp_path_factory.mktemp("speed") / "run"
    write_run(out, result.tables, result.manifest)
    return out, result.tables


def test_written_tables_read_back_as_given(small_run: tuple[Path, dict[str, pa.Table]]) -> None:
    out, tables = small_run
    store = RunStore(out)
    store.verify()
    assert verify(out).ok
    for name, table in tables.items():
        got = pq.read_table(out / f"{name}.parquet")
        expected = conform(name, table)
        if name == "records":
            got = got.drop_columns(["digest"])
            assert pq.read_schema(out / "records.parquet") == SCHEMAS["records"]
        assert got.schema == expected.schema, name
        assert got.equals(expected), name
        if name != "records":  # (the records' digest derives from the chain, checked below)
            digests = json.loads((out / "manifest.json").read_text())["table_digests"]
            assert ledger.table_digest(name, expected) == digests[name], name


def test_written_chain_matches_the_reference(small_run: tuple[Path, dict[str, pa.Table]]) -> None:
    out, _ = small_run
    m = json.loads((out / "manifest.json").read_text())
    records = pq.read_table(out / "records.parquet")
    prev = bytes.fromhex(m["ledger"]["genesis"])
    assert m["ledger"]["vocabularies"] == m["labels"]
    assert m["ledger"]["encoding"] == "credsim-ledger-v7"
    columns, vocab = m["ledger"]["columns"], m["ledger"]["vocabularies"]
    digests = records.column("digest").to_pylist()
    for rec, digest in zip(records.drop_columns(["digest"]).to_pylist(), digests, strict=True):
        prev = v7_link(prev, reference_row_v2(rec, columns, vocab, compact=True))
        assert prev[:4] == digest  # the tag
    assert prev.hex() == m["ledger"]["head"]


def test_label_columns_are_dictionaries_of_the_engine_codes() -> None:
    result = credsim.simulate("nanjing", population=400, days=30, seed=2)
    records = result.tables["records"]
    sim = result.simulation
    assert sim is not None
    part = conform("records", records, dictionaries=True).slice(5, 200)
    names_of = [f.name for f in RECORDS_CONTENT if f.type == pa.string()]
    engine = {"item": "item", "channel": "channel", "status": "status", "basis": "basis"}
    for name in names_of:
        arr = part.column(name).chunk(0)
        if RECORDS_CONTENT.field(name).nullable:  # strings (numpy would misread a null code)
            assert arr.type == pa.string(), name
            continue
        assert pa.types.is_dictionary(arr.type), name
        assert arr.dictionary.to_pylist() == result.manifest["labels"][name], name
        codes = sim.records.view(engine[name])[5:205]  # the engine's codes, as they are
        assert np.array_equal(arr.indices.to_numpy(zero_copy_only=False), codes), name
    for table in ("records", "population", "scores"):  # numpy reads every label as it is
        t = result.tables[table]
        for f in SCHEMAS[table]:
            if f.type == pa.string() and f.name != "code":
                got = t.column(f.name).to_numpy(zero_copy_only=False).tolist()
                assert got == t.column(f.name).to_pylist(), (table, f.name)
    copy = pa.Table.from_pylist(part.to_pylist(), schema=RECORDS_CONTENT)  # strings
    assert copy.equals(conform("records", part))
    rows = ledger.RecordEncoder().encode(part).copy()
    assert np.array_equal(rows, ledger.RecordEncoder().encode(copy))
    assert np.array_equal(rows, reference_rows(copy))
    # v2: the dictionaries are the vocabulary's (the labels), their codes taken as they are
    layout = v2_layout(copy, result.manifest["labels"])
    assert layout.vocabularies == result.manifest["labels"]
    rows = ledger.PackedEncoder(layout).encode(part).copy()
    assert np.array_equal(rows, ledger.PackedEncoder(layout).encode(copy))
    assert np.array_equal(rows, reference_rows_v2(copy, _section(layout)))


def test_records_needing_casts_are_conformed_first(
    small_run: tuple[Path, dict[str, pa.Table]], tmp_path: Path
) -> None:
    out, tables = small_run
    rec = tables["records"]
    i = rec.schema.get_field_index("day")
    cast = rec.set_column(i, "day", rec.column("day").cast(pa.int64()))  # conform casts back
    again = write_run(tmp_path / "again", {**tables, "records": cast}, _manifest(out))
    RunStore(again).verify()
    assert verify(again).ok
    first = json.loads((out / "manifest.json").read_text())
    second = json.loads((again / "manifest.json").read_text())
    assert second["ledger"] == first["ledger"]
    assert second["table_digests"] == first["table_digests"]
    got = pq.read_table(again / "records.parquet")
    assert got.equals(pq.read_table(out / "records.parquet"))


def _manifest(out: Path) -> dict[str, Any]:
    """The manifest a run was written from (without what the writer adds)."""
    m = json.loads((out / "manifest.json").read_text())
    added = ("complete", "tables", "created", "ledger", "table_digests", "field_digests")
    return {k: v for k, v in m.items() if k not in (*added, "manifest_digest")}


def test_records_built_with_a_column_aside_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from credsim.engine import output

    result = credsim.simulate("nanjing", population=400, days=30, seed=2)
    sim = result.simulation
    assert sim is not None
    monkeypatch.setattr(output, "SPLIT_ROWS", 1)  # the first string column on a second thread
    aside = output.records_table(sim)
    monkeypatch.setattr(output, "SPLIT_ROWS", 10**12)  # every column on this thread
    together = output.records_table(sim)
    assert aside.num_rows > 0 and aside.equals(together)
    assert aside.equals(result.tables["records"])
