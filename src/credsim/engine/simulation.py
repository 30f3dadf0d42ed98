"""The daily loop: behave, observe, review, score, escalate, associate, appeal, repair, lists.

:class:`Simulation` owns the state arrays; each stage is a method that reads and updates them for
one day. Day 0 is the initial state; ticks are days 1..D. Everything random is drawn from a stream
keyed by (stage, day), so one seed fixes the whole run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from credsim.engine import ahead, insiders, kernels
from credsim.engine.behave import Behaviour, draw_traits, group_with_orgs
from credsim.engine.lists import ListBook
from credsim.engine.measures import MeasureBook
from credsim.engine.observe import Observer
from credsim.engine.records import (
    ACCEPTED,
    B_ASSOCIATION,
    B_BEHAVIOUR,
    B_ESCALATION,
    B_FALSE_REPORT,
    B_IMPORT,
    B_REPAIR,
    OVERTURNED,
    PENDING,
    REJECTED,
    RecordBuffer,
)
from credsim.engine.rng import Streams
from credsim.engine.shards import BLOCK_SIZE, counting_order, partition
from credsim.engine.snapshots import Snapshots
from credsim.engine.state import entity_state, outcome
from credsim.population.types import ORGANIZATION, PERSON, Population
from credsim.schemes.compile import ALL_CHANNELS, Compiled

SNAPSHOT_EVERY = 30
CH_ESCALATION = ALL_CHANNELS.index("escalation")
CH_ASSOCIATION = ALL_CHANNELS.index("association")
CH_REPAIR = ALL_CHANNELS.index("repair")


def draw_enrolment(cs: Compiled, pop: Population, rng: np.random.Generator) -> np.ndarray:
    e = cs.scheme.enrolment
    p = 1.0 if e.mode == "mandatory" else float(e.rate.value)  # type: ignore[union-attr]
    enrolled = rng.random(pop.n) < p
    if not e.organizations:
        enrolled[pop.kind == ORGANIZATION] = False
    if not e.persons:
        enrolled[pop.kind == PERSON] = False
    return enrolled


class Simulation:
    def __init__(
        self,
        cs: Compiled,
        pop: Population,
        seed: int,
        block_size: int = BLOCK_SIZE,
        *,
        threads: int = 1,
        traits: Future[np.ndarray] | None = None,
    ) -> None:
        """``threads``: threads the set-up may use (the population's blocks cut while the
        propensities are drawn, here or as ``traits``; alias tables built in parts)."""
        self.cs, self.pop = cs, pop
        self.streams = Streams(seed)
        self.timings: dict[str, float] = defaultdict(float)
        n = pop.n
        self.n_items = len(cs.items)
        self.item_assoc, self.item_recovery = self.n_items, self.n_items + 1
        self.item_favour = self.n_items + 2
        self.item_names = [*cs.items, "association-spillover", "score-recovery", "official-favour"]
        # the blocks (sorting the population) on another thread while this one draws and sets
        # up what needs no blocks (an executor starts no thread before its first task)
        with ThreadPoolExecutor(1, thread_name_prefix="credsim-setup") as helper:
            cut = helper.submit(partition, pop, len(cs.groups), block_size) if threads > 1 else None
            rng = self.streams.get("traits")
            props = traits.result() if traits else draw_traits(cs, pop.n_persons, pop.n_orgs, rng)
            self.enrolled = draw_enrolment(cs, pop, self.streams.get("enrolment"))
            self.state = entity_state(self.enrolled, cs.has_score, cs.base)
            """The entities' hot state (:data:`~credsim.engine.state.ENTITY_STATE`); its fields:"""
            self.score, self.scored = self.state["score"], self.state["scored"]
            self.last_rec, self.last_neg = self.state["last_rec"], self.state["last_neg"]
            self.grade = np.full(n, -1, np.int16)
            group = group_with_orgs(pop, len(cs.groups))
            order, gstart = counting_order(group, len(cs.groups) + 1)
            self.observer = Observer(cs, pop, group, order, gstart)
            self.records = RecordBuffer(max(1024, n // 4))
            self.records.kept = self.kept_columns
            capped = np.nonzero(np.isfinite(cs.cap))[0]
            self.cap_ix = np.full(self.n_items, -1, np.int32)
            self.cap_ix[capped] = np.arange(capped.shape[0], dtype=np.int32)
            self.cap_acc = np.zeros((capped.shape[0], n))
            E = cs.esc_item.shape[0]
            self.ring_off = np.concatenate(([0], np.cumsum(cs.esc_count.astype(np.int64) * n)))
            self.ring = np.full(int(self.ring_off[-1]), -1, np.int64)
            self.filled = np.zeros((E, n), np.int16)
            self.pos = np.zeros((E, n), np.int16)
            self.lists = ListBook(cs, n)
            self.measures = MeasureBook(cs, pop)
            blocks = cut.result() if cut is not None else None
        self.behave = Behaviour(cs, pop, props, block_size, blocks=blocks, threads=threads)
        self.behave.multiplier = self.measures.multiplier
        self.horizon: int | None = None
        """The last day the run will step through; known, it lets the next day's behaviours
        be drawn while a day is scored (:meth:`_ahead_of`)."""
        self._ahead: ahead.Ahead[tuple] | ahead.AheadProcess[tuple] | None = None
        self._drawing: bool | None = None  # whether days are drawn ahead (None: not decided)
        self.queue = np.zeros(0, np.int64)
        self._mark = np.zeros(n, np.bool_)  # scratch for kernels.unique_ids
        # review capacity is given at the jurisdiction's real size; a scaled run scales it
        size = float(cs.scheme.population.size.value) or 1.0
        self.capacity = (
            cs.capacity if cs.capacity < 0 else max(1, round(cs.capacity * pop.n_persons / size))
        )
        self.appeals_due: dict[int, list[np.ndarray]] = defaultdict(list)
        self._regrades = cs.regrades
        self.snap: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []
        """Score snapshots (entities, day, scores, grades), every 30 days. A run written to a
        folder empties each one (keeping its day) once it is written and, when the run
        checkpoints, saved (:class:`~credsim.store.stream.RecordStream`)."""
        self.scored_ids = np.nonzero(self.scored)[0].astype(np.int32)
        self.snapshots = Snapshots(self.scored_ids, self.score, self.grade)
        adults = np.nonzero((pop.kind == PERSON) & (pop.age >= 18))[0].astype(np.int32)
        drawn = self.streams.get("officials").random(adults.shape[0]) < cs.fav_officials
        self.officials = adults[drawn] if cs.fav_rate > 0 else adults[:0]
        """Persons who hold an office (favouritism scenario)."""
        if cs.fav_rate > 0:  # the records' agency names are fixed before the first record
            self.observer.agency_index("officials")

    def inject(self, batches_by_day: dict[int, dict[str, np.ndarray]]) -> None:
        """Queue ready-made records (imported events) to arrive on their days, ahead of that
        day's observations; from arrival on they are treated like observed records."""
        for day in sorted(batches_by_day):
            self.observer.queue(day, batches_by_day[day])

    # -- day 0 -----------------------------------------------------------------------------
    def start(self) -> None:
        ents = self.scored_ids
        old = self.grade[ents]  # indexing by an array copies
        self._grade(ents)
        self.lists.by_condition(
            ents,
            self.score,
            self.grade,
            self.scored,
            self.last_rec,
            0,
            self.streams.get("lists", 0),
        )
        started, ended = self.lists.take_changes()
        enrolled = np.nonzero(self.enrolled)[0].astype(np.int32)
        self.measures.update(0, started, ended, ents, old, self.grade[ents], enrolled)
        self._snapshot(0)

    # -- drawing the next day ahead ---------------------------------------------------------
    def _observed(self, day: int) -> tuple[np.ndarray, np.ndarray | None, list, float, float]:
        """A day's behaviours and the records they will make (:meth:`Behaviour.draw`,
        :meth:`Observer.plan`), changing nothing: (occurrences per behaviour, attempts
        blocked, planned batches, seconds drawing, seconds observing)."""
        st = self.streams
        t0 = time.perf_counter()
        thin = None if self.behave.independent else st.get("behave-thin", day)
        actor, kind, blocked = self.behave.draw(st.get("behave", day), thin)
        t1 = time.perf_counter()
        planned = self.observer.plan(day, actor, kind, st.get("observe", day))
        return self.behave.tally(kind), blocked, planned, t1 - t0, time.perf_counter() - t1

    def _ahead_of(self, day: int) -> None:
        """Have the days after ``day`` drawn and observed ahead (:mod:`credsim.engine.ahead`)
        while ``day`` goes on, when their behaviours depend on nothing the run changes
        (:attr:`Behaviour.independent`; every draw is keyed by its day, so the result is the
        same as drawn in turn) and it is worth it (:func:`~credsim.engine.ahead.worth_it`)."""
        if self.horizon is None or day >= self.horizon:
            return
        if self._drawing is None:  # decided once, on the first day (the runner is set by then)
            self._drawing = self.behave.independent and ahead.worth_it(self.behave)
            if self._drawing:
                self._ahead = ahead.drawer(self._observed, self.behave, lambda: outcome(self))
        if self._ahead is not None:
            self._ahead.start(day + 1, min(day + ahead.AHEAD_DAYS, self.horizon))

    def close(self) -> None:
        """Stop drawing ahead and the behaviour runner's workers (threads or Ray actors)."""
        if self._ahead is not None:
            self._ahead.close()
        self.behave.runner.close()

    # -- one tick --------------------------------------------------------------------------
    def step(self, day: int) -> None:
        st, tm, clock = self.streams, self.timings, time.perf_counter
        got = self._ahead.take(day) if self._ahead is not None else None
        events, blocked, planned, t_behave, t_observe = got or self._observed(day)
        if got is not None and self._ahead is not None and self._ahead.borrowed:
            planned = [(due, b if due == day else ahead.own_copy(b)) for due, b in planned]
        tm["behave"] += t_behave
        self.behave.add(events, blocked)
        self.observer.add(planned)
        self._ahead_of(day)
        t0 = clock()
        if self.cs.fav_rate > 0:
            insiders.favours(self, day, st.get("favouritism", day))
        arr = self.observer.arrivals(day)
        new = np.zeros(0, np.int64)
        if arr is not None:
            if self.cs.intrusion_share > 0:
                insiders.intrude(self, arr, st.get("intrusion", day))
            status = PENDING if self.cs.review else ACCEPTED
            new = self.records.append(day=day, status=status, **arr)
        t1 = clock()
        tm["observe"] += t_observe + (t1 - t0)
        accepted = self._review(day, new) if self.cs.review else new
        t2 = clock()
        changed: list[np.ndarray] = []  # the ids of the records that changed a score
        self._accept(accepted, day, changed)
        t3 = clock()
        self._appeals(day, accepted, changed)
        t4 = clock()
        self._recover(day, changed)
        t5 = clock()
        ents = np.zeros(0, np.intp)  # their entities, when the scheme reads them (regrades)
        if changed and self._regrades:
            ents = kernels.unique_ids(
                self.records.col("entity")[np.concatenate(changed)], self._mark
            )
        old = self.grade[ents]  # indexing by an array copies
        self._grade(ents)
        self.lists.due(day, self.last_neg)
        self.lists.by_condition(
            ents, self.score, self.grade, self.scored, self.last_rec, day, st.lazy("lists", day)
        )
        started, ended = self.lists.take_changes()
        t6 = clock()
        self.measures.update(day, started, ended, ents, old, self.grade[ents], None)
        t7 = clock()
        tm["review"] += t2 - t1
        tm["score"] += t3 - t2
        tm["appeal"] += t4 - t3
        tm["repair"] += t5 - t4
        tm["lists"] += t6 - t5
        tm["measures"] += t7 - t6

    def snapshot_if_due(self, day: int, last_day: int) -> None:
        if day % SNAPSHOT_EVERY == 0 or day == last_day:
            self._snapshot(day)

    # -- settled records -------------------------------------------------------------------
    def settled(self, day: int) -> int:
        """At the end of ``day``: the records below the returned id can no longer change and
        no stage reads them again, except their ``day`` (:attr:`kept_columns`).

        What still reads or changes a record: review (the queue), appeals (filed, not yet
        decided) and escalation (the records of a ring within the rule's window: a rule fires
        on a later day t only if its oldest record's day is above t - window)."""
        w = self.records.n
        if self.queue.shape[0]:
            w = min(w, int(self.queue[0]))  # first in, first out: the oldest waiting record
        for due in self.appeals_due.values():
            for ids in due:
                if ids.shape[0]:
                    w = min(w, int(ids.min()))
        cs = self.cs
        if cs.esc_item.shape[0]:
            if (cs.esc_window < 0).any():  # no window: any record held in a ring
                held = self.ring[self.ring >= 0]
                if held.shape[0]:
                    w = min(w, int(held.min()))
            else:
                first_day = day + 1 - int(cs.esc_window.max())
                w = min(w, int(np.searchsorted(self.records.col("day"), first_day)))
        return w

    @property
    def kept_columns(self) -> tuple[str, ...]:
        """Record columns read for settled records too: escalation compares the day of the
        oldest record in a ring with its window."""
        return ("day",) if self.cs.esc_item.shape[0] else ()

    # -- stages ----------------------------------------------------------------------------
    def _review(self, day: int, new: np.ndarray) -> np.ndarray:
        """Human review, first in first out, up to the daily capacity; the rest wait."""
        cs, rec = self.cs, self.records
        self.queue = np.concatenate([self.queue, new]) if new.shape[0] else self.queue
        take = self.queue if self.capacity < 0 else self.queue[: self.capacity]
        self.queue = self.queue[take.shape[0] :]
        if take.shape[0] == 0:
            return take
        rng = self.streams.get("review", day)
        truthful = rec.col("truthful")[take]
        u = rng.random(take.shape[0])
        reject = np.where(truthful, u < cs.reject_true, u < cs.catch_false)
        rec.col("status")[take] = np.where(reject, REJECTED, ACCEPTED)
        rec.col("review_day")[take] = day
        return take[~reject]

    def _apply(self, ids: np.ndarray, day: int, mark_negative: bool) -> None:
        r = self.records
        kernels.apply_points(
            ids,
            day,
            r.raw("entity"),
            r.raw("item"),
            r.raw("points"),
            r.raw("applied"),
            self.score,
            self.scored,
            self.cs.lo,
            self.cs.hi,
            self.cap_ix,
            self.cs.cap,
            self.cap_acc,
            self.last_rec,
            self.last_neg,
            mark_negative,
        )

    def _accept(self, ids: np.ndarray, day: int, changed: list[np.ndarray]) -> None:
        """Score accepted records, list by item, escalate and spill over, until nothing new."""
        rec = self.records
        rng = self.streams.lazy("lists", day, 1)
        batch = ids
        while batch.shape[0]:
            self._apply(batch, day, True)
            changed.append(batch)
            self.lists.by_items(batch, rec.raw("entity"), rec.raw("item"), self.enrolled, day, rng)
            self._associate(batch, day, changed)
            batch = self._escalate(batch, day)

    def _escalate(self, batch: np.ndarray, day: int) -> np.ndarray:
        cs, rec = self.cs, self.records
        if cs.esc_item.shape[0] == 0:
            return np.zeros(0, np.int64)
        cap = batch.shape[0] * cs.esc_item.shape[0]
        out_e = np.empty(cap, np.int32)
        out_q = np.empty(cap, np.int32)
        out_t = np.empty(cap, np.int64)
        out_ok = np.empty(cap, np.bool_)
        k = kernels.escalate(
            batch,
            day,
            rec.raw("entity"),
            rec.raw("item"),
            rec.raw("truthful"),
            rec.raw("day"),
            cs.esc_item,
            cs.esc_count,
            cs.esc_window,
            self.ring,
            self.ring_off,
            self.filled,
            self.pos,
            out_e,
            out_q,
            out_t,
            out_ok,
        )
        if k == 0:
            return np.zeros(0, np.int64)
        item = cs.esc_produces[out_q[:k]]
        ok = out_ok[:k]
        return rec.append(
            day=day,
            entity=out_e[:k],
            actor=np.where(ok, out_e[:k], -1),
            item=item,
            channel=CH_ESCALATION,
            points=cs.points[item],
            status=ACCEPTED,
            truthful=ok,
            basis=B_ESCALATION,
            cause=out_t[:k],
        )

    def _associate(self, batch: np.ndarray, day: int, changed: list[np.ndarray]) -> None:
        """A share of each deduction spills onto the household and friends of the person."""
        cs, pop, rec = self.cs, self.pop, self.records
        if cs.household_share <= 0 and cs.friend_share <= 0:
            return
        applied = rec.col("applied")[batch]
        ent = rec.col("entity")[batch]
        src = (applied < 0) & (rec.col("basis")[batch] != B_ASSOCIATION) & (ent < pop.n_persons)
        srec, sent = batch[src], ent[src]
        parts = []
        for share, lo, hi, nb in self._neighbours(sent):
            if share <= 0 or lo.shape[0] == 0:
                continue
            size = (hi - lo).astype(np.int64)
            origin = np.repeat(srec, size)
            offs = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
            pos = np.repeat(lo, size) + offs
            tgt = pos.astype(np.int32) if nb is None else nb[pos]
            keep = tgt != np.repeat(sent, size)
            parts.append((tgt[keep], origin[keep], share))
        for tgt, origin, share in parts:
            if tgt.shape[0] == 0:
                continue
            self._derive(
                day,
                changed,
                entity=tgt,
                item=self.item_assoc,
                channel=CH_ASSOCIATION,
                points=share * rec.col("applied")[origin],
                truthful=False,
                basis=B_ASSOCIATION,
                cause=origin,
            )

    def _neighbours(
        self, ent: np.ndarray
    ) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray | None]]:
        """(share, lo, hi, ids) per kind of tie; ids None: positions are entity ids (households
        are contiguous in person order)."""
        pop, cs = self.pop, self.cs
        hh = pop.household[ent]
        out: list[tuple[float, np.ndarray, np.ndarray, np.ndarray | None]] = [
            (cs.household_share, pop.hh_start[hh], pop.hh_start[hh + 1], None)
        ]
        if pop.friends is not None and pop.friends_indptr is not None:
            out.append(
                (cs.friend_share, pop.friends_indptr[ent], pop.friends_indptr[ent + 1], pop.friends)
            )
        return out

    def _appeals(self, day: int, accepted: np.ndarray, changed: list[np.ndarray]) -> None:
        cs, rec = self.cs, self.records
        if not cs.appeals:
            return
        rng = self.streams.get("appeal", day)
        basis = rec.col("basis")[accepted]
        own = accepted[(basis == B_BEHAVIOUR) | (basis == B_FALSE_REPORT) | (basis == B_IMPORT)]
        if own.shape[0]:
            truthful = rec.col("truthful")[own]
            filed = rng.random(own.shape[0]) < np.where(truthful, cs.file_true, cs.file_false)
            rec.col("appealed")[own[filed]] = True
            self.appeals_due[day + cs.appeal_days].append(own[filed])
        due = self.appeals_due.pop(day, [])
        if not due:
            return
        ids = np.concatenate(due)
        ids = ids[rec.col("status")[ids] == ACCEPTED]
        rec.col("appeal_day")[ids] = day
        truthful = rec.col("truthful")[ids]
        win = rng.random(ids.shape[0]) < np.where(truthful, cs.overturn_true, cs.overturn_false)
        won = ids[win]
        rec.col("status")[won] = OVERTURNED
        kernels.reverse_points(
            won, rec.raw("entity"), rec.raw("applied"), self.score, self.scored, cs.lo, cs.hi
        )
        self.lists.overturned(won, rec.col("entity"), day)
        changed.append(won)

    def _recover(self, day: int, changed: list[np.ndarray]) -> None:
        """Points regained after each full period without a new negative record."""
        cs = self.cs
        if cs.recovery_days <= 0 or day % cs.recovery_days:
            return
        ents = self.scored_ids
        s = self.score[ents]
        ok = (s < cs.base) & (day - self.last_neg[ents] >= cs.recovery_days)
        ents = ents[ok]
        pts = np.minimum(cs.recovery_points, cs.base - s[ok])
        self._derive(
            day,
            changed,
            entity=ents,
            actor=ents,
            item=self.item_recovery,
            channel=CH_REPAIR,
            points=pts,
            truthful=True,
            basis=B_REPAIR,
        )

    def _derive(self, day: int, changed: list[np.ndarray], **cols: object) -> None:
        """Append records the system derives itself (spill-over, recovery), accepted at once,
        and score them; they never start a clean period's clock again."""
        ids = self.records.append(day=day, status=ACCEPTED, **cols)  # type: ignore[arg-type]
        self._apply(ids, day, False)
        changed.append(ids)

    def _grade(self, ents: np.ndarray) -> None:
        if self.cs.grade_min.shape[0] == 0 or ents.shape[0] == 0:
            return
        s = self.score[ents]
        g = np.searchsorted(self.cs.grade_min, s, side="right") - 1
        self.grade[ents] = np.where(self.scored[ents], np.maximum(g, 0), -1)

    def _snapshot(self, day: int) -> None:
        self.snap.append((self.scored_ids, day, *self.snapshots.take()))


__all__ = ["Simulation", "PERSON", "B_REPAIR"]
