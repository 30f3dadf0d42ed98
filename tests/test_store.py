"""Run store: writing, reading, SQL and the summary, on a tiny hand-built run.

The fixture run (:func:`tables`, :func:`manifest`) is small enough to count by hand; the
expected numbers in these tests (and in ``test_explain.py``) come from the comments below.

Population: 0 (person, household 0, employed by 3), 1 (person, household 0), 2 (person,
household 1, not enrolled), 3 (organisation). 3 of 4 enrolled.
Records (9): accepted 1, 2, 4, 5, 6, 8 (6); rejected_in_review 3; overturned_on_appeal 7;
pending 9. Accepted truthful: 1, 4, 6 (3); wrongful: 2 misidentification, 5 association,
8 data_entry (3).
Lists: court-defaulters (3, still listed, truthful trigger 4), traffic-blacklist (0, ended,
trigger 2 wrongful), honest-volunteers (2, red, still listed, trigger 6).
Latest scores: 0 -> 970 B, 1 -> 997.5 A, 3 -> 950 C: mean 972.5, median 970.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credsim.errors import QueryError, RunExistsError, RunStoreError
from credsim.store import (
    SCHEMAS,
    RunStore,
    conform,
    format_table,
    query,
    summarize,
    write_run,
)
from credsim.store.dictcodes import label_streams, used_values

CODE_0 = "110101199003074578"
CODE_1 = "11010119880512457X"
CODE_2 = "320102200101011234"
CODE_3 = "91110108MA01ABCD2X"

REC_COLS = ["record_id", "day", "behaviour_day", "entity_id", "actor_id", "item", "behaviour",
            "channel", "source_agency", "points", "applied", "status", "truthful", "basis",
            "error", "cause_record", "review_day", "appeal_day", "appealed"]
RECORDS = [
    (1, 5, 5, 0, 0, "speeding", "speeding", "camera", "traffic-police", -5.0, -5.0,
     "accepted", True, "behaviour", None, None, None, None, False),
    (2, 10, 9, 0, 2, "speeding", "speeding", "camera", "traffic-police", -5.0, -5.0,
     "accepted", False, "behaviour", "misidentification", None, None, None, False),
    (3, 12, None, 1, None, "noise", "noise", "informant", "neighbourhood-committee", -10.0, 0.0,
     "rejected_in_review", False, "false_report", "false_report", None, 15, None, False),
    (4, 20, 18, 3, 3, "court-default", "court-default", "agency", "court", -50.0, -50.0,
     "accepted", True, "behaviour", None, None, 21, None, False),
    (5, 10, None, 1, 0, "speeding", None, "association", None, -2.5, -2.5,
     "accepted", False, "association", None, 1, None, None, False),
    (6, 40, 40, 2, 2, "volunteering", "volunteering", "app", "civil-affairs", 5.0, 0.0,
     "accepted", True, "behaviour", None, None, None, None, False),
    (7, 50, None, 1, None, "noise", "noise", "informant", "neighbourhood-committee", -10.0, 0.0,
     "overturned_on_appeal", False, "false_report", "false_report", None, 51, 60, True),
    (8, 55, 54, 0, 1, "unpaid-fine", "unpaid-fine", "agency", "tax-bureau", -20.0, -20.0,
     "accepted", False, "behaviour", "data_entry", None, None, 70, True),
    (9, 89, 88, 3, 3, "court-default", "court-default", "agency", "court", -50.0, 0.0,
     "pending", True, "behaviour", None, None, None, None, False),
]


def tables() -> dict[str, pa.Table]:
    """The fixture run's tables, with loose types (int64, plain lists) that conform() casts."""
    born = [dt.date(1990, 3, 7), dt.date(1988, 5, 12), dt.date(2001, 1, 1), None]
    population = pa.table({
        "entity_id": [0, 1, 2, 3],
        "kind": ["person", "person", "person", "organization"],
        "code": [CODE_0, CODE_1, CODE_2, CODE_3],
        "district": ["dongcheng", "dongcheng", "xuanwu", "dongcheng"],
        "group": ["local", "local", "migrant", None],
        "sex": ["female", "male", "female", None],
        "age": [34, 36, 23, None],
        "birth_date": born,
        "income_decile": [5, 7, 2, None],
        "household_id": [0, 0, 1, None],
        "employer_id": [3, None, None, None],
        "enrolled": [True, True, False, True],
    })
    records = pa.table({c: [r[i] for r in RECORDS] for i, c in enumerate(REC_COLS)})
    scores = pa.table({
        "entity_id": [0, 0, 0, 0, 1, 1, 3, 3, 3],
        "day": [0, 10, 55, 89, 0, 89, 0, 20, 89],
        "score": [1000.0, 990.0, 970.0, 970.0, 1000.0, 997.5, 1000.0, 950.0, 950.0],
        "grade": ["A", "A", "B", "B", "A", "A", "A", "C", "C"],
    })
    lists = pa.table({
        "entity_id": [3, 0, 2],
        "list": ["court-defaulters", "traffic-blacklist", "honest-volunteers"],
        "kind": ["black", "black", "red"],
        "start_day": [21, 10, 40],
        "end_day": [None, 40, None],
        "rule": ["one court-default record", "two speeding records within 365 days",
                 "one volunteering record"],
        "trigger_record": [4, 2, 6],
        "end_reason": [None, "expired", None],
        "published": [True, False, True],
    })
    measures = pa.table({
        "entity_id": [3, 0, 0, 1, 0],
        "measure": ["no-subsidies", "consumption-ban", "no-plane", "no-plane", "deposit-waiver"],
        "kind": ["other", "consumption_restriction", "travel_ban_plane", "travel_ban_plane",
                 "deposit_waiver"],
        "reward": [False, False, False, False, True],
        "start_day": [21, 21, 10, 10, 0],
        "end_day": [None, None, 40, 40, None],
        "cause": ["own", "association", "own", "association", "own"],
        "via_entity": [3, 3, 0, 0, 0],
        "trigger": ["list:court-defaulters", "list:court-defaulters", "list:traffic-blacklist",
                    "list:traffic-blacklist", "enrolled"],
    })
    friendships = pa.table({"entity_id": [0, 2], "friend_id": [2, 0]})
    return {"population": population, "records": records, "scores": scores, "lists": lists,
            "measures": measures, "friendships": friendships}


