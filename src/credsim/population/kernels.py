"""Numba kernels of the population generator: one pass over persons where numpy needs several.

Each kernel reproduces exactly a numpy formulation written next to it in its docstring (the
random draws stay in numpy, in the same order, and are passed in), so that the generator's output
does not depend on which of the two computed it. At tens of millions of persons the numpy
versions spent most of their time allocating and filling temporaries (and sorting); here each
step reads its inputs once and writes straight into the output arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GUIDE = 4096  # buckets of the categorical-draw guide table (a power of two: j / GUIDE is exact)


@njit(cache=True, nogil=True)
def categorical(u: np.ndarray, cdf: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[:] = minimum(searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1)``.

    A guide table gives, per bucket ``j`` of ``u``, the answer for ``u = j / GUIDE``; rounding
    is monotonic, so it never exceeds the answer for a larger ``u`` and a short forward scan
    finds the exact index the binary search would.
    """
    k = cdf.shape[0]
    total = cdf[k - 1]
    guide = np.empty(GUIDE, np.int64)
    idx = 0
    for j in range(GUIDE):
        v = (j / GUIDE) * total
        while idx < k and cdf[idx] <= v:
            idx += 1
        guide[j] = idx
    for i in range(u.shape[0]):
        v = u[i] * total
        j = min(int(u[i] * GUIDE), GUIDE - 1)
        idx = guide[j]
        while idx < k and cdf[idx] <= v:
            idx += 1
        out[i] = min(idx, k - 1)


@njit(cache=True, nogil=True)
def clipped_sizes(draws: np.ndarray, cap: int) -> tuple[np.ndarray, int]:  # pragma: no cover
    """``1 + minimum(draws, cap - 1)`` as int64, and its sum."""
    out = np.empty(draws.shape[0], np.int64)
    total = 0
    for i in range(draws.shape[0]):
        s = 1 + min(draws[i], cap - 1)
        out[i] = s
        total += s
    return out, total


@njit(cache=True, nogil=True)
def expand_households(
    hh_start: np.ndarray,
    hh_district: np.ndarray,
    hh_group: np.ndarray,
    hh_decile: np.ndarray,
    household: np.ndarray,
    district: np.ndarray,
    group: np.ndarray,
    decile: np.ndarray,
) -> None:  # pragma: no cover
    """Per person: household index and the household's district, group and income decile."""
    for h in range(hh_start.shape[0] - 1):
        d, g, c = hh_district[h], hh_group[h], hh_decile[h]
        for p in range(hh_start[h], hh_start[h + 1]):
            household[p] = h
            district[p] = d
            group[p] = g
            decile[p] = c


