"""credsim-ledger-v2: packed record rows, label vocabularies, the genesis that binds them.

Expectations come from docs/integrity.md by hand (struct, hashlib, json), never from the encoder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import credsim
from credsim._manifest import record_labels
from credsim.errors import RunStoreError
from credsim.store import ledger, ledger_chain, sha_ni, write_run
from credsim.store.schema import RECORDS_CONTENT, conform
from credsim.store.verify import verify
from tiny import STRUCT_FORMAT, sha256_compress, v7_link

STRINGS = [f.name for f in RECORDS_CONTENT if f.type == pa.string()]


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tiny() -> pa.Table:
    """Three rows, one column of each kind a v2 row holds."""
    return pa.table(
        {
            "id": pa.array([7, -1, 2**40], pa.int64()),
            "flag": pa.array([True, None, False]),
            "small": pa.array([-3, 127, None], pa.int8()),
            "mid": pa.array([-300, None, 2], pa.int16()),
            "day": pa.array([dt.date(1969, 12, 31), dt.date(2024, 2, 29), None], pa.date32()),
            "x": pa.array([-0.0, None, 1.5]),
            "name": pa.array(["bé", None, "a"]),
            "tag": pa.array(["q", "q", "p"]).dictionary_encode(),
        }
    )


def test_a_tiny_table_packs_as_specified() -> None:
    vocab = {"name": ["z", "a", "bé"], "tag": ["p", "q"]}
    layout = ledger.PackedLayout.of_schema(tiny().schema, vocab, ledger.ENCODING_V6)
    assert layout.spec() == [
        "id:int64",
        "flag:bool",
        "small:int8",
        "mid:int16",
        "day:date32[day]",
        "x:double",
        "name:string:u16",
        "tag:string:u16",
    ]
    fmt = "<I q ? b h i d H H"  # mask, then each column in its width, no padding
    assert layout.size == struct.calcsize(fmt) == 4 + 8 + 1 + 1 + 2 + 4 + 8 + 2 + 2
    # nulls: bit j for column j (id is 0): row 1 flag (1), mid (3), x (5), name (6); row 2
    # small (2), day (4)
    expected = [
        struct.pack(fmt, 0, 7, True, -3, -300, -1, -0.0, 2, 1),
        struct.pack(fmt, 0b1101010, -1, False, 127, 0, 19782, 0.0, 0, 1),
        struct.pack(fmt, 0b10100, 2**40, False, 0, 2, 0, 1.5, 1, 0),
    ]
    rows = ledger.PackedEncoder(layout).encode(tiny())
    assert [r.tobytes() for r in rows] == expected
    assert expected[0][20:28] == b"\0" * 7 + b"\x80"  # -0.0: the sign bit is kept
    assert dt.date(2024, 2, 29) - dt.date(1970, 1, 1) == dt.timedelta(days=19782)
    # credsim-ledger-v7: a null column takes no bytes; each row zero up to its 64-byte block
    compact = ledger.PackedLayout.of_schema(tiny().schema, vocab)
    assert compact.encoding == ledger.ENCODING_V7 and compact.compact and compact.stride == 64
    assert compact.spec() == layout.spec() and compact.size == layout.size
    enc = ledger.PackedEncoder(compact)
    rows = enc.encode(tiny())
    want = [
        expected[0],
        struct.pack("<I q b i H", 0b1101010, -1, 127, 19782, 1),  # flag, mid, x, name: null
        struct.pack("<I q ? h d H H", 0b10100, 2**40, False, 2, 1.5, 1, 0),  # small, day
    ]
    assert [r.tobytes() for r in rows] == [w + bytes(64 - len(w)) for w in want]
    assert enc.counts.tolist() == [1, 1, 1]


def test_mask_and_code_widths() -> None:
    many = [f"v{i}" for i in range(70_000)]
    t = pa.table({"a": pa.array(["v69999", "v1"]), "b": pa.array([1, 2], pa.int32())})
    layout = ledger.PackedLayout.of_schema(t.schema, {"a": many}, ledger.ENCODING_V6)
    assert layout.spec() == ["a:string:u32", "b:int32"] and layout.size == 4 + 4 + 4
    rows = ledger.PackedEncoder(layout).encode(t)
    assert rows[0].tobytes() == struct.pack("<IIi", 0, 69_999, 1)
    assert ledger.PackedLayout.of_schema(t.schema, {"a": many[:65_535]}).spec()[0].endswith("u16")
    assert ledger.PackedLayout.of_schema(t.schema, {"a": many[:65_536]}).spec()[0].endswith("u32")
    wide = pa.table({f"c{i}": pa.array([i], pa.int8()) for i in range(33)})
    layout = ledger.PackedLayout.of_schema(wide.schema, {}, ledger.ENCODING_V6)
    assert layout.fields[0] == ("nulls", "uint64", 0, 8) and layout.size == 8 + 33
    assert ledger.PackedEncoder(layout).encode(wide)[0].tobytes() == struct.pack(
        "<Q" + "b" * 33, 0, *range(33)
    )
    with pytest.raises(RunStoreError, match="at most 64"):
        ledger.PackedLayout.of_schema(pa.table({f"c{i}": [1] for i in range(65)}).schema, {})


def test_spec_round_trip_and_malformed_specs() -> None:
    spec = ["id:int64", "name:string:u16", "when:date32[day]"]
    vocab = {"name": ["x", "y"]}
    layout = ledger.PackedLayout.parse(spec, vocab)
    assert layout.spec() == spec and layout.size == 4 + 8 + 2 + 4
    for bad_spec, bad_vocab in [
        (["name:string"], vocab),  # a v1 spec: no code width
        (["name:string:u8"], vocab),
        (["id:int64:u16"], {}),
        (["id:decimal"], {}),
        ("id:int64", {}),
        (spec, {"name": ["x", "x"]}),  # a value twice
        (spec, {}),  # no vocabulary for name
        (spec, {**vocab, "id": []}),  # a vocabulary for a column that is no string
        (spec, ["x"]),
        (["name:string:u16"], {"name": [f"{i}" for i in range(65_536)]}),  # too many for u16
    ]:
        with pytest.raises(RunStoreError):
            ledger.PackedLayout.parse(bad_spec, bad_vocab)


def test_vocabularies_take_the_labels_then_the_unseen_values_sorted() -> None:
    values = ["b", None, "a", "é", "B", "z", "b"]
    given = {"s": ["z", "a", "z", "unused"]}  # a repeat is dropped; unused labels stay
    expected = ["z", "a", "unused", "B", "b", "é"]  # then by UTF-8 bytes: B < b < é
    plain = pa.table({"s": pa.array(values)})
    assert ledger.vocabularies(given, plain, ["s"]) == {"s": expected}
    as_dict = pa.table({"s": pa.array(values).dictionary_encode()})
    assert ledger.vocabularies(given, as_dict, ["s"]) == {"s": expected}
    chunked = pa.table({"s": pa.chunked_array([values[:3], values[3:]])})
    assert ledger.vocabularies(given, chunked, ["s"]) == {"s": expected}
    assert ledger.vocabularies({}, plain, ["s"]) == {"s": ["B", "a", "b", "z", "é"]}
    assert ledger.vocabularies(given, None, ["s", "t"]) == {"s": ["z", "a", "unused"], "t": []}
    # a dictionary whose unused entries lie outside the labels adds nothing for them
    ix = pa.array([0, 0], pa.int32())
    unused = pa.table({"s": pa.DictionaryArray.from_arrays(ix, pa.array(["a", "never"]))})
    assert ledger.vocabularies(given, unused, ["s"]) == {"s": ["z", "a", "unused"]}


def test_dictionary_codes_outside_the_labels_extend_the_vocabulary() -> None:
    names = ["x", "y", "w"]
    codes = pa.array([2, None, 0], pa.int8())  # as the engine builds its label columns
    t = pa.table({"s": pa.DictionaryArray.from_arrays(codes, pa.array(names))})
    assert ledger.vocabularies({"s": ["y", "x"]}, t, ["s"]) == {"s": ["y", "x", "w"]}
    layout = ledger.PackedLayout.of_schema(t.schema, {"s": ["y", "x", "w"]}, ledger.ENCODING_V6)
    rows = ledger.PackedEncoder(layout).encode(t)
    assert [r.tobytes() for r in rows] == [
        struct.pack("<IH", 0, 2),
        struct.pack("<IH", 1, 0),
        struct.pack("<IH", 0, 1),
    ]
    # an int8 index of a dictionary of 128 names: its nulls (at code 128) still encode
    many = [f"n{i:03d}" for i in range(128)]
    wide = pa.DictionaryArray.from_arrays(pa.array([127, None, 0], pa.int8()), pa.array(many))
    t = pa.table({"s": wide})
    layout = ledger.PackedLayout.of_schema(t.schema, {"s": many}, ledger.ENCODING_V6)
    rows = ledger.PackedEncoder(layout).encode(t)
    plain = ledger.PackedEncoder(layout).encode(pa.table({"s": wide.cast(pa.string())}))
    assert np.array_equal(rows, plain)
    assert [r.tobytes() for r in rows] == [
        struct.pack("<IH", 0, 127),
        struct.pack("<IH", 1, 0),  # null: its bit set, code 0
        struct.pack("<IH", 0, 0),
    ]


def test_sealer_vocabularies_genesis_and_chain_by_hand() -> None:
    from test_store import manifest, tables

    records = conform("records", tables()["records"])
    m = {**manifest(), "labels": {"status": ["pending", "accepted"], "item": ["speeding"]}}
    sealer = ledger.Sealer(m)
    sealed = sealer.add("records", records)
    lg = sealer.ledger()
    vocab = lg["vocabularies"]
    assert set(vocab) == set(STRINGS)
    assert vocab["status"] == ["pending", "accepted", "overturned_on_appeal", "rejected_in_review"]
    assert vocab["item"] == ["speeding", "court-default", "noise", "unpaid-fine", "volunteering"]
    assert vocab["error"] == ["data_entry", "false_report", "misidentification"]
    basis = {
        "scheme_sha256": "ab" * 32,
        "seed": 42,
        "columns": lg["columns"],
        "vocabularies": vocab,
    }
    assert lg["encoding"] == "credsim-ledger-v7"  # compact rows; 4 bytes of each digest stored
    genesis = hashlib.sha256(b"credsim-ledger-v7\0" + _json(basis)).digest()
    assert lg["genesis"] == genesis.hex()
    first = records.slice(0, 1).to_pylist()[0]  # record 1: speeding, accepted, no error, ...
    row = struct.pack(  # v7: error, cause_record, review_day, appeal_day, import_row and
        # excused are null: no bytes
        "<I q i i i i H H H H d d H ? H ?",
        (1 << 14) | (1 << 15) | (1 << 16) | (1 << 17) | (1 << 19) | (1 << 20),
        1,
        5,
        5,
        0,
        0,
        vocab["item"].index("speeding"),
        vocab["behaviour"].index("speeding"),
        vocab["channel"].index("camera"),
        vocab["source_agency"].index("traffic-police"),
        -5.0,
        -5.0,
        vocab["status"].index("accepted"),
        True,
        vocab["basis"].index("behaviour"),
        False,
    )
    assert first["error"] is None and first["excused"] is None and len(row) == 58
    # v7: SHA-256's compression function over the row and 6 zero bytes, from the genesis
    digest = v7_link(genesis, row)
    assert sealed.column("digest")[0].as_py() == digest[:4]
    assert lg["records"] == records.num_rows
    second = records.slice(1, 1).to_pylist()[0]
    assert second["record_id"] == first["record_id"] + 1  # (its row differs from the first's)
    enc = ledger.PackedEncoder(sealer.layout)
    rows = enc.encode(records.slice(0, 2))
    assert rows.shape == (2, 128)  # room for the longest row (81 bytes): two blocks
    assert rows[0].tobytes() == row + bytes(70) and enc.counts.tolist() == [1, 1]
    link = sha256_compress(digest, rows[1, :64].tobytes())
    assert sealed.column("digest")[1].as_py() == link[:4]


def test_a_row_longer_than_a_block_takes_two_by_hand() -> None:
    """credsim-ledger-v7: a record with no null column is 81 bytes, compressed as two blocks
    (the row, then 47 zero bytes) from the digest before; a record with a few nulls takes
    two blocks still when it is longer than 64 bytes, from the digest before."""
    from test_store import tables

    records = conform("records", tables()["records"]).slice(0, 3)
    full = {
        "error": pa.array(["data_entry"] * 3),
        "cause_record": pa.array([11, 12, 13], pa.int64()),
        "review_day": pa.array([4, 5, 6], pa.int32()),
        "appeal_day": pa.array([7, 8, 9], pa.int32()),
        "import_row": pa.array([1, 2, 3], pa.int32()),
        "excused": pa.array([False, True, False]),
    }
    for name, values in full.items():
        i = records.schema.get_field_index(name)
        records = records.set_column(i, records.schema.field(i), values)
    nulls = pa.array([None] * 3, pa.int32())
    last = records.slice(
        2, 1
    ).set_column(  # the third record: no review day
        records.schema.get_field_index("review_day"), records.schema.field("review_day"), nulls[:1]
    )
    records = pa.concat_tables([records.slice(0, 2), last])
    sealer = ledger.Sealer({"seed": 9})
    sealed = sealer.add("records", records)
    lg = sealer.ledger()
    vocab = lg["vocabularies"]
    prev = bytes.fromhex(lg["genesis"])
    for k, rec in enumerate(records.to_pylist()):
        nulls_mask, parts = 0, []
        for j, spec in enumerate(lg["columns"]):
            name, t, *code = spec.split(":")
            v = rec[name]
            if v is None:
                nulls_mask |= 1 << j
            elif t == "string":
                parts.append(struct.pack("<H", vocab[name].index(v)))
            else:
                fmt = "<" + STRUCT_FORMAT[t]
                parts.append(
                    struct.pack(fmt, v.toordinal() - 719163 if t.startswith("date") else v)
                )
        row = struct.pack("<I", nulls_mask) + b"".join(parts)
        assert len(row) == [81, 81, 69][k]  # the third: no review day, behaviour day, actor
        prev = sha256_compress(prev, row + bytes(128 - len(row)))  # two blocks either way
        assert sealed.column("digest")[k].as_py() == prev[:4]
    assert lg["head"] == prev.hex()
    enc = ledger.PackedEncoder(sealer.layout)
    enc.encode(records)
    assert enc.counts.tolist() == [2, 2, 2]
    assert verify_records_only(sealed, lg)


def verify_records_only(sealed: pa.Table, lg: dict) -> bool:
    """The chain recomputed by the verifier's path (encode, then chain the blocks) matches."""
    enc = ledger.PackedEncoder(ledger.PackedLayout.parse(lg["columns"], lg["vocabularies"]))
    rows = enc.encode(sealed.drop_columns(["digest"]))
    digests = ledger.chain_blocks(rows, enc.counts, bytes.fromhex(lg["genesis"]))
    tags = [d[:4].tobytes() for d in digests]
    return tags == sealed.column("digest").to_pylist() and digests[-1].tobytes().hex() == lg["head"]


