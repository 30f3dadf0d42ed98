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
from numba import njit

from credsim.engine import arena
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
from credsim.population.types import Population
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
COLS = tuple(QUEUED)
"""The order of the output columns of :func:`_fill` (as QUEUED)."""


@njit(cache=True, nogil=True)
def _detect(actor, excused, u, p, who, exc):  # noqa: ANN001, ANN202
    """``who = actor[u < p]``, ``exc = excused[u < p]`` (False if ``excused`` is empty); the
    number kept."""
    m = 0
    for i in range(actor.shape[0]):  # without branches: write always, advance when kept
        who[m] = actor[i]
        m += u[i] < p
    if excused.shape[0] > 0:
        j = 0
        for i in range(actor.shape[0]):
            exc[j] = excused[i]
            j += u[i] < p
    else:
        exc[:m] = False
    return m


@njit(cache=True, nogil=True)
def _fill(
    detect,
    entity,
    actors,
    error,
    exc,
    u,
    p,
    day,
    item,
    k,
    chan,
    agency,
    points,
    fraud,  # noqa: ANN001
    o_bday,
    o_entity,
    o_actor,
    o_item,
    o_beh,
    o_chan,
    o_agency,
    o_points,
    o_truth,
    o_basis,
    o_error,
    o_exc,
    o_import,
    o,
):  # noqa: ANN202
    """Write one channel's records at ``o`` of the output columns; return the new end.

    ``detect``: the records are ``entity[u < p]`` (detection fused in; actors are the entities,
    no error; ``exc`` as in :func:`_detect`). Else ``entity``, ``actors``, ``error`` and ``exc``
    are the channel's final records (false reports have actor -1). One column at a time (simple
    loops, vectorised), a compaction without branches."""
    has_exc = exc.shape[0] > 0
    n = entity.shape[0]
    if detect:
        end = o
        for i in range(n):
            o_entity[end] = entity[i]
            end += u[i] < p
        if has_exc:
            j = o
            for i in range(n):
                o_exc[j] = exc[i]
                j += u[i] < p
        else:
            o_exc[o:end] = False
        o_actor[o:end] = o_entity[o:end]
        o_bday[o:end] = day
        o_truth[o:end] = not fraud
        o_basis[o:end] = B_BEHAVIOUR
        o_error[o:end] = E_PURCHASE if fraud else E_NONE
    else:
        end = o + n
        o_entity[o:end] = entity
        o_actor[o:end] = actors
        if has_exc:
            o_exc[o:end] = exc
        else:
            o_exc[o:end] = False
        for i in range(n):
            a = actors[i]
            o_bday[o + i] = day if a >= 0 else -1
            o_truth[o + i] = entity[i] == a and not fraud
            o_basis[o + i] = B_BEHAVIOUR if a >= 0 else B_FALSE_REPORT
            err = error[i]
            o_error[o + i] = E_PURCHASE if fraud and err == E_NONE else err
    o_item[o:end] = item
    o_beh[o:end] = k
    o_chan[o:end] = chan
    o_agency[o:end] = agency
    o_points[o:end] = points
    o_import[o:end] = -1
    return end


@njit(cache=True, nogil=True)
def _fill_run(
    who, exc, u, chs, sizes, detect, item, beh, chan, agency, points, fraud, day, outs, o
):  # noqa: ANN001, ANN202
    """:func:`_fill` (``detect`` true) for a run of simple channels ``chs`` at once: channel
    ``chs[i]`` reads the next ``sizes[i]`` entries of ``who``, ``exc`` (empty: no excuses)
    and ``u``; the channels' constants are arrays by channel; ``outs``: the output columns.
    One call instead of one per channel: the day's records are written without going back to
    Python between channels."""
    a = 0
    for i in range(chs.shape[0]):
        c = chs[i]
        b = a + sizes[i]
        e = exc[a:b] if exc.shape[0] > 0 else exc
        args = (True, who[a:b], who[a:b], np.zeros(0, np.int8), e, u[a:b], detect[c], day)
        o = _fill(*args, item[c], beh[c], chan[c], agency[c], points[c], fraud[c], *outs, o)
        a = b
    return o


class _Own(dict):  # type: ignore[type-arg]
    """A queued batch whose arrays were made by :meth:`Observer.observe` (shared with none)."""


