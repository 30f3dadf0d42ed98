"""The public API: load a scheme, run it over a synthetic population, keep or write the result."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from credsim import __version__
from credsim.engine.events import read_events_file, validate_events
from credsim.engine.output import all_tables
from credsim.engine.simulation import Simulation
from credsim.errors import CredsimError, RunExistsError
from credsim.population import generate_population
from credsim.schemes.compile import compile_scheme
from credsim.schemes.loader import LoadedScheme, bibliography, load_scheme
from credsim.schemes.model import Num, Scheme
from credsim.schemes.semantic import iter_nums
from credsim.schemes.yamlio import dotted

MAX_DAYS = 36_500


@dataclass
class RunResult:
    """A finished run: its tables, its manifest and, when written, its folder."""

    tables: dict[str, pa.Table]
    manifest: dict[str, Any]
    path: Path | None = None
    simulation: Simulation | None = field(default=None, repr=False)


def provenance(num: Num) -> dict[str, Any]:
    return {"source": num.source} if num.source is not None else {"assumption": num.assumption}


def _association_provenance(s: Scheme) -> dict[str, Any]:
    a = s.association
    share = None if a is None else (a.household_share or a.friend_share)
    return {"source": None, "assumption": None} if share is None else provenance(share)


def assumptions_of(scheme: Scheme) -> list[dict[str, Any]]:
    """Every number of the scheme that rests on an assumption rather than a source."""
    return [
        {"path": dotted(path), "value": num.value, "assumption": num.assumption}
        for path, num in iter_nums(scheme)
        if num.assumption is not None
    ]


def rules_of(sim: Simulation) -> dict[str, Any]:
    s, cs = sim.cs.scheme, sim.cs
    items = {
        k: {"name": it.name, "points": it.points.value, **provenance(it.points)}
        for k, it in s.items.items()
    }
    items["association-spillover"] = {
        "name": "Share of a relative's or friend's deduction",
        "points": None,
        **_association_provenance(s),
    }
    items["score-recovery"] = {
        "name": "Points regained after a clean period",
        "points": None,
        **(provenance(s.score.recovery.points) if s.score and s.score.recovery else {}),
    }
    for e in s.escalations:
        window = f" within {e.window_days.value:g} days" if e.window_days else ""
        prov = provenance(e.count)
        cited = prov.get("source") or f"assumption: {prov.get('assumption')}"
        items[e.produces]["produced_by"] = (
            f"{e.count.value:g} accepted records of '{e.item}'{window} ({cited})"
        )
    lists = {}
    for i, (k, lst) in enumerate(s.lists.items()):
        inc = lst.inclusion
        num = inc.count or inc.score_below or inc.score_at_least
        lists[k] = {
            "name": lst.name,
            "kind": lst.kind,
            "rule": cs.list_rule_text[i],
            "published": lst.published,
            "provenance": provenance(num) if num is not None else None,
        }
    measures = {}
    for i, (k, m) in enumerate(s.measures.items()):
        measures[k] = {
            "name": m.name,
            "kind": m.kind,
            "reward": m.reward,
            "trigger": cs.m_trigger_text[i],
            "targets": list(m.targets),
            "provenance": provenance(m.value) if m.value is not None else None,
        }
    score = None
    if s.score is not None:
        score = {
            "base": s.score.base.value,
            "min": s.score.min.value,
            "max": s.score.max.value,
            "grades": [{"grade": g.grade, "min": g.min.value} for g in s.score.grades],
        }
    return {"items": items, "lists": lists, "measures": measures, "score": score}


def simulate(
    scheme: str | Path | LoadedScheme,
    population: int | None = None,
    days: int = 365,
    seed: int = 0,
    *,
    progress: bool = False,
    events: str | Path | None = None,
) -> RunResult:
    """Run a scheme in memory and return its tables and manifest (nothing is written).

    ``events``: a CSV or Parquet file of hand-written case-study events to inject
    (:mod:`credsim.engine.events`). A file that cannot be used as a whole raises
    :class:`~credsim.errors.CredsimError` before anything runs; invalid rows are quarantined.
    The result then holds the tables ``events`` (accepted rows and their records) and
    ``quarantine`` (rejected rows and why), and ``manifest["events"]``.
    """
    loaded = scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme)
    s = loaded.scheme
    n = int(s.population.size.value) if population is None else int(population)
    if n < 1:
        raise CredsimError(f"population must be at least 1, got {n}")
    if not 1 <= days <= MAX_DAYS:
        raise CredsimError(f"days must lie in [1, {MAX_DAYS}], got {days}")
    if not 0 <= seed < 2**63:
        raise CredsimError(f"seed must be a non-negative integer below 2**63, got {seed}")
    t0 = time.perf_counter()
    events_file = read_events_file(events) if events is not None else None
    cs = compile_scheme(s)
    tp = time.perf_counter()
    from credsim.engine.rng import Streams

    pop = generate_population(
        s.population, n, Streams(seed).seed_sequence("population"), with_friends=cs.needs_friends
    )
    t_pop = time.perf_counter() - tp
    sim = Simulation(cs, pop, seed)
    sim.timings["population"] = t_pop
    imported = None
    if events_file is not None:
        te = time.perf_counter()
        imported = validate_events(events_file, pop, cs, days)
        sim.inject(imported.batches)
        sim.timings["events"] = time.perf_counter() - te
    sim.start()
    days_iter: Any = range(1, days + 1)
    if progress:
        from tqdm import tqdm

        days_iter = tqdm(
            days_iter, desc=f"{s.id} x {n:,}", unit="day", file=sys.stderr, dynamic_ncols=True
        )
    for day in days_iter:
        sim.step(day)
        sim.snapshot_if_due(day, days)
    tt = time.perf_counter()
    accepted = imported.attach(sim.records) if imported is not None else None
    tables = all_tables(sim)
    if imported is not None:
        tables["events"], tables["quarantine"] = accepted, imported.quarantine
    sim.timings["tables"] = time.perf_counter() - tt
    bib = bibliography()
    used = sorted({num.source for _, num in iter_nums(s) if num.source} | set(s.sources))
    manifest: dict[str, Any] = {
        "credsim_version": __version__,
        "scheme": {"id": s.id, "name": s.name, "sha256": loaded.sha256, "path": loaded.path},
        "seed": seed,
        "population": n,
        "organizations": pop.n_orgs,
        "days": days,
        "enrolled": int(sim.enrolled.sum()),
        **({"events": imported.manifest()} if imported is not None else {}),
        "counts": {name: t.num_rows for name, t in tables.items()},
        "timings": {k: round(v, 4) for k, v in sim.timings.items()},
        "assumptions": assumptions_of(s),
        "sources": {k: bib[k] for k in used if k in bib},
        "rules": rules_of(sim),
        "wall_seconds": round(time.perf_counter() - t0, 3),
    }
    return RunResult(tables, manifest, None, sim)


def run(
    scheme: str | Path | LoadedScheme,
    population: int | None = None,
    days: int = 365,
    seed: int = 0,
    out: str | Path | None = None,
    *,
    progress: bool = False,
    events: str | Path | None = None,
) -> RunResult:
    """Run a scheme and, when ``out`` is given, write the run folder (never overwriting)."""
    from credsim.store import write_run

    if out is not None:
        p = Path(out)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise RunExistsError(
                f"{p}: the run folder exists and is not empty; choose another --out"
            )
    result = simulate(scheme, population, days, seed, progress=progress, events=events)
    if out is not None:
        t = time.perf_counter()
        result.path = write_run(out, result.tables, result.manifest)
        result.manifest["timings"]["write"] = round(time.perf_counter() - t, 4)
    return result
