"""Lists: who enters a black or red list, when, by which rule and record, and how they leave.

Entry is by item (the N-th accepted record of an item), by score threshold or by grade. Exit is
by the end of a fixed period, by repair (performing the judgment: a daily probability, drawn once
at entry as a geometric waiting time, so no daily scan of members is needed), by a clean period
without new offences, when the triggering record is overturned on appeal, or, for score and grade
lists, when the condition no longer holds. Episodes are kept whole for the run store.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from numba import njit

from credsim.engine import kernels
from credsim.engine.records import Table
from credsim.schemes.compile import (
    INC_ITEM,
    INC_SCORE_AT_LEAST,
    INC_SCORE_BELOW,
    Compiled,
)

END_REASONS = ["expired", "repaired", "clean_period", "overturned", "condition_ended"]
R_EXPIRED, R_REPAIRED, R_CLEAN, R_OVERTURNED, R_CONDITION = range(5)
EPISODE_COLUMNS: dict[str, tuple[type, int | float | bool]] = {
    "entity": (np.int32, -1),
    "list": (np.int32, -1),
    "start": (np.int32, -1),
    "end": (np.int32, -1),
    "record": (np.int64, -1),
    "reason": (np.int8, -1),
}


_NO_WAITS = np.zeros(0, np.int64)


@njit(cache=True, nogil=True)
def _exits(lst, day, duration, perform, waits, big):  # noqa: ANN001, ANN202
    """Day and reason of each new episode's scheduled exit: the end of its fixed period or its
    repair (``waits``: the drawn waiting times of the lists with a daily repair probability, in
    order), whichever comes first; ``big``: never."""
    m = lst.shape[0]
    when = np.empty(m, np.int64)
    why = np.empty(m, np.int8)
    w = 0
    for i in range(m):
        li = lst[i]
        exp = day + duration[li] if duration[li] >= 0 else big
        rep = big
        if perform[li] > 0:
            rep = day + min(waits[w], big - day)
            w += 1
        when[i] = min(exp, rep)
        why[i] = R_REPAIRED if rep < exp else R_EXPIRED
    return when, why


@njit(cache=True, nogil=True)
def _groups(keys, lo, hi):  # noqa: ANN001, ANN202
    """Positions of the keys in [lo, hi) by key, in their order within a key (a stable sort),
    and where each key's run starts (and the last ends): ``keys == d`` for each distinct d."""
    valid = np.empty(keys.shape[0], np.int64)
    m = 0
    for i in range(keys.shape[0]):
        if lo <= keys[i] < hi:
            valid[m] = i
            m += 1
    valid = valid[:m]
    order = valid[np.argsort(keys[valid], kind="mergesort")]
    starts = np.empty(m + 1, np.int64)
    g = 0
    for j in range(m):
        if j == 0 or keys[order[j]] != keys[order[j - 1]]:
            starts[g] = j
            g += 1
    starts[g] = m
    return order, starts[: g + 1]


