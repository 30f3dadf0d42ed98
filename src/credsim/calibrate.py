"""Calibration: run a scheme and set each published figure it cites beside the simulated one.

A ``calibration:`` entry (:class:`~credsim.schemes.model.Calibration`) names a published figure
and a ``metric`` measured over days 1..``days`` (default: the run's days; ``<list>`` etc. are ids
of the scheme): ``enrolled`` (persons enrolled), ``enrolled_share`` (of persons; ``scale: none``),
``list_entries:<list>`` (episodes started on days 1..days, not day 0), ``listed_end:<list>`` (on
the list at the end of day ``days``), ``listed_ever:<list>`` (distinct entities listed on days
0..days), ``measure_starts:<measure>`` (episodes started on days 1..days),
``measure_entities:<measure>`` (distinct entities under it on days 0..days), ``records:<item>``
(arrived on days 1..days and accepted at day ``days``; also the engine's own items
``association-spillover`` and ``score-recovery``), ``entities_with:<item>`` (distinct entities
with such a record), ``blocked:<behaviour>`` (acts a measure stopped, ``manifest["blocked"]``).
Randomness is keyed by stage and day, so a run equals any longer run up to its last day: one run
of the longest ``days`` measures every entry exactly.

``scale: population`` compares with the figure x persons / real size, ``none`` as is; a figure
passes when |simulated / compared - 1| <= ``tolerance``. A figure the model is known not to
reproduce has a note ``calibration-gap-<id>`` in the scheme's ``notes`` saying why: a known gap
(GAP), never a failure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.errors import CredsimError
from credsim.schemes.model import Calibration, Scheme
from credsim.schemes.yamlio import Path_

if TYPE_CHECKING:
    from credsim.schemes.loader import LoadedScheme

METRICS: dict[str, str | None] = {
    **dict.fromkeys(("enrolled", "enrolled_share")),
    **dict.fromkeys(("list_entries", "listed_end", "listed_ever"), "list"),
    **dict.fromkeys(("measure_starts", "measure_entities"), "measure"),
    **dict.fromkeys(("records", "entities_with"), "item"),
    "blocked": "behaviour",
}
"""Metric name -> the kind of scheme id it takes after the colon (None: no argument)."""
TABLES = {"list": "lists", "measure": "measures", "item": "records"}
ENGINE_ITEMS = ("association-spillover", "score-recovery")
GAP_NOTE = "calibration-gap-"
MAX_DEFAULT_POPULATION = 200_000
DEFAULT_DAYS = 365
EPS = 1e-9
Status = Literal["PASS", "FAIL", "GAP"]


def parse_metric(metric: str) -> tuple[str, str | None]:
    name, _, arg = metric.partition(":")
    return name, arg or None


def gap_reason(s: Scheme, cid: str) -> str | None:
    """Why the scheme's model does not reproduce figure ``cid`` (None: it should)."""
    return s.notes.get(GAP_NOTE + cid)


def _known(s: Scheme, kind: str) -> list[str]:
    ids = {"list": [*s.lists], "measure": [*s.measures], "behaviour": [*s.behaviours]}
    return [*s.items, *ENGINE_ITEMS] if kind == "item" else ids[kind]


def calibration_problems(s: Scheme) -> list[tuple[Path_, str]]:
    """Problems of the ``calibration`` entries (and ``calibration-gap-`` notes), with paths."""
    p: list[tuple[Path_, str]] = []
    for i, c in enumerate(s.calibration):
        name, arg = parse_metric(c.metric)
        kind = METRICS.get(name, "")
        at: Path_ = ("calibration", i, "metric")
        if kind == "":
            p.append((at, f"unknown metric '{name}' (known: {', '.join(METRICS)})"))
        elif kind is None and arg is not None:
            p.append((at, f"metric '{name}' takes no ':' argument"))
        elif kind is not None and arg is None:
            p.append((at, f"metric '{name}' needs a {kind}: '{name}:<{kind}>'"))
        elif kind is not None and arg not in _known(s, kind):
            known = ", ".join(_known(s, kind)) or "none"
            p.append((at, f"unknown {kind} '{arg}' (the scheme's {kind}s: {known})"))
        if c.figure.value < 0 or (name == "enrolled_share" and c.figure.value > 1):
            p.append((("calibration", i, "figure"), f"not a possible value of '{name}'"))
        if name == "enrolled_share" and c.scale != "none":
            p.append((("calibration", i, "scale"), "a share is compared as it is: 'scale: none'"))
        if c.days is not None and c.days.value < 1:
            p.append((("calibration", i, "days"), "days must be at least 1"))
    ids = {c.id for c in s.calibration}
    for key in s.notes:
        if key.startswith(GAP_NOTE) and key.removeprefix(GAP_NOTE) not in ids:
            p.append((("notes", key), f"no calibration entry '{key.removeprefix(GAP_NOTE)}'"))
    return p


