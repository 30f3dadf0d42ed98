"""The cache hints of the per-record kernels: emitted, harmless, and results unchanged.

The kernels that ask for an entity's state a few records ahead (:mod:`credsim.engine.prefetch`)
are checked against plain Python versions of their rules, on runs long enough (more records
than :data:`~credsim.engine.prefetch.AHEAD`) for the hints to be reached, with entities
repeated, so that a hint that wrote, or an index shifted by it, would show.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from credsim.engine import kernels
from credsim.engine.prefetch import AHEAD, prefetch, prefetch_read
from credsim.engine.shards import _bits, _cell_key, _uniform, draw_cells, pack_alias


@njit
def _hint_all(a1, a2, a3, i, j, k):  # noqa: ANN001, ANN202
    prefetch(a1, i)
    prefetch_read(a1, np.int32(i))
    prefetch(a2, (i, j))
    prefetch_read(a2, (np.uint64(i), np.int16(j)))
    prefetch(a3, (i, j, k))
    prefetch(a1, a1.shape[0])  # one past the end: a hint, never a fault
    return a1[i] + a2[i, j] + a3[i, j, k]


def test_hints_compile_for_each_index_form_and_change_nothing() -> None:
    a1 = np.arange(10.0)
    a2 = np.arange(12.0).reshape(3, 4)
    a3 = np.arange(24, dtype=np.uint64).reshape(2, 3, 4)
    before = (a1.copy(), a2.copy(), a3.copy())
    assert _hint_all(a1, a2, a3, 1, 2, 3) == 1.0 + 6.0 + 23.0
    for now, was in zip((a1, a2, a3), before, strict=True):
        assert np.array_equal(now, was)
    if platform.machine() in ("x86_64", "AMD64"):
        asm = next(iter(_hint_all.inspect_asm().values()))
        assert asm.count("prefetchw") >= 4  # the writes' hints
        assert "prefetcht0" in asm  # the reads' hints


@pytest.mark.parametrize(
    "index",
    [lambda a: prefetch(a, (1, 2)), lambda a: prefetch(a, 1.5), lambda a: prefetch(a[0], 0)],
    ids=["too-many-indices", "float-index", "not-an-array"],
)
def test_hints_refuse_what_is_not_an_element(index) -> None:  # noqa: ANN001
    with pytest.raises(TypingError):
        njit(index)(np.arange(4.0))


def _apply_points_reference(ids, day, entity, item, points, score, scored, lo, hi, cap_ix, cap):  # noqa: ANN001, ANN202, PLR0913
    """The scoring rule record by record, in plain Python."""
    applied = np.zeros(points.shape[0])
    last_rec = {}
    last_neg = {}
    acc: dict[tuple[int, int], float] = {}
    for r in ids:
        e = int(entity[r])
        last_rec[e] = int(r)
        p = float(points[r])
        if p < 0:
            last_neg[e] = day
        if not scored[e]:
            continue
        ci = cap_ix[item[r]]
        if ci >= 0:
            room = max(cap[item[r]] - acc.get((ci, e), 0.0), 0.0)
            p = max(min(p, room), -room)
            acc[(ci, e)] = acc.get((ci, e), 0.0) + abs(p)
        new = min(max(score[e] + p, lo), hi)
        applied[r] = new - score[e]
        score[e] = new
    return applied, last_rec, last_neg, acc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apply_points_with_hints_follows_the_rule_record_by_record(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 50, 40 * AHEAD  # few entities, many records: each entity's records interleave
    entity = rng.integers(0, n, m).astype(np.int32)
    item = rng.integers(0, 3, m).astype(np.int32)
    points = rng.choice([-30.0, -7.5, 4.0, 12.0], m)
    ids = np.sort(rng.choice(m, m - 17, replace=False)).astype(np.int64)  # some never applied
    scored = rng.random(n) < 0.8
    cap_ix = np.array([-1, 0, -1], np.int32)  # item 1 is capped at 20 a year
    cap = np.array([np.inf, 20.0, np.inf])
    score = np.full(n, 100.0)
    want = _apply_points_reference(
        ids, 9, entity, item, points, score.copy(), scored, 60.0, 130.0, cap_ix, cap
    )
    applied = np.full(m, -99.0)
    last_rec = np.full(n, -1, np.int64)
    last_neg = np.full(n, -1, np.int32)
    cap_acc = np.zeros((1, n))
    kernels.apply_points(
        ids, 9, entity, item, points, applied, score, scored, 60.0, 130.0, cap_ix, cap, cap_acc,
        last_rec, last_neg, True,
    )  # fmt: skip
    w_applied, w_last, w_neg, w_acc = want
    assert np.array_equal(applied[ids], w_applied[ids])
    untouched = np.setdiff1d(np.arange(m), ids)
    assert (applied[untouched] == -99.0).all()  # records not given are not written
    assert {e: int(last_rec[e]) for e in range(n) if last_rec[e] >= 0} == w_last
    assert {e: int(last_neg[e]) for e in range(n) if last_neg[e] >= 0} == w_neg
    assert {(0, e): cap_acc[0, e] for e in range(n) if cap_acc[0, e]} == {
        k: v for k, v in w_acc.items() if v
    }
    assert ((score >= 60.0) & (score <= 130.0)).all()


def test_draw_cells_with_hints_draws_what_the_alias_rule_says() -> None:
    """Two behaviours over two blocks of two groups; every actor recomputed from the cell's
    sequence by hand (position from the high half, coin from the low half, as documented)."""
    rng = np.random.default_rng(5)
    K, B, G1 = 2, 2, 2
    n = 40  # persons; positions 0..39, segments of 10 (block b, group g)
    seg = np.arange(0, n + 1, 10, dtype=np.int64)
    order = rng.permutation(n).astype(np.int32)  # position -> entity
    prob = rng.random((1, n))
    alias = np.stack([rng.integers(s, s + 10, 10) for s in seg[:-1]]).reshape(1, n)
    table = pack_alias(prob, alias.astype(np.int32), order)
    counts = rng.integers(0, 3 * AHEAD, (K, B, G1)).astype(np.int64)
    off = np.concatenate([[0], np.cumsum(counts.ravel())[:-1]]).reshape(K, B, G1)
    total = int(counts.sum())
    mult = rng.random((1, n))
    key, thin = np.uint64(1234), np.uint64(98765)
    who = np.full(total, -1, np.int32)
    keep = np.zeros(total, np.bool_)
    draw_cells(
        key, thin, counts, off, 0, B, 0, np.zeros(K, np.int64), table, seg,
        np.array([-1, 0], np.int64), mult, who, keep,
    )  # fmt: skip
    for k in range(K):
        for b in range(B):
            for g in range(G1):
                s, e = int(seg[b * G1 + g]), int(seg[b * G1 + g + 1])
                # as uint64: a Python int that fits would be typed int64 (signed shifts)
                ck, tk = np.uint64(_cell_key(key, k, b, g)), np.uint64(_cell_key(thin, k, b, g))
                for i in range(int(counts[k, b, g])):
                    x = int(_bits(ck, i))
                    j = s + (((x >> 32) * (e - s)) >> 32)
                    coin = x & 0xFFFFFFFF
                    hit = coin < int(np.ceil(prob[0, j] * 2**32))
                    want = int(order[j] if hit else order[alias[0, j]])
                    o = int(off[k, b, g]) + i
                    assert who[o] == want
                    assert keep[o] == (k == 0 or _uniform(tk, i) < mult[0, want])
