"""Importing case-study events (``credsim run --events FILE``), with hand-computed expectations.

The tiny scheme below has nothing happen on its own (every rate is zero), so every record, score
change and listing comes from the imported file. Population: 20 persons (ids 0..19) and 2
organisations (ids 20, 21); 30 days; score base 150.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from credsim.api import run, simulate
from credsim.cli import main
from credsim.engine.events import read_events
from credsim.errors import CredsimError
from credsim.store import explain, summarize
from tiny import BASE, load, n, tiny_scheme

DAYS = 30
PERSONS = 20

SCHEME = tiny_scheme(
    population={**copy.deepcopy(BASE["population"]), "organizations_per_1000": n(100)},
    items={
        "jaywalking": {"name": "Jaywalking", "behaviour": "jaywalking", "points": n(-1)},
        "speeding": {"name": "Speeding", "behaviour": "speeding", "points": n(-10)},
        "blood-donation": {"name": "Blood", "behaviour": "blood-donation", "points": n(5)},
        "downgrade": {"name": "Downgrade", "points": n(0)},
    },
    escalations=[
        {"item": "jaywalking", "count": n(3), "window_days": n(30), "produces": "downgrade"}
    ],
    lists={
        "downgraded": {"name": "Downgraded", "kind": "black", "inclusion": {"item": "downgrade"}},
        "low-score": {"name": "Low score", "kind": "black", "inclusion": {"score_below": n(135)}},
    },
)
LOADED = load(SCHEME)


@pytest.fixture(scope="module")
def codes() -> list[str]:
    """Codes of the population every run of SCHEME with seed 0 draws (entity id -> code)."""
    pop = simulate(LOADED, PERSONS, DAYS, 0).tables["population"]
    assert pop.column("kind").to_pylist()[-2:] == ["organization", "organization"]
    assert pop.num_rows == PERSONS + 2
    return pop.column("code").to_pylist()


def _wrong_check(code: str) -> tuple[str, str]:
    """The code with a wrong check character, and the right one."""
    good = code[-1]
    return code[:-1] + ("0" if good != "0" else "1"), good


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# A file with good and bad rows


def mixed_csv(codes: list[str]) -> tuple[str, list[tuple[int, str]]]:
    """A CSV of 20 data lines (one blank) and the expected (row, reason) of each bad row."""
    bad_ric, good_ric = _wrong_check(codes[4])
    bad_uscc, good_uscc = _wrong_check(codes[21])
    assert ric.is_valid(codes[4]) and uscc.is_valid(codes[21])
    lines = [
        "Entity, Day ,behaviour,note",  # header names are trimmed and case-insensitive
        "0,5,speeding,missed a bill during a hospital stay",  # 1 ok
        f"{codes[3]},6,blood-donation,",  # 2 ok: by identity number
        f"{bad_ric},7,speeding,typo in the check character",  # 3
        "99,7,speeding,",  # 4
        "1,3,flying,",  # 5
        "1,0,speeding,",  # 6
        f"1,{DAYS + 1},speeding,",  # 7
        "0,5,speeding,entered twice",  # 8: same as row 1
        ",4,speeding,",  # 9
        f"{codes[0].lower()},5,SPEEDING,",  # 10: row 1 again, by code and in capitals
        "",  # 11: blank, skipped but counted in the numbering
        "2,4,speeding,x,extra",  # 12
        f"{codes[20]},8,speeding,an organisation",  # 13 ok: by unified social credit code
        "3,1.5,speeding,",  # 14
        "3,nan,speeding,",  # 15
        "abc,2,speeding,",  # 16
        "1,99999999999999999999,speeding,",  # 17
        f"{bad_uscc},2,speeding,",  # 18
        "5,10,downgrade,from a court file",  # 19 ok: an item, not a behaviour
        "7,2,,",  # 20
        " 6 , 9 , jaywalking ,  spaces  ",  # 21 ok: fields are trimmed
    ]
    reasons = [
        (3, f"identity number {bad_ric} has a wrong check character (expected {good_ric})"),
        (4, "unknown entity: entity_id '99' is not in the run's population (ids 0 to 21)"),
        (
            5,
            "unknown behaviour or item 'flying' (the scheme knows 'jaywalking', 'speeding', "
            "'blood-donation', 'downgrade')",
        ),
        (6, "day '0' is outside the run (1 to 30)"),
        (7, "day '31' is outside the run (1 to 30)"),
        (8, "duplicate of row 1 (same entity, day and behaviour)"),
        (9, "entity is empty"),
        (10, "duplicate of row 1 (same entity, day and behaviour)"),
        (12, "row has 5 fields, the header has 4"),
        (14, "day '1.5' is not a whole number"),
        (15, "day 'nan' is not a whole number"),
        (
            16,
            "entity 'abc' is neither an entity id (digits) nor an 18-character identity number "
            "or unified social credit code",
        ),
        (17, "day '99999999999999999999' is outside the run (1 to 30)"),
        (
            18,
            f"unified social credit code {bad_uscc} has a wrong check character "
            f"(expected {good_uscc})",
        ),
        (20, "behaviour is empty"),
    ]
    return "\n".join(lines) + "\n", reasons


def test_mixed_file_conserves_every_row_with_exact_reasons(
    tmp_path: Path, codes: list[str]
) -> None:
    text, reasons = mixed_csv(codes)
    path = _write(tmp_path / "cases.csv", text)
    result = simulate(LOADED, PERSONS, DAYS, 0, events=path)
    ev = result.manifest["events"]
    assert ev == {
        "file": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "rows_read": 20,  # 21 numbered rows, one of them blank
        "accepted": 5,
        "quarantined": 15,
    }
    q = result.tables["quarantine"]
    assert list(zip(q["row"].to_pylist(), q["reason"].to_pylist(), strict=True)) == reasons
    assert q.filter(pc.equal(q["row"], 12))["note"].to_pylist() == ["x"]  # raw, as in the file
    acc = result.tables["events"]
    assert acc["row"].to_pylist() == [1, 2, 13, 19, 21]
    assert acc["entity_id"].to_pylist() == [0, 3, 20, 5, 6]
    assert acc["day"].to_pylist() == [5, 6, 8, 10, 9]
    assert acc["behaviour"].to_pylist() == [
        "speeding",
        "blood-donation",
        "speeding",
        None,
        "jaywalking",
    ]
    assert acc["item"].to_pylist() == [
        "speeding",
        "blood-donation",
        "speeding",
        "downgrade",
        "jaywalking",
    ]
    assert acc["note"].to_pylist() == [
        "missed a bill during a hospital stay",
        None,
        "an organisation",
        "from a court file",
        "spaces",
    ]
    assert result.manifest["counts"]["events"] == 5
    assert result.manifest["counts"]["quarantine"] == 15
    # every accepted row became exactly one record, marked with its row
    rec = result.tables["records"]
    imp = rec.filter(pc.equal(rec["basis"], "import"))
    assert sorted(imp["import_row"].to_pylist()) == [1, 2, 13, 19, 21]
    by_row = {r["import_row"]: r for r in imp.to_pylist()}
    for r in acc.to_pylist():
        got = by_row[r["row"]]
        assert got["record_id"] == r["record_id"]
        assert (got["entity_id"], got["day"], got["item"]) == (r["entity_id"], r["day"], r["item"])
        assert got["channel"] == "import" and got["truthful"] and got["actor_id"] == r["entity_id"]
        assert got["source_agency"] is None and got["behaviour_day"] == r["day"]
    assert rec.filter(pc.invert(pc.equal(rec["basis"], "import")))["import_row"].null_count == (
        rec.num_rows - 5
    )


def test_imported_events_score_escalate_and_list(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ev.csv",
        "entity,day,behaviour\n"
        "0,5,speeding\n0,6,speeding\n"  # 150 -> 140 -> 130: below 135 on day 6
        "1,1,jaywalking\n1,2,jaywalking\n1,3,jaywalking\n"  # the third escalates on day 3
        "2,10,downgrade\n"  # listed at once
        "3,4,blood-donation\n",  # 150 -> 155
    )
    result = simulate(LOADED, PERSONS, DAYS, 0, events=path)
    t = result.tables
    last = t["scores"].filter(pc.equal(t["scores"]["day"], DAYS))
    score = dict(zip(last["entity_id"].to_pylist(), last["score"].to_pylist(), strict=True))
    assert (score[0], score[1], score[2], score[3], score[4]) == (130, 147, 150, 155, 150)
    lists = sorted((r["list"], r["entity_id"], r["start_day"]) for r in t["lists"].to_pylist())
    assert lists == [("downgraded", 1, 3), ("downgraded", 2, 10), ("low-score", 0, 6)]
    rec = t["records"].to_pylist()
    esc = [r for r in rec if r["channel"] == "escalation"]
    assert len(esc) == 1 and esc[0]["entity_id"] == 1 and esc[0]["truthful"]
    assert rec[esc[0]["cause_record"]]["import_row"] == 5  # the third capture
    assert len([r for r in rec if r["basis"] == "import"]) == 7


def test_record_ids_follow_arrival_not_file_order(tmp_path: Path) -> None:
    # rows 1, 2, 3 arrive on days 3, 1, 2: records 0, 1, 2 are rows 2, 3, 1
    path = _write(
        tmp_path / "ev.csv",
        "entity,day,behaviour,note\n0,3,speeding,a\n1,1,speeding,b\n2,2,speeding,c\n",
    )
    t = simulate(LOADED, PERSONS, DAYS, 0, events=path).tables
    assert t["events"]["record_id"].to_pylist() == [2, 0, 1]
    rec = t["records"]
    assert rec["import_row"].to_pylist() == [2, 3, 1]
    assert rec["entity_id"].to_pylist() == [1, 2, 0]


def test_review_applies_to_imported_events(tmp_path: Path) -> None:
    strict = load(
        tiny_scheme(review={"mode": "required", "catch_false": n(0), "reject_true": n(1)})
    )
    path = _write(tmp_path / "ev.csv", "entity,day,behaviour\n0,5,speeding\n")
    result = simulate(strict, 12, DAYS, 0, events=path)
    (r,) = result.tables["records"].to_pylist()
    assert (r["status"], r["review_day"], r["applied"]) == ("rejected_in_review", 5, 0.0)


def test_imported_events_can_be_appealed(tmp_path: Path) -> None:
    appeals = {
        "available": True,
        "file_false": n(1),
        "file_true": n(1),
        "overturn_false": n(1),
        "overturn_true": n(1),
        "days_to_decide": n(3),
    }
    path = _write(tmp_path / "ev.csv", "entity,day,behaviour\n0,5,speeding\n")
    result = simulate(load(tiny_scheme(appeals=appeals)), 12, DAYS, 0, events=path)
    (r,) = result.tables["records"].to_pylist()
    assert (r["status"], r["appealed"], r["appeal_day"]) == ("overturned_on_appeal", True, 8)
    last = result.tables["scores"].filter(pc.equal(result.tables["scores"]["day"], DAYS))
    assert last.filter(pc.equal(last["entity_id"], 0))["score"].to_pylist() == [150.0]


def test_same_file_and_seed_give_identical_tables(tmp_path: Path, codes: list[str]) -> None:
    text, _ = mixed_csv(codes)
    path = _write(tmp_path / "cases.csv", text)
    a = simulate(LOADED, PERSONS, DAYS, 3, events=path)
    b = simulate(LOADED, PERSONS, DAYS, 3, events=path)
    assert set(a.tables) == set(b.tables) >= {"events", "quarantine"}
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name


def test_parquet_input_matches_csv(tmp_path: Path, codes: list[str]) -> None:
    csv_path = _write(
        tmp_path / "ev.csv",
        f"entity,day,behaviour,note\n0,5,speeding,a\n{codes[20]},8,speeding,\n99,3,speeding,b\n",
    )
    table = pa.table(
        {
            "entity": ["0", codes[20], "99"],
            "day": pa.array([5.0, 8.0, 3.0]),  # whole floats are whole days
            "behaviour": pa.array(["speeding"] * 3).dictionary_encode(),
            "note": ["a", None, "b"],
        }
    )
    pq.write_table(table, tmp_path / "ev.parquet")
    from_csv = simulate(LOADED, PERSONS, DAYS, 0, events=csv_path)
    from_pq = simulate(LOADED, PERSONS, DAYS, 0, events=tmp_path / "ev.parquet")
    assert from_pq.tables["events"].equals(from_csv.tables["events"])
    assert from_pq.tables["records"].equals(from_csv.tables["records"])
    assert from_pq.tables["quarantine"].to_pylist() == [
        {
            "row": 3,
            "entity": "99",
            "day": "3",
            "behaviour": "speeding",
            "note": "b",
            "reason": "unknown entity: entity_id '99' is not in the run's population (ids 0 to 21)",
        }
    ]
    # integer entity ids and days work too
    pq.write_table(
        pa.table({"entity": [0], "day": pa.array([5], pa.int64()), "behaviour": ["speeding"]}),
        tmp_path / "ints.parquet",
    )
    assert (
        simulate(LOADED, PERSONS, DAYS, 0, events=tmp_path / "ints.parquet").manifest["events"][
            "accepted"
        ]
        == 1
    )


BAD_FILES: list[tuple[str, bytes, str]] = [
    ("missing.csv", b"entity,day\n0,5\n", "missing column(s) behaviour"),
    ("extra.csv", b"entity,day,behaviour,when\n0,5,speeding,x\n", "unexpected column(s) 'when'"),
    ("empty.csv", b"", "the file is empty"),
    ("header-only.csv", b"entity,day,behaviour\n\n", "no event rows"),
    ("blank.csv", b"\n \n", "only blank lines"),
    ("latin1.csv", "entity,day,behaviour,note\n0,5,speeding,café\n".encode("latin-1"), "UTF-8"),
    ("utf16.csv", "entity,day,behaviour\n0,5,speeding\n".encode("utf-16"), "UTF-16"),
    ("semicolons.csv", b"entity;day;behaviour\n0;5;speeding\n", "separated by commas"),
    ("not.parquet", b"entity,day,behaviour\n0,5,speeding\n", "not a readable Parquet file"),
    ("binary.csv", bytes(range(256)) * 4, "not UTF-8"),
    ("workbook.csv", b"PK\x03\x04" + bytes(60), "zip archive"),
    ("nul.csv", b"entity,day,behaviour\n0,5,speed\x00ing\n", "NUL"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_file_level_problems_raise_and_write_nothing(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "run"
    with pytest.raises(CredsimError, match="events file") as info:
        run(LOADED, PERSONS, DAYS, 0, out, events=path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_missing_file_or_folder_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(CredsimError, match="no such file"):
        simulate(LOADED, PERSONS, DAYS, 0, events=tmp_path / "absent.csv")
    with pytest.raises(CredsimError, match="not a file"):
        simulate(LOADED, PERSONS, DAYS, 0, events=tmp_path)


def test_parquet_with_unusable_column_type(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"entity": [0], "day": [[1, 2]], "behaviour": ["speeding"]}),
        tmp_path / "ev.parquet",
    )
    with pytest.raises(CredsimError, match="column 'day' holds list"):
        simulate(LOADED, PERSONS, DAYS, 0, events=tmp_path / "ev.parquet")


# --------------------------------------------------------------------------------------------
# The command line, explain and summary


def test_cli_run_prints_counts_and_explain_shows_the_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scheme = tmp_path / "tiny.yaml"
    scheme.write_text(yaml.safe_dump(SCHEME, sort_keys=False), encoding="utf-8")
    events = _write(
        tmp_path / "cases.csv",
        "entity,day,behaviour,note\n"
        "0,5,speeding,missed a bill during a hospital stay\n"
        "0,5,speeding,\n"
        "1,7,speeding,\n",
    )
    out = tmp_path / "run"
    args = ["run", str(scheme), "--population", str(PERSONS), "--days", str(DAYS)]
    assert main([*args, "--out", str(out), "--events", str(events), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (
        f"events: 3 rows read, 2 accepted, 1 quarantined (see {out / 'quarantine.parquet'})" in err
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["events"]["rows_read"] == 3 and manifest["tables"]["quarantine"]["rows"] == 1
    assert pq.read_table(out / "quarantine.parquet")["row"].to_pylist() == [2]
    assert pq.read_table(out / "records.parquet")["import_row"].to_pylist()[:2] == [1, 3]
    text = explain(out, "0")
    assert (
        "imported: imported event (row 1 of cases.csv): missed a bill during a hospital stay"
        in (text)
    )
    assert "came via: import; behaviour on day 5" in text
    assert "taken as true (a hand-written case-study event" in text
    assert "imported event (row 3 of cases.csv)\n" in explain(out, "1")
    assert "Imported events: 3 row(s) read from cases.csv, 2 accepted" in summarize(out)


def test_cli_bad_events_file_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _write(tmp_path / "cases.csv", "who,day,behaviour\n0,5,speeding\n")
    out = tmp_path / "run"
    assert main(["run", "nanjing", "--population", "50", "--days", "5", "--out", str(out),
                 "--events", str(events), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "credsim: error: events file" in err and "missing column(s) entity" in err
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Fuzz: anything as the events file gives a CredsimError or conserved rows


@pytest.fixture(scope="module")
def engine_parts() -> tuple[object, object]:
    sim = simulate(LOADED, PERSONS, DAYS, 0).simulation
    assert sim is not None
    return sim.pop, sim.cs


def _check(path: Path, pop: object, cs: object) -> None:
    try:
        ev = read_events(path, pop, cs, DAYS)  # type: ignore[arg-type]
    except CredsimError as exc:
        assert str(path) in str(exc)
        return
    assert ev.n_accepted + ev.n_quarantined == ev.rows_read > 0
    rows = [*ev.accepted["row"].to_pylist(), *ev.quarantine["row"].to_pylist()]
    assert len(set(rows)) == len(rows) and min(rows) >= 1
    assert ev.quarantine["reason"].null_count == 0
    ent = np.asarray(ev.accepted["entity_id"])
    day = np.asarray(ev.accepted["day"])
    assert ((ent >= 0) & (ent < PERSONS + 2)).all() and ((day >= 1) & (day <= DAYS)).all()
    assert sum(b["entity"].shape[0] for b in ev.batches.values()) == ev.n_accepted


FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"entity": ["0", "1"], "day": [5, 6], "behaviour": ["speeding"] * 2})
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


VALID_PARQUET = _parquet_bytes()


@st.composite
def corrupted_parquet(draw: st.DrawFn) -> bytes:
    """A valid Parquet file with a few bytes overwritten (footer and pages alike)."""
    data = bytearray(VALID_PARQUET)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=8))
        data[at : at + len(patch)] = patch
    return bytes(data[: len(VALID_PARQUET)])


ANY_BYTES = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
    corrupted_parquet(),
)


@FUZZ
@given(data=ANY_BYTES, suffix=st.sampled_from([".csv", ".parquet", ".txt"]))
def test_fuzz_arbitrary_bytes(
    engine_parts: tuple[object, object], data: bytes, suffix: str
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"events{suffix}"
        path.write_bytes(data)
        _check(path, *engine_parts)


TOKENS = st.sampled_from(
    [
        "0", "1", "21", "22", "-1", "007", "99999999999999999999", "1e3", "nan", "inf", "3.0",
        "3.5", "", " ", "speeding", "JAYWALKING", "downgrade", "flying", "note", "\"a,b\"",
        "\"multi\nline\"", "\"", "é", "\t", "320500195808200000", "91320500MA01ABCD2X",
        "entity", "day", "behaviour",
    ]
)  # fmt: skip
FIELD = st.one_of(TOKENS, st.text(max_size=12))
PLAUSIBLE = st.tuples(
    st.sampled_from(["0", "1", "7", "21", "22", "", "x"]),
    st.sampled_from(["1", "5", "30", "0", "31", "2.0", "2.5", ""]),
    st.sampled_from(["speeding", "jaywalking", "downgrade", "Blood-Donation", "flying"]),
    st.one_of(st.just(""), st.text(max_size=8).map(lambda t: '"' + t.replace('"', '""') + '"')),
).map(list)
ROW = st.one_of(st.lists(FIELD, min_size=0, max_size=6), PLAUSIBLE)


@FUZZ
@given(
    header=st.sampled_from(
        [
            "entity,day,behaviour",
            "entity,day,behaviour,note",
            "day,behaviour,entity,NOTE",
            "entity,day",
            "entity,day,behaviour,x",
            "",
        ]
    ),  # fmt: skip
    rows=st.lists(ROW, max_size=30),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_fuzz_random_csv_text(
    engine_parts: tuple[object, object], header: str, rows: list[list[str]], newline: str
) -> None:
    text = newline.join([header, *(",".join(r) for r in rows)])
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.csv"
        path.write_text(text, encoding="utf-8")
        _check(path, *engine_parts)


def test_query_sees_events_and_quarantine_tables(tmp_path: Path) -> None:
    from credsim.store.query import query

    csv = tmp_path / "ev.csv"
    csv.write_text("entity,day,behaviour,note\n3,2,jaywalking,seen\n999999,2,jaywalking,nobody\n")
    from credsim.api import run

    out = run("nanjing", 200, 5, 1, tmp_path / "run", events=csv).path
    assert query(out, "select count(*) as n from events")["n"][0].as_py() == 1
    q = query(out, "select row, reason from quarantine")
    assert q["row"].to_pylist() == [2] and "999999" in q["reason"][0].as_py()


def test_imported_events_survive_a_kill_and_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Imported records stored before the checkpoint are read back from the records file on
    resume (their data rows): the events table and every other table are the uninterrupted
    run's."""
    from credsim.api import resume
    from credsim.store.runfolder import RunFolder

    scheme = tmp_path / "s.yaml"
    scheme.write_text(yaml.safe_dump(SCHEME, sort_keys=False), encoding="utf-8")
    csv = _write(
        tmp_path / "e.csv",
        "entity,day,behaviour,note\n0,5,speeding,before\n3,12,jaywalking,\n3,13,jaywalking,\n"
        "3,14,jaywalking,\n1,70,blood-donation,after the checkpoint\n",
    )
    monkeypatch.setattr("credsim.store.stream.FLUSH_ROWS", 1)  # stored as soon as settled
    real = RunFolder.checkpoint

    def die_after_day_60(self: RunFolder, save: object, day: int) -> None:
        real(self, save, day)
        if day == 60:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "checkpoint", die_after_day_60)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    with pytest.raises(KeyboardInterrupt):
        run(scheme, PERSONS, 80, 0, killed, events=csv, checkpoint_every=20)
    monkeypatch.setattr(RunFolder, "checkpoint", real)
    # stored by day 60, once past the escalation window (30 days) that kept them in memory
    kept = pq.read_table(killed / ".records.parquet.partial", columns=["import_row"])
    assert kept["import_row"].drop_null().to_pylist()[:4] == [1, 2, 3, 4]
    assert 5 not in kept["import_row"].to_pylist()  # day 70: after the checkpoint
    resume(killed)
    run(scheme, PERSONS, 80, 0, whole, events=csv, checkpoint_every=0)
    for name in ("events", "records", "scores", "lists"):
        a, b = pq.read_table(killed / f"{name}.parquet"), pq.read_table(whole / f"{name}.parquet")
        assert a.equals(b), name
    assert pq.read_table(killed / "events.parquet").num_rows == 5
