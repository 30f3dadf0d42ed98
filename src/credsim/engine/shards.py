"""Blocks and shards: the units in which a day's behaviours are drawn, locally or on Ray.

A *block* is a fixed piece of the population: whole households of one district, about
``block_size`` persons (organisations form blocks of their own district). Families therefore
never straddle blocks. A block's draws use a counter-based generator keyed by (the day's key,
behaviour, block, group, draw number): the numbers a block sees do not depend on which worker
draws it, nor on how blocks are grouped. A *shard* is a contiguous range of blocks, balanced by
size, that one worker draws; with any number of shards and workers the day's behaviours are the
same arrays, in the same (behaviour, block, group, draw) order.

The block size is part of the model's random structure, like the seed (it is written in the
manifest); the shard count and the worker count are not: they change only who computes what.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
from numba import njit

from credsim.engine.prefetch import AHEAD, prefetch_read
from credsim.population.types import ORGANIZATION, Population

BLOCK_SIZE = 1 << 16
"""Persons per block (default): large enough that per-block work dwarfs the call overhead,
small enough that a block's cumulative weights (512 KiB) stay in a core's cache."""


def group_with_orgs(pop: Population, n_groups: int) -> np.ndarray:
    """Each entity's population group, organisations as an extra last group."""
    g = pop.group.astype(np.int32, copy=True)
    g[pop.kind == ORGANIZATION] = n_groups
    return g


def _blocks_of(district: np.ndarray, sizes: np.ndarray, block_size: int) -> np.ndarray:
    """Block label (0..) of each unit (household or organisation) of the given sizes: units
    sorted by district (stable), cut every ``block_size`` persons within a district."""
    if district.shape[0] == 0:
        return np.zeros(0, np.int64)
    d = district.astype(np.int64)
    d -= d.min()
    ho, at = counting_order(d, int(d.max()) + 1)
    sz = sizes[ho].astype(np.int64)
    start = np.cumsum(sz) - sz
    ds = d[ho]
    local = (start - start[at[ds]]) // block_size  # persons before, within the district
    change = np.ones(ds.shape[0], bool)
    change[1:] = (ds[1:] != ds[:-1]) | (local[1:] != local[:-1])
    label = np.cumsum(change) - 1
    out = np.empty(ds.shape[0], np.int64)
    out[ho] = label
    return out


def counting_order(key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, start)``: ``order`` (int32) sorts ``key`` (integers in ``[0, n_keys)``) stably,
    as ``np.argsort(key, kind="stable")`` does, and key ``k``'s entries are
    ``order[start[k] : start[k + 1]]``. A counting sort: two passes over the keys, where
    numpy's stable sort of 13M keys took 0.3 s (one int32 key) to 3 s (``np.lexsort`` of two)."""
    if key.shape[0] and (int(key.min()) < 0 or int(key.max()) >= n_keys):
        raise ValueError(f"keys must lie in [0, {n_keys})")
    order = np.empty(key.shape[0], np.int32)
    start = np.zeros(n_keys + 1, np.int64)
    _counting_order(key, order, start)
    return order, start


@njit(cache=True, nogil=True)
def _counting_order(key, order, start):  # noqa: ANN001, ANN202  # pragma: no cover - numba
    for i in range(key.shape[0]):
        start[key[i] + 1] += 1
    for k in range(1, start.shape[0]):
        start[k] += start[k - 1]
    at = start[:-1].copy()
    for i in range(key.shape[0]):
        k = key[i]
        order[at[k]] = i
        at[k] += 1


