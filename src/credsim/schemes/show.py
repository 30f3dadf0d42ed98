"""Render a scheme as readable text with the provenance of every number (``credsim show``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from credsim.schemes.loader import LoadedScheme, bibliography, load_scheme
from credsim.schemes.model import Num
from credsim.schemes.semantic import iter_flags, iter_nums
from credsim.schemes.yamlio import dotted


def _prov(num: Num) -> str:
    if num.source is not None:
        return f"source: {num.source}"
    return f"ASSUMPTION: {num.assumption}"


def render_scheme(scheme: str | Path | LoadedScheme) -> str:
    loaded = scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme)
    s = loaded.scheme
    bib = bibliography()
    lines = [
        f"{s.name}  [{s.id}]",
        f"Jurisdiction: {s.jurisdiction}",
        f"In force: {s.in_force.start or '?'} to {s.in_force.end or 'now'}",
        f"File: {loaded.path}  (sha256 {loaded.sha256[:16]}...)",
        "",
        s.description.strip(),
        "",
    ]
    if s.notes:
        lines.append("What the sources leave open:")
        lines += [f"  - {k}: {' '.join(v.split())}" for k, v in s.notes.items()]
        lines.append("")
    nums = iter_nums(s)
    width = max((len(dotted(p)) for p, _ in nums), default=10)
    lines.append(
        f"Numbers ({len(nums)}; {sum(n.assumption is not None for _, n in nums)} assumptions):"
    )
    for path, num in nums:
        note = f"  ({num.note})" if num.note else ""
        lines.append(f"  {dotted(path):<{width}}  {num.value:>12g}   {_prov(num)}{note}")
    flags = iter_flags(s)
    if flags:
        lines += ["", "Governance (what the sources say; a fact not listed is unknown):"]
        for path, flag in flags:
            prov = f"source: {flag.source}" if flag.source else f"ASSUMPTION: {flag.assumption}"
            lines.append(f"  {dotted(path[1:]):<24} {'yes' if flag.value else 'no':>4}   {prov}")
    used: dict[str, Any] = {}
    for _, num in nums:
        if num.source:
            used[num.source] = bib[num.source]
    for _, flag in flags:
        if flag.source:
            used[flag.source] = bib[flag.source]
    for key in s.sources:
        used[key] = bib[key]
    lines += ["", "Sources:"]
    for key in sorted(used):
        entry = used[key]
        where = (
            entry.get("document") and f"../shared/sources/{entry['document']}" or entry.get("url")
        )
        lines.append(f"  {key}: {entry['title']} <{where}>")
    return "\n".join(lines)
