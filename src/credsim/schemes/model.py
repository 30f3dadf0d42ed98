"""The scheme language: one strict pydantic schema for every scheme file.

A scheme is data, never code. Every number is a :class:`Num`, which carries either a
``source`` (a key into the bibliography, ``schemes/sources.yaml``) or an ``assumption`` (one line
saying why this value was chosen). Unknown keys are errors everywhere (``extra="forbid"``).

Cross-references (an item naming a behaviour, a list naming an item, ...) are checked after
parsing by :mod:`credsim.schemes.semantic`, so that each error names the dotted path of the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from credsim.schemes.values import (  # noqa: F401  (re-exported: the scheme language)
    Count,
    Flag,
    Ident,
    NonNeg,
    Num,
    Prob,
    Strict,
)

# --------------------------------------------------------------------------------------------
# Population


class Group(Strict):
    name: str
    share: Prob
    area_codes: list[Annotated[str, StringConstraints(pattern=r"^[1-9]\d{5}$")]] | None = None
    """Birthplace codes (GB/T 2260) for identity numbers of this group, e.g. migrants born in
    another province. Default: the code of the person's district."""


class District(Strict):
    name: str
    code: Annotated[str, StringConstraints(pattern=r"^[1-9]\d{5}$")]
    share: Prob


class AgeBand(Strict):
    min: Count
    max: Count
    share: Prob


class PopulationSpec(Strict):
    size: Count
    groups: dict[Ident, Group] = Field(min_length=1)
    districts: dict[Ident, District] = Field(min_length=1)
    age_bands: list[AgeBand] = Field(min_length=1)
    male_share: Prob
    household_size_mean: Num
    organizations_per_1000: NonNeg
    friends_mean: NonNeg
    employment_rate: Prob


# --------------------------------------------------------------------------------------------
# Enrolment and individual propensities


class Enrolment(Strict):
    mode: Literal["mandatory", "voluntary"]
    rate: Prob | None = None
    """Share of persons enrolled, required for voluntary schemes."""
    consent_required: bool = False
    organizations: bool = True
    """Whether organisations are enrolled (scored) as well."""
    persons: bool = True
    """Whether persons are enrolled (false for a scheme about organisations only)."""

    @model_validator(mode="after")
    def _rate(self) -> Enrolment:
        if self.mode == "voluntary" and self.rate is None:
            raise ValueError("a voluntary scheme needs 'rate', the share of persons enrolled")
        return self


class Propensity(Strict):
    """An individual trait that scales the rate of the behaviours that use it."""

    distribution: Literal["gamma", "lognormal", "constant"]
    applies_to: Literal["person", "organization"] = "person"
    shape: NonNeg | None = None
    scale: NonNeg | None = None
    sigma: NonNeg | None = None

    @model_validator(mode="after")
    def _params(self) -> Propensity:
        need = {"gamma": ("shape", "scale"), "lognormal": ("sigma",), "constant": ()}
        for name in need[self.distribution]:
            if getattr(self, name) is None:
                raise ValueError(f"distribution '{self.distribution}' needs '{name}'")
        return self


# --------------------------------------------------------------------------------------------
# Behaviours and how they are observed


class Channel(Strict):
    kind: Literal["camera", "agency", "informant", "app"]
    agency: Ident
    detection: Prob
    delay_days: Count | None = None
    false_match_rate: Prob | None = None
    """camera: probability that a detection is matched to the wrong person."""
    false_match_by_group: dict[Ident, Prob] | None = None
    """camera: per population group of the person seen, overriding ``false_match_rate``."""
    false_match_sex_factor: dict[Literal["female", "male"], NonNeg] | None = None
    """camera: multiplies the false match rate by the sex of the person seen (NIST: higher for
    women)."""
    false_report_rate: NonNeg | None = None
    """informant: false reports of this behaviour per person-year, each about someone innocent."""
    reward: NonNeg | None = None
    """informant: reward per report (yuan or points), informational."""

    @model_validator(mode="after")
    def _kind_fields(self) -> Channel:
        camera_only = (
            self.false_match_rate,
            self.false_match_by_group,
            self.false_match_sex_factor,
        )
        if self.kind != "camera" and any(x is not None for x in camera_only):
            raise ValueError("false_match_rate applies to camera channels only")
        if self.kind != "informant" and (self.false_report_rate, self.reward) != (None, None):
            raise ValueError("false_report_rate and reward apply to informant channels only")
        return self


class CustomBehaviour(Strict):
    name: str
    category: Literal[
        "financial",
        "judicial",
        "administrative",
        "traffic",
        "social",
        "speech",
        "health",
        "consumption",
        "location",
        "civic",
        "other",
    ]
    lawful: bool
    good: bool = False
    fraudulent: bool = False
    """Records of it certify something that did not happen (points bought on a black market):
    they are never truthful."""
    description: str = ""


