"""The Ray backend: each shard of blocks is drawn by a Ray actor, on this machine or a cluster.

An actor receives, once, its shard's slice of the packed alias tables; each day it
receives the day's keys, its blocks' candidate counts and the changes to the measures'
multipliers since the day before (packed index/value arrays), and returns its actors and keep
flags in (behaviour, block, group, draw) order. The driver places each shard's part of each
behaviour where a single process would have put it, so the day's arrays are the same bytes as
with the local backend. Install with ``pip install credsim[ray]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from credsim.engine.shards import Drawable, draw_cells
from credsim.errors import CredsimError

Patch = tuple[int, np.ndarray, np.ndarray]


class ShardWorker:
    """One shard's tables (blocks b0..b1) and its copy of the rate multipliers."""

    def __init__(
        self,
        b0: int,
        b1: int,
        key_row: np.ndarray,
        table: np.ndarray,
        seg: np.ndarray,
        n: int,
    ) -> None:
        self.b0, self.b1 = b0, b1
        self.key_row, self.seg, self.table = key_row, seg, table
        self.n = n
        self.mult = np.ones((1, 1))

    def draw(
        self,
        key: np.uint64,
        thin_key: np.uint64,
        counts: np.ndarray,
        mult_row: np.ndarray,
        mult_shape: tuple[int, int],
        patches: list[Patch],
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.mult.shape != mult_shape:
            self.mult = np.ones(mult_shape)
        for q, idx, val in patches:
            self.mult[q, idx] = val
        flat = counts.reshape(-1)
        off = (np.cumsum(flat) - flat).reshape(counts.shape)
        total = int(flat.sum())
        who = np.empty(total, np.int32)
        keep = np.empty(total, np.bool_)
        draw_cells(
            key, thin_key, counts, off, self.b0, self.b1, self.b0, self.key_row, self.table,
            self.seg, mult_row, self.mult, who, keep,
        )  # fmt: skip
        return who, keep


class RayRunner:
    """Shards drawn by Ray actors (one per shard)."""

    def __init__(
        self, behave: Drawable, workers: int, shards: int | None, address: str | None
    ) -> None:
        try:
            import ray
        except ImportError as e:
            raise CredsimError(
                "the Ray backend needs Ray: pip install 'credsim[ray]' (or pip install ray)"
            ) from e
        self.ray = ray
        self.behave = behave
        self.workers = max(1, int(workers))
        if not ray.is_initialized():
            opts: dict[str, Any] = {"address": address, "log_to_driver": False}
            if address is None:
                opts.update(num_cpus=self.workers, include_dashboard=False)
            ray.init(**opts)
            self._started = True
        else:
            self._started = False
        bl = behave.blocks
        G1 = bl.n_groups
        self.ranges = bl.shards(shards or self.workers)
        # more shards than workers share the workers' CPUs (else the extra actors never start)
        remote = ray.remote(num_cpus=min(1.0, self.workers / len(self.ranges)))(ShardWorker)
        self.actors: list[Any] = []
        for b0, b1 in self.ranges:
            lo, hi = int(bl.seg[b0 * G1]), int(bl.seg[b1 * G1])
            self.actors.append(
                remote.remote(  # type: ignore[attr-defined]
                    b0,
                    b1,
                    behave.key_row,
                    # the shard's positions; their entries name entities (global ids)
                    np.ascontiguousarray(behave.table[:, lo:hi]),
                    bl.seg[b0 * G1 : b1 * G1 + 1] - lo,
                    int(bl.order.shape[0]),
                )
            )
        self.sent = np.ones((1, 1))

    def _patches(self, mult: np.ndarray) -> list[Patch]:
        """What changed in the multipliers since the last day (all of it the first time)."""
        if self.sent.shape != mult.shape:
            self.sent = np.ones(mult.shape)
        out: list[Patch] = []
        for q in range(mult.shape[0]):
            idx = np.flatnonzero(mult[q] != self.sent[q])
            if idx.shape[0]:
                out.append((q, idx.astype(np.int32), mult[q, idx].copy()))
                self.sent[q, idx] = mult[q, idx]
        return out

    def draw(
        self, key: np.uint64, thin_key: np.uint64, counts: np.ndarray, off: np.ndarray, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        mrow, mult = self.behave.multipliers()
        patches = self._patches(mult)
        futures = [
            a.draw.remote(key, thin_key, counts[:, b0:b1], mrow, mult.shape, patches)
            for a, (b0, b1) in zip(self.actors, self.ranges, strict=True)
        ]
        who = np.empty(total, np.int32)
        keep = np.empty(total, np.bool_)
        K = counts.shape[0]
        for (b0, b1), (lw, lk) in zip(self.ranges, self.ray.get(futures), strict=True):
            at = 0
            for k in range(K):
                m = int(counts[k, b0:b1].sum())
                if m:
                    g0 = int(off[k, b0, 0])
                    who[g0 : g0 + m] = lw[at : at + m]
                    keep[g0 : g0 + m] = lk[at : at + m]
                    at += m
        return who, keep

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self._started:
            self.ray.shutdown()