def test_sealer_refuses_a_label_first_seen_after_the_vocabularies_were_fixed() -> None:
    from test_store import tables

    records = conform("records", tables()["records"])
    sealer = ledger.Sealer({"seed": 1})
    list(sealer.records(records.slice(0, 4), 10))
    later = records.slice(4, 2)  # record 6: item "volunteering", not seen in the first four
    with pytest.raises(RunStoreError, match="outside the ledger's vocabularies.*volunteering"):
        list(sealer.records(later, 10))


def test_sealer_refuses_malformed_labels() -> None:
    with pytest.raises(RunStoreError, match="'labels'"):
        ledger.Sealer({"labels": {"item": "speeding"}})
    with pytest.raises(RunStoreError, match="'labels'"):
        ledger.Sealer({"labels": ["item"]})
    ledger.Sealer({"labels": ["item"]}, encoding=ledger.ENCODING_V1)  # v1 does not use them


def test_empty_records_seal_the_labels() -> None:
    sealer = ledger.Sealer({"seed": 3, "labels": {"status": ["pending"]}})
    sealer.add("records", RECORDS_CONTENT.empty_table())
    lg = sealer.ledger()
    assert lg["records"] == 0 and lg["head"] == lg["genesis"]
    assert lg["vocabularies"] == {name: ["pending"] if name == "status" else [] for name in STRINGS}


