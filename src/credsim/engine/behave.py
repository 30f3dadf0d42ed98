"""Behave: the true behaviours of a day, drawn in time proportional to their number.

Entity ``e`` does behaviour ``k`` at rate ``rate[k, group(e)] * trait(e) / 365`` per day. Instead
of a draw per entity per day, we draw the day's count for each group from a Poisson law with the
group's total rate, then pick the actors with probability proportional to their trait by binary
search in the cumulative sum of traits (one per trait, computed once). Measures that suppress a
behaviour (a person banned from trains takes no trains) thin the candidates: each is kept with the
probability given by its multiplier. The expected number of events per entity-day equals the rate
exactly; two events of the same kind for one entity on one day are possible, as in a Poisson
process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from credsim.population.types import ORGANIZATION, Population
from credsim.schemes.compile import Compiled


@dataclass
class TraitIndex:
    """Entities ordered by group, with the cumulative sum of one trait over that order."""

    order: np.ndarray  # int32[N] entity ids sorted by group (organisations last)
    cum: np.ndarray  # float64[N] cumulative trait over ``order``
    start: np.ndarray  # int64[G+2] first position of each group in ``order``
    total: np.ndarray  # float64[G+1] trait total of each group
    before: np.ndarray  # float64[G+1] cumulative trait before each group's first entity


def group_with_orgs(pop: Population, n_groups: int) -> np.ndarray:
    g = pop.group.astype(np.int32, copy=True)
    g[pop.kind == ORGANIZATION] = n_groups
    return g


def build_index(order: np.ndarray, gstart: np.ndarray, weight: np.ndarray) -> TraitIndex:
    cum = np.cumsum(weight[order], dtype=np.float64)
    before = np.concatenate(([0.0], cum))
    total = before[gstart[1:]] - before[gstart[:-1]]
    return TraitIndex(order, cum, gstart, total, before[gstart[:-1]].copy())


class Behaviour:
    """Draws each day's true behaviours for all behaviour kinds of a scheme."""

    def __init__(self, cs: Compiled, pop: Population, traits: np.ndarray) -> None:
        self.cs = cs
        G = len(cs.groups)
        g = group_with_orgs(pop, G)
        order = np.argsort(g, kind="stable").astype(np.int32)
        gstart = np.searchsorted(g[order], np.arange(G + 2)).astype(np.int64)
        # one index per distinct weighting: the trait times the income multiplier, if any
        self.key_of: list[tuple[int, tuple[float, ...]]] = [
            (int(cs.trait_of[k]), tuple(cs.income_mult[k].tolist()))
            for k in range(len(cs.behaviours))
        ]
        self.indexes: dict[tuple[int, tuple[float, ...]], TraitIndex] = {}
        decile = pop.income_decile.astype(np.int64)
        for key in sorted(set(self.key_of)):
            t, income = key
            w = np.ones(pop.n) if t < 0 else traits[t].copy()
            if any(x != 1.0 for x in income):
                w *= np.asarray(income)[decile]
            self.indexes[key] = build_index(order, gstart, w)
        # per behaviour: expected events per day by group (rate x weight total / 365)
        self.daily = (
            np.stack(
                [
                    cs.rate[k] * self.indexes[self.key_of[k]].total / 365.0
                    for k in range(len(cs.behaviours))
                ]
            )
            if len(cs.behaviours)
            else np.zeros((0, G + 1))
        )
        self.events = np.zeros(len(cs.behaviours), np.int64)
        """Per behaviour: occurrences that happened (after measures prevented some)."""
        self.blocked = np.zeros(len(cs.behaviours), np.int64)
        """Per behaviour: attempts that measures in force prevented (a banned flight not taken)."""
        self.multiplier: dict[int, np.ndarray] = {}
        """Behaviour -> per-entity rate multiplier (only behaviours some measure changes)."""

    def day(
        self, rng: np.random.Generator, thin_rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(actor, behaviour) arrays of the day's true behaviours, in behaviour order.

        Candidates are drawn from ``rng`` and thinned by measures with ``thin_rng``: keeping the
        two apart makes the candidates exactly those of a run with no measure in force, so
        happened + blocked is the counterfactual count (the chilling effect, exactly)."""
        thin = rng if thin_rng is None else thin_rng
        actors, kinds = [], []
        for k in range(self.daily.shape[0]):
            counts = rng.poisson(self.daily[k])
            total = int(counts.sum())
            if total == 0:
                continue
            ix = self.indexes[self.key_of[k]]
            offset = np.repeat(ix.before, counts)
            width = np.repeat(ix.total, counts)
            u = offset + rng.random(total) * width
            pos = np.searchsorted(ix.cum, u, side="right")
            np.minimum(pos, ix.order.shape[0] - 1, out=pos)
            who = ix.order[pos]
            mult = self.multiplier.get(k)
            if mult is not None:
                keep = thin.random(total) < mult[who]
                self.blocked[k] += total - int(keep.sum())
                who = who[keep]
            self.events[k] += who.shape[0]
            actors.append(who)
            kinds.append(np.full(who.shape[0], k, np.int32))
        if not actors:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        return np.concatenate(actors), np.concatenate(kinds)


def draw_traits(cs: Compiled, pop: Population, rng: np.random.Generator) -> np.ndarray:
    """Individual propensities: float64[T, N], zero for entities a trait does not apply to."""
    s = cs.scheme
    out = np.zeros((len(cs.traits), pop.n))
    for t, (_, p) in enumerate(s.propensities.items()):
        kind = 0 if p.applies_to == "person" else ORGANIZATION
        mask = pop.kind == kind
        m = int(mask.sum())
        if p.distribution == "gamma":
            vals = rng.gamma(p.shape.value, p.scale.value, m)  # type: ignore[union-attr]
        elif p.distribution == "lognormal":
            sigma = p.sigma.value  # type: ignore[union-attr]
            vals = rng.lognormal(-sigma * sigma / 2.0, sigma, m)  # mean 1
        else:
            vals = np.ones(m)
        out[t, mask] = vals
    return out