class ListBook:
    def __init__(self, cs: Compiled, n: int) -> None:
        self.cs = cs
        L = len(cs.lists)
        self.ep_of = np.full((L, n), -1, np.int64)  # current episode per (list, entity)
        item_lists = np.nonzero(cs.inc_kind == INC_ITEM)[0]
        self.count_row = np.full(L, -1, np.int32)
        self.count_row[item_lists] = np.arange(item_lists.shape[0], dtype=np.int32)
        self.counts = np.zeros((item_lists.shape[0], n), np.int32)
        self.list_item = np.where(cs.inc_kind == INC_ITEM, cs.inc_item, -1).astype(np.int32)
        self.eps = Table(EPISODE_COLUMNS)
        self.scheduled: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        self.clean_checks: dict[int, list[np.ndarray]] = defaultdict(list)
        self.started: list[tuple[np.ndarray, np.ndarray]] = []  # today's (list, entity) starts
        self.ended: list[tuple[np.ndarray, np.ndarray]] = []

    # -- episodes ---------------------------------------------------------------------------
    def start(
        self, lst: np.ndarray, ent: np.ndarray, rec: np.ndarray, day: int, rng: np.random.Generator
    ) -> None:
        m = lst.shape[0]
        if m == 0:
            return
        ids = self.eps.append(entity=ent, list=lst, start=day, record=rec)
        self.ep_of[lst, ent] = ids
        self.started.append((lst, ent))
        cs = self.cs
        p = cs.perform_daily[lst]
        has_p = p > 0
        waits = rng.geometric(p[has_p]) if has_p.any() else _NO_WAITS
        big = np.iinfo(np.int32).max
        when, why = _exits(lst, day, cs.duration, cs.perform_daily, waits, big)
        order, starts = _groups(when, -big - 1, big)
        for j in range(starts.shape[0] - 1):
            sel = order[starts[j] : starts[j + 1]]
            self.scheduled[int(when[sel[0]])].append((ids[sel], why[sel]))
        clean = cs.clean_days[lst]
        order, starts = _groups(clean, 0, 2**62)
        for j in range(starts.shape[0] - 1):
            sel = order[starts[j] : starts[j + 1]]
            self.clean_checks[day + int(clean[sel[0]])].append(ids[sel])

    def finish(self, ids: np.ndarray, day: int, reason: int | np.ndarray) -> np.ndarray:
        """End the still-open episodes among ``ids``; return those actually ended."""
        ids, first = np.unique(ids, return_index=True)
        end = self.eps.col("end")
        still = end[ids] < 0
        ids = ids[still]
        if ids.shape[0] == 0:
            return ids
        end[ids] = day
        self.eps.col("reason")[ids] = (
            reason if np.isscalar(reason) else np.asarray(reason)[first][still]
        )
        ent = self.eps.col("entity")[ids]
        lst = self.eps.col("list")[ids]
        self.ep_of[lst, ent] = -1
        self.ended.append((lst.astype(np.int32), ent.astype(np.int32)))
        return ids

    # -- daily rules ------------------------------------------------------------------------
    def by_items(
        self,
        ids: np.ndarray,
        rec_entity: np.ndarray,
        rec_item: np.ndarray,
        enrolled: np.ndarray,
        day: int,
        rng: np.random.Generator,
    ) -> None:
        if self.counts.shape[0] == 0 or ids.shape[0] == 0:
            return
        cap = ids.shape[0] * self.count_row.shape[0]
        out_l = np.empty(cap, np.int32)
        out_e = np.empty(cap, np.int32)
        out_r = np.empty(cap, np.int64)
        n = kernels.item_listings(
            ids,
            rec_entity,
            rec_item,
            self.list_item,
            self.cs.inc_count,
            self.count_row,
            self.counts,
            self.ep_of,
            enrolled,
            self.cs.list_enrolled_only,
            out_l,
            out_e,
            out_r,
        )
        self.start(out_l[:n], out_e[:n], out_r[:n], day, rng)

    def by_condition(
        self,
        ents: np.ndarray,
        score: np.ndarray,
        grade: np.ndarray,
        scored: np.ndarray,
        last_rec: np.ndarray,
        day: int,
        rng: np.random.Generator,
    ) -> None:
        """Score and grade lists: enter when the condition holds, leave when it stops holding."""
        cs = self.cs
        if ents.shape[0] == 0:
            return
        for lst in range(len(cs.lists)):
            kind = cs.inc_kind[lst]
            if kind == INC_ITEM:
                continue
            s = score[ents]
            if kind == INC_SCORE_BELOW:
                cond = s < cs.inc_threshold[lst]
            elif kind == INC_SCORE_AT_LEAST:
                cond = s >= cs.inc_threshold[lst]
            else:
                g = grade[ents]
                cond = (g >= 0) & cs.inc_grades[lst][np.maximum(g, 0)]
            cond &= scored[ents]
            on = self.ep_of[lst, ents] >= 0
            leave = ents[on & ~cond]
            if leave.shape[0]:
                self.finish(self.ep_of[lst, leave], day, R_CONDITION)
            enter = ents[cond & ~on]
            self.start(np.full(enter.shape[0], lst, np.int32), enter, last_rec[enter], day, rng)

    def due(self, day: int, last_neg: np.ndarray) -> None:
        """Scheduled exits (period over, repaired) and clean-period checks for today."""
        end = self.eps.col("end")
        for ids, why in self.scheduled.pop(day, []):
            open_ = end[ids] < 0
            self.finish(ids[open_], day, why[open_])
        for ids in self.clean_checks.pop(day, []):
            ids = ids[self.eps.col("end")[ids] < 0]
            if ids.shape[0] == 0:
                continue
            ent = self.eps.col("entity")[ids]
            lst = self.eps.col("list")[ids]
            since = day - last_neg[ent]
            clean = self.cs.clean_days[lst]
            done = since >= clean
            self.finish(ids[done], day, R_CLEAN)
            for d in np.unique(clean[~done] - since[~done]):
                self.clean_checks[day + int(d)].append(
                    ids[~done][(clean[~done] - since[~done]) == d]
                )

    def overturned(self, recs: np.ndarray, rec_entity: np.ndarray, day: int) -> None:
        """End listings whose triggering record was overturned on appeal."""
        if recs.shape[0] == 0 or self.eps.n == 0:
            return
        ents = rec_entity[recs]
        trig = self.eps.col("record")
        for lst in range(len(self.cs.lists)):
            ep = self.ep_of[lst, ents]
            has = ep >= 0
            hit = ep[has][trig[ep[has]] == recs[has]]
            self.finish(hit, day, R_OVERTURNED)

    def take_changes(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        def cat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
            if not parts:
                return np.zeros(0, np.int32), np.zeros(0, np.int32)
            return (
                np.concatenate([p[0] for p in parts]).astype(np.int32),
                np.concatenate([p[1] for p in parts]).astype(np.int32),
            )

        out = cat(self.started), cat(self.ended)
        self.started, self.ended = [], []
        return out
