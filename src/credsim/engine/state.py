"""The entities' state that the scoring kernel reads and writes for every record.

``apply_points`` (:mod:`credsim.engine.kernels`) updates, for each accepted record, its
entity's score, last record and last negative day, and reads whether the entity is scored: at
entities that follow no order, four cache misses a record at millions of persons when each
field is an array of its own. Here they are one array of 24-byte records, and
:class:`~credsim.engine.simulation.Simulation` holds the fields as views of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from credsim.engine.simulation import Simulation

NEVER = -(10**6)
"""``last_neg`` of an entity with no negative record yet: a day long before any run."""

ENTITY_STATE = np.dtype(
    [
        ("score", np.float64),
        ("last_rec", np.int64),
        ("last_neg", np.int32),
        ("scored", np.bool_),
    ],
    align=True,
)
"""One entity's record (24 bytes): a record's update waits for one line of memory (two for a
quarter of the entities, whose 24 bytes straddle two 64-byte lines) instead of four.
``apply_points`` took 25 to 31 ns a record at 13 million persons, alone, against 36 to 55 with
an array per field; in 3M-person runs (3 alternating pairs) 1.8 to 2.0 s of CPU a year against
2.1 to 2.3, the day's step 4.2 to 4.7 s against 4.6 to 4.9. The grade is not among the fields:
the day's changed entities' grades are read apart from their scores, and as an array of their
own (2 bytes an entity) they stay in cache; in these records those two reads made the step 1.3
s a year slower at 3M persons."""
STATE_FIELDS: tuple[str, ...] = tuple(ENTITY_STATE.names or ())


def entity_state(enrolled: np.ndarray, has_score: bool, base: float) -> np.ndarray:
    """The state at day 0: scored where enrolled (in a scheme with a score), every score at
    ``base`` (NaN without a score), no last record, no negative record."""
    state = np.empty(enrolled.shape[0], ENTITY_STATE)
    np.logical_and(enrolled, has_score, out=state["scored"])
    state["score"] = base if has_score else np.nan
    state["last_rec"] = -1
    state["last_neg"] = NEVER
    return state


def outcome(sim: Simulation) -> list[np.ndarray]:
    """The arrays of ``sim``'s outcome: scores and grades, caps, escalation rings, listings,
    measures taken, records, score snapshots. Only the run's own process writes them, and the
    days drawn ahead never read them (days are drawn ahead only when they depend on nothing
    the run changes), so the process drawing them is forked without them
    (:class:`~credsim.engine.ahead.AheadProcess`): the run's writes then copy no page of
    theirs (tests/test_shards.py forks it without every one of them, each bundled scheme)."""
    lists, taken = sim.lists, sim.measures
    return [
        *(sim.state, sim.grade, sim.cap_acc, sim.ring, sim.filled, sim.pos, sim._mark),
        *(lists.ep_of, lists.counts, taken.counts, taken.ep),
        *sim.records.arrays(),
        *(a for snap in sim.snap for a in snap[2:]),
    ]
