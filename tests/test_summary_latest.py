"""The summary's latest scores: read from the last snapshot when every snapshot lists the same
number of entities (every run credsim writes), ranked row by row otherwise; the same rows
either way. And no DuckDB progress bar in the text."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from credsim.api import run
from credsim.store import write_run
from credsim.store.query import connect, rows
from credsim.store.summary import latest_scores
from test_store import manifest, tables

RANKED = """SELECT * FROM scores
            QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY day DESC) = 1"""


def _latest(con, sql: str) -> list[tuple]:
    got = rows(con, f"SELECT entity_id, day, score, grade FROM ({sql}) ORDER BY entity_id")
    return [(r["entity_id"], r["day"], r["score"], r["grade"]) for r in got]


@pytest.fixture(scope="module")
def testville_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("latest") / "run"
    run("suzhou", population=300, days=75, seed=5, out=out)
    return out


def test_a_run_reads_the_last_snapshot_and_gets_the_ranked_rows(testville_run: Path) -> None:
    con = connect(testville_run)
    try:
        days = rows(con, "SELECT day, count(*) AS n FROM scores GROUP BY day ORDER BY day")
        assert len(days) >= 3 and len({d["n"] for d in days}) == 1  # snapshots of one size
        last = days[-1]["day"]
        sql = latest_scores(con)
        assert sql == f"SELECT * FROM scores WHERE day = {last}"
        fast, ranked = _latest(con, sql), _latest(con, RANKED)
        assert fast == ranked and len(fast) == days[-1]["n"]
    finally:
        con.close()


def test_snapshots_of_different_sizes_are_ranked(tmp_path: Path) -> None:
    t = tables()  # the hand-made table: entity 0 has four rows, entity 1 two, entity 3 three
    out = write_run(tmp_path / "run", t, manifest())
    con = connect(out)
    try:
        sql = latest_scores(con)
        assert "row_number()" in sql
        assert _latest(con, sql) == [
            (0, 89, 970.0, "B"),
            (1, 89, 997.5, "A"),
            (3, 89, 950.0, "C"),
        ]
    finally:
        con.close()


def test_a_latest_row_missing_from_the_last_day_is_found(tmp_path: Path) -> None:
    """Entity 1's last row is on day 10, not the last day: the snapshots differ in size, so
    the rows are ranked and entity 1 keeps its day-10 score."""
    t = tables()
    t["scores"] = pa.table(
        {
            "entity_id": pa.array([0, 1, 0], pa.int32()),
            "day": pa.array([10, 10, 20], pa.int32()),
            "score": [5.0, 6.0, 7.0],
            "grade": pa.array([None, None, None], pa.string()),
        }
    )
    con = connect(write_run(tmp_path / "run", t, manifest()))
    try:
        assert _latest(con, latest_scores(con)) == [(0, 20, 7.0, None), (1, 10, 6.0, None)]
    finally:
        con.close()


def test_no_progress_bar(testville_run: Path) -> None:
    con = connect(testville_run)
    try:
        got = rows(con, "SELECT current_setting('enable_progress_bar') AS on")[0]["on"]
        assert got is False
    finally:
        con.close()