@dataclass
class Blocks:
    """Entities sorted by (block, group) and where each (block, group) segment starts."""

    order: np.ndarray  # int32[N]
    seg: np.ndarray  # int64[B * G1 + 1]: segment (b, g) is order[seg[b*G1+g] : seg[b*G1+g+1]]
    block: np.ndarray  # int32[N]: each entity's block
    n_blocks: int
    n_groups: int  # G1: population groups plus one for organisations

    def shards(self, n: int) -> list[tuple[int, int]]:
        """``min(n, blocks)`` contiguous, non-empty block ranges of about equal entity counts."""
        n = max(1, min(int(n), self.n_blocks))
        ends = self.seg[:: self.n_groups][1:]  # entities up to the end of each block
        total = int(self.seg[-1])
        want = np.searchsorted(ends, total * np.arange(1, n) / n, side="left") + 1
        edges = [0]
        for i, c in enumerate(want.tolist()):  # strictly increasing, room left for the rest
            edges.append(min(max(c, edges[-1] + 1), self.n_blocks - (n - 1 - i)))
        edges.append(self.n_blocks)
        return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def partition(pop: Population, n_groups: int, block_size: int = BLOCK_SIZE) -> Blocks:
    """Cut the population into blocks of whole households of one district."""
    if block_size < 1:
        raise ValueError(f"block size must be at least 1, got {block_size}")
    G1 = n_groups + 1
    blk = np.empty(pop.n, np.int64)
    np_ = pop.n_persons
    nb = 0
    if np_:
        hh_start = pop.hh_start
        hlabel = _blocks_of(pop.district[hh_start[:-1]], np.diff(hh_start), block_size)
        blk[:np_] = hlabel[pop.household[:np_]]
        nb = int(hlabel.max()) + 1
    if pop.n_orgs:
        olabel = _blocks_of(pop.district[np_:], np.ones(pop.n_orgs, np.int64), block_size)
        blk[np_:] = nb + olabel
        nb += int(olabel.max()) + 1
    # entities by (block, group), stably: as np.lexsort((group, block)) orders them
    cell = blk * G1
    cell += group_with_orgs(pop, n_groups)
    order, seg = counting_order(cell, nb * G1)
    return Blocks(order, seg, blk.astype(np.int32), nb, G1)


def segment_alias(
    w: np.ndarray, seg: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walker's alias tables of the weights ``w`` within each segment (Vose's construction),
    and each segment's total weight. Drawing position ``j`` uniformly in a segment and keeping
    it if a uniform is below ``prob[j]``, else taking ``alias[j]``, picks each position with
    probability proportional to its weight, in constant time. Computed segment by segment, so a
    shard builds exactly the tables the whole run would, and ``threads`` threads may each build
    a run of segments (the same tables)."""
    m = w.shape[0]
    prob = np.ones(m, np.float64)
    alias = np.arange(m, dtype=np.int32)
    total = np.zeros(seg.shape[0] - 1, np.float64)
    w = np.ascontiguousarray(w, np.float64)
    _on_threads(partial(_segment_alias_into, w, seg, prob, alias, total), _seg_ranges(seg, threads))
    return prob, alias, total


def _seg_ranges(seg: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` (at most) contiguous ranges of the segments of ``seg`` holding about as many
    positions each."""
    k = seg.shape[0] - 1
    parts = max(1, min(int(parts), k))
    cuts = np.searchsorted(seg[1:], seg[-1] * np.arange(1, parts) / parts, side="left") + 1
    edges = np.unique(np.concatenate(([0], np.minimum(cuts, k), [k])))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _on_threads(fn: Callable[[int, int], None], ranges: list[tuple[int, int]]) -> None:
    """``fn(a, b)`` for each range, the first on this thread and the others on threads of
    their own (``fn`` is a kernel that releases the interpreter's lock)."""
    if len(ranges) <= 1:
        for a, b in ranges:
            fn(a, b)
        return
    with ThreadPoolExecutor(len(ranges) - 1, thread_name_prefix="credsim-setup") as ex:
        rest = [ex.submit(fn, a, b) for a, b in ranges[1:]]
        fn(*ranges[0])
        for f in rest:
            f.result()