class Behaviour(Strict):
    rate: NonNeg
    """Base annual rate per person (or organisation)."""
    rate_by_group: dict[Ident, NonNeg] | None = None
    propensity: Ident | None = None
    actor: Literal["person", "organization"] = "person"
    channels: list[Channel] = Field(default_factory=list)
    income_multipliers: list[NonNeg] | None = Field(default=None, min_length=10, max_length=10)
    """Rate multiplier by income decile 1..10 (e.g. buying points needs money)."""
    excusable_share: Prob | None = None
    """Share of occurrences with a legitimate excuse (a bill missed during a hospital stay). A
    context-blind scheme records them like any other; a context-aware one does not."""


# --------------------------------------------------------------------------------------------
# Items, points, review, score


class Item(Strict):
    name: str
    behaviour: Ident | None = None
    """Records of this behaviour are recorded under this item. Items without a behaviour are
    produced by escalation rules."""
    points: Num
    cap: NonNeg | None = None
    """Largest total absolute points one entity can receive from this item."""


class DataEntry(Strict):
    error_rate: Prob
    """Share of records typed against the wrong entity (spreadsheets and chat apps)."""


class Review(Strict):
    mode: Literal["none", "required"]
    catch_false: Prob | None = None
    reject_true: Prob | None = None
    capacity_per_day: Count | None = None
    """Records reviewed per day at the jurisdiction's real size (scaled with --population); a
    backlog forms beyond it. None: unlimited."""

    @model_validator(mode="after")
    def _fields(self) -> Review:
        if self.mode == "required" and self.catch_false is None:
            raise ValueError("required review needs 'catch_false'")
        return self


class Grade(Strict):
    grade: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    min: Num


class Recovery(Strict):
    clean_days: Count
    points: NonNeg


class Score(Strict):
    base: Num
    min: Num
    max: Num
    grades: list[Grade] = Field(default_factory=list)
    recovery: Recovery | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Score:
        if not self.min.value <= self.base.value <= self.max.value:
            raise ValueError("score needs min <= base <= max")
        mins = [g.min.value for g in self.grades]
        if mins != sorted(mins) or len(set(mins)) != len(mins):
            raise ValueError("grades must be listed from the lowest 'min' to the highest")
        if self.grades and self.grades[0].min.value > self.min.value:
            raise ValueError("the lowest grade's 'min' must be at or below the score minimum")
        if len({g.grade for g in self.grades}) != len(self.grades):
            raise ValueError("grade names must be unique")
        return self


class Escalation(Strict):
    item: Ident
    count: Count
    window_days: Count | None = None
    produces: Ident


# --------------------------------------------------------------------------------------------
# Lists and measures


class Inclusion(Strict):
    item: Ident | None = None
    count: Count | None = None
    score_below: Num | None = None
    score_at_least: Num | None = None
    grades: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> Inclusion:
        chosen = [
            x
            for x in ("item", "score_below", "score_at_least", "grades")
            if getattr(self, x) is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "inclusion needs exactly one of item, score_below, score_at_least, grades"
            )
        if self.count is not None and self.item is None:
            raise ValueError("'count' goes with 'item'")
        return self


class Removal(Strict):
    performance_daily: Prob | None = None
    """Daily probability that a listed entity repairs (performs the judgment, pays)."""
    clean_days: Count | None = None
    """Removed after this many days without a new accepted negative record."""


class ListRule(Strict):
    name: str
    kind: Literal["black", "red"]
    inclusion: Inclusion
    duration_days: Count | None = None
    removal: Removal | None = None
    published: bool = False
    enrolled_only: bool = False


class Trigger(Strict):
    on_list: Ident | None = Field(default=None, alias="list")
    grades: list[str] | None = None
    enrolled: bool | None = None
    any_black_list: bool | None = None
    """Being on any black list of the scheme (e.g. schools turning away defaulters' children)."""

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        chosen = (self.on_list, self.grades, self.enrolled, self.any_black_list)
        n = sum(x is not None for x in chosen)
        if n != 1 or self.enrolled is False or self.any_black_list is False:
            raise ValueError(
                "trigger needs exactly one of list, grades, enrolled: true, any_black_list: true"
            )
        return self


Target = Literal["self", "household", "children"]
MeasureKind = Literal[
    "travel_ban_plane",
    "travel_ban_train",
    "consumption_restriction",
    "discount",
    "deposit_waiver",
    "loan_terms",
    "school_access",
    "job_promotion",
    "public_naming",
    "service_priority",
    "scrutiny",
    "other",
]


class Measure(Strict):
    name: str
    kind: MeasureKind
    reward: bool
    trigger: Trigger
    targets: list[Target] = Field(default_factory=lambda: list[Target](["self"]))
    value: Num | None = None
    """e.g. the share off a ticket for a discount."""
    behaviour_effects: dict[Ident, Prob] | None = None
    """Behaviour -> rate multiplier while the measure is in force (0: the behaviour stops)."""


class Association(Strict):
    household_share: Prob | None = None
    friend_share: Prob | None = None