def _ints(t: pa.Table, col: str, null: int) -> np.ndarray:
    return np.asarray(t.column(col).fill_null(null).to_numpy(), np.int64)


def _only(t: pa.Table, col: str, value: str) -> pa.Table:
    return t.filter(pc.fill_null(pc.equal(t.column(col), value), False))


def measure(
    metric: str, tables: Mapping[str, pa.Table], days: int, blocked: Mapping[str, int]
) -> float:
    """The value of ``metric`` over days 1..``days`` of a run (its tables; ``blocked``: acts
    blocked per behaviour over days 1..``days``)."""
    name, arg = parse_metric(metric)
    if name not in METRICS or (METRICS[name] is None) != (arg is None):
        raise CredsimError(f"not a calibration metric: '{metric}'")
    big = np.iinfo(np.int32).max
    if name in ("enrolled", "enrolled_share"):
        pop = _only(tables["population"], "kind", "person")
        enrolled = int(pc.sum(pop.column("enrolled")).as_py() or 0)
        return enrolled if name == "enrolled" else enrolled / max(pop.num_rows, 1)
    if name == "blocked":
        return float(blocked.get(str(arg), 0))
    kind = str(METRICS[name])
    table = TABLES[kind]
    t = _only(tables[table], kind, str(arg))
    ent = _ints(t, "entity_id", -1)
    if table == "records":
        day, st = _ints(t, "day", 0), t.column("status").to_numpy(zero_copy_only=False)
        reviewed = _ints(t, "review_day", -1) <= days  # no review: null, accepted on arrival
        later = _ints(t, "appeal_day", big) > days  # overturned after day ``days``
        kept = (st == "accepted") | ((st == "overturned_on_appeal") & later)
        ok = (day >= 1) & (day <= days) & reviewed & kept
        return int(ok.sum()) if name == "records" else np.unique(ent[ok]).shape[0]
    start, end = _ints(t, "start_day", 0), _ints(t, "end_day", big)
    if name in ("list_entries", "measure_starts"):
        return int(((start >= 1) & (start <= days)).sum())
    if name == "listed_end":
        return int(((start <= days) & (end > days)).sum())
    return np.unique(ent[start <= days]).shape[0]


@dataclass(frozen=True)
class Figure:
    """One published figure beside the simulated one."""

    id: str
    description: str
    metric: str
    days: int
    published: float
    provenance: str
    compared: float
    """The published figure as compared: scaled to the run's population (``scale: population``)."""
    simulated: float
    tolerance: float
    status: Status
    reason: str | None = None
    """Why the model does not reproduce it (a known gap)."""

    @property
    def ratio(self) -> float | None:
        return None if self.compared == 0 else self.simulated / self.compared


def within(simulated: float, compared: float, tolerance: float) -> bool:
    """|simulated / compared - 1| <= tolerance (a figure of 0 needs exactly 0: 0 <= 0)."""
    return abs(simulated - compared) <= (tolerance + EPS) * abs(compared)


def compare(c: Calibration, simulated: float, days: int, factor: float, gap: str | None) -> Figure:
    """Set entry ``c`` beside ``simulated``; ``factor``: persons of the run / real size."""
    compared = c.figure.value * (factor if c.scale == "population" else 1.0)
    fits = within(simulated, compared, c.tolerance.value)
    status: Status = "GAP" if gap else "PASS" if fits else "FAIL"
    prov = f"source {c.figure.source}" if c.figure.source else "assumption"
    return Figure(
        c.id, c.description, c.metric, days, c.figure.value, prov, compared, float(simulated),
        c.tolerance.value, status, gap,
    )  # fmt: skip