@njit(cache=True, nogil=True)
def _segment_alias_into(  # noqa: PLR0913  # pragma: no cover - numba
    w: np.ndarray,
    seg: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    total: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """:func:`segment_alias` for segments ``s0`` .. ``s1``, into its arrays."""
    a0, a1 = seg[s0], seg[s1]
    m = a1 - a0
    small = np.empty(m, np.int64)
    large = np.empty(m, np.int64)
    scaled = np.empty(m, np.float64)
    for s in range(s0, s1):
        a, e = seg[s], seg[s + 1]
        acc = 0.0
        for j in range(a, e):
            acc += w[j]
        total[s] = acc
        n = e - a
        if n == 0 or acc <= 0.0:
            continue
        ns = 0
        nl = 0
        for j in range(a, e):
            scaled[j - a0] = w[j] * n / acc
            if scaled[j - a0] < 1.0:
                small[ns] = j
                ns += 1
            else:
                large[nl] = j
                nl += 1
        while ns > 0 and nl > 0:
            ns -= 1
            lo = small[ns]
            hi = large[nl - 1]
            prob[lo] = scaled[lo - a0]
            alias[lo] = hi
            scaled[hi - a0] = (scaled[hi - a0] + scaled[lo - a0]) - 1.0
            if scaled[hi - a0] < 1.0:
                nl -= 1
                small[ns] = hi
                ns += 1
        # what remains is 1 up to rounding: keep itself
        for i in range(nl):
            prob[large[i]] = 1.0
        for i in range(ns):
            prob[small[i]] = 1.0


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - numba
    """SplitMix64's finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _cell_key(key: np.uint64, k: int, b: int, g: int) -> np.uint64:  # pragma: no cover
    z = _mix(key + np.uint64(k) * _GOLDEN)
    z = _mix(z + np.uint64(b) * _GOLDEN)
    return _mix(z + np.uint64(g) * _GOLDEN)


@njit(cache=True, inline="always")
def _bits(ck: np.uint64, i: int) -> np.uint64:  # pragma: no cover - numba
    """The i-th number of the SplitMix64 sequence started at ``ck``."""
    return _mix(ck + np.uint64(i + 1) * _GOLDEN)


@njit(cache=True, inline="always")
def _uniform(ck: np.uint64, i: int) -> float:  # pragma: no cover - numba
    """The i-th number of the SplitMix64 sequence started at ``ck``, as a float in [0, 1)."""
    return float(_bits(ck, i) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


@njit(cache=True, inline="always")
def _position(x: np.uint64, s: int, n: np.uint64) -> np.int64:  # pragma: no cover - numba
    """The position a draw's number ``x`` picks in the segment of ``n`` starting at ``s``: its
    high 32 bits scaled to ``n``."""
    return s + np.int64(((x >> _SHIFT) * n) >> _SHIFT)


def pack_alias(
    prob: np.ndarray,
    alias: np.ndarray,
    order: np.ndarray,
    out: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """The alias tables (:func:`segment_alias`, rows of positions in ``order``) packed for
    drawing: uint64[R, M, 2], for position j of row r: ``[r, j, 0]`` the coin threshold
    ``ceil(prob[r, j] * 2**32)`` and ``[r, j, 1]`` the entity at j (low 32 bits) and the entity
    at ``alias[r, j]`` (high 32 bits). Into ``out`` when given; on ``threads`` threads, each
    packing a run of positions.

    A draw then reads one aligned 16-byte entry (one cache line) instead of three scattered
    arrays. The threshold decides exactly as the probability did: for the coin's 32 bits m,
    ``m / 2**32 < p`` if and only if ``m < ceil(p * 2**32)`` (m is an integer; p * 2**32 is
    exact in floating point)."""
    R, M = prob.shape
    table = np.empty((R, M, 2), np.uint64) if out is None else out
    prob = np.ascontiguousarray(prob, np.float64)
    alias, order = np.ascontiguousarray(alias), np.ascontiguousarray(order)
    parts = max(1, min(int(threads), M))
    edges = [M * i // parts for i in range(parts + 1)]
    ranges = [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    for r in range(R):
        _on_threads(partial(_pack_into, prob[r], alias[r], order, table[r]), ranges)
    return table


@njit(cache=True, nogil=True)
def _pack_into(  # pragma: no cover - numba
    prob: np.ndarray, alias: np.ndarray, order: np.ndarray, out: np.ndarray, a: int, b: int
) -> None:
    """Positions ``a`` .. ``b`` of one row of :func:`pack_alias`."""
    scale = 4294967296.0
    low = np.uint64(0xFFFFFFFF)
    for j in range(a, b):
        out[j, 0] = np.uint64(np.ceil(prob[j] * scale))
        hit = np.uint64(order[j]) & low
        miss = np.uint64(order[alias[j]]) & low
        out[j, 1] = hit | (miss << np.uint64(32))


@njit(cache=True, nogil=True)
def draw_cells(  # noqa: PLR0913  # pragma: no cover - numba
    key: np.uint64,
    thin_key: np.uint64,
    counts: np.ndarray,  # int64[K, B, G1] candidate counts (whole run, or this shard's blocks)
    off: np.ndarray,  # int64[K, B, G1] where each cell's draws go in the output
    b0: int,
    b1: int,
    bbase: int,  # block index of counts[:, 0] and of the first segment in seg
    key_row: np.ndarray,  # int64[K] row of ``table`` for each behaviour
    table: np.ndarray,  # uint64[R, M, 2] packed alias tables (pack_alias)
    seg: np.ndarray,  # int64[(blocks) * G1 + 1] positions in ``table`` (global or local)
    mult_row: np.ndarray,  # int64[K] row of ``mult`` for each behaviour, -1: none
    mult: np.ndarray,  # float64[Q, N] per-entity rate multipliers
    out_who: np.ndarray,
    out_keep: np.ndarray,
) -> None:
    """Draw the actors of cells (k, b, g) for blocks b0 <= b < b1, each with probability
    proportional to its weight within its segment (alias method: one 64-bit number per draw,
    its high half picks a position, its low half the coin); thin by the behaviour's
    multiplier with a second, independent sequence."""
    K, _, G1 = counts.shape
    for b in range(b0, b1):  # block by block: its tables stay in cache for all behaviours
        lb = b - bbase
        for k in range(K):
            r = key_row[k]
            q = mult_row[k]
            for g in range(G1):
                c = counts[k, lb, g]
                if c == 0:
                    continue
                s = seg[lb * G1 + g]
                n = np.uint64(seg[lb * G1 + g + 1] - s)
                ck = _cell_key(key, k, b, g)
                tk = _cell_key(thin_key, k, b, g)
                o = off[k, lb, g]
                for i in range(c):
                    if i + AHEAD < c:  # the entry AHEAD draws on: on its way while this one runs
                        prefetch_read(table, (r, _position(_bits(ck, i + AHEAD), s, n), 0))
                    x = _bits(ck, i)
                    j = _position(x, s, n)
                    e = table[r, j]
                    hit_miss = e[1] if (x & _LOW) < e[0] else e[1] >> _SHIFT
                    who = np.int32(hit_miss & _LOW)
                    out_who[o + i] = who
                    out_keep[o + i] = True if q < 0 else _uniform(tk, i) < mult[q, who]


class Runner(Protocol):
    """Draws the actors of a day's cells; see :func:`draw_cells`."""

    workers: int

    def draw(
        self, key: np.uint64, thin_key: np.uint64, counts: np.ndarray, off: np.ndarray, total: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class Drawable(Protocol):
    blocks: Blocks
    key_row: np.ndarray
    table: np.ndarray

    def multipliers(self) -> tuple[np.ndarray, np.ndarray]: ...


SERIAL_BELOW = 1 << 16
"""A day with fewer candidates is drawn in the calling thread, shard after shard: handing
shards to threads costs more than drawing them (about 5 ms for 65,536 candidates)."""


class LocalRunner:
    """Shards drawn on this process's threads (the kernel releases the GIL), each writing its
    own cells of the shared output."""

    def __init__(self, behave: Drawable, workers: int, shards: int | None = None) -> None:
        self.behave = behave
        self.workers = max(1, int(workers))
        self.ranges = behave.blocks.shards(shards or self.workers)
        self._pool: ThreadPoolExecutor | None = None

    def draw(
        self, key: np.uint64, thin_key: np.uint64, counts: np.ndarray, off: np.ndarray, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        bh, bl = self.behave, self.behave.blocks
        who = np.empty(total, np.int32)
        keep = np.empty(total, np.bool_)
        mrow, mult = bh.multipliers()

        def one(r: tuple[int, int]) -> None:
            draw_cells(
                key, thin_key, counts, off, r[0], r[1], 0, bh.key_row, bh.table, bl.seg, mrow,
                mult, who, keep,
            )  # fmt: skip

        if self.workers == 1 or len(self.ranges) == 1 or total < SERIAL_BELOW:
            for r in self.ranges:
                one(r)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="credsim-shard")
            list(self._pool.map(one, self.ranges))
        return who, keep

    def forget_pool(self) -> None:
        """Drop the thread pool without stopping it: in a forked process, which has none of
        its threads (a new one starts when needed)."""
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@dataclass(frozen=True)
class Execution:
    """Where a run's shards are drawn. None of it changes the result; ``block_size`` does
    (it is part of the random structure, like the seed)."""

    workers: int | None = None  # local threads or Ray workers; None: all local cores
    shards: int | None = None  # None: one per worker
    backend: str = "local"  # "local" or "ray"
    address: str | None = None  # a Ray cluster to join; None: start a local Ray runtime
    block_size: int = BLOCK_SIZE

    def n_workers(self) -> int:
        if self.workers is not None:
            return max(1, int(self.workers))
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            return os.cpu_count() or 1


BACKENDS = ("local", "ray")


def make_runner(behave: Drawable, ex: Execution) -> Runner:
    if ex.backend == "local":
        return LocalRunner(behave, ex.n_workers(), ex.shards)
    if ex.backend == "ray":
        from credsim.engine.ray_runner import RayRunner

        return RayRunner(behave, ex.n_workers(), ex.shards, ex.address)
    raise ValueError(f"unknown backend {ex.backend!r}; expected one of {', '.join(BACKENDS)}")