class Appeals(Strict):
    available: bool
    file_false: Prob | None = None
    file_true: Prob | None = None
    overturn_false: Prob | None = None
    overturn_true: Prob | None = None
    days_to_decide: Count | None = None

    @model_validator(mode="after")
    def _fields(self) -> Appeals:
        if self.available:
            for f in (
                "file_false",
                "file_true",
                "overturn_false",
                "overturn_true",
                "days_to_decide",
            ):
                if getattr(self, f) is None:
                    raise ValueError(f"available appeals need '{f}'")
        return self


class Intrusion(Strict):
    """An attacker with write access re-targets a share of arriving records onto random
    persons, through the system's own write path (ground truth: error ``tampering``)."""

    share: Prob


class Favouritism(Strict):
    """Officials raise their own and their relatives' scores (ground truth: ``favouritism``)."""

    officials_share: Prob
    rate: NonNeg
    """Favours per official-year."""
    points: Num


class Context(Strict):
    mode: Literal["blind", "aware"]
    """blind: an excusable occurrence is penalised like negligence; aware: it is not recorded."""
    excusable_share: Prob | None = None
    """Default share of occurrences with a legitimate excuse for the scheme's financial
    behaviours (missed bills, late payments) that do not set their own."""


class Governance(Strict):
    """What the sources say about consent, transparency and redress. A field left out means the
    sources are silent: comparisons then say ``unknown`` rather than guess."""

    consent_required: Flag | None = None
    """Scoring only with the person's informed consent."""
    opt_out: Flag | None = None
    """A person can leave the scheme (or never join)."""
    private_sector_data: Flag | None = None
    """Data from companies (platforms, shops) feed the scheme."""
    indicators_published: Flag | None = None
    """The list of scored behaviours and their points is public."""
    weights_published: Flag | None = None
    """How the factors are weighted into a score is public."""
    consequences_published: Flag | None = None
    """What a listing or a score leads to is public."""
    score_challenge: Flag | None = None
    """A person can challenge a score or rating (not only a single record)."""
    helpline: Flag | None = None
    """A helpline or office answers questions about one's record."""
    data_minimisation: Flag | None = None
    """Only data needed for the stated purpose are collected."""


class Calibration(Strict):
    """A published figure the scheme should reproduce, and how to compare it with a run.

    ``metric`` names what to measure in a run (see :mod:`credsim.calibrate`), e.g.
    ``enrolled``, ``listed_end:court-defaulters``, ``list_entries:roadside-screen``,
    ``measure_starts:flight-ban``, ``records:jaywalking-capture``. ``scale`` says how a scaled-down
    run is compared: ``population`` scales the figure by persons / real size; ``none`` compares a
    share or a rate as it is."""

    id: Ident
    description: str
    figure: Num
    metric: Annotated[str, StringConstraints(pattern=r"^[a-z_]+(:[a-z0-9][a-z0-9_-]*)?$")]
    scale: Literal["population", "none"] = "population"
    days: Count | None = None
    """Simulated days over which the figure accrues (default: the run's days)."""
    tolerance: Prob
    """Accepted relative difference |simulated / published - 1|."""


class InForce(Strict):
    start: dt.date | None = None
    end: dt.date | None = None
    source: str | None = None
    assumption: str | None = None


class Scheme(Strict):
    id: Ident
    name: str
    jurisdiction: str
    in_force: InForce
    description: str
    sources: list[str] = Field(default_factory=list)
    notes: dict[str, str] = Field(default_factory=dict)
    """What the sources leave unsaid, e.g. ``rewards: not published``."""
    population: PopulationSpec
    enrolment: Enrolment
    custom_behaviours: dict[Ident, CustomBehaviour] = Field(default_factory=dict)
    propensities: dict[Ident, Propensity] = Field(default_factory=dict)
    behaviours: dict[Ident, Behaviour] = Field(min_length=1)
    items: dict[Ident, Item] = Field(default_factory=dict)
    data_entry: DataEntry | None = None
    review: Review = Review(mode="none")
    score: Score | None = None
    escalations: list[Escalation] = Field(default_factory=list)
    lists: dict[Ident, ListRule] = Field(default_factory=dict)
    measures: dict[Ident, Measure] = Field(default_factory=dict)
    association: Association | None = None
    appeals: Appeals = Appeals(available=False)
    governance: Governance = Governance()
    calibration: list[Calibration] = Field(default_factory=list)
    context: Context = Context(mode="blind")
    intrusion: Intrusion | None = None
    favouritism: Favouritism | None = None
    measures_on_relatives: bool = True
    """False switches off every measure target other than the person (no family spill-over)."""


class Scenario(Strict):
    """An overlay applied to any scheme: a JSON merge patch (RFC 7386) of the scheme's fields.

    Mappings merge key by key, ``null`` deletes a key, anything else replaces. Numbers in the
    patch carry provenance like any scheme number."""

    id: Ident
    name: str
    description: str
    sources: list[str] = Field(default_factory=list)
    notes: dict[str, str] = Field(default_factory=dict)
    patch: dict[str, Any]
