"""A run saved to a checkpoint and resumed ends with exactly the tables of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from credsim.engine import checkpoint
from credsim.engine.output import all_tables
from credsim.engine.simulation import Simulation
from credsim.engine.state import STATE_FIELDS
from credsim.errors import CredsimError
from credsim.population import generate_population
from credsim.schemes.compile import compile_scheme
from credsim.schemes.loader import load_scheme
from tiny import load, n, tiny_scheme


def _busy_scheme():  # noqa: ANN202
    """Review backlog, delays, appeals, spill-over, escalation, timed and repaired lists."""
    s = tiny_scheme(
        review={"mode": "required", "catch_false": n(0.6), "capacity_per_day": n(8)},
        appeals={
            "available": True,
            "file_false": n(0.5),
            "file_true": n(0.2),
            "overturn_false": n(0.8),
            "overturn_true": n(0.1),
            "days_to_decide": n(9),
        },
        association={"household_share": n(0.3)},
        data_entry={"error_rate": n(0.05)},
        escalations=[
            {"item": "jaywalking", "count": n(3), "window_days": n(60), "produces": "downgrade"}
        ],
        lists={
            "down": {
                "name": "Down",
                "kind": "black",
                "inclusion": {"item": "downgrade"},
                "duration_days": n(20),
            },
            "debt": {
                "name": "Debt",
                "kind": "black",
                "inclusion": {"item": "speeding"},
                "removal": {"performance_daily": n(0.05), "clean_days": n(25)},
            },
            "low": {"name": "Low", "kind": "black", "inclusion": {"score_below": n(140)}},
        },
        measures={
            "ban": {
                "name": "Ban",
                "kind": "travel_ban_train",
                "reward": False,
                "trigger": {"list": "debt"},
                "targets": ["self", "children"],
                "behaviour_effects": {"jaywalking": n(0.5)},
            }
        },
    )
    s["items"]["downgrade"] = {"name": "Downgrade", "points": n(-5)}
    s["score"]["recovery"] = {"clean_days": n(15), "points": n(2)}
    for b, r in (("jaywalking", 8.0), ("speeding", 1.0), ("blood-donation", 0.5)):
        s["behaviours"][b]["rate"] = n(r)
        s["behaviours"][b]["channels"][0]["delay_days"] = n(3)
    s["population"]["size"] = n(500)
    return load(s).scheme


def _fresh(scheme, persons: int, seed: int) -> Simulation:  # noqa: ANN001
    cs = compile_scheme(scheme)
    pop = generate_population(scheme.population, persons, seed, with_friends=False)
    sim = Simulation(cs, pop, seed)
    return sim


def _run(sim: Simulation, start: int, stop: int, last: int) -> None:
    for day in range(start, stop + 1):
        sim.step(day)
        sim.snapshot_if_due(day, last)


@pytest.mark.parametrize("scheme_name", ["busy", "nanjing"])
def test_resume_from_checkpoint_gives_identical_tables(tmp_path: Path, scheme_name: str) -> None:
    scheme = _busy_scheme() if scheme_name == "busy" else load_scheme("nanjing").scheme
    persons = 500 if scheme_name == "busy" else 3000
    seed, days, cut = 4, 120, 47
    whole = _fresh(scheme, persons, seed)
    whole.start()
    _run(whole, 1, days, days)

    first = _fresh(scheme, persons, seed)
    first.start()
    _run(first, 1, cut, days)
    if scheme_name == "busy":  # the cut falls in the middle of everything that spans days
        assert first.queue.size > 0, "review backlog"
        assert any(d > cut for d in first.observer.pending), "records still on their way"
        assert any(d > cut for d in first.appeals_due), "objections awaiting decision"
        assert any(d > cut for d in first.lists.scheduled), "scheduled list exits"
        assert first.measures.eps.n > 0 and first.lists.eps.n > 0
    path = checkpoint.save(tmp_path / "state.npz", first, cut, {"seed": seed})
    del first

    z, meta = checkpoint.load(path)
    assert meta["day"] == cut and meta["seed"] == seed
    resumed = _fresh(scheme, persons, seed)
    checkpoint.restore(resumed, z)
    for field in STATE_FIELDS:  # put back into the entities' state, not beside it
        assert np.shares_memory(getattr(resumed, field), resumed.state), field
    _run(resumed, cut + 1, days, days)

    a, b = all_tables(whole), all_tables(resumed)
    assert a["records"].num_rows > 200
    for name in a:
        assert a[name].equals(b[name]), name


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "state.npz"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CredsimError, match="cannot read the checkpoint"):
        checkpoint.load(p)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    sim = _fresh(_busy_scheme(), 200, 1)
    sim.start()
    _run(sim, 1, 10, 30)
    path = checkpoint.save(tmp_path / "state.npz", sim, 10, {})
    before = path.read_bytes()
    _run(sim, 11, 20, 30)

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, sim, 20, {})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]
