"""Checks that need the whole scheme: references, shares that must sum to one, provenance keys.

Returns a list of ``(path, message)`` problems rather than raising, so that the loader can report
all of them at once with their lines.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from credsim.schemes.model import Flag, Num, Scheme
from credsim.schemes.yamlio import Path_

Problem = tuple[Path_, str]
MAX_ESCALATION_COUNT = 10_000  # the engine's per-entity ring counters are int16


def iter_nums(obj: Any, path: Path_ = ()) -> list[tuple[Path_, Num]]:
    """Every :class:`Num` in a parsed scheme, with its dotted path."""
    out: list[tuple[Path_, Num]] = []
    if isinstance(obj, Num):
        out.append((path, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(iter_nums(v, (*path, k)))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            out.extend(iter_nums(v, (*path, i)))
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            out.extend(iter_nums(getattr(obj, name), (*path, name)))
    return out


def iter_flags(obj: Any, path: Path_ = ()) -> list[tuple[Path_, Flag]]:
    """Every :class:`Flag` in a parsed scheme, with its dotted path."""
    out: list[tuple[Path_, Flag]] = []
    if isinstance(obj, Flag):
        out.append((path, obj))
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            out.extend(iter_flags(getattr(obj, name), (*path, name)))
    return out


def _known_area(code: str) -> bool:
    from credsim.population.identifiers import birthplace_code

    try:
        birthplace_code(int(code), 2019)
    except ValueError:
        return False
    return True


def _shares(items: dict[str, Any] | list[Any], path: Path_, what: str) -> list[Problem]:
    values = items.values() if isinstance(items, dict) else items
    total = sum(x.share.value for x in values)
    if abs(total - 1.0) > 1e-6:
        return [(path, f"{what} shares must sum to 1, they sum to {total:.6g}")]
    return []


def check_semantics(
    s: Scheme, bibliography: dict[str, Any], catalogue: dict[str, Any]
) -> list[Problem]:
    p: list[Problem] = []
    for path, flag in iter_flags(s):
        if flag.source is not None and flag.source not in bibliography:
            p.append(
                ((*path, "source"), f"unknown source '{flag.source}' (not in the bibliography)")
            )
    ids = [c.id for c in s.calibration]
    for i, c in enumerate(s.calibration):
        if ids.count(c.id) > 1:
            p.append((("calibration", i, "id"), f"duplicate calibration id '{c.id}'"))
    from credsim.calibrate import calibration_problems  # the metric grammar lives there

    p += calibration_problems(s)  # metric names and references, figures, gap notes
    for path, num in iter_nums(s):
        if num.source is not None and num.source not in bibliography:
            p.append(
                ((*path, "source"), f"unknown source '{num.source}' (not in the bibliography)")
            )
    for i, key in enumerate(s.sources):
        if key not in bibliography:
            p.append((("sources", i), f"unknown source '{key}' (not in the bibliography)"))
    if s.in_force.source is not None and s.in_force.source not in bibliography:
        p.append((("in_force", "source"), f"unknown source '{s.in_force.source}'"))
    pop = s.population
    p += _shares(pop.groups, ("population", "groups"), "group")
    p += _shares(pop.districts, ("population", "districts"), "district")
    p += _shares(pop.age_bands, ("population", "age_bands"), "age band")
    for i, band in enumerate(pop.age_bands):
        if band.min.value > band.max.value:
            p.append((("population", "age_bands", i), "age band needs min <= max"))
    for key, d in pop.districts.items():
        if not _known_area(d.code):
            p.append(
                (
                    ("population", "districts", key, "code"),
                    f"'{d.code}' is not a GB/T 2260 area code known to python-stdnum",
                )
            )
    for key, grp in pop.groups.items():
        for i, code in enumerate(grp.area_codes or []):
            if not _known_area(code):
                p.append(
                    (
                        ("population", "groups", key, "area_codes", i),
                        f"'{code}' is not a GB/T 2260 area code known to python-stdnum",
                    )
                )
    if pop.household_size_mean.value < 1:
        p.append((("population", "household_size_mean"), "a household has at least one person"))

    for key in s.custom_behaviours:
        if key in catalogue:
            p.append((("custom_behaviours", key), f"'{key}' is already in the shared catalogue"))
    known_behaviours = set(catalogue) | set(s.custom_behaviours)
    for key, b in s.behaviours.items():
        bp: Path_ = ("behaviours", key)
        if key not in known_behaviours:
            p.append(
                (bp, f"unknown behaviour '{key}' (not in the catalogue nor custom_behaviours)")
            )
        if b.propensity is not None and b.propensity not in s.propensities:
            p.append(((*bp, "propensity"), f"unknown propensity '{b.propensity}'"))
        elif b.propensity is not None and s.propensities[b.propensity].applies_to != b.actor:
            p.append(
                ((*bp, "propensity"), f"propensity '{b.propensity}' does not apply to {b.actor}s")
            )
        for g in b.rate_by_group or {}:
            if g not in pop.groups:
                p.append(((*bp, "rate_by_group", g), f"unknown population group '{g}'"))
        for i, ch in enumerate(b.channels):
            for g in ch.false_match_by_group or {}:
                if g not in pop.groups:
                    p.append(
                        ((*bp, "channels", i, "false_match_by_group", g), f"unknown group '{g}'")
                    )
            if ch.kind == "camera" and b.actor != "person":
                p.append(((*bp, "channels", i), "cameras observe persons only"))
        mapped = [k for k, it in s.items.items() if it.behaviour == key]
        if b.channels and len(mapped) != 1:
            p.append(
                (
                    bp,
                    f"an observed behaviour needs exactly one item with 'behaviour: {key}' "
                    f"(found {len(mapped)})",
                )
            )

    for key, it in s.items.items():
        if it.behaviour is not None and it.behaviour not in s.behaviours:
            p.append((("items", key, "behaviour"), f"unknown behaviour '{it.behaviour}'"))
    grades = {g.grade for g in s.score.grades} if s.score else set()
    produced = set()
    for i, esc in enumerate(s.escalations):
        for field in ("item", "produces"):
            if getattr(esc, field) not in s.items:
                p.append((("escalations", i, field), f"unknown item '{getattr(esc, field)}'"))
        if not 1 <= esc.count.value <= MAX_ESCALATION_COUNT:
            p.append(
                (("escalations", i, "count"), f"count must lie in [1, {MAX_ESCALATION_COUNT}]")
            )
        if esc.produces == esc.item:
            p.append((("escalations", i, "produces"), "an escalation cannot produce its own item"))
        produced.add(esc.produces)
    for key, it in s.items.items():
        if it.behaviour is None and key not in produced:
            p.append((("items", key), "an item needs a 'behaviour' or an escalation producing it"))

    for key, lst in s.lists.items():
        lp: Path_ = ("lists", key, "inclusion")
        inc = lst.inclusion
        if inc.item is not None and inc.item not in s.items:
            p.append(((*lp, "item"), f"unknown item '{inc.item}'"))
        if inc.count is not None and inc.count.value < 1:
            p.append(((*lp, "count"), "count must be at least 1"))
        if (inc.score_below or inc.score_at_least or inc.grades) and s.score is None:
            p.append((lp, "score or grade inclusion needs a 'score' section"))
        for g in inc.grades or []:
            if g not in grades:
                p.append(((*lp, "grades"), f"unknown grade '{g}'"))
    for key, m in s.measures.items():
        mp: Path_ = ("measures", key)
        if m.trigger.on_list is not None and m.trigger.on_list not in s.lists:
            p.append(((*mp, "trigger", "list"), f"unknown list '{m.trigger.on_list}'"))
        for g in m.trigger.grades or []:
            if g not in grades:
                p.append(((*mp, "trigger", "grades"), f"unknown grade '{g}'"))
        for bk in m.behaviour_effects or {}:
            if bk not in s.behaviours:
                p.append(((*mp, "behaviour_effects", bk), f"unknown behaviour '{bk}'"))
        if not m.targets:
            p.append(((*mp, "targets"), "a measure needs at least one target"))
    if s.association and s.association.friend_share and pop.friends_mean.value <= 0:
        p.append(
            (("association", "friend_share"), "friend spill-over needs population.friends_mean > 0")
        )
    return p