def manifest() -> dict:
    """The fixture run's manifest, as the engine would hand it to the writer."""
    item = {"name": "Speeding", "points": -5, "source": "traffic-law"}
    return {
        "credsim_version": "0.1.0",
        "scheme": {"id": "testville", "name": "Testville Honesty Points", "sha256": "ab" * 32,
                   "path": "schemes/testville.yaml"},
        "seed": 42, "population": 3, "organizations": 1, "days": 90,
        "counts": {"records": 9},
        "timings": {"population": 0.25, "simulate": 1.5, "write": 0.25},
        "assumptions": [
            {"path": "behaviours.speeding.rate", "value": 1.0, "assumption": "a guess"},
            {"path": "items.noise.points", "value": -10, "assumption": "no published value"},
        ],
        "sources": {"traffic-law": {"title": "Road Traffic Safety Law", "url": "http://x"}},
        "rules": {
            "items": {
                "speeding": item,
                "noise": {"name": "Noise nuisance", "points": -10,
                          "assumption": "no published value"},
                "court-default": {"name": "Court judgment defaulted", "points": -50,
                                  "source": "traffic-law"},
                "unpaid-fine": {"name": "Unpaid fine", "points": -20, "source": "traffic-law"},
                "volunteering": {"name": "Volunteering", "points": 5, "assumption": "guess"},
            },
            "lists": {
                "court-defaulters": {"name": "Dishonest judgment defaulters", "kind": "black",
                                     "rule": "one court-default record", "published": True,
                                     "provenance": "traffic-law"},
                "traffic-blacklist": {"name": "Traffic blacklist", "kind": "black",
                                      "rule": "two speeding records", "published": False,
                                      "provenance": "assumption"},
            },
            "measures": {
                "consumption-ban": {"name": "High-consumption ban", "kind":
                                    "consumption_restriction", "reward": False,
                                    "trigger": "list:court-defaulters", "provenance": "x"},
                "no-plane": {"name": "No plane tickets", "kind": "travel_ban_plane",
                             "reward": False, "trigger": "list:traffic-blacklist",
                             "provenance": "x"},
            },
            "score": {"base": 1000, "min": 0, "max": 1100, "grades": [
                {"grade": "D", "min": 0}, {"grade": "C", "min": 900},
                {"grade": "B", "min": 960}, {"grade": "A", "min": 980}]},
        },
    }


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", tables(), manifest())