def test_record_labels_name_every_value_the_records_hold() -> None:
    res = credsim.simulate("suzhou", population=1500, days=60, seed=5, scenarios=["favouritism"])
    sim = res.simulation
    assert sim is not None
    got = record_labels(sim)
    assert list(got) == STRINGS and got == res.manifest["labels"]
    records = res.tables["records"]
    for name in STRINGS:
        held = set(records.column(name).drop_null().to_pylist())
        assert held <= set(got[name]), name
    assert "officials" in got["source_agency"]


def test_a_hand_built_run_without_labels_verifies(tmp_path: Path) -> None:
    from test_store import manifest, tables

    out = write_run(tmp_path / "r", tables(), manifest())
    assert verify(out).ok
    m = json.loads((out / "manifest.json").read_text())
    assert "labels" not in m
    vocab = m["ledger"]["vocabularies"]
    assert vocab["channel"] == ["agency", "app", "association", "camera", "informant"]
    assert all(v == sorted(v) for v in vocab.values())


def _random_values(layout: ledger.PackedLayout, n: int, seed: int) -> np.ndarray:
    """(fields, n) uint64 with every bit random: the kernels keep each field's width only."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**63, (len(layout.fields), n), dtype=np.uint64) * np.uint64(2) + (
        rng.integers(0, 2, (len(layout.fields), n), dtype=np.uint64)
    )


def _generic(layout: ledger.PackedLayout, vals: np.ndarray, prev: np.ndarray) -> np.ndarray:
    from credsim.store import ledger_packed as lp

    enc = lp.PackedEncoder(layout)
    out = np.empty((vals.shape[1], 32), np.uint8)
    fast = ledger_chain._fast()
    lp._pack_chain_kernel(vals, *enc._place, layout.size, layout.split, prev, out, *fast)
    rows = np.empty((vals.shape[1], enc._words), np.uint64)
    lp._pack_kernel(vals, *enc._place, rows)
    by_hand = ledger.chain_py(rows.view(np.uint8)[:, : layout.size], prev.tobytes(), layout.split)
    assert np.array_equal(out, by_hand)  # the generic kernel: SHA-256 of the packed rows
    return out


@pytest.mark.skipif(not ledger.fast_path(), reason="no OpenSSL library for the Numba chain")
def test_the_standard_kernel_is_the_standard_layouts_and_chains_as_the_generic_one() -> None:
    from credsim.store import ledger_packed as lp
    from credsim.store import ledger_packed_gen as gen
    from credsim.store import ledger_packed_std as std

    layout = lp.PackedLayout.of_schema(
        RECORDS_CONTENT, gen.standard_layout().vocabularies, ledger.ENCODING_V6
    )
    assert std.SPEC == layout.spec() and std.SIZE == layout.size == 81
    assert layout.split == 64  # v4: the previous digest after the row's first 64 bytes
    assert lp.PackedEncoder(layout)._standard  # every run's records take it
    v3 = lp.PackedLayout.of_schema(RECORDS_CONTENT, layout.vocabularies, ledger.ENCODING_V3)
    assert v3.spec() == layout.spec() and v3.split == 0  # the same rows, chained as in v2
    prev = np.arange(32, dtype=np.uint8)
    for seed, lay in enumerate([layout, layout, v3]):
        vals = _random_values(lay, 5_000, seed)
        out = np.empty((vals.shape[1], 32), np.uint8)
        std.pack_chain(vals, prev, out, lay.split, *ledger_chain._fast())
        assert np.array_equal(out, _generic(lay, vals, prev))


@pytest.mark.skipif(not ledger.fast_path(), reason="no OpenSSL library for the Numba chain")
def test_a_kernel_generated_for_another_layout_chains_as_the_generic_one() -> None:
    """A label column of more than 65,535 values takes uint32 codes: another layout, which
    the generic kernel chains; the generator gives the same digests for it too."""
    from credsim.store import ledger_packed as lp
    from credsim.store import ledger_packed_gen as gen

    vocab = {name: [] for name in STRINGS}
    vocab["item"] = [f"item-{i}" for i in range(70_000)]
    layout = lp.PackedLayout.of_schema(RECORDS_CONTENT, vocab)
    assert "item:string:u32" in layout.spec() and layout.size == 83
    assert not lp.PackedEncoder(layout)._standard
    namespace: dict[str, object] = {}
    exec(gen.kernel_source(layout).replace("cache=True", "cache=False"), namespace)  # noqa: S102
    vals = _random_values(layout, 3_000, 7)
    prev = np.full(32, 9, np.uint8)
    out = np.empty((vals.shape[1], 32), np.uint8)
    pack_chain = namespace["pack_chain"]
    pack_chain(vals, prev, out, layout.split, *ledger_chain._fast())  # type: ignore[operator]
    assert np.array_equal(out, _generic(layout, vals, prev))


# -- the chain with the CPU's SHA extensions (credsim.store.sha_ni) ---------------------------

needs_sha = pytest.mark.skipif(
    not sha_ni.available(81), reason="this CPU has no SHA extensions (OpenSSL chains instead)"
)


@needs_sha
@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(0, 300),
    n=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    v4=st.booleans(),
)
def test_the_sha_extensions_chain_and_link_as_hashlib(
    size: int, n: int, seed: int, v4: bool
) -> None:
    """Every row size (one to six compression blocks with the previous digest): the chain
    and the independent links equal SHA-256 by hashlib over prev || row (v2, v3) or, in v4,
    over the row's whole 64-byte blocks, then prev, then the rest of the row (for a row
    shorter than a block: prev || row)."""
    split = ledger.chain_split(ledger.ENCODING_V4 if v4 else ledger.ENCODING_V3, size)
    assert split == (64 * (size // 64) if v4 else 0)
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, sha_ni.width(size, split)), np.uint8)
    rows[:, :size] = rng.integers(0, 256, (n, size), dtype=np.uint8)
    prev = rng.integers(0, 256, 32, dtype=np.uint8)
    want = []
    p = prev.tobytes()
    for row in rows[:, :size]:
        p = hashlib.sha256(row[:split].tobytes() + p + row[split:].tobytes()).digest()
        want.append(p)
    out = np.empty((n, 32), np.uint8)
    sha_ni.chain(rows, size, prev, out, split)
    assert [bytes(d) for d in out] == want
    prevs = np.vstack([prev, out[:-1]])
    links = np.empty((n, 32), np.uint8)
    sha_ni.links(rows, size, prevs, links, split)
    assert [bytes(d) for d in links] == want
    # the ledger's own entry points widen rows of exactly ``size`` bytes themselves
    exact = rows[:, :size].copy()
    assert [bytes(d) for d in ledger.chain(exact, prev.tobytes(), split=split)] == want
    assert [bytes(d) for d in ledger.links(exact, prevs, split=split)] == want
    assert [bytes(d) for d in ledger.chain_py(exact, prev.tobytes(), split)] == want


@needs_sha
def test_sha_extension_rows_must_be_wide_enough() -> None:
    rows = np.zeros((2, 81), np.uint8)  # 96 bytes are read
    with pytest.raises(ValueError, match="at least 96 bytes"):
        sha_ni.chain(rows, 81, np.zeros(32, np.uint8), np.empty((2, 32), np.uint8))


@needs_sha
@pytest.mark.parametrize("uint32_codes", [False, True], ids=["standard", "uint32-codes"])
@pytest.mark.parametrize("encoding", ["credsim-ledger-v4", "credsim-ledger-v3"])
def test_the_encoder_chains_with_the_sha_extensions_as_openssl_does(
    uint32_codes: bool, encoding: str
) -> None:
    """The sealer's path (rows built a chunk at a time, then chained with the SHA extensions)
    against OpenSSL's kernel and hashlib over the packed rows: the standard layout (its
    generated kernel) and one with uint32 codes (the generic kernel), each batch continuing
    the chain of the one before, batches shorter and longer than a chunk."""
    from credsim.store import ledger_packed as lp

    vocab = {name: [] for name in STRINGS}
    if uint32_codes:
        vocab["item"] = [f"item-{i}" for i in range(70_000)]
    layout = lp.PackedLayout.of_schema(RECORDS_CONTENT, vocab, encoding)
    enc = lp.PackedEncoder(layout)
    assert enc._standard is not uint32_codes
    link = sha_ni.chain_function(layout.size, layout.split)
    prev = np.arange(32, dtype=np.uint8)
    for n in (1, 2, 50, lp.CHUNK, lp.CHUNK + 1, 3_000):
        vals = _random_values(layout, n, n)
        want = _generic(layout, vals, prev)
        got, head = np.empty((n, 32), np.uint8), np.empty(32, np.uint8)
        enc._rows_chain(vals, prev.copy(), got, head, link)
        assert np.array_equal(got, want) and np.array_equal(head, want[-1])
        for w in (ledger.TAG_BYTES, 8):  # what records store (since v6; in v3 to v5)
            tags = np.empty((n, w), np.uint8)
            enc._rows_chain(vals, prev.copy(), tags, head, link)
            assert np.array_equal(tags, want[:, :w]) and np.array_equal(head, want[-1])
        prev = want[-1].copy()


@needs_sha
def test_a_run_sealed_with_the_sha_extensions_is_the_run_sealed_with_openssl(
    tmp_path: Path, monkeypatch
) -> None:
    """A whole run, its records streamed to the folder: the same head and table digests
    either way."""
    heads = []
    monkeypatch.setattr(ledger, "ENCODING", ledger.ENCODING_V6)  # (v7 uses neither)
    for enabled in (True, False):
        monkeypatch.setattr(sha_ni, "ENABLED", enabled)
        out = credsim.run("suzhou", 800, 60, 2, tmp_path / f"sha-{enabled}").path
        m = json.loads((out / "manifest.json").read_text())
        heads.append((m["ledger"]["head"], m["table_digests"]))
        assert verify(out).ok
    assert heads[0] == heads[1]
