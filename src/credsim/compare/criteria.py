"""The comparison criteria: loaded from data (``criteria.yaml``), checked strictly, evaluated.

The criteria file says which derived property (:mod:`credsim.compare.properties`) decides what.
Nothing here knows any scheme by name: every verdict comes from a scheme's properties. A
malformed criteria file raises :class:`CriteriaError` naming the file, the line and the field.

Verdicts use three-valued logic: a property is yes, no or unknown, and so is a verdict.

* An ethics principle is ``violates`` when one of its ``violates_if_any`` conditions holds;
  ``upholds`` when none of them can hold (each decided and false) and every ``upholds_if_all``
  condition holds (an empty ``upholds_if_all`` means no property can show it upheld);
  ``unknown`` otherwise.
* EU AI Act Art. 5(1)(c) applies (``yes``) when every ``scope_if_all`` condition holds and one
  ``prohibited_if_any`` condition holds; ``no`` when a scope condition fails or no prohibited
  condition can hold; ``unknown`` otherwise.
* The privacy-control index adds each component's points when its condition holds, nothing
  when it does not, and half when the property is unknown (``index_low``/``index_high`` give
  the range the unknowns leave open).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from credsim.compare.properties import Derived, Fact, property_names, show
from credsim.errors import CredsimError, SchemeError
from credsim.schemes.loader import catalogue
from credsim.schemes.model import CustomBehaviour, MeasureKind
from credsim.schemes.yamlio import Located, dotted, read_yaml

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
MAX_ERRORS = 20


class CriteriaError(CredsimError):
    """The criteria file is malformed; the message names file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Strict):
    prop: str = Field(alias="property")
    is_: bool = Field(alias="is")
    why: Text


class ClauseCondition(Condition):
    clause: Text


class InputCategory(_Strict):
    id: Ident
    label: Text
    behaviour_categories: list[str] = Field(default_factory=list)
    channels: list[Literal["camera", "agency", "informant", "app"]] = Field(default_factory=list)
    why: Text


class Context(_Strict):
    related: list[str] | Literal["any", "unknown"]
    why: Text


class Minor(_Strict):
    behaviours: list[str]
    points_share: float = Field(ge=0, le=1)
    max_records: int = Field(ge=1)
    why: Text


class AccessRestrictions(_Strict):
    kinds: list[MeasureKind]
    why: Text


class Component(Condition):
    id: Ident
    label: Text
    group: Text
    points: float = Field(gt=0)
    source: Text


class PrivacyControl(_Strict):
    description: Text
    components: list[Component] = Field(min_length=1)


class Principle(_Strict):
    id: Ident
    name: Text
    chinese: Text
    principle: Text
    source: Text
    violates_if_any: list[Condition]
    upholds_if_all: list[Condition]


class EuAiAct(_Strict):
    article: Text
    summary: Text
    source: Text
    scope_if_all: list[Condition] = Field(min_length=1)
    prohibited_if_any: list[ClauseCondition] = Field(min_length=1)


class Criteria(_Strict):
    version: Literal[1]
    input_categories: list[InputCategory] = Field(min_length=1)
    contexts: dict[str, Context]
    minor: Minor
    access_restrictions: AccessRestrictions
    privacy_control: PrivacyControl
    ethics: list[Principle] = Field(min_length=1)
    eu_ai_act: EuAiAct


Problem = tuple[tuple[str | int, ...], str]


