"""The command line as a user runs it: models, show, run, summary, query, explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from credsim.cli import main
from credsim.schemes.loader import bundled_ids


@pytest.fixture(scope="module")
def nanjing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "nanjing"
    # a downgrade needs six captures in a year: in 120 days of 3000 persons about one person
    # gets there by chance (none for 4 seeds in 10), so a case-study person makes sure of it
    events = out.parent / "six-captures.csv"
    events.write_text(
        "entity,day,behaviour\n" + "".join(f"17,{d},jaywalking\n" for d in range(10, 70, 10))
    )
    assert (
        main(
            [
                "run",
                "nanjing",
                "--population",
                "3000",
                "--days",
                "120",
                "--seed",
                "5",
                "--out",
                str(out),
                "--quiet",
                "--events",
                str(events),
            ]
        )
        == 0
    )
    return out


def test_models_lists_bundled_schemes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == bundled_ids()
    assert {"nanjing", "suzhou"} <= set(bundled_ids())


def test_show_prints_every_number_with_provenance(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "suzhou"]) == 0
    out = capsys.readouterr().out
    assert "items.blood-donation.points" in out and "source: src-002" in out
    assert "ASSUMPTION:" in out
    assert "002_0abce4c93ba21a37.txt" in out


def test_run_writes_the_run_folder(nanjing_run: Path) -> None:
    names = {p.name for p in nanjing_run.iterdir()}
    assert {
        "manifest.json",
        "population.parquet",
        "records.parquet",
        "scores.parquet",
        "lists.parquet",
        "measures.parquet",
    } <= names
    m = json.loads((nanjing_run / "manifest.json").read_text())
    assert m["complete"] is True and m["seed"] == 5 and m["population"] == 3000
    assert m["scheme"]["id"] == "nanjing" and len(m["scheme"]["sha256"]) == 64
    assert any(a["path"] == "population.size" for a in m["assumptions"])
    assert m["counts"]["records"] == m["tables"]["records"]["rows"]


def test_query_counts_records(nanjing_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", str(nanjing_run), "select count(*) as n from records"]) == 0
    out = capsys.readouterr().out
    m = json.loads((nanjing_run / "manifest.json").read_text())
    assert str(m["counts"]["records"]) in out.replace(",", "")


def test_explain_a_downgraded_person(nanjing_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from credsim.store.query import query

    t = query(nanjing_run, "select entity_id from lists where list = 'credit-downgrade' limit 1")
    assert t.num_rows == 1, "the case-study person (six captures) is downgraded"
    ent = str(t["entity_id"][0].as_py())
    assert main(["explain", str(nanjing_run), ent]) == 0
    out = capsys.readouterr().out
    assert "credit-downgrade" in out or "downgrade" in out.lower()
    assert "source" in out.lower()


def test_query_error_exits_non_zero(nanjing_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", str(nanjing_run), "select nope from records"]) != 0
    assert "error" in capsys.readouterr().err.lower()


def test_explain_names_the_escalation_rule_and_its_source(
    nanjing_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from credsim.store.query import query

    t = query(nanjing_run, "select entity_id from records where channel = 'escalation' limit 1")
    assert main(["explain", str(nanjing_run), str(t["entity_id"][0].as_py())]) == 0
    out = capsys.readouterr().out
    assert "fired by: 6 accepted records of 'jaywalking-capture' within 365 days (src-000)" in out
