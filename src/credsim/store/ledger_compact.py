"""The compact rows of ``credsim-ledger-v7`` (:mod:`credsim.store.ledger_packed`'s layout with
``compact``): the null mask, then each column that is not null in its width, zero after the
row up to its 64-byte blocks; and their chain, each row's blocks compressed in turn from the
previous digest (:mod:`credsim.store.sha_block`). These kernels take the values as
:meth:`~credsim.store.ledger_packed.PackedEncoder.values` gives them (a row of int64 per
column); a streamed run's records are built from the engine's columns by the generated
``pack_engine_compact`` instead (:mod:`credsim.store.ledger_engine`).
"""

from __future__ import annotations

import numba
import numpy as np

from credsim.store import sha_block
from credsim.store.pqencode import _store_u64

CHUNK = 256
"""Rows a kernel builds before it chains them (v7 here and in the engine's kernel; v4 to v6 with
the SHA extensions in one call): up to 32 KB of rows, which stay in the core's caches. Built
and compressed in the same loop, a v7 row took 74 against 67 ns: the processor did not build
the next row while the compression's long dependency ran."""


@numba.njit(cache=True, nogil=True, inline="always")
def _put_compact(buf, o, vals, i, widths, masks):  # type: ignore[no-untyped-def]
    """Row ``i`` compact (``credsim-ledger-v7``) at ``buf[o:]``: the null mask, then each column
    that is not null in its width (each written as 8 bytes, the next one over the rest: ``buf``
    has 8 bytes of room after the row). Returns where the row ends."""
    nulls = vals[0, i]
    _store_u64(buf, o, nulls & masks[0])
    p = o + widths[0]
    for c in range(1, widths.shape[0]):
        if (nulls >> np.uint64(c - 1)) & np.uint64(1) == 0:
            _store_u64(buf, p, vals[c, i] & masks[c])
            p += widths[c]
    return p


@numba.njit(cache=True, nogil=True, inline="always")
def _zero_to(buf, p, end):  # type: ignore[no-untyped-def]
    """Zeros from ``p`` to ``end`` (and up to 7 bytes past it)."""
    while p < end:
        _store_u64(buf, p, np.uint64(0))
        p += 8


@numba.njit(cache=True, nogil=True)
def _compact_kernel(vals, widths, masks, flat, stride, counts):  # type: ignore[no-untyped-def]
    """The compact rows, ``stride`` bytes apart in ``flat`` (zero after each), and the blocks
    each takes into ``counts``."""
    for i in range(counts.shape[0]):
        o = i * stride
        p = _put_compact(flat, o, vals, i, widths, masks)
        counts[i] = max(1, (p - o + 63) // 64)
        _zero_to(flat, p, o + stride)


@numba.njit(cache=True, nogil=True)
def _compact_chain_kernel(vals, widths, masks, stride, state, out):  # type: ignore[no-untyped-def]
    """The compact rows built ``CHUNK`` at a time into a buffer that stays in the cache, then
    compressed into ``state`` block by block (:func:`~credsim.store.sha_block.sha_block`); the
    first ``out.shape[1]`` bytes of each digest into ``out``."""
    buf = np.zeros(CHUNK * stride + 8, np.uint8)
    ends = np.empty(CHUNK, np.int64)
    n = out.shape[0]
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        for r in range(m):
            o = r * stride
            p = _put_compact(buf, o, vals, s + r, widths, masks)
            ends[r] = o + 64 * max(1, (p - o + 63) // 64)
            _zero_to(buf, p, ends[r])
        for r in range(m):
            for b in range(r * stride, ends[r], 64):
                sha_block.sha_block(state, buf, b)
            sha_block.put_digest(state, out, s + r)