def _check(c: Criteria) -> list[Problem]:
    """Checks that need the whole file: ids, coverage, names of properties and behaviours."""
    p: list[Problem] = []
    cat = catalogue()
    categories = list(typing.get_args(CustomBehaviour.model_fields["category"].annotation))
    kinds = list(typing.get_args(MeasureKind))

    def unique(items: list[typing.Any], path: tuple[str | int, ...]) -> None:
        seen: set[str] = set()
        for i, x in enumerate(items):
            if x.id in seen:
                p.append(((*path, i, "id"), f"duplicate id '{x.id}'"))
            seen.add(x.id)

    unique(c.input_categories, ("input_categories",))
    unique(c.privacy_control.components, ("privacy_control", "components"))
    unique(c.ethics, ("ethics",))
    covered: dict[str, str] = {}
    for i, ic in enumerate(c.input_categories):
        for j, bc in enumerate(ic.behaviour_categories):
            where = ("input_categories", i, "behaviour_categories", j)
            if bc not in categories:
                p.append((where, f"unknown behaviour category '{bc}' (known: {categories})"))
            elif bc in covered:
                p.append((where, f"'{bc}' is already in input category '{covered[bc]}'"))
            else:
                covered[bc] = ic.id
        if not ic.behaviour_categories and not ic.channels:
            p.append((("input_categories", i), "needs behaviour_categories or channels"))
    for bc in categories:
        if bc not in covered:
            p.append((("input_categories",), f"behaviour category '{bc}' is in no input category"))
    for k in kinds:
        if k not in c.contexts:
            p.append((("contexts",), f"measure kind '{k}' has no context"))
    for k, ctx in c.contexts.items():
        if k not in kinds:
            p.append((("contexts", k), f"unknown measure kind '{k}' (known: {kinds})"))
        if isinstance(ctx.related, list):
            for j, r in enumerate(ctx.related):
                if r not in cat and r not in categories:
                    p.append(
                        (
                            ("contexts", k, "related", j),
                            f"'{r}' is neither a behaviour category nor a catalogue behaviour",
                        )
                    )
    for j, b in enumerate(c.minor.behaviours):
        if b not in cat:
            p.append((("minor", "behaviours", j), f"'{b}' is not a catalogue behaviour"))
    names = set(property_names(ic.id for ic in c.input_categories))
    conds: list[tuple[tuple[str | int, ...], Condition]] = []
    for i, comp in enumerate(c.privacy_control.components):
        conds.append((("privacy_control", "components", i), comp))
    for i, pr in enumerate(c.ethics):
        conds += [
            (("ethics", i, "violates_if_any", j), x) for j, x in enumerate(pr.violates_if_any)
        ]
        conds += [(("ethics", i, "upholds_if_all", j), x) for j, x in enumerate(pr.upholds_if_all)]
    eu = c.eu_ai_act
    conds += [(("eu_ai_act", "scope_if_all", j), x) for j, x in enumerate(eu.scope_if_all)]
    conds += [
        (("eu_ai_act", "prohibited_if_any", j), x) for j, x in enumerate(eu.prohibited_if_any)
    ]
    for path, cond in conds:
        if cond.prop not in names:
            p.append(((*path, "property"), f"unknown property '{cond.prop}'"))
    return p


def _format(exc: ValidationError, loc: Located) -> str:
    lines = []
    for err in exc.errors()[:MAX_ERRORS]:
        path = tuple(x for x in err["loc"] if not str(x).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the criteria format)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{loc.where(path)}: {dotted(path)}: {msg}")
    more = len(exc.errors()) - MAX_ERRORS
    if more > 0:
        lines.append(f"... and {more} more errors")
    return "\n".join(lines)


def default_path() -> Path:
    return Path(str(resources.files("credsim.compare").joinpath("criteria.yaml")))


def load_criteria(path: str | Path | None = None) -> Criteria:
    """The criteria in ``path`` (default: the bundled ``criteria.yaml``), checked strictly."""
    if path is None:
        return _default()
    return _load(Path(path))


@cache
def _default() -> Criteria:
    return _load(default_path())


def _load(path: Path) -> Criteria:
    try:
        loc = read_yaml(path)
    except SchemeError as exc:
        raise CriteriaError(f"criteria: {exc}") from None
    if not isinstance(loc.data, dict):
        raise CriteriaError(f"{loc.where(())}: criteria: expected a mapping of criteria sections")
    try:
        crit = Criteria.model_validate(loc.data)
    except ValidationError as exc:
        raise CriteriaError(_format(exc, loc)) from None
    problems = _check(crit)
    if problems:
        raise CriteriaError(
            "\n".join(f"{loc.where(pth)}: {dotted(pth)}: {msg}" for pth, msg in problems[:20])
        )
    return crit


def criteria_sha256(path: str | Path | None = None) -> str:
    return read_yaml(default_path() if path is None else Path(path)).sha256


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Check:
    """One condition evaluated on one scheme."""

    cond: Condition
    fact: Fact

    @property
    def holds(self) -> bool | None:
        v = self.fact.value
        return None if v is None else v == self.cond.is_

    def shown(self) -> str:
        return f"{self.cond.prop}={self.fact.shown}"

    def explained(self) -> str:
        return f"{self.cond.why} [{self.cond.prop}={self.fact.shown}: {self.fact.basis}]"


def _checks(conds: list[Condition] | list[ClauseCondition], d: Derived) -> list[Check]:
    return [Check(c, d[c.prop]) for c in conds]


@dataclass(frozen=True)
class Verdict:
    verdict: str  # upholds | violates | unknown  (or yes | no | unknown)
    reason: str
    properties: str  # prop=value of every condition that decided it
    basis: str


