"""Sweeps and diffs: grid x seeds, tidy metrics, intervals computed by hand, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from credsim.errors import CredsimError, RunExistsError
from credsim.sweep import diff, format_diff, parse_sets, summarize, sweep, t95


def test_summary_mean_and_interval_by_hand() -> None:
    t = pa.Table.from_pylist(
        [{"cell": "x", "seed": s, "metric": "m", "value": v} for s, v in enumerate([1.0, 2.0, 3.0])]
    )
    r = summarize(t, []).to_pylist()[0]
    assert r["n"] == 3 and r["mean"] == 2.0 and r["sd"] == 1.0
    half = 4.303 / math.sqrt(3)  # t(0.975, 2 df) x sd / sqrt(n)
    assert r["ci_low"] == pytest.approx(2 - half) and r["ci_high"] == pytest.approx(2 + half)
    assert t95(4) == 2.776 and t95(100) == 1.96


def test_parse_sets() -> None:
    assert parse_sets(["review=none,required", "a.b=1"]) == [
        ("review", ["none", "required"]),
        ("a.b", ["1"]),
    ]
    for bad in (["review"], ["=x"], ["review="], ["a=1", "a=2"]):
        with pytest.raises(CredsimError):
            parse_sets(bad)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "s"
    return sweep("suzhou", ["review=none,required"], 3, out, population=3000, days=90, workers=2)


def test_sweep_writes_a_tidy_table_and_intervals(grid: Path) -> None:
    m = pq.read_table(grid / "metrics.parquet")
    cells = set(m["cell"].to_pylist())
    assert cells == {"review=none", "review=required"}
    assert set(m["seed"].to_pylist()) == {0, 1, 2}
    runs = sorted(p.name for p in (grid / "runs").iterdir())
    assert len(runs) == 6 and all((grid / "runs" / r / "manifest.json").exists() for r in runs)
    s = pq.read_table(grid / "summary.parquet").to_pylist()
    assert all(r["n"] == 3 for r in s)
    assert all(r["ci_low"] <= r["mean"] <= r["ci_high"] for r in s if not math.isnan(r["sd"]))
    assert (grid / "summary.csv").read_text().startswith('"cell"')


def test_sweep_results_do_not_depend_on_workers(grid: Path, tmp_path: Path) -> None:
    one = sweep(
        "suzhou", ["review=none,required"], 3, tmp_path / "one", population=3000, days=90, workers=1
    )
    a = pq.read_table(grid / "metrics.parquet").drop_columns(["run"])
    b = pq.read_table(one / "metrics.parquet").drop_columns(["run"])
    assert a.equals(b)


def test_diff_shows_the_effect_of_review_with_paired_intervals(grid: Path) -> None:
    t = diff(f"{grid}::review=none", f"{grid}::review=required")
    rows = {r["metric"]: r for r in t.to_pylist()}
    assert rows, "no common metrics"
    for r in rows.values():
        assert r["difference"] == pytest.approx(r["b"] - r["a"])
        if not math.isnan(r["ci_low"]):
            assert r["ci_low"] <= r["difference"] <= r["ci_high"]
    text = format_diff(t)
    assert "review=none" in text and "review=required" in text


def test_diff_of_two_runs_and_errors(grid: Path) -> None:
    runs = sorted((grid / "runs").iterdir())
    t = diff(str(runs[0]), str(runs[1]))
    assert t.num_rows > 0 and all(math.isnan(r["ci_low"]) for r in t.to_pylist())
    with pytest.raises(CredsimError, match="name a cell"):
        diff(str(grid), str(runs[0]))
    with pytest.raises(CredsimError, match="no cell"):
        diff(f"{grid}::review=maybe", str(runs[0]))


def test_sweep_refuses_a_non_empty_folder_and_bad_settings(grid: Path, tmp_path: Path) -> None:
    with pytest.raises(RunExistsError):
        sweep("suzhou", ["review=none"], 1, grid)
    with pytest.raises(CredsimError):
        sweep("suzhou", ["review=sometimes"], 1, tmp_path / "bad", population=500, days=5)
    assert not (tmp_path / "bad" / "runs").exists()
