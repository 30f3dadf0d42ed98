"""Behave: the true behaviours of a day, drawn in time proportional to their number.

Entity ``e`` does behaviour ``k`` at rate ``rate[k, group(e)] * trait(e) / 365`` per day. Instead
of a draw per entity per day, we draw the day's count for each (behaviour, block, group) cell from
a Poisson law with the cell's total rate, then pick the actors with probability proportional to
their trait by binary search in the cell's cumulative sum of traits (computed once). Blocks are
whole households of one district (:mod:`credsim.engine.shards`); workers draw shards of blocks
in parallel, with the same result whatever their number. Measures that suppress a
behaviour (a person banned from trains takes no trains) thin the candidates: each is kept with the
probability given by its multiplier. The expected number of events per entity-day equals the rate
exactly; two events of the same kind for one entity on one day are possible, as in a Poisson
process.
"""

from __future__ import annotations

import numpy as np

from credsim.engine.shards import (
    BLOCK_SIZE,
    Blocks,
    LocalRunner,
    Runner,
    group_with_orgs,
    pack_alias,
    partition,
    segment_alias,
)
from credsim.population.types import Population
from credsim.schemes.compile import Compiled

__all__ = ["Behaviour", "draw_traits", "group_with_orgs"]


class Behaviour:
    """Draws each day's true behaviours for all behaviour kinds of a scheme.

    Entities are cut into blocks (:mod:`credsim.engine.shards`); a day's count of each
    (behaviour, block, group) cell is Poisson, its actors are drawn by binary search in the
    cell's alias table of weights (the trait times the income multiplier). ``runner`` draws the
    cells: on this process's threads (:class:`LocalRunner`) or on Ray actors."""

    def __init__(
        self,
        cs: Compiled,
        pop: Population,
        traits: np.ndarray,
        block_size: int = BLOCK_SIZE,
        *,
        blocks: Blocks | None = None,
        threads: int = 1,
    ) -> None:
        """``blocks``: the population's :func:`~credsim.engine.shards.partition` (made here
        when not given); ``threads``: threads that may build the alias tables (the same
        tables)."""
        self.cs = cs
        G = len(cs.groups)
        self.blocks = bl = partition(pop, G, block_size) if blocks is None else blocks
        K = len(cs.behaviours)
        # one alias table per distinct weighting: trait x income multiplier
        key_of = [(int(cs.trait_of[k]), tuple(cs.income_mult[k].tolist())) for k in range(K)]
        keys = sorted(set(key_of))
        self.key_row = np.array([keys.index(key) for key in key_of], np.int64)
        decile = pop.income_decile.astype(np.int64)
        R = max(len(keys), 1)
        self.table = (np.empty if keys else np.zeros)((R, pop.n, 2), np.uint64)
        """Packed alias tables (:func:`~credsim.engine.shards.pack_alias`), one row per
        weighting, over the entities in block order."""
        totals = np.zeros((R, bl.n_blocks, bl.n_groups))
        for r, (t, income) in enumerate(keys):
            w = np.ones(pop.n) if t < 0 else traits[t].copy()
            if any(x != 1.0 for x in income):
                w *= np.asarray(income)[decile]
            prob, alias, tot = segment_alias(w[bl.order], bl.seg, threads)
            pack_alias(prob[None], alias[None], bl.order, self.table[r : r + 1], threads)
            totals[r] = tot.reshape(bl.n_blocks, bl.n_groups)
            del prob, alias
        # expected candidates per day of each (behaviour, block, group) cell
        self.lam = (
            np.stack([cs.rate[k][None, :] * totals[self.key_row[k]] / 365.0 for k in range(K)])
            if K
            else np.zeros((0, bl.n_blocks, bl.n_groups))
        )
        self.events = np.zeros(K, np.int64)
        """Per behaviour: occurrences that happened (after measures prevented some)."""
        self.blocked = np.zeros(K, np.int64)
        """Per behaviour: attempts that measures in force prevented (a banned flight not taken)."""
        self.multiplier: dict[int, np.ndarray] = {}
        """Behaviour -> per-entity rate multiplier (only behaviours some measure changes)."""
        self.runner: Runner = LocalRunner(self, 1)

    def multipliers(self) -> tuple[np.ndarray, np.ndarray]:
        """(row of each behaviour or -1, matrix of per-entity multipliers) without copying
        when the multipliers are rows of one matrix (as :class:`MeasureBook` keeps them)."""
        K = self.lam.shape[0]
        row = np.full(K, -1, np.int64)
        if not self.multiplier:
            return row, np.ones((1, 1))
        arrs = list(self.multiplier.values())
        base = arrs[0].base
        if isinstance(base, np.ndarray) and base.ndim == 2 and all(a.base is base for a in arrs):
            step = base.strides[0]
            at = base.__array_interface__["data"][0]
            for k, a in self.multiplier.items():
                row[k] = (a.__array_interface__["data"][0] - at) // step
            return row, base
        for i, k in enumerate(self.multiplier):
            row[k] = i
        return row, np.stack(arrs)

    def day(
        self, rng: np.random.Generator, thin_rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(actor, behaviour) arrays of the day's true behaviours, in behaviour order.

        Candidates are drawn from ``rng`` and thinned by measures with ``thin_rng``: keeping the
        two apart makes the candidates exactly those of a run with no measure in force, so
        happened + blocked is the counterfactual count (the chilling effect, exactly)."""
        who, kind, blocked = self.draw(rng, thin_rng)
        self.count(kind, blocked)
        return who, kind

    @property
    def independent(self) -> bool:
        """Whether a day's behaviours depend on nothing the run changes (no measure in the
        scheme changes a behaviour's rate): then they may be drawn ahead of the day."""
        return not self.multiplier

    def draw(
        self, rng: np.random.Generator, thin_rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`day` without its bookkeeping: (actor, behaviour, attempts blocked per
        behaviour or None); changes nothing (:meth:`count` records them)."""
        K = self.lam.shape[0]
        counts = rng.poisson(self.lam)
        key = np.uint64(rng.integers(0, 2**63))
        # the thinning key is drawn only when some measure thins (it is read only then)
        thin_key = np.uint64(0)
        if self.multiplier:
            thin = rng if thin_rng is None else thin_rng
            thin_key = np.uint64(thin.integers(0, 2**63))
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int32), None
        flat = counts.reshape(-1)
        off = (np.cumsum(flat) - flat).reshape(counts.shape)
        who, keep = self.runner.draw(key, thin_key, counts, off, total)
        kind = np.repeat(np.arange(K, dtype=np.int32), counts.sum(axis=(1, 2)))
        blocked = None
        if not keep.all():
            blocked = np.bincount(kind[~keep], minlength=K)
            who, kind = who[keep], kind[keep]
        return who, kind, blocked

    def count(self, kind: np.ndarray, blocked: np.ndarray | None) -> None:
        """Add a day's behaviours (as drawn by :meth:`draw`) to :attr:`events` and
        :attr:`blocked`."""
        self.add(self.tally(kind), blocked)

    def tally(self, kind: np.ndarray) -> np.ndarray:
        """Occurrences per behaviour of a day's behaviours (as drawn by :meth:`draw`: in
        behaviour order, so each behaviour's are a run found by binary search; counting them
        one by one took 0.6 s of a 13M run's year)."""
        K = self.lam.shape[0]
        return np.diff(np.searchsorted(kind, np.arange(K + 1, dtype=kind.dtype)))

    def add(self, events: np.ndarray, blocked: np.ndarray | None) -> None:
        """Add a day's occurrences per behaviour (:meth:`tally`) and attempts blocked."""
        if blocked is not None:
            self.blocked += blocked
        self.events += events


def draw_traits(cs: Compiled, n_persons: int, n_orgs: int, rng: np.random.Generator) -> np.ndarray:
    """Individual propensities: float64[T, N], zero for entities a trait does not apply to.
    They depend on the numbers of persons and organisations only (persons come first,
    :mod:`credsim.population.types`), so they can be drawn while the population is made."""
    s = cs.scheme
    out = np.zeros((len(cs.traits), n_persons + n_orgs))
    for t, (_, p) in enumerate(s.propensities.items()):
        mask = slice(0, n_persons) if p.applies_to == "person" else slice(n_persons, None)
        m = n_persons if p.applies_to == "person" else n_orgs
        if p.distribution == "gamma":
            vals = rng.gamma(p.shape.value, p.scale.value, m)  # type: ignore[union-attr]
        elif p.distribution == "lognormal":
            sigma = p.sigma.value  # type: ignore[union-attr]
            vals = rng.lognormal(-sigma * sigma / 2.0, sigma, m)  # mean 1
        else:
            vals = np.ones(m)
        out[t, mask] = vals
    return out