def test_write_and_read_back(run: Path) -> None:
    store = RunStore(run)
    m = store.manifest
    assert m["complete"] is True
    assert dt.datetime.fromisoformat(m["created"]).tzinfo is not None
    assert m["seed"] == 42 and m["scheme"]["id"] == "testville"
    assert set(m["tables"]) == set(SCHEMAS) == set(store.tables)
    expected_rows = {"population": 4, "records": 9, "scores": 9, "lists": 3, "measures": 5,
                     "friendships": 2}
    for name, rows in expected_rows.items():
        table = store.table(name)
        assert table.schema.equals(SCHEMAS[name], check_metadata=False), name
        assert table.num_rows == rows == m["tables"][name]["rows"]
        digest = blake3.blake3(store.path(name).read_bytes()).hexdigest()  # since ledger v5
        assert m["tables"][name]["blake3"] == digest
    assert store.table("records").column("record_id").to_pylist() == list(range(1, 10))
    assert store.table("population").column("birth_date")[0].as_py() == dt.date(1990, 3, 7)
    store.verify()
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]


def test_identifiers_delta_encoded_and_read_back_by_duckdb(run: Path) -> None:
    """Integer identifiers are stored delta-encoded, uncompressed; other columns zstd, labels
    with a dictionary. Arrow and DuckDB (what the audit queries with) read the same values
    back."""
    duckdb = pytest.importorskip("duckdb")
    meta = pq.ParquetFile(run / "records.parquet").metadata
    chunks = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i)
              for i in range(meta.num_columns)}
    for name in ("record_id", "entity_id", "actor_id", "cause_record"):
        assert "DELTA_BINARY_PACKED" in chunks[name].encodings, name
        assert chunks[name].compression == "UNCOMPRESSED", name
    assert chunks["points"].compression == "ZSTD"
    assert "DELTA_BINARY_PACKED" not in chunks["points"].encodings
    # labels get a dictionary, wide numbers none (zstd alone)
    assert "RLE_DICTIONARY" in chunks["behaviour"].encodings
    assert "RLE_DICTIONARY" not in chunks["points"].encodings
    assert "RLE_DICTIONARY" not in chunks["day"].encodings
    for name in ("records", "population", "scores"):
        path = (run / f"{name}.parquet").as_posix()
        got = duckdb.sql(f"SELECT entity_id FROM read_parquet('{path}')").fetchall()
        assert [r[0] for r in got] == pq.read_table(path).column("entity_id").to_pylist()
    records = (run / "records.parquet").as_posix()
    ids = duckdb.sql(f"SELECT record_id FROM read_parquet('{records}')")
    assert [r[0] for r in ids.fetchall()] == list(range(1, 10))


