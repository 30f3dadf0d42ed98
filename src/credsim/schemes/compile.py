"""Compile a validated scheme into plain arrays for the engine.

Kernels never touch pydantic objects: every rule becomes a row in a lookup table indexed by
behaviour, channel, item, list, measure or group. Names live beside the arrays for the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from credsim.schemes.model import Scheme

CHANNEL_KINDS = ["camera", "agency", "informant", "app"]
# Synthetic channels for records the system derives itself (their codes follow CHANNEL_KINDS).
DERIVED_CHANNELS = ["escalation", "association", "repair", "import"]
ALL_CHANNELS = CHANNEL_KINDS + DERIVED_CHANNELS

INC_ITEM, INC_SCORE_BELOW, INC_SCORE_AT_LEAST, INC_GRADES = 0, 1, 2, 3
TRIG_LIST, TRIG_GRADES, TRIG_ENROLLED, TRIG_ANY_BLACK = 0, 1, 2, 3
NO_LIMIT = -1


@dataclass
class Compiled:
    scheme: Scheme
    groups: list[str]
    # behaviours (k)
    behaviours: list[str]
    rate: np.ndarray  # float64[K, G+1] annual rates; column G is organisations
    trait_of: np.ndarray  # int32[K] index into traits, -1: constant 1
    traits: list[str]
    behaviour_item: np.ndarray  # int32[K] item recorded for the behaviour, -1 if unobserved
    # channels (c), flattened over behaviours
    ch_behaviour: np.ndarray  # int32[C]
    ch_kind: np.ndarray  # int8[C] index into ALL_CHANNELS
    ch_agency: list[str]
    ch_detect: np.ndarray  # float64[C]
    ch_delay: np.ndarray  # int32[C]
    ch_fmr: np.ndarray  # float64[C, G] false match rate by group of the person seen
    ch_fmr_sex: np.ndarray  # float64[C, 2] multiplier by sex (0 female, 1 male)
    ch_false_reports: np.ndarray  # float64[C] false reports per person-year
    # items (i)
    items: list[str]
    item_names: list[str]
    points: np.ndarray  # float64[I]
    cap: np.ndarray  # float64[I], inf: no cap
    # review and data entry
    data_entry_error: float
    review: bool
    catch_false: float
    reject_true: float
    capacity: int  # NO_LIMIT for unlimited
    # score
    has_score: bool
    base: float
    lo: float
    hi: float
    grade_names: list[str]
    grade_min: np.ndarray  # float64[R] ascending
    recovery_days: int
    recovery_points: float
    # escalations (e)
    esc_item: np.ndarray
    esc_count: np.ndarray
    esc_window: np.ndarray  # NO_LIMIT: no window
    esc_produces: np.ndarray
    # lists (l)
    lists: list[str]
    list_black: np.ndarray  # bool[L]
    list_published: np.ndarray
    list_enrolled_only: np.ndarray
    inc_kind: np.ndarray  # int8[L]
    inc_item: np.ndarray  # int32[L]
    inc_count: np.ndarray  # int32[L]
    inc_threshold: np.ndarray  # float64[L]
    inc_grades: np.ndarray  # bool[L, R]
    duration: np.ndarray  # int32[L], NO_LIMIT: until removed
    perform_daily: np.ndarray  # float64[L]
    clean_days: np.ndarray  # int32[L], NO_LIMIT: no clean-period removal
    list_rule_text: list[str]
    # measures (m)
    measures: list[str]
    m_trigger: np.ndarray  # int8[M]
    m_list: np.ndarray  # int32[M]
    m_grades: np.ndarray  # bool[M, R]
    m_self: np.ndarray  # bool[M]
    m_household: np.ndarray
    m_children: np.ndarray
    m_effect: np.ndarray  # float64[M, K] rate multiplier
    m_trigger_text: list[str]
    # association and appeals
    household_share: float
    friend_share: float
    appeals: bool
    file_false: float
    file_true: float
    overturn_false: float
    overturn_true: float
    appeal_days: int
    needs_friends: bool = field(default=False)
    # scenario mechanisms
    fraudulent: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # bool[K]
    income_mult: np.ndarray = field(default_factory=lambda: np.ones((0, 11)))  # [K, 11]: decile
    excusable: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float64[K]
    context_aware: bool = False
    intrusion_share: float = 0.0
    fav_officials: float = 0.0
    fav_rate: float = 0.0
    fav_points: float = 0.0

    @property
    def regrades(self) -> bool:
        """Whether a day's end reads the entities whose score changed that day: to grade
        them, to check score or grade lists, or to take or lift measures on grades."""
        return bool(
            self.grade_min.shape[0]
            or (self.inc_kind != INC_ITEM).any()
            or (self.m_trigger == TRIG_GRADES).any()
        )


def _v(num: object, default: float = 0.0) -> float:
    return default if num is None else float(num.value)  # type: ignore[attr-defined]


def category_of(behaviour: str, s: Scheme, cat: dict) -> str:
    """The catalogue category of a behaviour (the scheme's own definition first)."""
    if behaviour in s.custom_behaviours:
        return s.custom_behaviours[behaviour].category
    return str(cat.get(behaviour, {}).get("category", "other"))


def compile_scheme(s: Scheme) -> Compiled:
    groups = list(s.population.groups)
    G = len(groups)
    behaviours = list(s.behaviours)
    K = len(behaviours)
    traits = list(s.propensities)
    items = list(s.items)
    item_ix = {k: i for i, k in enumerate(items)}

    rate = np.zeros((K, G + 1))
    trait_of = np.full(K, -1, np.int32)
    behaviour_item = np.full(K, -1, np.int32)
    ch: dict[str, list] = {k: [] for k in ("b", "kind", "ag", "det", "delay", "fmr", "sex", "fr")}
    for k, (key, b) in enumerate(s.behaviours.items()):
        if b.actor == "person":
            rate[k, :G] = b.rate.value
            for g, r in (b.rate_by_group or {}).items():
                rate[k, groups.index(g)] = r.value
        else:
            rate[k, G] = b.rate.value
        if b.propensity is not None:
            trait_of[k] = traits.index(b.propensity)
        for ik, it in s.items.items():
            if it.behaviour == key:
                behaviour_item[k] = item_ix[ik]
        for c in b.channels:
            fmr = np.full(G, _v(c.false_match_rate))
            for g, fm in (c.false_match_by_group or {}).items():
                fmr[groups.index(g)] = fm.value
            sexf = c.false_match_sex_factor or {}
            ch["b"].append(k)
            ch["kind"].append(ALL_CHANNELS.index(c.kind))
            ch["ag"].append(c.agency)
            ch["det"].append(c.detection.value)
            ch["delay"].append(int(_v(c.delay_days)))
            ch["fmr"].append(fmr)
            ch["sex"].append([_v(sexf.get("female"), 1.0), _v(sexf.get("male"), 1.0)])
            ch["fr"].append(_v(c.false_report_rate))

    sc = s.score
    grade_names = [g.grade for g in sc.grades] if sc else []
    R = len(grade_names)

    def grade_mask(names: list[str] | None) -> np.ndarray:
        return np.array([g in (names or []) for g in grade_names], bool)

    lists = list(s.lists)
    L = len(lists)
    inc_kind = np.zeros(L, np.int8)
    inc_item = np.full(L, -1, np.int32)
    inc_count = np.ones(L, np.int32)
    inc_thr = np.zeros(L)
    inc_grades = np.zeros((L, R), bool)
    rule_text = []
    for li, lst in enumerate(s.lists.values()):
        inc = lst.inclusion
        if inc.item is not None:
            inc_kind[li], inc_item[li] = INC_ITEM, item_ix[inc.item]
            inc_count[li] = int(_v(inc.count, 1))
            rule_text.append(f"{inc_count[li]} accepted record(s) of '{inc.item}'")
        elif inc.score_below is not None:
            inc_kind[li], inc_thr[li] = INC_SCORE_BELOW, inc.score_below.value
            rule_text.append(f"score below {inc.score_below.value:g}")
        elif inc.score_at_least is not None:
            inc_kind[li], inc_thr[li] = INC_SCORE_AT_LEAST, inc.score_at_least.value
            rule_text.append(f"score at least {inc.score_at_least.value:g}")
        else:
            inc_kind[li], inc_grades[li] = INC_GRADES, grade_mask(inc.grades)
            rule_text.append(f"grade in {', '.join(inc.grades or [])}")

    measures = list(s.measures)
    M = len(measures)
    m_trigger = np.zeros(M, np.int8)
    m_list = np.full(M, -1, np.int32)
    m_grades = np.zeros((M, R), bool)
    m_effect = np.ones((M, K))
    trig_text = []
    for mi, m in enumerate(s.measures.values()):
        t = m.trigger
        if t.on_list is not None:
            m_trigger[mi], m_list[mi] = TRIG_LIST, lists.index(t.on_list)
            trig_text.append(f"list:{t.on_list}")
        elif t.grades is not None:
            m_trigger[mi], m_grades[mi] = TRIG_GRADES, grade_mask(t.grades)
            trig_text.append("grade:" + ",".join(t.grades))
        elif t.any_black_list:
            m_trigger[mi] = TRIG_ANY_BLACK
            trig_text.append("any-black-list")
        else:
            m_trigger[mi] = TRIG_ENROLLED
            trig_text.append("enrolled")
        for bk, mult in (m.behaviour_effects or {}).items():
            m_effect[mi, behaviours.index(bk)] = mult.value

    from credsim.schemes.loader import catalogue

    cat = catalogue()
    fraudulent = np.array(
        [
            bool(
                s.custom_behaviours[b].fraudulent
                if b in s.custom_behaviours
                else cat.get(b, {}).get("fraudulent", False)
            )
            for b in behaviours
        ],
        bool,
    )
    income_mult = np.ones((K, 11))
    for k, b in enumerate(s.behaviours.values()):
        if b.income_multipliers is not None:
            income_mult[k, 1:] = [x.value for x in b.income_multipliers]
    default_excuse = _v(s.context.excusable_share)
    excusable = np.array(
        [
            _v(b.excusable_share)
            if b.excusable_share is not None
            else default_excuse * (category_of(key, s, cat) == "financial")
            for key, b in s.behaviours.items()
        ],
        float,
    )
    relatives = s.measures_on_relatives
    ap = s.appeals
    assoc = s.association
    esc = s.escalations
    return Compiled(
        scheme=s,
        groups=groups,
        behaviours=behaviours,
        rate=rate,
        trait_of=trait_of,
        traits=traits,
        behaviour_item=behaviour_item,
        ch_behaviour=np.array(ch["b"], np.int32),
        ch_kind=np.array(ch["kind"], np.int8),
        ch_agency=ch["ag"],
        ch_detect=np.array(ch["det"], float),
        ch_delay=np.array(ch["delay"], np.int32),
        ch_fmr=np.array(ch["fmr"], float).reshape(len(ch["b"]), G),
        ch_fmr_sex=np.array(ch["sex"], float).reshape(len(ch["b"]), 2),
        ch_false_reports=np.array(ch["fr"], float),
        items=items,
        item_names=[it.name for it in s.items.values()],
        points=np.array([it.points.value for it in s.items.values()], float),
        cap=np.array([_v(it.cap, np.inf) for it in s.items.values()], float),
        data_entry_error=_v(s.data_entry.error_rate if s.data_entry else None),
        review=s.review.mode == "required",
        catch_false=_v(s.review.catch_false),
        reject_true=_v(s.review.reject_true),
        capacity=int(_v(s.review.capacity_per_day, NO_LIMIT)),
        has_score=sc is not None,
        base=_v(sc.base if sc else None),
        lo=_v(sc.min if sc else None),
        hi=_v(sc.max if sc else None),
        grade_names=grade_names,
        grade_min=np.array([g.min.value for g in sc.grades] if sc else [], float),
        recovery_days=int(_v(sc.recovery.clean_days)) if sc and sc.recovery else NO_LIMIT,
        recovery_points=_v(sc.recovery.points) if sc and sc.recovery else 0.0,
        esc_item=np.array([item_ix[e.item] for e in esc], np.int32),
        esc_count=np.array([int(e.count.value) for e in esc], np.int32),
        esc_window=np.array([int(_v(e.window_days, NO_LIMIT)) for e in esc], np.int32),
        esc_produces=np.array([item_ix[e.produces] for e in esc], np.int32),
        lists=lists,
        list_black=np.array([x.kind == "black" for x in s.lists.values()], bool),
        list_published=np.array([x.published for x in s.lists.values()], bool),
        list_enrolled_only=np.array([x.enrolled_only for x in s.lists.values()], bool),
        inc_kind=inc_kind,
        inc_item=inc_item,
        inc_count=inc_count,
        inc_threshold=inc_thr,
        inc_grades=inc_grades,
        duration=np.array([int(_v(x.duration_days, NO_LIMIT)) for x in s.lists.values()], np.int32),
        perform_daily=np.array(
            [_v(x.removal.performance_daily if x.removal else None) for x in s.lists.values()]
        ),
        clean_days=np.array(
            [
                int(_v(x.removal.clean_days if x.removal else None, NO_LIMIT))
                for x in s.lists.values()
            ],
            np.int32,
        ),
        list_rule_text=rule_text,
        measures=measures,
        m_trigger=m_trigger,
        m_list=m_list,
        m_grades=m_grades,
        m_self=np.array(["self" in m.targets for m in s.measures.values()], bool),
        m_household=np.array(
            [relatives and "household" in m.targets for m in s.measures.values()], bool
        ),
        m_children=np.array(
            [relatives and "children" in m.targets for m in s.measures.values()], bool
        ),
        m_effect=m_effect,
        m_trigger_text=trig_text,
        household_share=_v(assoc.household_share if assoc else None),
        friend_share=_v(assoc.friend_share if assoc else None),
        appeals=ap.available,
        file_false=_v(ap.file_false),
        file_true=_v(ap.file_true),
        overturn_false=_v(ap.overturn_false),
        overturn_true=_v(ap.overturn_true),
        appeal_days=int(_v(ap.days_to_decide)),
        needs_friends=bool(assoc and assoc.friend_share and assoc.friend_share.value > 0),
        fraudulent=fraudulent,
        income_mult=income_mult,
        excusable=excusable,
        context_aware=s.context.mode == "aware",
        intrusion_share=_v(s.intrusion.share if s.intrusion else None),
        fav_officials=_v(s.favouritism.officials_share if s.favouritism else None),
        fav_rate=_v(s.favouritism.rate if s.favouritism else None),
        fav_points=_v(s.favouritism.points if s.favouritism else None),
    )
