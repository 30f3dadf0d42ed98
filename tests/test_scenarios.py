"""Scenarios: every overlay runs on the bundled schemes, and each mechanism does on a tiny
population what was computed by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import credsim
from credsim.engine.records import ACCEPTED, ERRORS, OVERTURNED, REJECTED
from credsim.errors import SchemeError
from credsim.schemes.loader import (
    bundled_ids,
    load_scenario,
    load_scheme,
    load_scheme_text,
    merge_patch,
    scenario_ids,
)
from tiny import TinyRun, n, tiny_scheme

ALL = scenario_ids()


def with_scenario(scheme: dict, *names: str, **overrides: object) -> dict:
    s = copy.deepcopy(scheme)
    for name in names:
        s = merge_patch(s, load_scenario(name)[0].patch)
    return merge_patch(s, overrides) if overrides else s


def binomial_ok(k: int, trials: int, p: float) -> bool:
    sd = (trials * p * (1 - p)) ** 0.5
    return abs(k - trials * p) <= 4 * sd + 1


def test_the_issue_s_scenarios_are_all_bundled() -> None:
    assert set(ALL) == {
        "covid-2020",
        "unrelated-punishment",
        "black-market",
        "intrusion",
        "favouritism",
        "context-blind",
        "context-aware",
        "no-human-review",
        "human-review",
        "no-appeal",
        "appeal",
        "no-association",
    }


@pytest.mark.parametrize(
    "scheme", [s for s in ("suzhou", "court-defaulters") if s in bundled_ids()]
)
@pytest.mark.parametrize("scenario", ALL)
def test_every_scenario_runs_on_the_bundled_schemes(scheme: str, scenario: str) -> None:
    res = credsim.simulate(scheme, population=3000, days=60, seed=1, scenarios=[scenario])
    assert res.manifest["scenarios"][0]["id"] == scenario
    assert res.tables["population"].num_rows >= 3000


def test_overlay_errors_point_into_the_overlay(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nname: Bad\ndescription: x\npatch:\n  review:\n    mode: sometimes\n")
    with pytest.raises(SchemeError, match=r"bad.yaml:6: review.mode"):
        load_scheme("suzhou", [bad])
    with pytest.raises(SchemeError, match="no such scenario"):
        load_scheme("suzhou", ["nope"])


def test_merge_patch_merges_deletes_and_replaces() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": 5}
    assert merge_patch(base, {"a": {"b": None, "x": 3}, "d": [9], "e": None}) == {
        "a": {"c": 2, "x": 3},
        "d": [9],
    }
    assert base == {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": 5}  # not modified


def _review_scheme() -> dict:
    return tiny_scheme(review={"mode": "required", "catch_false": n(1.0)})


def test_no_human_review_accepts_a_false_record_human_review_catches_most() -> None:
    off = TinyRun(with_scenario(_review_scheme(), "no-human-review"))
    off.inject(1, 0, "speeding", actor=5)
    off.advance(1)
    assert off.records()["status"].tolist() == [ACCEPTED] and off.score(0) == 140.0

    on = TinyRun(with_scenario(tiny_scheme(), "human-review"), persons=20)
    for i in range(1000):
        on.inject(1, i % 20, "speeding", actor=(i + 1) % 20)  # all false
    on.advance(1)
    rejected = int((on.records()["status"] == REJECTED).sum())
    assert binomial_ok(rejected, 1000, 0.8)  # the scenario's catch rate


def test_no_appeal_and_appeal() -> None:
    none = TinyRun(
        with_scenario(
            tiny_scheme(
                appeals={
                    "available": True,
                    "file_false": n(1),
                    "file_true": n(1),
                    "overturn_false": n(1),
                    "overturn_true": n(1),
                    "days_to_decide": n(1),
                }
            ),
            "no-appeal",
        )
    )
    none.inject(1, 0, "speeding", actor=3)
    none.advance(5)
    assert not none.records()["appealed"].any() and none.score(0) == 140.0

    run = TinyRun(with_scenario(tiny_scheme(), "appeal"), persons=20)
    for i in range(1000):
        run.inject(1, i % 20, "speeding", actor=(i + 1) % 20)
    run.advance(31)
    r = run.records()
    assert binomial_ok(int(r["appealed"].sum()), 1000, 0.3)
    won = int((r["status"] == OVERTURNED).sum())
    assert binomial_ok(won, 1000, 0.3 * 0.7)
    assert set(r["appeal_day"][r["appealed"]].tolist()) == {31}  # 30 days to decide


def test_no_association_stops_spill_over_and_family_measures() -> None:
    lists = {"black": {"name": "B", "kind": "black", "inclusion": {"item": "speeding"}}}
    measures = {
        "school": {
            "name": "S",
            "kind": "school_access",
            "reward": False,
            "trigger": {"list": "black"},
            "targets": ["self", "children"],
        }
    }
    base = tiny_scheme(association={"household_share": n(0.5)}, lists=lists, measures=measures)
    for scen, spill in (((), True), (("no-association",), False)):
        run = TinyRun(with_scenario(base, *scen), persons=200)
        parent = next(
            int(e)
            for e in range(200)
            if run.pop.age[e] >= 18 and any(run.pop.age[m] < 18 for m in run.household_of(e))
        )
        run.inject(1, parent, "speeding")
        run.advance(1)
        kin = [m for m in run.household_of(parent) if m != parent]
        assert all(run.score(m) == (145.0 if spill else 150.0) for m in kin)
        m = run.measure_episodes()
        assert (sorted(m["entity"].tolist()) != [parent]) == spill


def test_intrusion_retargets_about_one_percent_and_marks_them() -> None:
    run = TinyRun(with_scenario(tiny_scheme(), "intrusion"), persons=50)
    for i in range(20000):
        run.inject(1, i % 50, "blood-donation")
    run.advance(1)
    r = run.records()
    tampered = r["error"] == ERRORS.index("tampering")
    assert binomial_ok(int(tampered.sum()), 20000, 0.01)
    moved = r["entity"] != r["actor"]
    assert not r["truthful"][moved].any() and np.all(tampered[moved])


def test_favouritism_favours_officials_households_only() -> None:
    s = with_scenario(
        tiny_scheme(), "favouritism", favouritism={"officials_share": n(0.5), "rate": n(365.0)}
    )
    run = TinyRun(s, persons=400)
    run.advance(10)
    r = run.records()
    fav = r["basis"] == 6
    officials = set(run.sim.officials.tolist())
    n_off = len(officials)
    assert abs(n_off - 0.5 * (run.pop.age[:400] >= 18).sum()) < 40
    assert binomial_ok(int(fav.sum()), 10 * n_off * 1000, 0.001)  # Poisson(n_off) a day
    assert set(r["actor"][fav].tolist()) <= officials
    for who, ent in zip(r["actor"][fav], r["entity"][fav], strict=True):
        assert run.pop.household[who] == run.pop.household[ent]
    assert set(r["points"][fav].tolist()) == {5.0} and not r["truthful"][fav].any()


def test_black_market_is_for_those_who_can_afford_it() -> None:
    res = credsim.simulate(
        load_scheme_text(
            _yaml(
                with_scenario(
                    tiny_scheme(population={**tiny_scheme()["population"], "size": n(40000)}),
                    "black-market",
                )
            ),
            "t.yaml",
        ),
        population=40000,
        days=365,
        seed=3,
    )
    rec, pop = res.tables["records"], res.tables["population"]
    bought = np.array(rec["error"].to_pylist()) == "purchase"
    decile = pop["income_decile"].to_numpy(zero_copy_only=False)[
        rec["entity_id"].to_numpy()[bought]
    ]
    per_decile = np.bincount(decile.astype(int), minlength=11)[1:]
    assert per_decile[0] == per_decile[1] == 0  # the poorest two deciles buy nothing
    assert per_decile[9] > 3 * per_decile[5]  # the richest buy about four times the middle
    assert not np.array(rec["truthful"].to_pylist())[bought].any()


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def _late_bills(mode: str) -> tuple[int, int]:
    s = tiny_scheme(
        behaviours={
            **tiny_scheme()["behaviours"],
            "late-utility-payment": {
                "rate": n(10.0),
                "channels": [{"kind": "agency", "agency": "utility", "detection": n(1)}],
            },
        },
        items={
            **tiny_scheme()["items"],
            "late-utility-payment": {
                "name": "Late bill",
                "behaviour": "late-utility-payment",
                "points": n(-2),
            },
        },
    )
    s["population"]["size"] = n(2000)
    res = credsim.simulate(
        load_scheme_text(_yaml(with_scenario(s, f"context-{mode}")), "t.yaml"),
        population=2000,
        days=365,
        seed=5,
    )
    exc = res.tables["records"]["excused"].to_numpy(zero_copy_only=False)
    return res.tables["records"].num_rows, int(exc.sum())


def test_context_blind_records_excusable_bills_context_aware_does_not() -> None:
    blind_n, blind_exc = _late_bills("blind")
    aware_n, aware_exc = _late_bills("aware")
    assert binomial_ok(blind_exc, blind_n, 0.1)  # a tenth of missed bills had an excuse
    assert aware_exc == 0
    assert abs(aware_n / blind_n - 0.9) < 0.03  # and those are simply not recorded


def test_covid_2020_blacklists_mask_offenders_and_redlists_hospitals() -> None:
    s = with_scenario(tiny_scheme(), "covid-2020")
    s["population"]["organizations_per_1000"] = n(100)
    run = TinyRun(s, persons=100)
    run.inject(2, 7, "no-mask")
    hospital = run.pop.n_persons  # the first organisation
    run.inject(3, hospital, "covid-hospital-designation")
    run.advance(3)
    eps = run.episodes()
    lists = [run.cs.lists[i] for i in eps["list"]]
    assert ("covid-mask-black", 7) in zip(lists, eps["entity"].tolist(), strict=True)
    assert ("covid-hospital-red", hospital) in zip(lists, eps["entity"].tolist(), strict=True)
    assert eps["end"][lists.index("covid-mask-black")] == -1  # a year-long listing


def test_unrelated_punishment_excludes_the_children_of_any_blacklisted_parent() -> None:
    lists = {"defaulters": {"name": "D", "kind": "black", "inclusion": {"item": "speeding"}}}
    run = TinyRun(with_scenario(tiny_scheme(lists=lists), "unrelated-punishment"), persons=300)
    age, hh = run.pop.age, run.pop.household
    parents: list[int] = []
    for e in range(300):  # two parents of children, in different households
        if age[e] >= 18 and any(age[m] < 18 for m in run.household_of(e)):
            if all(hh[e] != hh[p] for p in parents):
                parents.append(e)
        if len(parents) == 2:
            break
    run.inject(1, parents[0], "withdrawing-child-from-school")
    run.inject(1, parents[1], "speeding")  # a debt-defaulter-like list, unrelated to schooling
    run.advance(1)
    m = run.measure_episodes()
    school = run.cs.measures.index("school-exclusion")
    excluded = sorted(m["entity"][m["measure"] == school].tolist())
    kids = sorted(
        int(k) for p in parents for k in run.household_of(p) if age[k] < 18 and hh[k] == hh[p]
    )
    assert excluded == kids and kids
