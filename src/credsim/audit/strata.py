"""Chilling effect (from the manifest) and stratification (grades and score inequality).

Definitions and formulas in ``docs/audit.md``.
"""

from __future__ import annotations

from typing import Any

import duckdb

from credsim.audit.sql import all_rows, one_row, ratio
from credsim.schemes.loader import catalogue


def chilling(manifest: dict) -> dict[str, Any]:
    """Per behaviour: acts a measure prevented over the acts there would have been."""
    happened = manifest.get("behaviour_events") or {}
    blocked = manifest.get("blocked") or {}
    cat = catalogue()
    by: dict[str, dict[str, Any]] = {}
    for b in sorted(set(happened) | set(blocked)):
        h, k = int(happened.get(b, 0)), int(blocked.get(b, 0))
        lawful = cat[b].get("lawful") if b in cat else None
        by[b] = {"happened": h, "blocked": k, "share": ratio(k, h + k), "lawful": lawful}
    lawful_blocked = sum(v["blocked"] for v in by.values() if v["lawful"])
    lawful_total = sum(v["blocked"] + v["happened"] for v in by.values() if v["lawful"])
    return {
        "lawful_blocked": lawful_blocked,
        "lawful_share": ratio(lawful_blocked, lawful_total),
        "by": {"behaviour": by},
    }


def stratification(con: duckdb.DuckDBPyConnection, manifest: dict) -> dict[str, Any]:
    """Grade mobility (first vs last snapshot), lowest-grade persistence, Gini and Theil."""
    score = (manifest.get("rules") or {}).get("score") or {}
    first, last = all_rows(con, "SELECT min(day), max(day) FROM scores")[0]
    out: dict[str, Any] = {"first_day": first, "last_day": last}
    if last is None:
        return out
    floor = score.get("min")
    if floor is None:
        floor = all_rows(con, "SELECT min(score) FROM scores WHERE day = ?", [last])[0][0]
    out["shift"] = floor
    out.update(
        one_row(
            con,
            """
        WITH x AS (SELECT score - ? AS x FROM scores WHERE day = ?),
             s AS (SELECT x, row_number() OVER (ORDER BY x) AS i FROM x),
             t AS (SELECT count(*) AS n, sum(x) AS tot, avg(x) AS mu FROM x)
        SELECT CAST(t.n AS BIGINT) AS entities,
               CASE WHEN t.tot > 0 THEN 2.0 * (SELECT sum(i * x) FROM s) / (t.n * t.tot)
                    - (t.n + 1.0) / t.n END AS gini,
               CASE WHEN t.mu > 0 THEN (SELECT avg(CASE WHEN x > 0 THEN x / t.mu * ln(x / t.mu)
                    ELSE 0 END) FROM x) END AS theil
        FROM t""",
            [floor, last],
        )
    )
    grades = [g["grade"] for g in sorted(score.get("grades") or [], key=lambda g: g["min"])]
    if not grades:
        return out
    low = grades[0]
    res = all_rows(
        con,
        """SELECT a.grade, b.grade, count(*) FROM scores a JOIN scores b
                       ON a.entity_id = b.entity_id AND a.day = ? AND b.day = ?
                       GROUP BY 1, 2""",
        [first, last],
    )
    counts = {g: {h: 0 for h in grades} for g in grades}
    for g, h, n in res:
        if g in counts and h in counts[g]:
            counts[g][h] += n
    rows = {g: sum(r.values()) for g, r in counts.items()}
    total = sum(rows.values())
    out["lowest_grade"] = low
    out["mobility"] = {
        "by": {
            "from": {
                g: {
                    "count": {"by": {"to": counts[g]}},
                    "share": {"by": {"to": {h: ratio(n, rows[g]) for h, n in counts[g].items()}}},
                }
                for g in grades
            }
        }
    }
    out["lowest_stay_share"] = ratio(counts[low][low], rows[low])
    out["lowest_end_share"] = ratio(sum(counts[g][low] for g in grades), total)
    return out
