"""The Mesa version of the reference model (benchmarks/mesa_reference.py): invariants by hand.

Skipped when Mesa is not installed (it is an optional benchmark dependency).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    name = "mesa_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_parameters_come_from_the_scheme() -> None:
    _, prm = _bench().reference_params()
    assert prm.behaviours == [f"b{k}" for k in range(10)]
    assert prm.rate[0] == 6 and prm.detect[0] == 0.3 and prm.points[9] == -50
    assert (prm.base, prm.lo, prm.hi) == (150, 100, 200)
    assert (prm.list_behaviour, prm.list_count) == (0, 6)
    assert prm.mean_p == 1.0


def test_listed_probability_matches_monte_carlo() -> None:
    mr = _bench()
    _, prm = mr.reference_params()
    rng = np.random.default_rng(3)
    n = 400_000
    k = prm.list_behaviour
    counts = rng.poisson(prm.rate[k] * prm.detect[k] * rng.gamma(prm.shape, prm.scale, n))
    share = float((counts >= prm.list_count).mean())
    pr = mr.listed_probability(prm, 365)
    assert abs(share - pr) < 4 * math.sqrt(pr * (1 - pr) / n)


@pytest.mark.parametrize("numpy_rng", [False, True])
def test_mesa_model_invariants(numpy_rng: bool) -> None:
    pytest.importorskip("mesa")
    mr = _bench()
    _, prm = mr.reference_params()
    # b0 much more frequent, so that listings happen within a few weeks
    prm = dataclasses.replace(prm, rate=[365.0, *prm.rate[1:]])
    model = mr.make_mesa_model(prm, 2000, seed=5, numpy_rng=numpy_rng)
    for _ in range(30):
        model.step()
    people = list(model.agents)
    assert len(people) == 2000
    assert all(prm.lo <= a.score <= prm.hi for a in people)
    # listing iff at least N detected b0, for good (no exit), on a day of the run
    assert all(a.listed == (a.seen >= prm.list_count) for a in people)
    assert all((1 <= a.listed_day <= 30) == a.listed for a in people)
    assert all(a.count == 0 for a in people if a.listed)
    assert all(a.count == a.seen for a in people if not a.listed)
    listed = sum(a.listed for a in people)
    assert model.listings == listed and 0 < listed < 2000
    assert model.records[0] == sum(a.seen for a in people)
    assert sum(model.records) > 0


def test_mesa_scores_without_clamping_are_the_sum_of_points() -> None:
    pytest.importorskip("mesa")
    mr = _bench()
    _, prm = mr.reference_params()
    # a score range wide enough never to clamp: the score is the base plus the points
    wide = dataclasses.replace(prm, lo=-1e9, hi=1e9)
    model = mr.make_mesa_model(wide, 2000, seed=6)
    for _ in range(10):
        model.step()
    total = sum(a.score - wide.base for a in model.agents)
    expected = sum(n * pts for n, pts in zip(model.records, wide.points, strict=True))
    assert total == pytest.approx(expected)


def test_paired_ratios_set_each_credsim_run_against_the_mesa_stretches_around_it() -> None:
    """Mesa: stretches of 10 days at 1,000 agents took 2 s, 4 s and 3 s; credsim (2,000
    persons, 365 days) ran between them: days 0.5 s / whole 1.0 s, then 0.73 s / 1.46 s."""
    pairs = _bench().Pairs.of([2.0, 4.0, 3.0], 10, 1000, [(0.5, 1.0), (0.73, 1.46)], 2000)
    mesa_1 = (2.0 + 4.0) / (2 * 10 * 1000)  # s per agent-day around the first run: 3e-4
    mesa_2 = (4.0 + 3.0) / (2 * 10 * 1000)  # 3.5e-4
    per_day = 365 * 2000
    assert pairs.mesa_days == 10
    assert pairs.ratios_days == pytest.approx([mesa_1 * per_day / 0.5, mesa_2 * per_day / 0.73])
    assert pairs.ratios_sim == pytest.approx([mesa_1 * per_day / 1.0, mesa_2 * per_day / 1.46])
    assert pairs.ratios_days[0] == pytest.approx(438.0)  # 3e-4 x 730,000 / 0.5


def test_the_year_run_stops_between_equal_stretches_for_each_credsim_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """103 Mesa days with 3 pairs: 3 days first, then 4 stretches of 25 days with a credsim
    run between each two (3 runs), every Mesa day stepped once."""
    bench = _bench()
    log: list[str] = []

    class Model:
        def step(self) -> None:
            log.append("m")

    class FakeProbe:
        def __init__(self, n: int, seed: int) -> None:
            log.append(f"start {n}")

        def run(self) -> tuple[float, float]:
            log.append("c")
            return (0.5, 1.0)

        def close(self) -> None:
            log.append("close")

    monkeypatch.setattr(bench, "Probe", FakeProbe)
    args = SimpleNamespace(pairs=3, persons=2000, seed=1)
    seconds, pairs = bench._year_rest(Model(), 1000, 103, args)
    assert log[0] == "start 2000" and log[-1] == "close"
    runs = "".join(log[1:-1])
    assert runs == "m" * 3 + ("m" * 25 + "c") * 3 + "m" * 25
    assert pairs is not None and pairs.mesa_days == 25 and len(pairs.ratios_days) == 3
    assert seconds >= 0.0
    assert bench._year_rest(Model(), 1000, 5, SimpleNamespace(pairs=0))[1] is None  # no pairs
