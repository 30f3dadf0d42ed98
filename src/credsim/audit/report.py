"""Run the audit, flatten it, write ``audit.json`` atomically and say it in plain words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from credsim._fsio import replace_atomically
from credsim.audit.metrics import RATES, compute
from credsim.store.query import connect, fmt_int, fmt_num
from credsim.store.reader import RunStore

AUDIT_FILE = "audit.json"


def flatten(metrics: dict[str, Any]) -> dict[str, float | int | None]:
    """Every numeric scalar of ``metrics`` under one name (see docs/audit.md, "Flat names").

    Keys are joined with ``.``; a ``by`` level turns the next two levels (dimension, value)
    into a ``[dimension=value]`` qualifier placed after the metric name, several joined by
    ``,``: ``rates.listed[group=migrant]``, ``stratification.mobility.count[from=A,to=B]``.
    Booleans become 0/1; strings are left out; undefined values (None) stay as null.
    """
    flat: dict[str, float | int | None] = {}

    def walk(node: Any, path: list[str], quals: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "by" and isinstance(value, dict):
                    for dim, groups in value.items():
                        for g, sub in groups.items():
                            walk(sub, path, [*quals, f"{dim}={g}"])
                else:
                    walk(value, [*path, str(key)], quals)
            return
        if isinstance(node, str):
            return
        name = ".".join(path) + (f"[{','.join(quals)}]" if quals else "")
        flat[name] = int(node) if isinstance(node, bool) else node

    walk(metrics, [], [])
    return flat


def audit(run_dir: str | Path) -> dict[str, Any]:
    """The audit of a complete run folder: ``{"scheme", "run", "metrics", "flat"}``."""
    store = RunStore(run_dir)
    m = store.manifest
    con = connect(store)
    try:
        metrics = compute(con, m)
    finally:
        con.close()
    scheme = m.get("scheme") or {}
    run = {k: m.get(k) for k in ("seed", "population", "organizations", "days", "credsim_version")}
    run["dir"] = str(store.dir)
    run["scenarios"] = [s.get("id") for s in m.get("scenarios") or [] if isinstance(s, dict)]
    return {
        "scheme": {"id": scheme.get("id"), "name": scheme.get("name")},
        "run": run,
        "metrics": metrics,
        "flat": flatten(metrics),
    }


def write_audit(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """Compute the audit and write it to ``DIR/audit.json`` (temporary file, fsync, rename)."""
    result = audit(run_dir)
    path = Path(result["run"]["dir"]) / AUDIT_FILE
    data = json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8")
    replace_atomically(path, lambda fh: fh.write(data + b"\n"))
    return path, result


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return "<0.1%" if 0 < x < 0.0005 else f"{100 * x:.1f}%"


def summary(result: dict[str, Any]) -> str:
    """The audit in plain words: headline rates, worst disparities, wrongful shares, chilling."""
    mt = result["metrics"]
    r, w, dp = mt["rates"], mt["wrongful"], mt["due_process"]
    lines = [
        f"Audit of {result['scheme'].get('name') or result['scheme'].get('id')} "
        f"({fmt_int(r['persons']['all'])} persons, {result['run'].get('days')} days)",
        "",
    ]
    lines.append("Of all persons: " + ", ".join(f"{_pct(r[k]['all'])} {k}" for k in RATES) + ".")
    worst = []
    for k in RATES:
        for dim, d in mt["disparity"]["four_fifths"][k].items():
            if d["ratio"] is not None and d["highest"] != d["lowest"]:
                worst.append((d["ratio"], k, dim, d))
    worst.sort(key=lambda t: t[0])
    if worst:
        lines.append("Most unequal rates (lowest / highest group; below 0.8 fails four-fifths):")
        for q, k, dim, d in worst[:5]:
            lo, hi = r[k]["by"][dim][d["lowest"]], r[k]["by"][dim][d["highest"]]
            lines.append(
                f"  {k} by {dim}: {fmt_num(q, 3)} ({d['lowest']} {_pct(lo)} vs "
                f"{d['highest']} {_pct(hi)})"
            )
    rec, lst, mea = w["records"], w["listings"], w["measures"]
    lines.append(
        f"Wrongful: {_pct(rec['share'])} of {fmt_int(rec['accepted'])} accepted records "
        f"are untrue, {_pct(lst['share'])} of listings rest on an untrue record, "
        f"{_pct(mea['share'])} of {fmt_int(mea['list_sanctions'])} list sanctions."
    )
    kinds = rec["by"]["error"]
    if kinds:
        lines.append(
            "  untrue records by kind (share of accepted): "
            + ", ".join(
                f"{k} {_pct(v)}" for k, v in sorted(kinds.items(), key=lambda t: -(t[1] or 0))
            )
        )
    fp, fn = w["false_positive"], w["false_negative"]
    lines.append(
        f"  false positive rate: {_pct(fp['rate'])} of {fmt_int(fp['innocent'])} persons "
        f"with no true adverse record were black-listed ({fmt_int(fp['false_positives'])})"
        f"; false negative rate: {_pct(fn['rate'])} of {fmt_int(fn['eligible'])}."
    )
    a = mt["association"]
    lines.append(
        f"Association: {fmt_int(a['measures'])} measures ({_pct(a['share'])} of all) on "
        f"{fmt_int(a['entities'])} entities for what others did; "
        f"{fmt_num(a['points'])} points from {fmt_int(a['records'])} association records."
    )
    days = dp["days_to_decide_mean"]
    lines.append(
        f"Due process: {fmt_int(dp['appealed'])} objections, {fmt_int(dp['overturned'])} "
        f"overturned, {'-' if days is None else fmt_num(days, 1)} days to decide on "
        f"average; {fmt_int(dp['rejected_in_review'])} rejected in review, "
        f"{fmt_int(dp['backlog'])} still pending."
    )
    ch = mt["chilling"]
    lawful = {b: v for b, v in ch["by"]["behaviour"].items() if v["lawful"] and v["blocked"]}
    if lawful:
        lines.append("Chilling of lawful behaviour (acts prevented / acts there would have been):")
        lines.extend(
            f"  {b}: {_pct(v['share'])} ({fmt_int(v['blocked'])})"
            for b, v in sorted(lawful.items())
        )
    else:
        lines.append("Chilling: no lawful behaviour was prevented.")
    st = mt["stratification"]
    if st.get("gini") is not None:
        gini, theil = fmt_num(st["gini"], 3), fmt_num(st.get("theil"), 3)
        text = f"Scores on the last day: Gini {gini}, Theil {theil}"
        if "lowest_grade" in st:
            text += (
                f"; {_pct(st['lowest_end_share'])} end at the lowest grade {st['lowest_grade']}, "
                f"{_pct(st['lowest_stay_share'])} of those who started there stay"
            )
        lines.append(text + ".")
    ex = mt["exposure"]
    lines.append(
        f"Exposure: {fmt_int(ex['entities'])} entities on published lists, "
        f"{fmt_int(ex['wrongly_entities'])} of them on an untrue record."
    )
    return "\n".join(lines)
