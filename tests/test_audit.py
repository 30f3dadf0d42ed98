"""The audit (credsim.audit) on a tiny hand-built run whose every figure is counted by hand.

Persons 0-5 (entity 6 is an organisation):

    id  group sex     age band   decile district household
    0   A     female  10  0-17   1      d1       0
    1   A     male    20  18-34  1      d1       0
    2   A     female  40  35-59  2      d2       1
    3   B     male    70  60+    2      d1       2
    4   B     female  30  18-34  3      d2       3
    5   B     male    50  35-59  3      d2       4

Records (speeding -5 points, volunteering +5): accepted 1, 2, 3, 4, 5, 6, 11, 13 (8); untrue
among them 2 and 11 (misidentification), 4 (false report), 5 (association, no error): 4/8.
Rejected in review 7, 10, 12 (10 and 12 are true: a true record thrown out); overturned 8;
pending 9. Appealed 2 (6 -> 10: 4 days), 4 (8 -> 20: 12), 8 (12 -> 30: 18).
Lists: L1 0 speeders 5-20 trigger 1; L2 1 speeders trigger 2 (wrong); L3 3 speeders trigger 3;
L4 4 speeders trigger 4 (wrong, unpublished); L5 5 helpers (red) trigger 6; L6 0 speeders from
22 trigger 11 (wrong); L7 6 (organisation) speeders trigger 13. Published: L1, L2, L3, L6, L7.
Measures: M1 0 own via 0 day 5 (-> L1), M2 0 own via 0 day 22 (-> L6, wrong), M3 2 association
via 1 day 6 (-> L2, wrong), M4 1 own via 1 (-> L2, wrong), M5 4 own via 4 (-> L4, wrong),
M6 3 own via 3 (-> L3), M7 5 reward via list:helpers, M8 1 reward on enrolment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

import credsim
from credsim.audit import AUDIT_FILE, audit, write_audit
from credsim.cli import main
from credsim.store import write_run

REC_COLS = ["record_id", "day", "behaviour_day", "entity_id", "actor_id", "item", "behaviour",
            "channel", "source_agency", "points", "applied", "status", "truthful", "basis",
            "error", "cause_record", "review_day", "appeal_day", "appealed"]
S, V = "speeding", "volunteering"
ACC, REJ, OVR, PEN = "accepted", "rejected_in_review", "overturned_on_appeal", "pending"
RECORDS = [
    (1, 5, 5, 0, 0, S, S, "camera", "police", -5.0, -5.0, ACC, True, "behaviour", None,
     None, None, None, False),
    (2, 6, 6, 1, 3, S, S, "camera", "police", -5.0, -5.0, ACC, False, "behaviour",
     "misidentification", None, None, 10, True),
    (3, 7, 7, 3, 3, S, S, "camera", "police", -5.0, -5.0, ACC, True, "behaviour", None,
     None, None, None, False),
    (4, 8, None, 4, None, S, S, "informant", None, -5.0, -5.0, ACC, False, "false_report",
     "false_report", None, None, 20, True),
    (5, 9, None, 1, 0, S, None, "association", None, -2.5, -2.5, ACC, False, "association",
     None, 1, None, None, False),
    (6, 10, 10, 5, 5, V, V, "app", None, 5.0, 5.0, ACC, True, "behaviour", None,
     None, None, None, False),
    (7, 11, None, 2, None, S, S, "informant", None, -5.0, 0.0, REJ, False, "false_report",
     "false_report", None, 12, None, False),
    (8, 12, None, 5, None, S, S, "informant", None, -5.0, 0.0, OVR, False, "false_report",
     "false_report", None, None, 30, True),
    (9, 25, 25, 0, 0, S, S, "camera", "police", -5.0, 0.0, PEN, True, "behaviour", None,
     None, None, None, False),
    (10, 14, 14, 3, 3, S, S, "camera", "police", -5.0, 0.0, REJ, True, "behaviour", None,
     None, 15, None, False),
    (11, 22, 22, 0, 5, S, S, "camera", "police", -5.0, -5.0, ACC, False, "behaviour",
     "misidentification", None, None, None, False),
    (12, 13, 13, 2, 2, S, S, "camera", "police", -5.0, 0.0, REJ, True, "behaviour", None,
     None, 14, None, False),
    (13, 15, 15, 6, 6, S, S, "agency", "police", -5.0, -5.0, ACC, True, "behaviour", None,
     None, None, None, False),
]


def tables() -> dict[str, pa.Table]:
    population = pa.table({
        "entity_id": list(range(7)),
        "kind": ["person"] * 6 + ["organization"],
        "code": [f"1101011990010100{i}X" for i in range(6)] + ["91110108MA01ABCD2X"],
        "district": ["d1", "d1", "d2", "d1", "d2", "d2", "d1"],
        "group": ["A", "A", "A", "B", "B", "B", None],
        "sex": ["female", "male", "female", "male", "female", "male", None],
        "age": [10, 20, 40, 70, 30, 50, None],
        "birth_date": pa.nulls(7, pa.date32()),
        "income_decile": [1, 1, 2, 2, 3, 3, None],
        "household_id": [0, 0, 1, 2, 3, 4, None],
        "employer_id": [None] * 7,
        "enrolled": [True] * 7,
    })
    records = pa.table({c: [r[i] for r in RECORDS] for i, c in enumerate(REC_COLS)})
    scores = pa.table({
        "entity_id": [0, 1, 2, 3, 4, 5] * 2,
        "day": [0] * 6 + [30] * 6,
        "score": [1000.0, 1000.0, 800.0, 850.0, 900.0, 970.0,
                  900.0, 1000.0, 800.0, 900.0, 1000.0, 800.0],
        "grade": ["A", "A", "D", "D", "C", "B", "C", "A", "D", "C", "A", "D"],
    })
    sp, hp = "speeders", "helpers"
    lists = pa.table({
        "entity_id": [0, 1, 3, 4, 5, 0, 6],
        "list": [sp, sp, sp, sp, hp, sp, sp],
        "kind": ["black"] * 4 + ["red"] + ["black"] * 2,
        "start_day": [5, 6, 7, 8, 10, 22, 15],
        "end_day": [20, None, None, None, None, None, None],
        "rule": ["1 accepted record(s) of 'speeding'"] * 7,
        "trigger_record": [1, 2, 3, 4, 6, 11, 13],
        "end_reason": ["expired"] + [None] * 6,
        "published": [True, True, True, False, False, True, True],
    })
    ls, lh = "list:speeders", "list:helpers"
    measures = pa.table({
        "entity_id": [0, 0, 2, 1, 4, 3, 5, 1],
        "measure": ["fine-ban"] * 6 + ["bus-discount", "library"],
        "kind": ["other"] * 6 + ["discount", "other"],
        "reward": [False] * 6 + [True, True],
        "start_day": [5, 22, 6, 6, 8, 7, 10, 0],
        "end_day": [20] + [None] * 7,
        "cause": ["own", "own", "association", "own", "own", "own", "own", "own"],
        "via_entity": [0, 0, 1, 1, 4, 3, 5, 1],
        "trigger": [ls] * 6 + [lh, "enrolled"],
    })
    return {"population": population, "records": records, "scores": scores, "lists": lists,
            "measures": measures}


def manifest() -> dict:
    return {
        "credsim_version": "0.1.0",
        "scheme": {"id": "testville", "name": "Testville", "sha256": "ab" * 32, "path": "x.yaml"},
        "seed": 1, "population": 6, "organizations": 1, "days": 30,
        "behaviour_events": {"speeding": 90, "volunteering": 30},
        "blocked": {"speeding": 10, "volunteering": 10},
        "rules": {
            "items": {"speeding": {"name": "Speeding", "points": -5},
                      "volunteering": {"name": "Volunteering", "points": 5}},
            "lists": {
                "speeders": {"name": "Speeders", "kind": "black", "published": True,
                             "rule": "1 accepted record(s) of 'speeding'"},
                "helpers": {"name": "Helpers", "kind": "red", "published": False,
                            "rule": "1 accepted record(s) of 'volunteering'"},
            },
            "measures": {},
            "score": {"base": 1000, "min": 800, "max": 1100, "grades": [
                {"grade": "D", "min": 0}, {"grade": "C", "min": 900},
                {"grade": "B", "min": 960}, {"grade": "A", "min": 980}]},
        },
    }


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run = write_run(tmp_path_factory.mktemp("a") / "run", tables(), manifest())
    return audit(run)


def test_rates_per_group(result: dict) -> None:
    r = result["metrics"]["rates"]
    assert r["persons"]["all"] == 6
    assert r["recorded"]["all"] == pytest.approx(5 / 6)
    assert r["listed"]["all"] == pytest.approx(4 / 6)
    assert r["sanctioned"]["all"] == pytest.approx(5 / 6)
    assert r["rewarded"]["all"] == pytest.approx(2 / 6)
    assert r["recorded"]["by"]["group"] == pytest.approx({"A": 2 / 3, "B": 1.0})
    assert r["sanctioned"]["by"]["group"] == pytest.approx({"A": 1.0, "B": 2 / 3})
    assert r["listed"]["by"]["sex"] == pytest.approx({"female": 2 / 3, "male": 2 / 3})
    assert r["recorded"]["by"]["age_band"] == pytest.approx(
        {"0-17": 1.0, "18-34": 1.0, "35-59": 0.5, "60+": 1.0})
    assert r["rewarded"]["by"]["income_decile"] == pytest.approx({"1": 0.5, "2": 0.0, "3": 0.5})
    assert r["listed"]["by"]["district"] == pytest.approx({"d1": 1.0, "d2": 1 / 3})
    assert r["recorded"]["by"]["group_x_sex"] == pytest.approx(
        {"A|female": 0.5, "A|male": 1.0, "B|female": 1.0, "B|male": 1.0})


def test_disparity(result: dict) -> None:
    d = result["metrics"]["disparity"]
    ff = d["four_fifths"]
    assert ff["recorded"]["group"] == {"ratio": pytest.approx(2 / 3), "lowest": "A",
                                       "highest": "B"}
    assert ff["listed"]["group"]["ratio"] == pytest.approx(1.0)
    assert ff["recorded"]["age_band"]["ratio"] == pytest.approx(0.5)
    assert ff["recorded"]["age_band"]["lowest"] == "35-59"
    assert ff["rewarded"]["income_decile"]["ratio"] == 0.0
    # black-list episodes of persons: A has 3 (0 twice, 1), B has 2 (3, 4): shares 0.6, 0.4
    share = d["listing_share"]["by"]["group"]
    assert share["A"] == pytest.approx({"listing_share": 0.6, "population_share": 0.5,
                                        "ratio": 1.2})
    assert share["B"]["ratio"] == pytest.approx(0.8)
    assert d["fpr_parity"]["group"]["ratio"] == pytest.approx(1.0)


def test_wrongful(result: dict) -> None:
    w = result["metrics"]["wrongful"]
    assert w["records"]["accepted"] == 8 and w["records"]["untruthful"] == 4
    assert w["records"]["share"] == pytest.approx(0.5)
    assert w["records"]["by"]["error"] == pytest.approx(
        {"misidentification": 2 / 8, "false_report": 1 / 8, "association": 1 / 8})
    assert w["listings"]["episodes"] == 7 and w["listings"]["wrongful"] == 3
    assert w["listings"]["share"] == pytest.approx(3 / 7)
    assert w["listings"]["by"]["list"] == pytest.approx({"speeders": 0.5, "helpers": 0.0})
    # M2 starts on day 22: the as-of match picks L6 (untrue), not L1 (true)
    assert w["measures"]["list_sanctions"] == 6 and w["measures"]["wrongful"] == 4
    assert w["measures"]["share"] == pytest.approx(4 / 6)
    assert w["measures"]["by"]["cause"] == pytest.approx({"own": 3 / 5, "association": 1.0})


def test_false_positive_and_negative(result: dict) -> None:
    w = result["metrics"]["wrongful"]
    fp = w["false_positive"]
    # innocent (no true accepted speeding record): 1, 2, 4, 5; of them listed: 1, 4
    assert (fp["innocent"], fp["false_positives"]) == (4, 2)
    assert fp["rate"] == pytest.approx(0.5)
    assert fp["by"]["sex"] == pytest.approx({"female": 0.5, "male": 0.5})
    assert fp["by"]["group_x_sex"] == pytest.approx(
        {"A|female": 0.0, "A|male": 1.0, "B|female": 1.0, "B|male": 0.0})
    assert result["metrics"]["disparity"]["fpr_parity"]["group_x_sex"]["ratio"] == 0.0
    fn = w["false_negative"]
    # true speeding records of any status: 0, 2 (rejected), 3 -> 2 never listed: 1/3
    assert (fn["eligible"], fn["missed"]) == (3, 1)
    assert fn["rate"] == pytest.approx(1 / 3)
    assert fn["rate_accepted"] == 0.0  # accepted true records: 0 and 3, both listed
    assert set(fn["by"]["list"]) == {"speeders"}


def test_association_due_process_exposure(result: dict) -> None:
    m = result["metrics"]
    assert m["association"] == pytest.approx({"measures": 1, "entities": 1, "share": 1 / 8,
                                              "records": 1, "record_entities": 1,
                                              "points": -2.5})
    dp = m["due_process"]
    assert (dp["appealed"], dp["overturned"]) == (3, 1)
    assert dp["days_to_decide_mean"] == pytest.approx(34 / 3)
    assert dp["days_to_decide_median"] == pytest.approx(12.0)
    assert (dp["rejected_in_review"], dp["backlog"]) == (3, 1)
    assert m["exposure"] == {"entities": 4, "wrongly_entities": 2, "persons": 3,
                             "wrongly_persons": 2}


def test_chilling(result: dict) -> None:
    ch = result["metrics"]["chilling"]
    by = ch["by"]["behaviour"]
    assert by["speeding"] == {"happened": 90, "blocked": 10, "share": 0.1, "lawful": False}
    assert by["volunteering"]["share"] == pytest.approx(0.25) and by["volunteering"]["lawful"]
    assert ch["lawful_blocked"] == 10 and ch["lawful_share"] == pytest.approx(0.25)


def test_stratification(result: dict) -> None:
    st = result["metrics"]["stratification"]
    assert (st["first_day"], st["last_day"], st["shift"]) == (0, 30, 800)
    # last-day scores - 800: 100, 200, 0, 100, 200, 0 -> Gini 4/9, Theil (4 ln 2) / 6
    assert st["gini"] == pytest.approx(4 / 9)
    assert st["theil"] == pytest.approx(4 * math.log(2) / 6)
    mob = st["mobility"]["by"]["from"]
    assert mob["A"]["count"]["by"]["to"] == {"D": 0, "C": 1, "B": 0, "A": 1}
    assert mob["D"]["share"]["by"]["to"] == {"D": 0.5, "C": 0.5, "B": 0.0, "A": 0.0}
    assert st["lowest_grade"] == "D"
    assert st["lowest_stay_share"] == pytest.approx(0.5)
    assert st["lowest_end_share"] == pytest.approx(1 / 3)


def test_flat_names(result: dict) -> None:
    flat = result["flat"]
    assert flat["rates.listed[group=A]"] == pytest.approx(2 / 3)
    assert flat["rates.recorded.all"] == pytest.approx(5 / 6)
    assert flat["disparity.four_fifths.recorded.group.ratio"] == pytest.approx(2 / 3)
    assert flat["disparity.listing_share.ratio[group=B]"] == pytest.approx(0.8)
    assert flat["wrongful.records[error=misidentification]"] == pytest.approx(0.25)
    assert flat["stratification.mobility.count[from=A,to=C]"] == 1
    assert flat["chilling.lawful[behaviour=volunteering]"] == 1
    assert flat["chilling.share[behaviour=speeding]"] == pytest.approx(0.1)
    assert all(v is None or isinstance(v, int | float) for v in flat.values())


def test_cli_writes_audit_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", tables(), manifest())
    assert main(["audit", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Audit of Testville" in out and "volunteering: 25.0%" in out
    data = json.loads((run / AUDIT_FILE).read_text(encoding="utf-8"))
    assert data["scheme"]["id"] == "testville" and data["run"]["seed"] == 1
    assert data["flat"]["wrongful.listings.share"] == pytest.approx(3 / 7)
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    assert main(["audit", str(tmp_path / "missing")]) == 2


def test_smoke_real_run(tmp_path: Path) -> None:
    credsim.run("nanjing", 2000, 60, 1, tmp_path / "r")
    path, res = write_audit(tmp_path / "r")
    assert path.is_file()
    flat = res["flat"]
    for key in ("rates.listed.all", "rates.sanctioned[group_x_sex=migrant|female]",
                "wrongful.records.share", "wrongful.listings.share",
                "wrongful.false_positive.rate", "due_process.backlog", "exposure.entities",
                "association.share", "chilling.share[behaviour=jaywalking]"):
        assert key in flat, key
    for key, value in flat.items():
        bounded = (key.startswith("rates.") and not key.startswith("rates.persons")) or any(
            t in key for t in (".share", "_share[", ".rate", "four_fifths", "fpr_parity", "gini"))
        if value is not None and bounded and "listing_share.ratio" not in key:
            assert 0.0 <= value <= 1.0, (key, value)
