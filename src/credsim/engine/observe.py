"""Observe: turn true behaviours into records through the scheme's channels.

Each channel of a behaviour detects an event with its probability. A camera matches the face to
someone; with the false match rate (which may differ by group and sex of the person seen) the
record lands on another person of the same group, whose face the algorithm confuses. Data entry by
hand (spreadsheets, chat apps) puts a share of records on a random wrong entity. Informants also
report people who did nothing. A record reaches the database after the channel's delay.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from credsim.engine.records import (
    B_BEHAVIOUR,
    B_FALSE_REPORT,
    COLUMNS,
    E_DATA_ENTRY,
    E_FALSE_REPORT,
    E_MISID,
    E_NONE,
    E_PURCHASE,
)
from credsim.population.types import ORGANIZATION, Population
from credsim.schemes.compile import ALL_CHANNELS, Compiled

CAMERA = ALL_CHANNELS.index("camera")
QUEUED = {
    k: COLUMNS[k]
    for k in (
        "behaviour_day",
        "entity",
        "actor",
        "item",
        "behaviour",
        "channel",
        "agency",
        "points",
        "truthful",
        "basis",
        "error",
        "excused",
        "import_row",
    )
}
"""The columns of a queued record (the rest are set when it reaches the database)."""
Batch = dict[str, np.ndarray]


class Observer:
    def __init__(
        self, cs: Compiled, pop: Population, order: np.ndarray, gstart: np.ndarray
    ) -> None:
        self.cs = cs
        self.pop = pop
        self.order = order  # entities sorted by group (organisations last)
        self.gstart = gstart
        self.agencies = sorted(set(cs.ch_agency))
        self.ch_agency_ix = np.array([self.agencies.index(a) for a in cs.ch_agency], np.int32)
        self.pending: dict[int, list[Batch]] = defaultdict(list)
        self.group = np.where(pop.kind == ORGANIZATION, len(cs.groups), pop.group).astype(np.int32)
        self.sex = np.clip(pop.sex, 0, 1).astype(np.int8)

    def _same_group(self, who: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = self.group[who]
        lo, hi = self.gstart[g], self.gstart[g + 1]
        return self.order[lo + (rng.random(who.shape[0]) * (hi - lo)).astype(np.int64)]

    def _wrong_entity(self, who: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random entity of the same kind (a typing error)."""
        npers, n = self.pop.n_persons, self.pop.n
        org = who >= npers
        lo = np.where(org, npers, 0)
        hi = np.where(org, n, npers)
        return (lo + (rng.random(who.shape[0]) * (hi - lo)).astype(np.int64)).astype(np.int32)

    def observe(
        self, day: int, actor: np.ndarray, kind: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Queue the records that the day's behaviours (and false reports) will produce."""
        cs = self.cs
        # context: an occurrence with a legitimate excuse (drawn once per occurrence, so every
        # channel sees the same); a context-aware scheme does not record it at all
        excused = rng.random(actor.shape[0]) < cs.excusable[kind] if cs.excusable.any() else None
        if excused is not None and cs.context_aware:
            actor, kind, excused = actor[~excused], kind[~excused], None
        # behaviours come in behaviour order (Behaviour.day): a behaviour's events are a slice
        ordered = kind.shape[0] < 2 or bool((kind[1:] >= kind[:-1]).all())
        bounds = np.searchsorted(kind, np.arange(len(cs.behaviours) + 1)) if ordered else None
        for c in range(cs.ch_behaviour.shape[0]):
            k = int(cs.ch_behaviour[c])
            sel: slice | np.ndarray = (
                slice(int(bounds[k]), int(bounds[k + 1])) if bounds is not None else kind == k
            )
            who = actor[sel]
            seen = rng.random(who.shape[0]) < cs.ch_detect[c]
            who = who[seen]
            exc = excused[sel][seen] if excused is not None else np.zeros(who.shape[0], bool)
            if who.shape[0] == 0 and cs.ch_false_reports[c] == 0:
                continue
            entity = who.copy()
            error = np.full(who.shape[0], E_NONE, np.int8)
            if cs.ch_kind[c] == CAMERA:
                fmr = np.minimum(
                    cs.ch_fmr[c, self.group[who]] * cs.ch_fmr_sex[c, self.sex[who]], 1.0
                )
                mis = rng.random(who.shape[0]) < fmr
                if mis.any():
                    entity[mis] = self._same_group(who[mis], rng)
                    error[mis] = E_MISID
            actors = who
            if cs.ch_false_reports[c] > 0:
                nf = int(rng.poisson(self.pop.n_persons * cs.ch_false_reports[c] / 365.0))
                if nf:
                    targets = (rng.random(nf) * self.pop.n_persons).astype(np.int32)
                    entity = np.concatenate([entity, targets])
                    actors = np.concatenate([actors, np.full(nf, -1, np.int32)])
                    error = np.concatenate([error, np.full(nf, E_FALSE_REPORT, np.int8)])
                    exc = np.concatenate([exc, np.zeros(nf, bool)])
            if cs.data_entry_error > 0 and entity.shape[0]:
                typo = rng.random(entity.shape[0]) < cs.data_entry_error
                if typo.any():
                    entity[typo] = self._wrong_entity(entity[typo], rng)
                    error[typo] = np.where(
                        error[typo] == E_FALSE_REPORT, E_FALSE_REPORT, E_DATA_ENTRY
                    )
            m = entity.shape[0]
            if m == 0:
                continue
            item = int(cs.behaviour_item[k])
            batch: Batch = {
                "behaviour_day": np.where(actors >= 0, day, -1).astype(np.int32),
                "entity": entity.astype(np.int32),
                "actor": actors.astype(np.int32),
                "item": np.full(m, item, np.int32),
                "behaviour": np.full(m, k, np.int32),
                "channel": np.full(m, cs.ch_kind[c], np.int8),
                "agency": np.full(m, self.ch_agency_ix[c], np.int32),
                "points": np.full(m, cs.points[item]),
                "truthful": (entity == actors) & ~cs.fraudulent[k],
                "basis": np.where(actors >= 0, B_BEHAVIOUR, B_FALSE_REPORT).astype(np.int8),
                "error": np.where(cs.fraudulent[k] & (error == E_NONE), E_PURCHASE, error).astype(
                    np.int8
                ),
                "excused": exc,
            }
            self.queue(day + int(cs.ch_delay[c]), batch)

    def agency_index(self, name: str) -> int:
        """Index of an agency in the run's list, adding it if new (e.g. 'officials')."""
        if name not in self.agencies:
            self.agencies.append(name)
        return self.agencies.index(name)

    def queue(self, day: int, batch: Batch) -> None:
        """Queue records to reach the database on ``day``; columns a batch lacks get their
        defaults, so every queued batch has the same columns."""
        m = batch["entity"].shape[0]
        full = {
            k: batch[k] if k in batch else np.full(m, fill, dt) for k, (dt, fill) in QUEUED.items()
        }
        unknown = set(batch) - set(QUEUED)
        if unknown:
            raise KeyError(f"unknown record columns: {sorted(unknown)}")
        self.pending[day].append(full)

    def arrivals(self, day: int) -> Batch | None:
        """The records reaching the database today, or None."""
        batches = self.pending.pop(day, [])
        if not batches:
            return None
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
