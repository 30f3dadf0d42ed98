"""The rules, assumptions and sources section of the HTML report (from the manifest)."""

from __future__ import annotations

from typing import Any


def provenance(pg: Any, m: dict, table: Any) -> None:
    """Append the rules, assumptions and sources of manifest ``m`` to page ``pg``."""
    _provenance(pg, m, table)


def _prov(entry: dict) -> str:
    parts = []
    if entry.get("source"):
        parts.append(f"source {entry['source']}")
    if entry.get("assumption"):
        parts.append(f"assumption: {entry['assumption']}")
    prov = entry.get("provenance")
    if isinstance(prov, dict):
        parts += [f"{k} {v}" for k, v in prov.items() if v]
    return "; ".join(parts) or "-"


def _provenance(pg: Any, m: dict, _table: Any) -> None:
    pg.add("<h2>What the run rests on</h2>")
    rules = m.get("rules") or {}
    for section, title in (
        ("items", "Items (what a record is worth)"),
        ("lists", "Lists"),
        ("measures", "Measures"),
    ):
        entries = rules.get(section) or {}
        if not entries:
            continue
        body = []
        for key, v in entries.items():
            v = v if isinstance(v, dict) else {}
            detail = v.get("points") if section == "items" else v.get("rule") or v.get("trigger")
            body.append([key, v.get("name"), "" if detail is None else detail, _prov(v)])
        pg.add(f"<h3>{title}</h3>")
        pg.add(
            _table(
                ["id", "name", "points" if section == "items" else "rule / trigger", "provenance"],
                body,
            )
        )
    assumptions = m.get("assumptions") or []
    pg.add(f"<h3>Assumptions ({len(assumptions)})</h3>")
    pg.p(
        "Numbers the sources do not give, and what the scheme assumed instead. Each one shapes "
        "the results above.",
        "note",
    )
    pg.add(
        _table(
            ["path", "value", "assumption"],
            [
                [a.get("path"), a.get("value"), a.get("assumption")]
                for a in assumptions
                if isinstance(a, dict)
            ],
        )
    )
    sources = m.get("sources") or {}
    pg.add("<h3>Sources</h3>")
    body = []
    for key, s in sorted(sources.items()):
        s = s if isinstance(s, dict) else {}
        where = s.get("url") or s.get("document") or ""
        body.append([key, s.get("title"), where, s.get("confidence") or ""])
    pg.add(_table(["key", "title", "where (text reference; not loaded)", "confidence"], body))