class Observer:
    def __init__(
        self,
        cs: Compiled,
        pop: Population,
        group: np.ndarray,
        order: np.ndarray,
        gstart: np.ndarray,
    ) -> None:
        """``group``: each entity's group, organisations an extra last one
        (:func:`~credsim.engine.shards.group_with_orgs`); ``order``: the entities sorted by
        it, group ``g``'s at ``order[gstart[g] : gstart[g + 1]]``."""
        self.cs = cs
        self.pop = pop
        self.group = group
        self.order = order
        self.gstart = gstart
        self.agencies = sorted(set(cs.ch_agency))
        self.ch_agency_ix = np.array([self.agencies.index(a) for a in cs.ch_agency], np.int32)
        self.pending: dict[int, list[Batch]] = defaultdict(list)
        self.sex = np.clip(pop.sex, 0, 1).astype(np.int8)
        C = cs.ch_behaviour.shape[0]
        # per channel: the constant columns, and whether detection is its only draw
        self._const = [
            (
                int(cs.behaviour_item[cs.ch_behaviour[c]]),
                int(cs.ch_behaviour[c]),
                int(cs.ch_kind[c]),
                int(self.ch_agency_ix[c]),
                float(cs.points[cs.behaviour_item[cs.ch_behaviour[c]]]),
                bool(cs.fraudulent[cs.ch_behaviour[c]]),
            )
            for c in range(C)
        ]
        self._simple = [
            cs.ch_kind[c] != CAMERA and cs.ch_false_reports[c] == 0 and cs.data_entry_error <= 0
            for c in range(C)
        ]
        # the constants again as arrays by channel, for _fill_run
        item, k, chan, agency, points, fraud = zip(*self._const, strict=True) if C else [()] * 6
        self._by_channel = (
            np.asarray(cs.ch_detect, np.float64),
            np.array(item, np.int64),
            np.array(k, np.int64),
            np.array(chan, np.int64),
            np.array(agency, np.int64),
            np.array(points, np.float64),
            np.array(fraud, np.bool_),
        )

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
        """Queue the records that the day's behaviours (and false reports) will produce.

        The draws are those of one channel after another; each channel's records are then
        written by one kernel into the columns of one batch per delay (channels of one delay
        follow each other in that day's queue, so the batch is their concatenation)."""
        self.add(self.plan(day, actor, kind, rng))

    def add(self, planned: list[tuple[int, Batch]]) -> None:
        """Queue batches made by :meth:`plan`, in order."""
        for due, batch in planned:
            self.pending[due].append(batch)

    def plan(
        self, day: int, actor: np.ndarray, kind: np.ndarray, rng: np.random.Generator
    ) -> list[tuple[int, Batch]]:
        """:meth:`observe` without queueing: (arrival day, batch) of the day's records, in the
        order they are to be queued. Reads only what no day changes, so it may run ahead of
        the day, on another thread."""
        cs = self.cs
        # context: an occurrence with a legitimate excuse (drawn once per occurrence, so every
        # channel sees the same); a context-aware scheme does not record it at all
        excused = rng.random(actor.shape[0]) < cs.excusable[kind] if cs.excusable.any() else None
        if excused is not None and cs.context_aware:
            actor, kind, excused = actor[~excused], kind[~excused], None
        no_exc = np.zeros(0, np.bool_)
        # behaviours come in behaviour order (Behaviour.day): a behaviour's events are a slice
        ordered = kind.shape[0] < 2 or bool((kind[1:] >= kind[:-1]).all())
        bounds = np.searchsorted(kind, np.arange(len(cs.behaviours) + 1)) if ordered else None
        jobs: dict[int, list[tuple]] = {}  # delay -> (channel, size bound, arrays) in order
        run: list[tuple] = []  # simple channels whose uniforms are not drawn yet
        for c in range(cs.ch_behaviour.shape[0]):
            k = int(cs.ch_behaviour[c])
            sel: slice | np.ndarray = (
                slice(int(bounds[k]), int(bounds[k + 1])) if bounds is not None else kind == k
            )
            who = actor[sel]
            exc = excused[sel] if excused is not None else no_exc
            if self._simple[c]:
                if who.shape[0]:
                    run.append((c, who, exc, sel))
                continue
            self._simple_run(run, actor, excused, rng, jobs)
            u = rng.random(who.shape[0])
            kept, exc_kept = np.empty(who.shape[0], np.int32), np.empty(who.shape[0], np.bool_)
            m = _detect(who, exc, u, cs.ch_detect[c], kept, exc_kept)
            out = self._channel(c, kept[:m], exc_kept[:m], rng)
            if out is not None:
                jobs.setdefault(int(cs.ch_delay[c]), []).append((c, out[0].shape[0], *out))
        self._simple_run(run, actor, excused, rng, jobs)
        planned = []
        for delay, js in jobs.items():
            batch = self._write(day, delay, js)
            if batch is not None:
                planned.append((day + delay, batch))
        return planned

    def _simple_run(
        self,
        run: list[tuple],
        actor: np.ndarray,
        excused: np.ndarray | None,
        rng: np.random.Generator,
        jobs: dict[int, list[tuple]],
    ) -> None:
        """Draw the detection uniforms of a run of simple channels (channel after channel, as
        one draw: the same numbers) and queue one job per delay for :func:`_fill_run`; empties
        ``run``."""
        if not run:
            return
        sizes = np.array([r[1].shape[0] for r in run], np.int64)
        u = rng.random(int(sizes.sum()))
        ends = np.cumsum(sizes)
        delays = [int(self.cs.ch_delay[r[0]]) for r in run]
        for d in dict.fromkeys(delays):
            ix = [i for i, x in enumerate(delays) if x == d]
            chs = np.array([run[i][0] for i in ix], np.int64)
            n = int(sizes[ix].sum())
            whole = len(ix) == len(run)
            uu = u if whole else np.concatenate([u[ends[i] - sizes[i] : ends[i]] for i in ix])
            sels = [run[i][3] for i in ix]
            if all(isinstance(x, slice) for x in sels) and all(
                a.stop == b.start for a, b in zip(sels[:-1], sels[1:], strict=True)
            ):  # consecutive slices of the day's behaviours: no copy
                span = slice(sels[0].start, sels[-1].stop)
                who = actor[span]
                exc = excused[span] if excused is not None else run[0][2]
            else:
                who = np.concatenate([run[i][1] for i in ix])
                exc = np.concatenate([run[i][2] for i in ix])
            jobs.setdefault(d, []).append((-1, n, chs, sizes[ix], who, exc, uu))
        run.clear()

    def _channel(
        self, c: int, who: np.ndarray, exc: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, ...] | None:
        """(entity, actor, error, excused) of a channel's detected records, after camera
        mismatches, false reports and data entry errors (each with its draws); None if none."""
        cs = self.cs
        if who.shape[0] == 0 and cs.ch_false_reports[c] == 0:
            return None
        entity = who.copy()
        error = np.full(who.shape[0], E_NONE, np.int8)
        if cs.ch_kind[c] == CAMERA:
            fmr = np.minimum(cs.ch_fmr[c, self.group[who]] * cs.ch_fmr_sex[c, self.sex[who]], 1.0)
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
            typo = rng.random((entity.shape[0],)) < cs.data_entry_error
            if typo.any():
                entity[typo] = self._wrong_entity(entity[typo], rng)
                error[typo] = np.where(error[typo] == E_FALSE_REPORT, E_FALSE_REPORT, E_DATA_ENTRY)
        if entity.shape[0] == 0:
            return None
        return entity, actors, error, exc

    def _write(self, day: int, delay: int, jobs: list[tuple]) -> Batch | None:
        """Write the records of one delay's channels (in channel order) into one batch."""
        bound = sum(j[1] for j in jobs)
        cols = [arena.empty(bound, QUEUED[k][0]) for k in COLS]  # (in place to be handed over)
        o = 0
        none_d = np.zeros(0)
        for c, _, a, b, *rest in jobs:
            if c < 0:  # a run of simple channels: (channels, sizes, who, excused, u)
                o = _fill_run(*rest, a, b, *self._by_channel, day, tuple(cols), o)  # type: ignore[call-arg]
                continue
            item, k, chan, agency, points, fraud = self._const[c]
            # (entity, actor, error, excused)
            ins = (False, a, b, rest[0], rest[1], none_d, 0.0)
            o = _fill(*ins, day, item, k, chan, agency, points, fraud, *cols, o)  # type: ignore[call-arg]
        if o == 0:
            return None
        # a batch that waits keeps no unused tail
        keep = o * 2 > bound or delay == 0
        return _Own(
            {k: col[:o] if keep else col[:o].copy() for k, col in zip(COLS, cols, strict=True)}
        )

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
        """The records reaching the database today, or None. A single batch built here is
        handed over as it is (its arrays belong to nobody else); otherwise the columns are
        concatenated (copies: callers may change them)."""
        batches = self.pending.pop(day, [])
        if not batches:
            return None
        if len(batches) == 1 and isinstance(batches[0], _Own):
            return dict(batches[0])
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