@njit(cache=True, nogil=True)
def split_ages(
    ages: np.ndarray, n_hh: int, need: int, adult_age: int, n_values: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Heads (the first ``n_hh`` adults in draw order), spouses (the next ``need - n_hh``
    adults) and the counts per age of everyone else (the sorted pool is their expansion)."""
    head = np.empty(n_hh, np.int16)
    spouse = np.empty(need - n_hh, np.int16)
    pool = np.zeros(n_values, np.int64)
    seen = 0
    for i in range(ages.shape[0]):
        a = ages[i]
        if a >= adult_age and seen < need:
            if seen < n_hh:
                head[seen] = a
            else:
                spouse[seen - n_hh] = a
            seen += 1
        else:
            pool[a] += 1
    return head, spouse, pool


@njit(cache=True, nogil=True)
def _stable_rank(key: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Position of each key in a stable sort (``rank[argsort(key, kind="stable")] = arange``),
    by counting: the keys span a small range."""
    n = key.shape[0]
    rank = np.empty(n, np.int64)
    if n == 0:
        return rank
    lo, hi = key[0], key[0]
    for i in range(n):
        lo = min(lo, key[i])
        hi = max(hi, key[i])
    nxt = np.zeros(np.int64(hi) - lo + 1, np.int64)
    for i in range(n):
        nxt[key[i] - lo] += 1
    acc = 0
    for v in range(nxt.shape[0]):
        c = nxt[v]
        nxt[v] = acc
        acc += c
    for i in range(n):
        v = key[i] - lo
        rank[i] = nxt[v]
        nxt[v] += 1
    return rank


@njit(cache=True, nogil=True)
def place_heads_and_spouses(
    out: np.ndarray,
    hh_start: np.ndarray,
    couples: np.ndarray,
    head: np.ndarray,
    spouse: np.ndarray,
    z_head: np.ndarray,
    z_spouse: np.ndarray,
) -> None:  # pragma: no cover
    """Heads at member 0; spouses at member 1 of each couple, paired by rank of the noisy ages
    ``rint((age + z) * 16)`` as int16 (numpy: ``paired[argsort(kh)] = spouse[argsort(ks)]``,
    stable argsorts)."""
    for h in range(head.shape[0]):
        out[hh_start[h]] = head[h]
    k = couples.shape[0]
    kh = np.empty(k, np.int16)
    ks = np.empty(k, np.int16)
    for c in range(k):
        kh[c] = np.int16(np.rint((head[couples[c]] + z_head[c]) * 16.0))
        ks[c] = np.int16(np.rint((spouse[c] + z_spouse[c]) * 16.0))
    rank_h = _stable_rank(kh)
    rank_s = _stable_rank(ks)
    by_rank = np.empty(k, np.int16)  # spouse ages in order of their noisy key
    for c in range(k):
        by_rank[rank_s[c]] = spouse[c]
    for c in range(k):
        out[hh_start[couples[c]] + 1] = by_rank[rank_h[c]]


@njit(cache=True, nogil=True)
def place_rest(
    out: np.ndarray, hh_start: np.ndarray, head: np.ndarray, gap: np.ndarray, pool: np.ndarray
) -> None:  # pragma: no cover
    """Members 2+ (household order) receive the sorted pool (``pool[v]`` persons of age ``v``)
    by rank of ``int16(head age * 16 - gap)``, stably: numpy's
    ``out[slots[argsort(key, kind="stable")]] = sort(pool)``."""
    n_slots = gap.shape[0]
    key = np.empty(n_slots, np.int16)
    s = 0
    for h in range(head.shape[0]):
        a = np.int64(head[h]) * 16
        for _ in range(hh_start[h] + 2, hh_start[h + 1]):
            key[s] = np.int16(a - gap[s])
            s += 1
    rank = _stable_rank(key)
    sorted_pool = np.empty(n_slots, np.int16)
    i = 0
    for v in range(pool.shape[0]):
        for _ in range(pool[v]):
            sorted_pool[i] = v
            i += 1
    s = 0
    for h in range(head.shape[0]):
        for p in range(hh_start[h] + 2, hh_start[h + 1]):
            out[p] = sorted_pool[rank[s]]
            s += 1


@njit(cache=True, nogil=True)
def sexes(
    u: np.ndarray, p: float, hh_start: np.ndarray, couples: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    """``out = (u < p)``; member 1 of each couple the opposite sex of member 0."""
    for i in range(u.shape[0]):
        out[i] = 1 if u[i] < p else 0
    for c in range(couples.shape[0]):
        s = hh_start[couples[c]]
        out[s + 1] = 1 - out[s]


@njit(cache=True, nogil=True)
def birth_dates(
    u: np.ndarray, age: np.ndarray, win_start: np.ndarray, win_len: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover
    """``out = win_start[age] + floor(u * win_len[age])``."""
    for i in range(u.shape[0]):
        a = age[i]
        out[i] = win_start[a] + np.int64(np.floor(u[i] * np.float64(win_len[a])))


@njit(cache=True, nogil=True)
def employable(age: np.ndarray, u: np.ndarray, rate: float, lo: int, hi: int) -> np.ndarray:
    """``flatnonzero((age >= lo) & (age <= hi) & (u < rate))``."""  # pragma: no cover
    who = np.empty(age.shape[0], np.int64)
    k = 0
    for i in range(age.shape[0]):
        if lo <= age[i] <= hi and u[i] < rate:
            who[k] = i
            k += 1
    return who[:k]


@njit(cache=True, nogil=True)
def assign_employers(
    who: np.ndarray,
    district: np.ndarray,
    org_district: np.ndarray,
    n_districts: int,
    u: np.ndarray,
    anywhere: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover
    """Entity id ``n + j`` of a uniformly random organisation ``j`` of the person's district
    (``order[start[d] + floor(u * count[d])]`` with organisations stably sorted by district),
    or ``n + anywhere`` if the district has none."""
    n, n_orgs = out.shape[0], org_district.shape[0]
    count = np.zeros(n_districts, np.int64)
    for j in range(n_orgs):
        count[org_district[j]] += 1
    start = np.zeros(n_districts, np.int64)
    for d in range(1, n_districts):
        start[d] = start[d - 1] + count[d - 1]
    order = np.empty(n_orgs, np.int64)
    nxt = start.copy()
    for j in range(n_orgs):
        order[nxt[org_district[j]]] = j
        nxt[org_district[j]] += 1
    for i in range(who.shape[0]):
        p = who[i]
        d = district[p]
        c = count[d]
        if c > 0:
            out[p] = n + order[start[d] + np.int64(np.floor(u[i] * np.float64(c)))]
        else:
            out[p] = n + anywhere[i]


@njit(cache=True, nogil=True)
def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Packed ``min << 32 | max`` of the pairs ``(a, b)`` that are not self loops."""
    keys = np.empty(a.shape[0], np.int64)
    k = 0
    for e in range(a.shape[0]):
        x, y = np.int64(a[e]), np.int64(b[e])
        if x != y:
            keys[k] = (min(x, y) << 32) | max(x, y)
            k += 1
    return keys[:k]


@njit(cache=True, nogil=True)
def friend_csr(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Symmetric CSR (indptr int64, neighbours int32) of the sorted packed pair keys, repeats
    dropped. Row ``r`` receives first its smaller neighbours (pairs where it is the larger end,
    met in order of the smaller), then its larger ones in order: rows come out sorted."""
    indptr = np.zeros(n + 1, np.int64)
    prev = -1
    for e in range(keys.shape[0]):
        k = keys[e]
        if k != prev:
            indptr[(k >> 32) + 1] += 1
            indptr[(k & 0xFFFFFFFF) + 1] += 1
            prev = k
    for r in range(n):
        indptr[r + 1] += indptr[r]
    fill = indptr[:-1].copy()
    out = np.empty(indptr[n], np.int32)
    prev = -1
    for e in range(keys.shape[0]):
        k = keys[e]
        if k != prev:
            lo, hi = k >> 32, k & 0xFFFFFFFF
            out[fill[lo]] = hi
            fill[lo] += 1
            out[fill[hi]] = lo
            fill[hi] += 1
            prev = k
    return indptr, out
