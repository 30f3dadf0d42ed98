"""The Mesa version of the reference model (benchmarks/mesa_reference.py): invariants by hand.

Skipped when Mesa is not installed (it is an optional benchmark dependency).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

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