def _verdict(verdict: str, reason: str, decided: list[Check]) -> Verdict:
    return Verdict(
        verdict,
        reason,
        "; ".join(dict.fromkeys(c.shown() for c in decided)),
        "; ".join(dict.fromkeys(f"{c.cond.prop}: {c.fact.basis}" for c in decided)),
    )


def evaluate_principle(p: Principle, d: Derived) -> Verdict:
    bad = _checks(p.violates_if_any, d)
    good = _checks(p.upholds_if_all, d)
    hit = [c for c in bad if c.holds is True]
    if hit:
        return _verdict("violates", "; ".join(c.explained() for c in hit), hit)
    open_bad = [c for c in bad if c.holds is None]
    missing = [c for c in good if c.holds is not True]
    if not open_bad and good and not missing:
        why = "; ".join(c.explained() for c in good)
        ruled_out = f" (no violation: {', '.join(c.shown() for c in bad)})" if bad else ""
        return _verdict("upholds", why + ruled_out, [*good, *bad])
    parts = [f"undecided whether {c.explained()}" for c in open_bad]
    asked = {c.cond.prop for c in open_bad}
    parts += [
        f"upholding needs {c.cond.prop}={show(c.cond.is_)} ({c.cond.why}), "
        f"found {c.fact.shown} [{c.fact.basis}]"
        for c in missing
        if c.cond.prop not in asked
    ]
    parts += [
        f"upholding needs {c.cond.prop}={show(c.cond.is_)} ({c.cond.why})"
        for c in missing
        if c.cond.prop in asked
    ]
    if not good and not open_bad:
        parts.append("no violation found, and no scheme property can show this principle upheld")
    return _verdict("unknown", "; ".join(parts), [*open_bad, *missing, *bad])


@dataclass(frozen=True)
class EuVerdict(Verdict):
    clauses: dict[str, str]  # clause -> yes/no/unknown


def evaluate_eu(eu: EuAiAct, d: Derived) -> EuVerdict:
    scope = _checks(eu.scope_if_all, d)
    pro = _checks(eu.prohibited_if_any, d)
    clauses = {typing.cast(ClauseCondition, c.cond).clause: show(c.holds) for c in pro}
    out = [c for c in scope if c.holds is False]
    if out:
        why = "; ".join(
            f"needs {c.cond.prop}={show(c.cond.is_)} ({c.cond.why}), found {c.fact.shown} "
            f"[{c.fact.basis}]"
            for c in out
        )
        v = _verdict("no", f"outside the practice: {why}", out)
        return EuVerdict(v.verdict, v.reason, v.properties, v.basis, clauses)
    hit = [c for c in pro if c.holds is True]
    if hit and all(c.holds is True for c in scope):
        why = "; ".join(
            f"{typing.cast(ClauseCondition, c.cond).clause}: {c.explained()}" for c in hit
        )
        v = _verdict("yes", why, [*scope, *hit])
    elif all(c.holds is False for c in pro):
        why = "; ".join(
            f"not {typing.cast(ClauseCondition, c.cond).clause}: {c.cond.prop}={c.fact.shown} "
            f"[{c.fact.basis}]"
            for c in pro
        )
        v = _verdict("no", f"a social score with detrimental treatment, but {why}", [*scope, *pro])
    else:
        open_ = [c for c in [*scope, *pro] if c.holds is None]
        v = _verdict(
            "unknown", "undecided: " + "; ".join(c.explained() for c in open_), [*scope, *pro]
        )
    return EuVerdict(v.verdict, v.reason, v.properties, v.basis, clauses)


@dataclass(frozen=True)
class ComponentScore:
    component: Component
    fact: Fact
    points: float  # points counted (half for unknown)
    low: float
    high: float


@dataclass(frozen=True)
class Index:
    index: float
    low: float
    high: float
    maximum: float
    components: list[ComponentScore]

    @property
    def unknown(self) -> list[str]:
        return [c.component.id for c in self.components if c.fact.value is None]


def privacy_index(pc: PrivacyControl, d: Derived) -> Index:
    scores = []
    for comp in pc.components:
        fact = d[comp.prop]
        if fact.value is None:
            scores.append(ComponentScore(comp, fact, comp.points / 2, 0.0, comp.points))
        else:
            pts = comp.points if fact.value == comp.is_ else 0.0
            scores.append(ComponentScore(comp, fact, pts, pts, pts))
    return Index(
        sum(c.points for c in scores),
        sum(c.low for c in scores),
        sum(c.high for c in scores),
        sum(c.points for c in pc.components),
        scores,
    )
