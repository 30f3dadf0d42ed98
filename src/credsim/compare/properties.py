"""Properties derived from a scheme, the vocabulary the comparison criteria are written in.

Every property is a :class:`Fact`: ``True``, ``False`` or ``None`` (unknown), with the basis that
decided it (the scheme fields read, and the source or assumption of a ``governance`` fact). The
criteria (``criteria.yaml``) only ever name properties from :func:`property_names`; this module
holds no verdict about any scheme, only how to read a scheme.

Two kinds of silence are distinguished:

* ``governance`` facts, ``appeals:`` and ``review:`` left out of a scheme mean the sources say
  nothing: the property is unknown (an engine runs without appeals or review, but a comparison
  does not read the omission as a "no").
* Inputs, lists, measures and association are what the scheme does; what it does not model it
  does not do, so their absence is a "no".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from credsim.compare.facts import Fact, show
from credsim.compare.reading import (  # noqa: F401  (re-exported for the criteria)
    BehaviourInfo,
    Feed,
    _any,
    _flag,
    _grade_of,
    _in_trigger,
    _measures,
    _points_behaviours,
    behaviour_info,
    item_of,
    list_feed,
    measure_feed,
    observed,
    roots,
)
from credsim.schemes.model import Measure, Scheme

if TYPE_CHECKING:
    from credsim.compare.criteria import Criteria


# Properties every criteria file may name (besides ``input_<id>`` for its input categories).
PROPERTY_DOCS: dict[str, str] = {
    "mandatory_enrolment": "enrolment.mode is mandatory: everyone in the jurisdiction is scored",
    "opt_out": "a person can leave or stay out: governance.opt_out, else voluntary enrolment "
    "(yes) or mandatory enrolment (no)",
    "consent_required": "scoring needs informed consent: governance.consent_required, else "
    "enrolment.consent_required when written in the scheme; unknown otherwise",
    "private_sector_data": "company data feed the scheme (governance.private_sector_data)",
    "indicators_published": "the scored behaviours and points are public "
    "(governance.indicators_published)",
    "weights_published": "how factors are weighted is public (governance.weights_published)",
    "consequences_published": "what a listing or score leads to is public "
    "(governance.consequences_published)",
    "score_challenge": "a score or rating can be challenged (governance.score_challenge)",
    "helpline": "a helpline answers questions about one's record (governance.helpline)",
    "data_minimisation": "only data needed for the purpose are collected "
    "(governance.data_minimisation)",
    "camera_channel": "an observed behaviour has a camera (face-matching) channel",
    "agency_channel": "an observed behaviour has an agency channel (data from authorities)",
    "informant_channel": "an observed behaviour has an informant channel",
    "app_channel": "an observed behaviour has an app channel",
    "published_black_list": "a black list is published",
    "public_naming": "a sanction of kind public_naming",
    "public_shaming": "published_black_list or public_naming",
    "rewards": "some measure is a reward",
    "penalties": "some measure is not a reward (a sanction)",
    "low_score_penalised": "a sanction is triggered by a grade or by a list entered through a "
    "score threshold or grade",
    "relatives_targeted": "a sanction targets the household or the children",
    "association_spillover": "deductions spill onto household or friends (association shares > 0)",
    "relatives_affected": "relatives_targeted or association_spillover",
    "appeals_available": "appeals.available, when the scheme has an appeals section; unknown "
    "without one",
    "human_review": "review.mode is required, when the scheme has a review section; unknown "
    "without one",
    "unequal_error_rates": "a camera channel's false match rate differs by group or sex; unknown "
    "for camera channels that state no difference",
    "lawful_behaviour_penalised": "a lawful behaviour (not a rewarded one) loses points or leads "
    "to a black list or a sanction",
    "access_restricted": "a sanction of a kind listed under access_restrictions",
    "unrelated_context": "a sanction follows from behaviour observed in a context unrelated to "
    "the sanction (see contexts) - EU AI Act Art. 5(1)(c)(i)",
    "disproportionate": "a sanction (or the publication of a black list) follows from lawful "
    "behaviour, hits relatives, or follows from a single minor record (see minor); or deductions "
    "spill onto relatives while a low score is sanctioned - EU AI Act Art. 5(1)(c)(ii)",
    "evaluates_persons": "an observed behaviour of persons moves a score or leads to a list",
    "detrimental_treatment": "penalties or published_black_list; unknown when a black list is "
    "neither published nor triggers a measure (its consequences are not stated)",
    "permanent_black_list": "a black list with neither a duration nor a way of removal",
    "errors_correctable": "appeals_available or score_challenge or helpline",
}


def property_names(input_ids: Iterable[str]) -> list[str]:
    return [*PROPERTY_DOCS, *(f"input_{i}" for i in input_ids)]


# --------------------------------------------------------------------------------------------
# Derived properties


@dataclass
class Derived:
    """All properties of one scheme plus the detail the tables show."""

    facts: dict[str, Fact]
    inputs: dict[str, list[str]]  # input category -> behaviours (with a channel note)
    reward_kinds: Counter[str] = field(default_factory=Counter)
    penalty_kinds: Counter[str] = field(default_factory=Counter)
    unrelated: list[str] = field(default_factory=list)  # one line per sanction and behaviour
    disproportionate: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Fact:
        return self.facts[name]


def derive(s: Scheme, crit: Criteria) -> Derived:
    """Every property of ``s`` under the parameters of ``crit``."""
    f: dict[str, Fact] = {}
    obs = observed(s)
    info = {b: behaviour_info(s, b) for b in s.behaviours}

    # enrolment, consent, governance
    mode = s.enrolment.mode
    f["mandatory_enrolment"] = Fact(mode == "mandatory", f"enrolment.mode = {mode}")
    opt = _flag(s, "opt_out")
    f["opt_out"] = (
        opt
        if opt.value is not None
        else Fact(mode == "voluntary", f"derived from enrolment.mode = {mode}")
    )
    consent = _flag(s, "consent_required")
    if consent.value is None and "consent_required" in s.enrolment.model_fields_set:
        v = s.enrolment.consent_required
        consent = Fact(v, f"enrolment.consent_required = {show(v)}")
    f["consent_required"] = consent
    for name in (
        "private_sector_data",
        "indicators_published",
        "weights_published",
        "consequences_published",
        "score_challenge",
        "helpline",
        "data_minimisation",
    ):
        f[name] = _flag(s, name)

    # channels and inputs
    kinds: dict[str, list[str]] = {}
    for b in obs:
        for i, ch in enumerate(s.behaviours[b].channels):
            kinds.setdefault(ch.kind, []).append(f"behaviours.{b}.channels[{i}]")
    for kind in ("camera", "agency", "informant", "app"):
        where = kinds.get(kind, [])
        f[f"{kind}_channel"] = Fact(
            bool(where), ", ".join(where) if where else f"no {kind} channel"
        )
    inputs: dict[str, list[str]] = {}
    for cat in crit.input_categories:
        hits = []
        for b in obs:
            chans = {ch.kind for ch in s.behaviours[b].channels}
            if info[b].category in cat.behaviour_categories:
                hits.append(b)
            elif chans & set(cat.channels):
                hits.append(f"{b} ({'/'.join(sorted(chans & set(cat.channels)))})")
        inputs[cat.id] = hits
        f[f"input_{cat.id}"] = Fact(
            bool(hits),
            f"observed: {', '.join(hits)}" if hits else f"no observed {cat.label.lower()} input",
        )

    # lists and measures
    black_pub = [k for k, lst in s.lists.items() if lst.kind == "black" and lst.published]
    f["published_black_list"] = Fact(
        bool(black_pub),
        f"lists.{', lists.'.join(black_pub)} published" if black_pub else "no published black list",
    )
    naming = [k for k, m in _measures(s, False) if m.kind == "public_naming"]
    f["public_naming"] = Fact(
        bool(naming), f"measures.{', measures.'.join(naming)}" if naming else "no public naming"
    )
    f["public_shaming"] = _any([f["published_black_list"], f["public_naming"]], "no shaming")
    rewards, penalties = _measures(s, True), _measures(s, False)
    f["rewards"] = Fact(bool(rewards), _names("reward", rewards))
    f["penalties"] = Fact(bool(penalties), _names("sanction", penalties))
    d = Derived(f, inputs)
    d.reward_kinds.update(m.kind for _, m in rewards)
    d.penalty_kinds.update(m.kind for _, m in penalties)

    low = [k for k, m in penalties if measure_feed(s, m).score_based]
    f["low_score_penalised"] = Fact(
        bool(low),
        f"score-triggered sanctions: {', '.join(low)}"
        if low
        else ("no score" if s.score is None else "no sanction is triggered by a score or grade"),
    )
    rel = [(k, m) for k, m in penalties if {"household", "children"} & set(m.targets)]
    f["relatives_targeted"] = Fact(
        bool(rel),
        "; ".join(f"measures.{k}.targets = {', '.join(m.targets)}" for k, m in rel)
        or "no sanction targets relatives",
    )
    a = s.association
    shares = {
        "household_share": a.household_share if a else None,
        "friend_share": a.friend_share if a else None,
    }
    spill = [f"association.{k} = {v.value:g}" for k, v in shares.items() if v and v.value > 0]
    f["association_spillover"] = Fact(bool(spill), ", ".join(spill) or "no spill-over")
    f["relatives_affected"] = _any(
        [f["relatives_targeted"], f["association_spillover"]], "relatives unaffected"
    )

    # safeguards: silence is unknown
    if "appeals" in s.model_fields_set:
        f["appeals_available"] = Fact(
            s.appeals.available, f"appeals.available = {show(s.appeals.available)}"
        )
    else:
        f["appeals_available"] = Fact(None, "no appeals section: the sources are silent")
    if "review" in s.model_fields_set:
        f["human_review"] = Fact(s.review.mode == "required", f"review.mode = {s.review.mode}")
    else:
        f["human_review"] = Fact(None, "no review section: the sources are silent")
    f["errors_correctable"] = _any(
        [f["appeals_available"], f["score_challenge"], f["helpline"]], "no correction channel"
    )

    # camera error rates
    unequal, plain = [], []
    for b in obs:
        for i, ch in enumerate(s.behaviours[b].channels):
            if ch.kind != "camera":
                continue
            at = f"behaviours.{b}.channels[{i}]"
            by_group = {x.value for x in (ch.false_match_by_group or {}).values()}
            sex = ch.false_match_sex_factor or {}
            by_sex = {sex[x].value if x in sex else 1.0 for x in ("female", "male")}
            base = ch.false_match_rate.value if ch.false_match_rate is not None else None
            groups_differ = len(by_group | ({base} if base is not None else set())) > 1 and bool(
                by_group
            )
            if len(by_sex) > 1 or groups_differ:
                unequal.append(f"{at}: false matches differ by sex or group")
            else:
                plain.append(at)
    if unequal:
        f["unequal_error_rates"] = Fact(True, "; ".join(unequal))
    elif plain:
        f["unequal_error_rates"] = Fact(
            None, f"camera channels state no difference by sex or group: {', '.join(plain)}"
        )
    else:
        f["unequal_error_rates"] = Fact(False, "no camera channel")

    # what each sanction follows from
    access, lawful_hits = [], []
    for b in obs:
        it = item_of(s, b)
        if info[b].lawful and not info[b].good and it and s.items[it].points.value < 0:
            lawful_hits.append(f"{b} (lawful) loses points (items.{it})")
    for k, lst in s.lists.items():
        if lst.kind == "black":
            for b, _ in list_feed(s, k).behaviours:
                if info[b].lawful and not info[b].good:
                    lawful_hits.append(f"{b} (lawful) leads to black list {k}")
    unknown_ctx: list[str] = []
    for k, m in penalties:
        feed = measure_feed(s, m)
        if m.kind in crit.access_restrictions.kinds:
            access.append(f"measures.{k} ({m.kind})")
        for b, _ in feed.behaviours:
            if info[b].lawful and not info[b].good:
                lawful_hits.append(f"{b} (lawful) leads to sanction {k}")
        _contexts(s, crit, k, m, feed, info, d.unrelated, unknown_ctx)
        _proportion(s, crit, k, m, feed, info, d.disproportionate)
    named = {m.trigger.on_list for _, m in penalties if m.kind == "public_naming"}
    for k in black_pub:
        if k not in named:  # publishing the list names people: judged like a naming sanction
            pseudo = Measure.model_validate(
                {"name": k, "kind": "public_naming", "reward": False, "trigger": {"list": k}}
            )
            _proportion(
                s,
                crit,
                f"publication of list {k}",
                pseudo,
                list_feed(s, k),
                info,
                d.disproportionate,
            )
    # a black list that is neither published nor triggers a measure: its consequences are not
    # stated, so whether it treats people detrimentally (and how) is unknown
    triggering = {m.trigger.on_list for m in s.measures.values()}
    silent = [
        k
        for k, lst in s.lists.items()
        if lst.kind == "black" and not lst.published and k not in triggering
    ]
    open_grounds: list[str] = []
    for k in silent:
        unknown_ctx.append(f"black list {k} leads to no stated measure")
        pseudo = Measure.model_validate(
            {"name": k, "kind": "other", "reward": False, "trigger": {"list": k}}
        )
        grounds: list[str] = []
        _proportion(s, crit, f"black list {k}", pseudo, list_feed(s, k), info, grounds)
        open_grounds += [f"{g}, if the listing has consequences (none stated)" for g in grounds]
    if f["association_spillover"].value and low:
        d.disproportionate.append(
            f"deductions spill onto relatives ({f['association_spillover'].basis}) and a low "
            f"score is sanctioned ({', '.join(low)})"
        )
    f["lawful_behaviour_penalised"] = Fact(
        bool(lawful_hits), "; ".join(dict.fromkeys(lawful_hits)) or "no lawful behaviour penalised"
    )
    f["access_restricted"] = Fact(bool(access), ", ".join(access) or "no sanction restricts access")
    if d.unrelated:
        f["unrelated_context"] = Fact(True, "; ".join(d.unrelated))
    elif unknown_ctx:
        f["unrelated_context"] = Fact(None, "; ".join(unknown_ctx))
    else:
        f["unrelated_context"] = Fact(
            False,
            "every sanction follows from behaviour in a related context"
            if penalties
            else "no sanction",
        )
    if d.disproportionate:
        f["disproportionate"] = Fact(True, "; ".join(d.disproportionate))
    elif open_grounds:
        f["disproportionate"] = Fact(None, "; ".join(open_grounds))
    else:
        f["disproportionate"] = Fact(
            False, "no ground found" if penalties or black_pub else "no sanction"
        )

    # evaluation and treatment
    people = {b for b in obs if s.behaviours[b].actor == "person"}
    ev = []
    if s.score is not None:
        scored = [
            b for b in sorted(people) if (it := item_of(s, b)) and s.items[it].points.value != 0
        ]
        if scored:
            ev.append(f"the score counts {', '.join(scored)}")
    listed = [k for k in s.lists if people & {b for b, _ in list_feed(s, k).behaviours}]
    if listed:
        ev.append(f"lists {', '.join(listed)} follow from persons' behaviour")
    f["evaluates_persons"] = Fact(
        bool(ev),
        "; ".join(ev)
        or (
            "no behaviour of persons is observed"
            if not people
            else "persons' records neither move a score nor lead to a list"
        ),
    )
    f["detrimental_treatment"] = _any(
        [
            f["penalties"],
            f["published_black_list"],
            Fact(None, f"black lists {', '.join(silent)} lead to no stated measure")
            if silent
            else Fact(False, "no silent black list"),
        ],
        "no sanction and no published black list",
    )
    perm = [
        k
        for k, lst in s.lists.items()
        if lst.kind == "black"
        and lst.duration_days is None
        and (
            lst.removal is None
            or (lst.removal.performance_daily is None and lst.removal.clean_days is None)
        )
    ]
    f["permanent_black_list"] = Fact(
        bool(perm),
        f"lists {', '.join(perm)}: no duration, no removal"
        if perm
        else "every black list ends or can be left",
    )
    return d


def _names(what: str, ms: list[tuple[str, Measure]]) -> str:
    if not ms:
        return f"no {what}"
    return ", ".join(f"measures.{k} ({m.kind})" for k, m in ms)


def _contexts(
    s: Scheme,
    crit: Criteria,
    key: str,
    m: Measure,
    feed: Feed,
    info: dict[str, BehaviourInfo],
    unrelated: list[str],
    unknown: list[str],
) -> None:
    """Art. 5(1)(c)(i): sanction ``key`` against the contexts its behaviours come from."""
    ctx = crit.contexts[m.kind]
    if not feed.behaviours:
        return
    if ctx.related == "unknown":
        unknown.append(f"sanction {key} is of kind '{m.kind}', whose context is not stated")
        return
    if ctx.related == "any":
        return
    related = set(ctx.related)
    far = [
        f"{b} ({info[b].category})"
        for b, _ in feed.behaviours
        if b not in related and info[b].category not in related
    ]
    if far:
        unrelated.append(
            f"sanction {key} ({m.kind}) follows from {', '.join(dict.fromkeys(far))} via {feed.how}"
        )


def _minor(s: Scheme, crit: Criteria, b: str) -> str | None:
    """Why one record of ``b`` is minor, or None."""
    if b in crit.minor.behaviours:
        return f"{b} is a minor behaviour"
    it = item_of(s, b)
    if it is not None and s.score is not None:
        p = s.items[it].points.value
        span = s.score.max.value - s.score.min.value
        if p != 0 and abs(p) <= crit.minor.points_share * span:
            return (
                f"items.{it} moves the score by {abs(p):g} of {span:g} points "
                f"(at most {crit.minor.points_share:.0%})"
            )
    return None


def _proportion(
    s: Scheme,
    crit: Criteria,
    key: str,
    m: Measure,
    feed: Feed,
    info: dict[str, BehaviourInfo],
    out: list[str],
) -> None:
    """Art. 5(1)(c)(ii): grounds on which sanction ``key`` is disproportionate."""
    rel = sorted({"household", "children"} & set(m.targets))
    if rel:
        out.append(f"sanction {key} ({m.kind}) targets {' and '.join(rel)}")
    lawful = [b for b, _ in feed.behaviours if info[b].lawful and not info[b].good]
    if lawful:
        out.append(
            f"sanction {key} ({m.kind}) follows from lawful {', '.join(dict.fromkeys(lawful))} "
            f"via {feed.how}"
        )
    if not feed.score_based:
        for b, needed in feed.behaviours:
            why = _minor(s, crit, b)
            if why and needed is not None and needed <= crit.minor.max_records:
                out.append(f"sanction {key} ({m.kind}) follows from one record: {why}")
        return
    assert s.score is not None
    base = s.score.base.value
    if _in_trigger(s, m, base):
        out.append(f"sanction {key} ({m.kind}) applies at the starting score {base:g}")
        return
    for b, _ in feed.behaviours:
        it = item_of(s, b)
        why = _minor(s, crit, b)
        if it is None or why is None:
            continue
        after = min(max(base + s.items[it].points.value, s.score.min.value), s.score.max.value)
        if _in_trigger(s, m, after):
            out.append(
                f"sanction {key} ({m.kind}) follows from one record from the starting score "
                f"{base:g} ({feed.how}): {why}"
            )
