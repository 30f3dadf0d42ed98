"""Numba kernels for the steps that are sequential per record.

Points must be applied record by record (clamping makes the order matter), escalation keeps a ring
buffer of the last N record ids per entity, item-triggered listing counts records per entity, and
measure bookkeeping counts how many sources keep a measure in force for a target. Each kernel is a
loop over the day's records only: cost grows with events, never with persons x days.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from credsim.engine.prefetch import AHEAD, prefetch

SCORE_AHEAD = 32
"""How many records ahead ``apply_points`` asks for an entity's state: a day's records run to
hundreds of thousands, and at 13M entities 32 kept more of their waits for memory in flight
than 8 (14.4 against 19.2 ns a record, 16: 15.7, 64: 14.3; measured alone)."""


@njit(cache=True, nogil=True)
def apply_points(
    ids,
    day,
    entity,
    item,
    points,
    applied,
    score,
    scored,
    lo,
    hi,  # noqa: ANN001
    cap_ix,
    cap,
    cap_acc,
    last_rec,
    last_neg,
    mark_negative,
):
    """Apply each record's points to its entity's score, in record order, clamped to [lo, hi].

    ``applied`` receives the actual change (0 for entities that are not scored). Items with a cap
    stop adding once an entity's absolute total from that item reaches the cap.
    """
    n = ids.shape[0]
    for j in range(n):
        if j + SCORE_AHEAD < n:  # the entity SCORE_AHEAD records on: its state on the way
            f = entity[ids[j + SCORE_AHEAD]]
            prefetch(score, f)
            prefetch(scored, f)
            prefetch(last_rec, f)
            prefetch(last_neg, f)
        r = ids[j]
        e = entity[r]
        last_rec[e] = r
        p = points[r]
        if mark_negative and p < 0:
            last_neg[e] = day
        if not scored[e]:
            applied[r] = 0.0
            continue
        it = item[r]
        if 0 <= it < cap_ix.shape[0]:
            ci = cap_ix[it]
            if ci >= 0:
                room = cap[it] - cap_acc[ci, e]
                if room < 0.0:
                    room = 0.0
                if abs(p) > room:
                    p = room if p > 0 else -room
                cap_acc[ci, e] += abs(p)
        s = score[e]
        new = min(max(s + p, lo), hi)
        applied[r] = new - s
        score[e] = new


@njit(cache=True, nogil=True)
def reverse_points(ids, entity, applied, score, scored, lo, hi):  # noqa: ANN001
    """Undo records overturned on appeal; ``applied`` becomes the net change left (often 0)."""
    for j in range(ids.shape[0]):
        r = ids[j]
        e = entity[r]
        if not scored[e]:
            continue
        s = score[e]
        new = min(max(s - applied[r], lo), hi)
        applied[r] += new - s
        score[e] = new


@njit(cache=True, nogil=True)
def escalate(
    ids,
    day,
    entity,
    item,
    truthful,
    rec_day,
    esc_item,
    esc_count,
    esc_window,  # noqa: ANN001
    ring,
    ring_off,
    filled,
    pos,
    out_entity,
    out_rule,
    out_trigger,
    out_truthful,
):
    """N accepted records of an item within W days produce one record of another item.

    Per (rule, entity) a ring buffer holds the ids of the last N records of the item. When it is
    full and the oldest lies within the window, the rule fires and the buffer empties, so the next
    firing needs N new records. The produced record is truthful only if all N records were.
    Returns the number of records produced (written to the ``out_*`` arrays).
    """
    n_out = 0
    for j in range(ids.shape[0]):
        r = ids[j]
        it = item[r]
        for q in range(esc_item.shape[0]):
            if esc_item[q] != it:
                continue
            cnt = esc_count[q]
            e = entity[r]
            base = ring_off[q] + e * cnt
            ring[base + pos[q, e]] = r
            pos[q, e] = (pos[q, e] + 1) % cnt
            if filled[q, e] < cnt:
                filled[q, e] += 1
            if filled[q, e] == cnt:
                oldest = ring[base + pos[q, e]]
                if esc_window[q] < 0 or day - rec_day[oldest] < esc_window[q]:
                    ok = True
                    for i in range(cnt):
                        if not truthful[ring[base + i]]:
                            ok = False
                    out_entity[n_out] = e
                    out_rule[n_out] = q
                    out_trigger[n_out] = r
                    out_truthful[n_out] = ok
                    n_out += 1
                    filled[q, e] = 0
    return n_out


@njit(cache=True, nogil=True)
def item_listings(
    ids,
    entity,
    item,
    list_item,
    list_count,
    count_row,
    counts,
    list_ep,  # noqa: ANN001
    enrolled,
    enrolled_only,
    out_list,
    out_entity,
    out_record,
):
    """Count accepted records of each list's item per entity; emit a listing at the N-th.

    Entities already on the list are not counted; the count restarts after each listing. A
    listing emitted here is marked -2 in ``list_ep`` until the caller gives it an episode id.
    The records some list counts are collected a chunk at a time, then counted with the
    episode and count of the record ``AHEAD`` on asked for (:func:`prefetch`): at entities in
    no order each waits for memory (14.8 against 5.3 ns a record at 13M entities)."""
    n_out = 0
    n, lists = ids.shape[0], list_item.shape[0]
    hit = np.empty(min(n, 4096), np.int64)
    for s in range(0, n, 4096):
        k = 0  # the chunk's records of an item some list counts (a tenth, or none, of them)
        for j in range(s, min(s + 4096, n)):
            it = item[ids[j]]
            for lst in range(lists):
                if list_item[lst] == it and it >= 0:
                    hit[k] = ids[j]
                    k += 1
                    break
        for h in range(k):
            if h + AHEAD < k:  # the counts of the record AHEAD on: on the way while this runs
                f = hit[h + AHEAD]
                for lst in range(lists):
                    if list_item[lst] == item[f]:
                        prefetch(list_ep, (lst, entity[f]))
                        prefetch(counts, (count_row[lst], entity[f]))
            r = hit[h]
            it = item[r]
            e = entity[r]
            for lst in range(lists):
                if list_item[lst] != it or it < 0:
                    continue
                if enrolled_only[lst] and not enrolled[e]:
                    continue
                if list_ep[lst, e] != -1:
                    continue
                row = count_row[lst]
                counts[row, e] += 1
                if counts[row, e] >= list_count[lst]:
                    counts[row, e] = 0
                    list_ep[lst, e] = -2
                    out_list[n_out] = lst
                    out_entity[n_out] = e
                    out_record[n_out] = r
                    n_out += 1
    return n_out


@njit(cache=True, nogil=True)
def count_sources(rows, targets, delta, counts):  # noqa: ANN001
    """Add ``delta`` (+1 or -1) to the number of sources keeping a measure on a target.

    Returns a mask of the inputs where the count crossed 0 -> 1 (open) or 1 -> 0 (close).
    """
    crossed = np.zeros(rows.shape[0], np.bool_)
    for j in range(rows.shape[0]):
        before = counts[rows[j], targets[j]]
        after = before + delta
        if after < 0:
            after = 0
        counts[rows[j], targets[j]] = after
        crossed[j] = (before == 0 and after > 0) or (before > 0 and after == 0)
    return crossed


# lowest set bit -> its index (de Bruijn sequence), for the bitset scan of unique_ids
_DEBRUIJN = 0x03F79D71B4CB0A89
_BIT_INDEX = np.zeros(64, np.int64)
for _i in range(64):
    _BIT_INDEX[(((1 << _i) * _DEBRUIJN) % (1 << 64)) >> 58] = _i


@njit(cache=True, nogil=True)
def unique_ids(ids, mark):  # noqa: ANN001, ANN201
    """The distinct values of ``ids`` (entity ids < len(mark)), sorted, as ``intp``: the day's
    changed entities index a dozen per-entity arrays, and numpy gathers by ``intp`` indices
    without casting them first (a third of the time: 0.12 against 0.40 ms for 134,000 of 3
    million).

    Few ids: one pass with a marker array that is left all False again, then a sort of the
    distinct ones. Many (more than one in 512 entities): a bitset of all entities, read back in
    order, 64 entities per word, so nothing is sorted (``mark`` is not used then)."""
    m = ids.shape[0]
    n = mark.shape[0]
    if m * 512 < n:
        out = np.empty(m, np.intp)
        k = 0
        for i in range(m):
            e = ids[i]
            if not mark[e]:
                mark[e] = True
                out[k] = e
                k += 1
        for i in range(k):
            mark[out[i]] = False
        return np.sort(out[:k])
    one = np.uint64(1)
    words = np.zeros((n >> 6) + 1, np.uint64)
    for i in range(m):
        e = ids[i]
        words[e >> 6] |= one << np.uint64(e & 63)
    out = np.empty(m, np.intp)
    k = 0
    mul, top = np.uint64(_DEBRUIJN), np.uint64(58)
    for w in range(words.shape[0]):
        x = words[w]
        while x != 0:
            low = x & (~x + one)
            out[k] = (w << 6) + _BIT_INDEX[(low * mul) >> top]
            k += 1
            x ^= low
    return out[:k]
