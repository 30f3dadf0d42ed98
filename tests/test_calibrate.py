"""Calibration against published figures: metrics by hand, scaling, tolerance, gaps, validation,
the command line, and every bundled scheme that cites figures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from credsim.api import simulate
from credsim.calibrate import calibrate, measure, render, within
from credsim.cli import main
from credsim.engine.output import all_tables
from credsim.errors import CredsimError, SchemeError
from credsim.schemes.loader import bundled_ids, load_scheme
from tiny import TinyRun, load, n, tiny_scheme

# Households of the 12-person tiny population: 0-3, 4-6, 7-10, 11 alone.
LISTS = {
    "speeders": {
        "name": "Speeders",
        "kind": "black",
        "inclusion": {"item": "speeding"},
        "duration_days": n(10),
    },
    "low": {"name": "Low score", "kind": "black", "inclusion": {"score_below": n(135)}},
    "donors": {
        "name": "Donors",
        "kind": "red",
        "inclusion": {"item": "blood-donation"},
        "duration_days": n(10),
    },
}
MEASURES = {
    "ban": {
        "name": "Flight ban",
        "kind": "travel_ban_plane",
        "reward": False,
        "trigger": {"list": "speeders"},
        "targets": ["self", "household"],
    },
    "perk": {"name": "Perk", "kind": "discount", "reward": True, "trigger": {"enrolled": True}},
}


def entry(metric: str, figure: float, tolerance: float = 0.1, **more: Any) -> dict[str, Any]:
    return {
        "id": more.pop("id", "fig"),
        "description": f"published {metric}",
        "figure": n(figure),
        "metric": metric,
        "tolerance": n(tolerance),
        **more,
    }


@pytest.fixture(scope="module")
def story() -> TinyRun:
    run = TinyRun(tiny_scheme(lists=LISTS, measures=MEASURES), persons=12)
    run.inject(3, 4, "speeding")  # 150 -> 140; speeders 3..13; ban on 4 and on 5, 6 (household)
    run.inject(5, 11, "speeding")  # speeders 5..15; ban on 11 (lives alone)
    run.inject(8, 0, "jaywalking")
    run.inject(20, 4, "speeding")  # 140 -> 130: speeders 20..30, low from 20; ban on 4, 5, 6
    run.inject(25, 7, "blood-donation")  # donors 25..35
    run.advance(30)
    return run


@pytest.mark.parametrize(
    ("metric", "days", "expected"),
    [
        ("enrolled", 30, 12),
        ("enrolled_share", 30, 1.0),
        ("list_entries:speeders", 30, 3),
        ("list_entries:speeders", 12, 2),
        ("listed_end:speeders", 30, 0),  # the episode of day 20 ends on day 30
        ("listed_end:speeders", 12, 2),
        ("listed_end:speeders", 14, 1),  # 4's first episode ended on day 13
        ("listed_end:speeders", 15, 0),
        ("listed_ever:speeders", 30, 2),
        ("listed_ever:speeders", 4, 1),
        ("list_entries:low", 30, 1),
        ("list_entries:low", 19, 0),
        ("listed_end:low", 30, 1),
        ("listed_ever:low", 30, 1),
        ("listed_end:donors", 30, 1),
        ("list_entries:donors", 24, 0),
        ("measure_starts:ban", 30, 7),  # 4, 5, 6 twice; 11 once
        ("measure_starts:ban", 12, 4),
        ("measure_entities:ban", 30, 4),
        ("measure_starts:perk", 30, 0),  # all 12 start on day 0, which does not count
        ("measure_entities:perk", 30, 12),
        ("records:speeding", 30, 3),
        ("records:speeding", 19, 2),
        ("entities_with:speeding", 30, 2),
        ("entities_with:speeding", 4, 1),
        ("records:jaywalking", 30, 1),
        ("records:jaywalking", 7, 0),
        ("records:blood-donation", 30, 1),
        ("records:score-recovery", 30, 0),
        ("blocked:speeding", 30, 0),
    ],
)
def test_metric_by_hand(story: TinyRun, metric: str, days: int, expected: float) -> None:
    assert measure(metric, all_tables(story.sim), days, {}) == expected


def test_blocked_comes_from_the_blocked_counts(story: TinyRun) -> None:
    tables = all_tables(story.sim)
    assert measure("blocked:speeding", tables, 30, {"speeding": 7, "jaywalking": 2}) == 7
    assert measure("blocked:blood-donation", tables, 30, {"speeding": 7}) == 0


@pytest.mark.parametrize("metric", ["listed", "records", "enrolled:x"])
def test_measure_refuses_a_malformed_metric(story: TinyRun, metric: str) -> None:
    with pytest.raises(CredsimError, match="not a calibration metric"):
        measure(metric, all_tables(story.sim), 30, {})


def test_records_count_as_accepted_on_the_day_measured() -> None:
    """Review one record a day, every appeal filed and won after 5 days: a record is counted
    from its review to its overturning."""
    scheme = tiny_scheme(
        review={
            "mode": "required",
            "catch_false": n(0),
            "reject_true": n(0),
            "capacity_per_day": n(10),  # at 100 persons; 12 persons: round(1.2) = 1 a day
        },
        appeals={
            "available": True,
            "file_false": n(1),
            "file_true": n(1),
            "overturn_false": n(1),
            "overturn_true": n(1),
            "days_to_decide": n(5),
        },
    )
    run = TinyRun(scheme, persons=12)
    for e in (1, 4, 11):
        run.inject(2, e, "speeding")  # reviewed on days 2, 3, 4; overturned on 7, 8, 9
    run.advance(10)
    tables = all_tables(run.sim)
    got = [measure("records:speeding", tables, d, {}) for d in range(1, 11)]
    assert got == [0, 1, 2, 3, 3, 3, 2, 1, 0, 0]
    got = [measure("entities_with:speeding", tables, d, {}) for d in (2, 4, 8)]
    assert got == [1, 3, 1]


RATES = tiny_scheme(
    behaviours={
        "jaywalking": {
            "rate": n(40),
            "channels": [
                {
                    "kind": "camera",
                    "agency": "police",
                    "detection": n(0.5),
                    "false_match_rate": n(0.05),
                }
            ],
        },
        "speeding": {
            "rate": n(4),
            "channels": [{"kind": "agency", "agency": "police", "detection": n(1.0)}],
        },
        "blood-donation": {
            "rate": n(2),
            "channels": [
                {"kind": "agency", "agency": "health", "detection": n(1.0), "delay_days": n(3)}
            ],
        },
    },
    review={
        "mode": "required",
        "catch_false": n(0.5),
        "reject_true": n(0.1),
        "capacity_per_day": n(3),
    },
    appeals={
        "available": True,
        "file_false": n(0.5),
        "file_true": n(0.2),
        "overturn_false": n(0.6),
        "overturn_true": n(0.1),
        "days_to_decide": n(7),
    },
    lists={
        **LISTS,
        "jaywalkers": {
            "name": "Jaywalkers",
            "kind": "black",
            "inclusion": {"item": "jaywalking", "count": n(2)},
            "removal": {"clean_days": n(10)},
        },
    },
    measures={
        **MEASURES,
        "no-car": {
            "name": "No car",
            "kind": "other",
            "reward": False,
            "trigger": {"list": "jaywalkers"},
            "behaviour_effects": {"speeding": n(0)},
        },
    },
)
ALL_METRICS = [
    "enrolled",
    "list_entries:jaywalkers",
    "listed_end:jaywalkers",
    "listed_ever:jaywalkers",
    "listed_end:speeders",
    "measure_starts:no-car",
    "measure_entities:ban",
    "records:jaywalking",
    "records:speeding",
    "entities_with:jaywalking",
    "records:blood-donation",
    "blocked:speeding",
]


def test_one_long_run_measures_each_window_as_a_run_of_that_length() -> None:
    """A figure with ``days: D`` measured in a longer run equals the same metric of a D-day run
    (review backlog, appeals decided later, listings ended later, blocked acts)."""
    windows = (9, 23, 40)
    cal = [
        entry(m, 1, id=f"m{i}-{d}", days=n(d)) for d in windows for i, m in enumerate(ALL_METRICS)
    ]
    loaded = load({**RATES, "calibration": cal})
    rep = calibrate(loaded, population=300, seed=3, days=60)
    assert rep.days == 60
    got = {f.id: f.simulated for f in rep.figures}
    for d in windows:
        short = simulate(loaded, 300, d, 3)
        for i, m in enumerate(ALL_METRICS):
            assert got[f"m{i}-{d}"] == measure(m, short.tables, d, short.manifest["blocked"]), m
    assert got[f"m{ALL_METRICS.index('blocked:speeding')}-40"] > 0
    assert got[f"m{ALL_METRICS.index('records:jaywalking')}-40"] > 0


def test_run_days_default_and_at_least_every_figure() -> None:
    assert calibrate(load(tiny_scheme(calibration=[entry("enrolled", 100)]))).days == 365
    cal = [entry("enrolled", 100, id="a"), entry("enrolled", 100, id="b", days=n(400))]
    rep = calibrate(load(tiny_scheme(calibration=cal)), days=30)
    assert rep.days == 400
    assert [f.days for f in rep.figures] == [400, 400]


@pytest.mark.parametrize(
    ("population", "scale", "compared", "status"),
    [
        (100, "population", 100.0, "PASS"),  # the default: the real size (100)
        (50, "population", 50.0, "PASS"),  # 100 enrolled of 100 -> 50 of 50
        (250, "population", 250.0, "PASS"),
        (50, "none", 100.0, "FAIL"),  # compared as it is: 50 against 100
    ],
)
def test_scaling_with_population(population: int, scale: str, compared: float, status: str) -> None:
    loaded = load(tiny_scheme(calibration=[entry("enrolled", 100, 0.0, scale=scale)]))
    rep = calibrate(loaded, population=None if population == 100 else population, days=5)
    (f,) = rep.figures
    assert rep.population == population
    assert (f.published, f.compared, f.simulated, f.status) == (100, compared, population, status)
    assert f.ratio == population / compared


def test_shares_are_never_scaled() -> None:
    cal = [entry("enrolled_share", 1.0, 0.0, scale="none")]
    rep = calibrate(load(tiny_scheme(calibration=cal)), population=37, days=5)
    assert (rep.figures[0].compared, rep.figures[0].simulated, rep.ok) == (1.0, 1.0, True)


def test_default_population_is_the_real_size_at_most_200000() -> None:
    s = tiny_scheme(calibration=[entry("enrolled", 1)])
    s["population"]["size"] = n(13_000_000)
    from credsim.calibrate import default_population

    assert default_population(load(s).scheme) == 200_000
    assert default_population(load(tiny_scheme()).scheme) == 100


def test_tolerance_boundary() -> None:
    assert within(110, 100, 0.1) and within(90, 100, 0.1)
    assert not within(110.001, 100, 0.1) and not within(89.999, 100, 0.1)
    assert within(0, 0, 0) and not within(1, 0, 0.5)
    assert within(100, 100, 0) and not within(100.0001, 100, 0)


@pytest.mark.parametrize(
    ("figure", "tolerance", "status"),
    [
        (125, 0.2, "PASS"),  # 100 / 125 = 0.8: exactly 20% off
        (125, 0.199, "FAIL"),
        (80, 0.25, "PASS"),  # 100 / 80 = 1.25
        (80, 0.249, "FAIL"),
        (100, 0.0, "PASS"),
    ],
)
def test_tolerance_boundary_in_a_run(figure: float, tolerance: float, status: str) -> None:
    rep = calibrate(load(tiny_scheme(calibration=[entry("enrolled", figure, tolerance)])), days=3)
    assert rep.figures[0].status == status
    assert rep.ok is (status == "PASS")


def test_a_known_gap_is_listed_with_its_reason_and_never_fails() -> None:
    cal = [entry("enrolled", 100, 0.0, id="fits"), entry("records:speeding", 5000, id="court")]
    notes = {"calibration-gap-court": "the sources count cases, the model counts records"}
    rep = calibrate(load(tiny_scheme(calibration=cal, notes=notes)), days=3)
    fits, court = rep.figures
    assert (fits.status, court.status) == ("PASS", "GAP")
    assert court.reason == notes["calibration-gap-court"] and court.simulated == 0
    assert rep.ok
    text = render(rep)
    assert "known gaps" in text and "court: the sources count cases" in text
    assert "1 PASS, 0 FAIL, 1 GAP" in text


def test_render_shows_each_figure_beside_the_simulated_one() -> None:
    cal = [entry("enrolled", 100, 0.05, id="persons"), entry("enrolled", 200, 0.05, id="off")]
    rep = calibrate(load(tiny_scheme(calibration=cal)), population=50, days=3)
    lines = render(rep).splitlines()
    assert "population 50 (given; real size 100; counts scaled by 0.5)" in lines[0]
    assert lines[1].split() == [
        *("figure", "metric", "days", "published", "compared", "simulated"),
        *("ratio", "tol", "status"),
    ]
    assert lines[2].split() == [
        "persons",
        "enrolled",
        "3",
        "100",
        "50",
        "50",
        "1.000",
        "±5%",
        "PASS",
    ]
    assert lines[3].split() == ["off", "enrolled", "3", "200", "100", "50", "0.500", "±5%", "FAIL"]
    assert "persons: published enrolled (assumption)" in lines
    assert lines[-1].startswith("1 PASS, 1 FAIL, 0 GAP: NOT reproduced")


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("listed", "unknown metric 'listed'"),
        ("enrolled:speeders", "metric 'enrolled' takes no ':' argument"),
        ("list_entries", "metric 'list_entries' needs a list"),
        ("list_entries:nope", "unknown list 'nope' (the scheme's lists: speeders, low, donors)"),
        ("listed_end:ban", "unknown list 'ban'"),
        ("measure_starts:speeders", "unknown measure 'speeders'"),
        ("measure_entities:nope", "unknown measure 'nope'"),
        ("records:nope", "unknown item 'nope'"),
        ("entities_with:ban", "unknown item 'ban'"),
        ("blocked:nope", "unknown behaviour 'nope'"),
        ("Records:speeding", "String should match pattern"),
    ],
)
def test_bad_metric_is_a_scheme_error(metric: str, message: str) -> None:
    s = tiny_scheme(lists=LISTS, measures=MEASURES, calibration=[entry(metric, 1)])
    with pytest.raises(SchemeError) as info:
        load(s)
    text = str(info.value)
    line = yaml.safe_dump(s, sort_keys=False).splitlines().index(f"  metric: {metric}") + 1
    assert f"tiny.yaml:{line}: calibration[0].metric: " in text
    assert message in text


@pytest.mark.parametrize(
    ("cal", "notes", "where", "message"),
    [
        (entry("enrolled_share", 0.5), {}, "calibration[0].scale", "scale: none"),
        (entry("enrolled_share", 1.5, scale="none"), {}, "calibration[0].figure", "not a poss"),
        (entry("records:speeding", -1), {}, "calibration[0].figure", "not a possible value"),
        (entry("enrolled", 1, days=n(0)), {}, "calibration[0].days", "days must be at least 1"),
        (entry("enrolled", 1), {"calibration-gap-x": "why"}, "notes.calibration-gap-x", "no cal"),
    ],
)
def test_other_calibration_problems(
    cal: dict[str, Any], notes: dict[str, str], where: str, message: str
) -> None:
    with pytest.raises(SchemeError) as info:
        load(tiny_scheme(calibration=[cal], notes=notes))
    assert "tiny.yaml:" in str(info.value) and f": {where}: " in str(info.value)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------
# Command line


def _write(tmp_path: Path, name: str, **sections: Any) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_scheme(**sections), sort_keys=False))
    return str(path)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "good", calibration=[entry("enrolled", 100, 0.1)])
    assert main(["calibrate", good, "--population", "40", "--days", "5", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "population 40 (given" in out and "5 days, seed 2" in out
    assert ["fig", "enrolled", "5", "100", "40", "40", "1.000", "±10%", "PASS"] in [
        line.split() for line in out.splitlines()
    ]
    off = [entry("enrolled", 40, 0.1, scale="none")]
    assert main(["calibrate", _write(tmp_path, "off", calibration=off), "--days", "5"]) == 1
    out = capsys.readouterr().out
    assert "population 100 (default: at most 200,000; real size 100)" in out and "FAIL" in out
    gap = _write(
        tmp_path, "gap", calibration=off, notes={"calibration-gap-fig": "not reproducible"}
    )
    assert main(["calibrate", gap, "--days", "5"]) == 0
    assert "fig: not reproducible" in capsys.readouterr().out
    assert main(["calibrate", _write(tmp_path, "none"), "--days", "5"]) == 0
    assert "cites no published figures" in capsys.readouterr().out


def test_cli_bad_scheme_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "bad", calibration=[entry("listed_end:nope", 1)])
    assert main(["calibrate", bad]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "calibration[0].metric: unknown list 'nope'" in err
    assert main(["validate", bad]) == 2
    line = Path(bad).read_text().splitlines().index("  metric: listed_end:nope") + 1
    assert f"bad.yaml:{line}: calibration[0].metric: unknown list 'nope'" in capsys.readouterr().err
    good = _write(tmp_path, "good", calibration=[entry("enrolled", 1)])
    assert main(["calibrate", good, "--days", "0"]) == 2
    assert main(["calibrate", good, "--population", "0"]) == 2


# --------------------------------------------------------------------------------------------
# Bundled schemes

BUNDLED_POPULATION = 50_000


@pytest.mark.parametrize("sid", bundled_ids())
def test_bundled_scheme_reproduces_its_figures(sid: str) -> None:
    loaded = load_scheme(sid)  # here, not at collection: a broken scheme fails only its own test
    if not loaded.scheme.calibration:
        pytest.skip(f"{sid} has no calibration entries")
    t = time.perf_counter()
    rep = calibrate(loaded, population=BUNDLED_POPULATION, seed=1)
    print(render(rep), f"\n({time.perf_counter() - t:.1f} s)")
    off = [f"{f.id} ({f.metric}: {f.simulated:g} vs {f.compared:g})" for f in rep.figures]
    assert all(f.status in ("PASS", "GAP") for f in rep.figures), off
