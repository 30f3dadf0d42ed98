"""Credit reports (``explain``) on the hand-built run of ``test_store.py``.

See that module's docstring for what the fixture holds; the expectations here follow from it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from credsim.errors import RunStoreError
from credsim.store import RunStore, explain, write_run
from test_store import CODE_1, CODE_3, manifest, tables


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("explain") / "run", tables(), manifest())


def section(text: str, title: str) -> str:
    """The lines of ``text`` from the heading starting with ``title`` to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def test_person_report_records_and_reasons(run: Path) -> None:
    text = explain(run, "0")
    assert text.startswith("Credit report: person 0")
    assert "110101199003074578" in text and "dongcheng" in text and "female, 34" in text
    assert "Household      0 (other members: 1)" in text
    records = section(text, "Records (3)")
    for rid in (1, 2, 8):
        assert f"[record #{rid}]" in records
    assert "[record #5]" not in records  # about entity 1, not 0
    assert "Day 5: Speeding (speeding) - points -5, applied -5" in records
    assert "source: traffic-law - Road Traffic Safety Law" in records
    assert "camera (traffic-police); behaviour on day 9" in records
    assert "NO - misidentification - the behaviour was by person 2" in records
    assert "friend" in records  # person 2 is a friend of person 0
    assert "NO - data-entry error" in records and "person 1 (code " + CODE_1 in records
    assert "objection rejected on day 70" in records
    assert records.count("yes, a real behaviour of this person") == 1


def test_person_report_scores_lists_measures(run: Path) -> None:
    text = explain(run, "0")
    scores = section(text, "Score over time").splitlines()
    assert [x.split() for x in scores[3:]] == [["0", "1000", "A"], ["10", "990", "A"],
                                               ["55", "970", "B"]]
    lists = section(text, "Lists")
    assert "Traffic blacklist (traffic-blacklist), blacklist: from day 10 to day 40 (expired)" \
        in lists
    assert "two speeding records within 365 days" in lists
    assert "record #2" in lists and "NOT truthful: misidentification" in lists
    measures = section(text, "Measures")
    assert "High-consumption ban (consumption-ban)" in measures
    assert f"someone else - organisation 3 (code {CODE_3}, employer) was listed on " \
           "Dishonest judgment defaulters" in measures
    assert "this person was enrolled in the scheme" in measures
    other = section(text, "Caused by someone else")
    assert "record #2" in other and "record #8" in other and "record #1 " not in other
    assert "High-consumption ban" in other and "organisation 3" in other
    assert "Traffic blacklist" in other
    assert other.splitlines()[-1].endswith("behaviour: -25 points.")


def test_lookup_by_code_association_record(run: Path) -> None:
    text = explain(run, CODE_1)
    assert text.startswith("Credit report: person 1")
    assert explain(run, CODE_1.lower()) == text  # the check character X in either case
    records = section(text, "Records (3)")
    assert "someone else's deduction - it spilled over from record #1 (day 5" in records
    assert "person 0 (code 110101199003074578, household member)" in records
    assert "points -2.5, applied -2.5" in records
    assert "rejected in review on day 15 - did not count" in records
    assert "objection upheld on day 60, points reversed" in records
    assert records.count("false report - an informant reported") == 2
    assert "someone else - person 0 (code 110101199003074578, household member) was listed " \
           "on Traffic blacklist" in section(text, "Measures")
    assert "Never on any list." in text
    assert section(text, "Caused by someone else").splitlines()[-1].endswith("-2.5 points.")


def test_organisation_and_unenrolled_person(run: Path) -> None:
    org = explain(run, "3")
    assert org.startswith("Credit report: organisation 3") and CODE_3 in org
    assert "Sex" not in org and "Household" not in org
    assert "still listed at the end of the run" in org
    assert "published: yes - named and shamed in public" in org
    assert "still waiting for review at the end - not counted" in org
    assert "accepted in review on day 21" in org
    assert "Nothing: everything above follows from this organisation's own behaviour." in org
    person2 = explain(run, "2")
    assert "Enrolled       no" in person2
    assert "Score: none recorded for this entity." in person2
    assert "points +5, applied 0" in person2
    assert "ASSUMPTION (no source): guess" in person2
    assert "honest-volunteers, redlist: from day 40, still listed" in person2


def test_unknown_entity(run: Path) -> None:
    with pytest.raises(RunStoreError, match="'99' is not in the run"):
        explain(run, "99")
    with pytest.raises(RunStoreError, match="'999999999999999999' is not in the run"):
        explain(run, "999999999999999999")
    with pytest.raises(RunStoreError, match="neither an entity id"):
        explain(run, "somebody")


def test_reads_through_duckdb_not_whole_tables(run: Path, monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("explain must not load whole tables")

    monkeypatch.setattr(RunStore, "table", refuse)
    assert "Credit report: person 1" in explain(run, "1")


def test_long_score_history_is_shortened(tmp_path: Path) -> None:
    t = tables()
    extra = pa.table({"entity_id": pa.array([1] * 40, pa.int32()),
                      "day": pa.array(range(100, 140), pa.int32()),
                      "score": pa.array([900.0 + i for i in range(40)]),
                      "grade": pa.array(["C"] * 40)})
    t["scores"] = pa.concat_tables([t["scores"].cast(extra.schema), extra])
    text = explain(write_run(tmp_path / "run", t, manifest()), "1")
    # 42 changes (2 in the fixture + 40): the first 15, a gap of 12, the last 15
    days = [x.split()[0] for x in section(text, "Score over time").splitlines()[3:]]
    assert len(days) == 31 and days[:3] == ["0", "89", "100"] and days[-1] == "139"
    assert days[14:17] == ["112", "…", "125"] and "12 changes omitted" in text
