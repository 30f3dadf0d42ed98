"""Insiders in the system: an attacker who tampers with records through the system's own write
path (the ``intrusion`` scenario), and officials who grant themselves and their households
points nobody earned (``favouritism``). Both are part of what is simulated: ground truth marks
their records (``error``: tampering, favouritism)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from credsim.engine.records import B_FAVOUR, E_FAVOUR, E_TAMPER
from credsim.schemes.compile import ALL_CHANNELS

if TYPE_CHECKING:
    from credsim.engine.simulation import Simulation

CH_AGENCY = ALL_CHANNELS.index("agency")


def intrude(sim: Simulation, arr: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """An attacker re-targets a share of today's arriving records onto random persons,
    through the system's own write path; ground truth marks them as tampered."""
    hit = np.flatnonzero(rng.random(arr["entity"].shape[0]) < np.float64(sim.cs.intrusion_share))
    if hit.shape[0] == 0:
        return
    victims = (rng.random(hit.shape[0]) * sim.pop.n_persons).astype(np.int32)
    arr["entity"][hit] = victims
    arr["truthful"][hit] = arr["actor"][hit] == victims
    arr["error"][hit] = E_TAMPER


def favours(sim: Simulation, day: int, rng: np.random.Generator) -> None:
    """Officials raise their own or a relative's score with records nobody earned."""
    cs, pop, officials = sim.cs, sim.pop, sim.officials
    nf = int(rng.poisson(officials.shape[0] * cs.fav_rate / 365.0))
    if nf == 0 or officials.shape[0] == 0:
        return
    who = officials[(rng.random(nf) * officials.shape[0]).astype(np.int64)]
    hh = pop.household[who]
    lo, hi = pop.hh_start[hh], pop.hh_start[hh + 1]
    target = (lo + (rng.random(nf) * (hi - lo)).astype(np.int64)).astype(np.int32)
    sim.observer.queue(
        day,
        {
            "entity": target,
            "actor": who,
            "item": np.full(nf, sim.item_favour, np.int32),
            "channel": np.full(nf, CH_AGENCY, np.int8),
            "agency": np.full(nf, sim.observer.agency_index("officials"), np.int32),
            "points": np.full(nf, cs.fav_points),
            "truthful": np.zeros(nf, bool),
            "basis": np.full(nf, B_FAVOUR, np.int8),
            "error": np.full(nf, E_FAVOUR, np.int8),
        },
    )
