"""Reading a scheme for the comparison: which behaviours are observed, what feeds a list or a
measure, what the governance facts say. No verdicts here: :mod:`credsim.compare.properties`
turns these readings into properties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from credsim.compare.facts import Fact, show
from credsim.schemes.loader import catalogue
from credsim.schemes.model import Flag, Measure, Scheme


@dataclass(frozen=True)
class BehaviourInfo:
    name: str
    category: str
    lawful: bool
    good: bool


def behaviour_info(s: Scheme, b: str) -> BehaviourInfo:
    if b in s.custom_behaviours:
        c = s.custom_behaviours[b]
        return BehaviourInfo(c.name, c.category, c.lawful, c.good)
    e = catalogue().get(b, {})
    return BehaviourInfo(
        str(e.get("name", b)),
        str(e.get("category", "other")),
        bool(e.get("lawful", False)),
        bool(e.get("good", False)),
    )


def observed(s: Scheme) -> list[str]:
    """Behaviours the scheme records (with at least one channel), in scheme order."""
    return [b for b, spec in s.behaviours.items() if spec.channels]


def item_of(s: Scheme, b: str) -> str | None:
    return next((k for k, it in s.items.items() if it.behaviour == b), None)


def roots(s: Scheme, item: str, seen: frozenset[str] = frozenset()) -> list[tuple[str, int]]:
    """(behaviour, records needed) behind one record of ``item``, following escalations."""
    it = s.items.get(item)
    if it is None:
        return []
    if it.behaviour is not None:
        return [(it.behaviour, 1)]
    out = []
    for esc in s.escalations:
        if esc.produces == item and esc.item not in seen:
            k = max(1, int(esc.count.value))
            out += [(b, n * k) for b, n in roots(s, esc.item, seen | {item})]
    return out


def _points_behaviours(s: Scheme, negative: bool) -> list[str]:
    """Behaviours whose records move the score down (``negative``) or up."""
    out: list[str] = []
    for key, it in s.items.items():
        p = it.points.value
        if (p < 0) if negative else (p > 0):
            out += [b for b, _ in roots(s, key) if b not in out]
    return out


@dataclass(frozen=True)
class Feed:
    """What leads to a list or a measure: the behaviours and how it is entered."""

    behaviours: Sequence[tuple[str, int | None]]  # (behaviour, records needed; None: via the score)
    how: str
    score_based: bool


def list_feed(s: Scheme, key: str) -> Feed:
    lst = s.lists[key]
    inc = lst.inclusion
    if inc.item is not None:
        c = int(inc.count.value) if inc.count is not None else 1
        feed = [(b, n * c) for b, n in roots(s, inc.item)]
        return Feed(feed, f"list {key} (by item {inc.item}, count {c})", False)
    if inc.score_at_least is not None:
        feed2 = [(b, None) for b in _points_behaviours(s, negative=False)]
        return Feed(feed2, f"list {key} (score at least {inc.score_at_least.value:g})", True)
    how = (
        f"score below {inc.score_below.value:g}"
        if inc.score_below is not None
        else f"grades {', '.join(inc.grades or [])}"
    )
    feed3 = [(b, None) for b in _points_behaviours(s, negative=True)]
    return Feed(feed3, f"list {key} ({how})", True)


def measure_feed(s: Scheme, m: Measure) -> Feed:
    t = m.trigger
    if t.on_list is not None:
        return list_feed(s, t.on_list)
    if t.grades is not None:
        feed = [(b, None) for b in _points_behaviours(s, negative=True)]
        return Feed(feed, f"grades {', '.join(t.grades)}", True)
    return Feed([], "enrolment", False)


def _grade_of(s: Scheme, score: float) -> str | None:
    assert s.score is not None
    g = None
    for band in s.score.grades:
        if band.min.value <= score:
            g = band.grade
    return g


def _in_trigger(s: Scheme, m: Measure, score: float) -> bool:
    """Whether a person with ``score`` meets the score- or grade-based trigger of ``m``."""
    t = m.trigger
    grades = t.grades
    if t.on_list is not None:
        inc = s.lists[t.on_list].inclusion
        if inc.score_below is not None:
            return score < inc.score_below.value
        if inc.score_at_least is not None:
            return score >= inc.score_at_least.value
        grades = inc.grades
    return grades is not None and _grade_of(s, score) in grades


def _flag(s: Scheme, name: str) -> Fact:
    f: Flag | None = getattr(s.governance, name)
    if f is None:
        return Fact(None, f"governance.{name} not given: the sources are silent")
    prov = f"source {f.source}" if f.source is not None else f"assumption: {f.assumption}"
    return Fact(f.value, f"governance.{name} = {show(f.value)} ({prov})")


def _any(facts: list[Fact], what: str) -> Fact:
    """Kleene OR."""
    yes = [f for f in facts if f.value is True]
    if yes:
        return Fact(True, "; ".join(f.basis for f in yes))
    if any(f.value is None for f in facts):
        return Fact(None, "; ".join(f.basis for f in facts if f.value is None))
    return Fact(False, "; ".join(f.basis for f in facts) or what)


def _measures(s: Scheme, reward: bool) -> list[tuple[str, Measure]]:
    return [(k, m) for k, m in s.measures.items() if m.reward == reward]