@dataclass
class Report:
    scheme: str
    name: str
    population: int
    real_size: int
    population_given: bool
    days: int
    seed: int
    figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every figure that is not a known gap is within its tolerance."""
        return all(f.status != "FAIL" for f in self.figures)


def default_population(s: Scheme) -> int:
    return max(1, min(int(s.population.size.value), MAX_DEFAULT_POPULATION))


def run_days(s: Scheme, days: int | None) -> int:
    """The run's length: ``days`` (default 365) but at least every entry's ``days``."""
    return max([days or DEFAULT_DAYS, *(int(c.days.value) for c in s.calibration if c.days)])


def calibrate(
    scheme: str | Path | LoadedScheme,
    population: int | None = None,
    seed: int = 0,
    days: int | None = None,
) -> Report:
    """Run ``scheme`` at its default settings in memory and compare it with its figures."""
    from credsim._runner import advance, check, finish, prepare
    from credsim.schemes.loader import LoadedScheme, load_scheme

    loaded = scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme)
    s = loaded.scheme
    n = default_population(s) if population is None else int(population)
    size = int(s.population.size.value) or n
    last = run_days(s, days)
    if days is not None and days < 1:
        raise CredsimError(f"days must be at least 1, got {days}")
    rep = Report(s.id, s.name, n, size, population is not None, last, seed)
    if not s.calibration:
        return rep
    t0 = time.perf_counter()
    window = {c.id: int(c.days.value) if c.days else last for c in s.calibration}
    p = prepare(check(loaded, n, last, seed, None))
    names = p.req.cs.behaviours
    blocked: dict[int, dict[str, int]] = {}

    def after_day(day: int) -> None:
        if day in window.values():
            blocked[day] = dict(zip(names, p.sim.behave.blocked.tolist(), strict=True))

    advance(p, 1, progress=False, after_day=after_day)
    result = finish(p)
    blocked[last] = dict(result.manifest["blocked"])
    for c in s.calibration:
        value = measure(c.metric, result.tables, window[c.id], blocked[window[c.id]])
        rep.figures.append(compare(c, value, window[c.id], n / size, gap_reason(s, c.id)))
    rep.seconds = time.perf_counter() - t0
    return rep


def _num(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.4g}"


def render(rep: Report) -> str:
    """The comparison as a plain-text table, with the figures' descriptions and known gaps."""
    how = "given" if rep.population_given else f"default: at most {MAX_DEFAULT_POPULATION:,}"
    scaled = rep.population / rep.real_size
    scaled_s = f"; counts scaled by {scaled:.4g}" if rep.population != rep.real_size else ""
    out = [
        f"calibrate {rep.scheme} ({rep.name}): population {rep.population:,} ({how}; real size "
        f"{rep.real_size:,}{scaled_s}), {rep.days} days, seed {rep.seed}"
    ]
    if not rep.figures:
        out.append("the scheme cites no published figures (no 'calibration' entries)")
        return "\n".join(out)
    head = ["figure", "metric", "days", "published", "compared", "simulated", "ratio", "tol"]
    rows = [head + ["status"]]
    for f in rep.figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:.3f}"
        rows.append(
            [f.id, f.metric, str(f.days), _num(f.published), _num(f.compared), _num(f.simulated),
             ratio, f"±{f.tolerance:.0%}" if f.tolerance >= 0.01 else f"±{f.tolerance:g}",
             f.status]
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) + 1)]
    for r in rows:
        cells = [
            c.ljust(w) if i < 2 or i == len(r) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    out.append("")
    out += [f"{f.id}: {' '.join(f.description.split())} ({f.provenance})" for f in rep.figures]
    gaps = [f for f in rep.figures if f.status == "GAP"]
    if gaps:
        out.append("known gaps (not reproduced by the model, never a failure):")
        out += [f"  {f.id}: {f.reason}" for f in gaps]
    count = {k: sum(f.status == k for f in rep.figures) for k in ("PASS", "FAIL", "GAP")}
    out.append(
        f"{count['PASS']} PASS, {count['FAIL']} FAIL, {count['GAP']} GAP: "
        f"{'every figure within tolerance or a known gap' if rep.ok else 'NOT reproduced'} "
        f"(run {rep.seconds:.1f} s)"
    )
    return "\n".join(out)