def test_manifest_not_mutated_and_numpy_values_saved(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    m = manifest()
    m["seed"] = np.int64(7)
    m["timings"]["nan"] = float("nan")
    before = json.dumps(m, default=str)
    out = write_run(tmp_path / "r", tables(), m)
    assert json.dumps(m, default=str) == before and "complete" not in m
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["seed"] == 7 and saved["timings"]["nan"] is None


def test_friendships_optional_and_empty_scores(tmp_path: Path) -> None:
    t = tables()
    del t["friendships"]
    t["scores"] = t["scores"].slice(0, 0)
    store = RunStore(write_run(tmp_path / "r", t, manifest()))
    assert "friendships" not in store.tables and store.table("scores").num_rows == 0
    assert "no scores" in summarize(store)


def test_refuses_existing_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match="already exists"):
        write_run(out, tables(), manifest())
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_existing_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert RunStore(write_run(tmp_path / "run", tables(), manifest())).manifest["complete"]


def test_missing_column_leaves_nothing_behind(tmp_path: Path) -> None:
    t = tables()
    t["lists"] = t["lists"].drop_columns(["rule"])
    with pytest.raises(RunStoreError, match=r"'lists'.*missing column\(s\) rule"):
        write_run(tmp_path / "run", t, manifest())
    assert list(tmp_path.iterdir()) == []


def test_failure_after_files_written_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def broken_rename(src: object, dst: object) -> None:
        raise OSError("disk fell off")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError, match="disk fell off"):
        write_run(tmp_path / "run", tables(), manifest())
    assert list(tmp_path.iterdir()) == []


def test_conform_errors() -> None:
    t = tables()
    with pytest.raises(RunStoreError, match="unexpected column"):
        conform("scores", t["scores"].append_column("extra", pa.array([1] * 9)))
    with pytest.raises(RunStoreError, match="cannot convert"):
        conform("scores", t["scores"].set_column(1, "day", pa.array([2**40] * 9)))
    with pytest.raises(RunStoreError, match="null value"):
        conform("scores", t["scores"].set_column(2, "score", pa.array([None] * 9, pa.float64())))
    with pytest.raises(RunStoreError, match="unknown value"):
        conform("lists", t["lists"].set_column(2, "kind", pa.array(["grey"] * 3)))
    with pytest.raises(RunStoreError, match="unknown table"):
        conform("nope", t["scores"])
    reordered = t["scores"].select(["grade", "score", "day", "entity_id"])
    assert conform("scores", reordered).schema.equals(SCHEMAS["scores"])


