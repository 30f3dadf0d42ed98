"""What a run's manifest says about its scheme: rules with provenance, assumptions, sources."""

from __future__ import annotations

from typing import Any

from credsim import __version__
from credsim.engine.output import record_names
from credsim.engine.records import BASIS, ERRORS, STATUS
from credsim.engine.simulation import Simulation
from credsim.schemes.compile import ALL_CHANNELS
from credsim.schemes.loader import LoadedScheme, bibliography
from credsim.schemes.model import Num, Scheme
from credsim.schemes.semantic import iter_nums
from credsim.schemes.yamlio import dotted


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
    if s.favouritism is not None:
        items["official-favour"] = {
            "name": "Points an official granted without cause",
            "points": s.favouritism.points.value,
            **provenance(s.favouritism.points),
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


def record_labels(sim: Simulation) -> dict[str, list[str]]:
    """The manifest's ``labels``: the names behind each label column of the records, in the
    order of the engine's codes (:func:`credsim.engine.output.records_arrow` builds the columns
    from them). The simulation fixes them before its first record, so a run streamed to its
    folder (:class:`~credsim.store.stream.RecordStream`, whose ledger basis takes them from
    here) and the same run written at once seal their records with the same vocabularies
    (:mod:`credsim.store.ledger_packed`)."""
    names = record_names(sim)
    return {
        "item": names["item"],
        "behaviour": names["behaviour"],
        "channel": list(ALL_CHANNELS),
        "source_agency": names["agency"],
        "status": list(STATUS),
        "basis": list(BASIS),
        "error": list(ERRORS),
    }


def build_manifest(
    loaded: LoadedScheme, sim: Simulation, n: int, days: int, seed: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of a finished run (the writer adds table digests and seals it)."""
    s = loaded.scheme
    bib = bibliography()
    used = sorted({num.source for _, num in iter_nums(s) if num.source} | set(s.sources))
    return {
        "credsim_version": __version__,
        "scheme": {"id": s.id, "name": s.name, "sha256": loaded.sha256, "path": loaded.path},
        "scenarios": [dict(sc) for sc in loaded.scenarios],
        "seed": seed,
        "population": n,
        "organizations": sim.pop.n_orgs,
        "days": days,
        "enrolled": int(sim.enrolled.sum()),
        "behaviour_events": {
            b: int(n) for b, n in zip(sim.cs.behaviours, sim.behave.events, strict=True)
        },
        "blocked": {
            b: int(n) for b, n in zip(sim.cs.behaviours, sim.behave.blocked, strict=True) if n
        },
        **extra,
        "timings": {k: round(v, 4) for k, v in sim.timings.items()},
        "assumptions": assumptions_of(s),
        "sources": {k: bib[k] for k in used if k in bib},
        "rules": rules_of(sim),
        "labels": record_labels(sim),
    }
