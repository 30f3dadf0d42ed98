"""Invariants over whole runs: bounds, reconciliation, ground truth, determinism, identifiers."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

import credsim
from tiny import load, n, tiny_scheme


def _random_scheme(rates: list[float], fmr: float, review: bool, assoc: float, appeal: bool):  # noqa: ANN202
    s = tiny_scheme(
        population={
            **tiny_scheme()["population"],
            "size": n(300),
            "organizations_per_1000": n(10),
            "friends_mean": n(3),
        },
        association={"household_share": n(assoc), "friend_share": n(assoc / 2)},
        data_entry={"error_rate": n(0.05)},
        lists={
            "low": {"name": "Low", "kind": "black", "inclusion": {"score_below": n(140)}},
            "many": {
                "name": "Many",
                "kind": "black",
                "inclusion": {"item": "jaywalking", "count": n(3)},
            },
        },
        measures={
            "ban": {
                "name": "Ban",
                "kind": "travel_ban_train",
                "reward": False,
                "trigger": {"list": "low"},
                "targets": ["self", "household"],
            }
        },
    )
    for (k, b), r in zip(s["behaviours"].items(), rates, strict=True):
        b["rate"] = n(r)
        b["channels"][0]["detection"] = n(0.7)
        if k == "jaywalking":
            b["channels"][0]["false_match_rate"] = n(fmr)
    s["behaviours"]["speeding"]["channels"].append(
        {
            "kind": "informant",
            "agency": "neighbours",
            "detection": n(0.2),
            "false_report_rate": n(0.5),
        }
    )
    if review:
        s["review"] = {"mode": "required", "catch_false": n(0.5), "capacity_per_day": n(50)}
    if appeal:
        s["appeals"] = {
            "available": True,
            "file_false": n(0.5),
            "file_true": n(0.1),
            "overturn_false": n(0.7),
            "overturn_true": n(0.1),
            "days_to_decide": n(7),
        }
    s["escalations"] = []
    return load(s)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rates=st.lists(st.floats(0, 30), min_size=3, max_size=3),
    fmr=st.floats(0, 0.5),
    review=st.booleans(),
    assoc=st.floats(0, 1),
    appeal=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_run_invariants(rates, fmr, review, assoc, appeal, seed) -> None:  # noqa: ANN001
    loaded = _random_scheme(rates, fmr, review, assoc, appeal)
    res = credsim.simulate(loaded, population=300, days=60, seed=seed)
    sim = res.simulation
    assert sim is not None
    rec = res.tables["records"]
    # scores stay within bounds
    sc = res.tables["scores"]["score"].to_numpy()
    assert np.all((sc >= 100) & (sc <= 200))
    # accepted/overturned records' applied points reconcile with each entity's score change
    ent = rec["entity_id"].to_numpy()
    applied = rec["applied"].to_numpy()
    total = np.bincount(ent, weights=applied, minlength=sim.pop.n)
    scored = sim.scored
    assert np.allclose(sim.score[scored], 150 + total[scored])
    assert np.all(total[~scored] == 0)
    status = np.array(rec["status"].to_pylist(), object)
    assert np.all(applied[(status == "rejected_in_review") | (status == "pending")] == 0)
    # every truthful record has a behaviour of that very entity behind it
    truthful = rec["truthful"].to_numpy(zero_copy_only=False)
    basis = np.array(rec["basis"].to_pylist(), object)
    own = truthful & (basis == "behaviour")
    actor = rec["actor_id"].to_numpy(zero_copy_only=False)
    bday = rec["behaviour_day"].to_numpy(zero_copy_only=False)
    assert np.all(actor[own] == ent[own])
    assert np.all(~np.isnan(bday[own].astype(float)))
    # untruthful observation records name their error; association records are never truthful
    wrong_obs = ~truthful & np.isin(basis, ["behaviour", "false_report"])
    err = np.array(rec["error"].to_pylist(), object)
    assert np.all(err[wrong_obs] != None)  # noqa: E711
    assert not truthful[basis == "association"].any()
    # list episodes: end after start, one open episode per (entity, list)
    li = res.tables["lists"]
    end = li["end_day"].to_numpy(zero_copy_only=False).astype(float)
    start = li["start_day"].to_numpy().astype(float)
    closed = ~np.isnan(end)
    assert np.all(end[closed] >= start[closed])
    open_ = li.filter(pc.is_null(li["end_day"]))
    pairs = list(zip(open_["entity_id"].to_pylist(), open_["list"].to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs))


def test_same_seed_gives_identical_tables_and_another_seed_differs() -> None:
    a = credsim.simulate("suzhou", population=3000, days=90, seed=7).tables
    b = credsim.simulate("suzhou", population=3000, days=90, seed=7).tables
    c = credsim.simulate("suzhou", population=3000, days=90, seed=8).tables
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["records"].equals(c["records"])
    assert a["records"].num_rows > 100


def test_generated_identifiers_pass_python_stdnum() -> None:
    res = credsim.simulate("suzhou", population=2000, days=1, seed=3)
    pop = res.tables["population"]
    kinds = pop["kind"].to_pylist()
    codes = pop["code"].to_pylist()
    assert len(set(codes)) == len(codes)
    n_person = n_org = 0
    for kind, code in zip(kinds, codes, strict=True):
        if kind == "person":
            assert ric.is_valid(code), code
            n_person += 1
        else:
            assert uscc.is_valid(code), code
            n_org += 1
    assert n_person == 2000 and n_org == 40  # 20 organisations per 1000 persons


def test_reference_model_matches_its_analytic_record_rate() -> None:
    rates = np.array([6, 2, 0.05, 12, 0.2, 0.5, 1, 0.1, 3, 0.02])
    det = np.array([0.3, 0.5, 1, 1, 0.8, 0.6, 0.9, 1, 0.2, 1])
    expected = float(rates @ det)  # E[p] = 2 x 0.5 = 1  ->  16.93 per person-year
    N = 20_000
    res = credsim.simulate("benchmarks/reference.yaml", population=N, days=365, seed=11)
    per_person = res.tables["records"].num_rows / N
    # Var of a person's yearly count: E[p] lambda + Var[p] lambda^2 with Var[p] = 0.5
    sd = np.sqrt((expected + 0.5 * expected**2) / N)
    assert abs(per_person - expected) < 4 * sd, (per_person, expected, sd)
    assert abs(expected - 16.93) < 1e-9