def test_conform_keeps_dictionary_labels_and_checks_the_values_used() -> None:
    lists = tables()["lists"]
    words = pa.array(["grey", "black", "red"])
    kinds = pa.DictionaryArray.from_arrays(pa.array([1, 1, 2]), words)
    kept = conform("lists", lists.set_column(2, "kind", kinds), dictionaries=True)
    assert pa.types.is_dictionary(kept.schema.field("kind").type)  # not cast to strings
    assert kept.column("kind").to_pylist() == ["black", "black", "red"]
    assert kept.schema.field("kind").nullable == SCHEMAS["lists"].field("kind").nullable
    assert conform("lists", lists.set_column(2, "kind", kinds)).equals(conform("lists", lists))
    used = pa.DictionaryArray.from_arrays(pa.array([1, 0, 2]), words)
    with pytest.raises(RunStoreError, match=r"unknown value\(s\) \['grey'\]"):
        conform("lists", lists.set_column(2, "kind", used), dictionaries=True)
    gaps = pa.DictionaryArray.from_arrays(pa.array([1, None, 2]), words)
    with pytest.raises(RunStoreError, match="null value"):
        conform("lists", lists.set_column(2, "kind", gaps), dictionaries=True)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=0, max_size=40),
    st.integers(0, 39),
    st.sampled_from([pa.int8(), pa.int16(), pa.int32(), pa.int64()]),
    st.integers(1, 3),
)
def test_used_values_are_the_valid_rows_dictionary_values(
    codes: list[int | None], start: int, index_type: pa.DataType, chunks: int
) -> None:
    """The values a dictionary column uses, read from its index buffers with the validity
    bitmap at any offset (slices), in any index width and over several chunks, are those of
    its valid rows; a null row's index (here pointing at 'grey') never counts."""
    words = pa.array(["grey", "black", "red", "white", "green"])
    start = min(start, len(codes))
    whole = pa.DictionaryArray.from_arrays(pa.array(codes, index_type), words)
    part = whole.slice(start)
    cut = [part.slice(i * len(part) // chunks, len(part) // chunks) for i in range(chunks)]
    column = pa.chunked_array(cut, part.type)
    expect = {v for chunk in cut for v in chunk.to_pylist() if v is not None}
    assert set(used_values(column)) == expect
    # a null row whose index is not even in range is skipped too
    values = pa.py_buffer(np.array([1, 9], index_type.to_pandas_dtype()).tobytes())
    valid = pa.py_buffer(bytes([0b01]))  # row 1 null, its index 9 outside the dictionary
    indices = pa.Array.from_buffers(index_type, 2, [valid, values], null_count=1)
    nulled = pa.DictionaryArray.from_arrays(indices, words)
    assert used_values(pa.chunked_array([nulled])) == ["black"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(max_size=30), min_size=1, max_size=6, unique=True),
    st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=0, max_size=60),
    st.integers(0, 9),
)
def test_label_streams_are_those_of_the_strings(
    words: list[str], codes: list[int | None], start: int
) -> None:
    """The streams a table digest takes from a dictionary column (validity, byte lengths,
    the present rows' UTF-8 bytes one after the other) are those of the strings it stands for,
    whatever the words' lengths (empty, longer than 8 or 16 bytes, not ASCII), nulls and
    offset."""
    codes = [None if c is None else c % len(words) for c in codes]
    column = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(words))
    column = column.slice(min(start, len(codes)))
    strings = column.to_pylist()
    valid, lengths, data = label_streams(column)
    assert valid.tolist() == [int(v is not None) for v in strings]
    assert lengths.tolist() == [len(v.encode()) if v is not None else 0 for v in strings]
    assert data.tobytes() == b"".join(v.encode() for v in strings if v is not None)


def test_used_values_refuses_an_index_outside_the_dictionary() -> None:
    words = pa.array(["black", "red"])
    bad = pa.DictionaryArray.from_arrays(pa.array([0, 2], pa.int32()), words, safe=False)
    with pytest.raises(RunStoreError, match="outside its 2 values"):
        used_values(pa.chunked_array([bad]))
    # without nulls (the codes read into a register's bits): past the end, negative, or 64
    # on (which the bits' shift would wrap onto a word used) in any index width
    for index_type in (pa.int8(), pa.int16(), pa.int64()):
        for code in (2, -1, 64, 65):
            bad = pa.DictionaryArray.from_arrays(
                pa.array([1, code, 0], index_type), words, safe=False
            )
            with pytest.raises(RunStoreError, match="outside its 2 values"):
                used_values(pa.chunked_array([bad]))


