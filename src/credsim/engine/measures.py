"""Measures: the joint rewards and punishments that follow a listing, a grade or enrolment.

A source (an entity entering a list, reaching a grade, or enrolled) activates each measure that
the trigger names, on each of the measure's targets: the entity itself (cause ``own``) and, where
the scheme says so, its household or its children (cause ``association``: punished for what a
relative did). A target keeps a measure while at least one source keeps it; one episode per
(measure, target, cause) records when, and ``via`` names the first source. Measures that change a
behaviour (a train ban stops train trips) update the behaviour's rate multiplier.
"""

from __future__ import annotations

import numpy as np

from credsim.engine import kernels
from credsim.engine.records import Table
from credsim.population.types import Population
from credsim.schemes.compile import (
    TRIG_ANY_BLACK,
    TRIG_ENROLLED,
    TRIG_GRADES,
    TRIG_LIST,
    Compiled,
)

OWN, ASSOCIATION = 0, 1
CAUSES = ["own", "association"]
MEASURE_COLUMNS: dict[str, tuple[type, int | float | bool]] = {
    "entity": (np.int32, -1),
    "measure": (np.int32, -1),
    "start": (np.int32, -1),
    "end": (np.int32, -1),
    "cause": (np.int8, 0),
    "via": (np.int32, -1),
}


class MeasureBook:
    def __init__(self, cs: Compiled, pop: Population) -> None:
        self.cs = cs
        self.pop = pop
        M = len(cs.measures)
        self.row = np.full((M, 2), -1, np.int32)
        r = 0
        for m in range(M):
            if cs.m_self[m]:
                self.row[m, OWN] = r
                r += 1
            if cs.m_household[m] or cs.m_children[m]:
                self.row[m, ASSOCIATION] = r
                r += 1
        self.counts = np.zeros((r, pop.n), np.int16)
        self.ep = np.full((r, pop.n), -1, np.int64)
        self.eps = Table(MEASURE_COLUMNS)
        affected = np.nonzero((cs.m_effect != 1.0).any(axis=0))[0]
        rows = np.ones((len(affected), pop.n))  # one matrix: behaviour draws read it as is
        self.multiplier = {int(k): rows[i] for i, k in enumerate(affected)}

    def _targets(self, m: int, src: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target, cause, source) for measure ``m`` activated by sources ``src``."""
        cs, pop = self.cs, self.pop
        tg, cause, via = [], [], []
        if cs.m_self[m]:
            tg.append(src)
            cause.append(np.full(src.shape[0], OWN, np.int8))
            via.append(src)
        if cs.m_household[m] or cs.m_children[m]:
            persons = src[src < pop.n_persons]
            hh = pop.household[persons]
            lo, hi = pop.hh_start[hh], pop.hh_start[hh + 1]
            size = (hi - lo).astype(np.int64)
            srcs = np.repeat(persons, size)
            offs = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
            mem = (np.repeat(lo, size) + offs).astype(np.int32)
            keep = mem != srcs
            if not cs.m_household[m]:
                keep &= pop.age[mem] < 18
            tg.append(mem[keep])
            cause.append(np.full(int(keep.sum()), ASSOCIATION, np.int8))
            via.append(srcs[keep])
        if not tg:
            z = np.zeros(0, np.int32)
            return z, z.astype(np.int8), z
        return (
            np.concatenate(tg).astype(np.int32),
            np.concatenate(cause),
            np.concatenate(via).astype(np.int32),
        )

    def _change(self, m: int, src: np.ndarray, delta: int, day: int) -> np.ndarray:
        t, cause, via = self._targets(m, src)
        if t.shape[0] == 0:
            return t
        rows = self.row[m, cause]
        crossed = kernels.count_sources(rows, t, delta, self.counts)
        t, cause, via, rows = t[crossed], cause[crossed], via[crossed], rows[crossed]
        if delta > 0:
            ids = self.eps.append(entity=t, measure=m, start=day, cause=cause, via=via)
            self.ep[rows, t] = ids
        else:
            self.eps.col("end")[self.ep[rows, t]] = day
            self.ep[rows, t] = -1
        return t

    def update(
        self,
        day: int,
        list_started: tuple[np.ndarray, np.ndarray],
        list_ended: tuple[np.ndarray, np.ndarray],
        grade_ents: np.ndarray,
        old_grade: np.ndarray,
        new_grade: np.ndarray,
        enrolled_now: np.ndarray | None,
    ) -> None:
        """Apply today's changes of list membership, grade and (at day 0) enrolment."""
        cs = self.cs
        changed: list[np.ndarray] = []
        for m in range(len(cs.measures)):
            trig = cs.m_trigger[m]
            on: np.ndarray | None = None
            off: np.ndarray | None = None
            if trig == TRIG_LIST:
                off = list_ended[1][list_ended[0] == cs.m_list[m]]
                on = list_started[1][list_started[0] == cs.m_list[m]]
            elif trig == TRIG_GRADES and grade_ents.shape[0]:
                mask = cs.m_grades[m]
                was = (old_grade >= 0) & mask[np.maximum(old_grade, 0)]
                now = (new_grade >= 0) & mask[np.maximum(new_grade, 0)]
                off, on = grade_ents[was & ~now], grade_ents[now & ~was]
            elif trig == TRIG_ANY_BLACK:
                off = list_ended[1][cs.list_black[list_ended[0]]]
                on = list_started[1][cs.list_black[list_started[0]]]
            elif trig == TRIG_ENROLLED and enrolled_now is not None:
                on = enrolled_now
            if off is not None and off.shape[0]:
                changed.append(self._change(m, off, -1, day))
            if on is not None and on.shape[0]:
                changed.append(self._change(m, on, +1, day))
        if self.multiplier and changed:
            self._refresh_multipliers(np.unique(np.concatenate(changed)))

    def _refresh_multipliers(self, ents: np.ndarray) -> None:
        active = np.zeros((len(self.cs.measures), ents.shape[0]), bool)
        for m in range(len(self.cs.measures)):
            for c in (OWN, ASSOCIATION):
                r = self.row[m, c]
                if r >= 0:
                    active[m] |= self.counts[r, ents] > 0
        for k, mult in self.multiplier.items():
            eff = np.where(active, self.cs.m_effect[:, k][:, None], 1.0)
            mult[ents] = eff.prod(axis=0)