def test_missing_table_and_bad_runs(tmp_path: Path) -> None:
    t = tables()
    del t["records"]
    with pytest.raises(RunStoreError, match="missing table"):
        write_run(tmp_path / "run", t, manifest())
    with pytest.raises(RunStoreError, match="no run folder"):
        RunStore(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    with pytest.raises(RunStoreError, match="no manifest.json"):
        RunStore(tmp_path / "half")
    (tmp_path / "half" / "manifest.json").write_text('{"complete": false}')
    with pytest.raises(RunStoreError, match="incomplete"):
        RunStore(tmp_path / "half")


def test_verify_detects_tampering(run: Path) -> None:
    pq.write_table(pq.read_table(run / "lists.parquet").slice(0, 1), run / "lists.parquet")
    with pytest.raises(RunStoreError, match="lists.parquet has changed"):
        RunStore(run).verify()


def test_query_counts(run: Path) -> None:
    got = query(run, "SELECT status, count(*) AS n FROM records GROUP BY status ORDER BY status")
    assert got.to_pydict() == {
        "status": ["accepted", "overturned_on_appeal", "pending", "rejected_in_review"],
        "n": [6, 1, 1, 1]}
    wrong = query(run, "SELECT count(*) AS n FROM records WHERE status = 'accepted' "
                       "AND NOT truthful")
    assert wrong.column("n").to_pylist() == [3]
    joined = query(run, 'SELECT p."group", count(*) AS n FROM records r JOIN population p '
                        'USING (entity_id) GROUP BY 1 ORDER BY 1 NULLS LAST')
    assert joined.to_pydict() == {"group": ["local", "migrant", None], "n": [6, 1, 2]}
    assert query(run, "SELECT count(*) AS n FROM friendships").column("n").to_pylist() == [2]


def test_query_error(run: Path) -> None:
    with pytest.raises(QueryError, match="nosuch"):
        query(run, "SELECT nosuch FROM records")
    with pytest.raises(QueryError):
        query(run, "SELEC 1")


def test_format_table() -> None:
    t = pa.table({"name": ["a", "bbbb", None], "n": [1, 22, 333], "x": [0.5, 1.0, None]})
    text = format_table(t)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "n", "x"]
    assert lines[3] == "bbbb   22     1"
    assert lines[4].startswith("null  333  null")
    assert lines[-1] == "(3 rows)"
    short = format_table(t, max_rows=2)
    assert "3 rows; showing the first 2, 1 omitted" in short and "333" not in short


def test_summary_numbers(run: Path) -> None:
    text = summarize(run)
    assert "Testville Honesty Points (testville)" in text
    assert "3 persons, 1 organisation (synthetic)" in text
    assert "90 days, random seed 42" in text
    assert "3 of 4 entities (75.0%): 2 of 3 persons, 1 of 1 organisation" in text
    lines = text.splitlines()

    def line(start: str) -> list[str]:
        return next(x.split() for x in lines if x.strip().startswith(start))

    assert line("accepted")[-2:] == ["6", "66.7%"]
    assert line("rejected in review")[-2:] == ["1", "11.1%"]
    assert line("overturned on appeal")[-2:] == ["1", "11.1%"]
    assert line("pending review")[-2:] == ["1", "11.1%"]
    assert line("truthful")[-2:] == ["3", "50.0%"]
    assert line("wrongful (no such")[-2:] == ["3", "50.0%"]
    assert line("misidentification")[-2:] == ["1", "16.7%"]
    assert line("data-entry error")[-2:] == ["1", "16.7%"]
    assert line("someone else's deduction")[-2:] == ["1", "16.7%"]
    # list: entered, listed at end, wrongful (share), published
    assert line("Traffic blacklist")[-5:] == ["1", "0", "1", "(100.0%)", "0"]
    assert line("Dishonest judgment defaulters")[-5:] == ["1", "1", "0", "(0.0%)", "1"]
    assert line("honest-volunteers")[-5:] == ["1", "1", "0", "(0.0%)", "1"]
    # measure: imposed, own, someone else's, in force at end, entities
    assert line("No plane tickets")[-5:] == ["2", "1", "1", "0", "2"]
    assert line("High-consumption ban")[-5:] == ["1", "0", "1", "1", "1"]
    assert line("deposit-waiver")[-6:] == ["reward", "1", "1", "0", "1", "1"]
    assert "last day 89; 3 entities" in text
    stats = lines[lines.index(next(x for x in lines if x.split()[:2] == ["mean", "min"])) + 1]
    assert stats.split() == ["972.5", "950", "954", "960", "970", "983.75", "992", "997.5"]
    first = lines.index(next(x for x in lines if "grade" in x.split()))
    grades = [x.split() for x in lines[first:]]
    assert grades[2:5] == [["A", "1", "33.3%"], ["B", "1", "33.3%"], ["C", "1", "33.3%"]]
    assert line("total")[-2:] == ["2.00", "s"]
    assert "Assumptions: 2 number(s)" in text
    assert f"Run folder: {run}" in text
