"""The audit metrics of one run: every figure is a DuckDB aggregate over the run's Parquet files.

Definitions and formulas are in ``docs/audit.md``; :func:`compute` returns the nested metrics
dictionary that :mod:`credsim.audit.report` flattens, prints and writes. Nothing here loops over
rows in Python: per-person flags are built once as a temporary table and grouped.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from credsim.audit.sql import all_rows, one_row, ratio
from credsim.audit.strata import chilling, stratification

DIMENSIONS: dict[str, str] = {
    "group": "grp",
    "sex": "sex",
    "age_band": "age_band",
    "income_decile": "income_decile",
    "district": "district",
    "group_x_sex": "grp || '|' || sex",
}
"""Grouping dimensions of persons: name -> SQL expression over the ``persons`` temp table."""

RATES = ("recorded", "listed", "sanctioned", "rewarded")
"""Per-person outcomes: any accepted record, any black-list episode, any non-reward measure,
any reward measure."""

_RULE_ITEM = re.compile(r"^(\d+) accepted record\(s\) of '([^']+)'$")

_PERSONS = """
CREATE TEMP TABLE persons AS
SELECT p.entity_id,
       coalesce(p."group", 'unknown') AS grp,
       coalesce(p.sex, 'unknown') AS sex,
       CASE WHEN p.age IS NULL THEN 'unknown' WHEN p.age < 18 THEN '0-17'
            WHEN p.age < 35 THEN '18-34' WHEN p.age < 60 THEN '35-59' ELSE '60+' END AS age_band,
       coalesce(CAST(p.income_decile AS VARCHAR), 'unknown') AS income_decile,
       coalesce(p.district, 'unknown') AS district,
       r.entity_id IS NOT NULL AS recorded,
       l.entity_id IS NOT NULL AS listed,
       s.entity_id IS NOT NULL AS sanctioned,
       w.entity_id IS NOT NULL AS rewarded,
       a.entity_id IS NULL AS innocent
FROM population p
LEFT JOIN (SELECT DISTINCT entity_id FROM records WHERE status = 'accepted') r USING (entity_id)
LEFT JOIN (SELECT DISTINCT entity_id FROM lists WHERE kind = 'black') l USING (entity_id)
LEFT JOIN (SELECT DISTINCT entity_id FROM measures WHERE NOT reward) s USING (entity_id)
LEFT JOIN (SELECT DISTINCT entity_id FROM measures WHERE reward) w USING (entity_id)
LEFT JOIN (SELECT DISTINCT entity_id FROM records
           WHERE status = 'accepted' AND truthful AND (points < 0 OR list_contains(?, item))) a
       USING (entity_id)
WHERE p.kind = 'person'
"""


def black_list_items(manifest: dict) -> dict[str, tuple[str, int]]:
    """Black lists whose inclusion is N accepted records of an item: list -> (item, N)."""
    out = {}
    for key, spec in ((manifest.get("rules") or {}).get("lists") or {}).items():
        m = _RULE_ITEM.match(str(spec.get("rule", ""))) if isinstance(spec, dict) else None
        if m and spec.get("kind") == "black":
            out[key] = (m.group(2), int(m.group(1)))
    return out


def adverse_items(manifest: dict) -> list[str]:
    """Items with negative points in the rules, plus the inclusion items of black lists."""
    items = (manifest.get("rules") or {}).get("items") or {}
    neg = {k for k, v in items.items() if isinstance(v, dict) and (v.get("points") or 0) < 0}
    return sorted(neg | {item for item, _ in black_list_items(manifest).values()})


def four_fifths(by: dict[str, float | None]) -> dict[str, Any]:
    """Lowest over highest group rate, with the groups holding them (None if all rates are 0)."""
    known = {k: v for k, v in by.items() if v is not None}
    if not known:
        return {"ratio": None, "lowest": None, "highest": None}
    lo = min(known, key=lambda k: (known[k], k))
    hi = max(known, key=lambda k: (known[k], k))
    return {"ratio": ratio(known[lo], known[hi]), "lowest": lo, "highest": hi}


def rates(con: duckdb.DuckDBPyConnection) -> tuple[dict, dict]:
    """Rates of the four outcomes overall and per dimension, and their four-fifths ratios."""
    cols = ", ".join(f"avg(CAST({r} AS DOUBLE)) AS {r}" for r in RATES)
    overall = one_row(con, f"SELECT count(*) AS persons, {cols} FROM persons")
    out: dict[str, Any] = {r: {"all": overall[r], "by": {}} for r in RATES}
    out["persons"] = {"all": overall["persons"], "by": {}}
    disparity: dict[str, Any] = {r: {} for r in RATES}
    for dim, expr in DIMENSIONS.items():
        sql = f"SELECT {expr} AS v, count(*), {cols} FROM persons GROUP BY 1 ORDER BY 1"
        res = all_rows(con, sql)
        out["persons"]["by"][dim] = {str(r[0]): r[1] for r in res}
        for i, name in enumerate(RATES):
            by = {str(r[0]): r[2 + i] for r in res}
            out[name]["by"][dim] = by
            disparity[name][dim] = four_fifths(by)
    return out, disparity


def listing_share(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Each group's share of black-list episodes (of persons) against its population share."""
    out: dict[str, Any] = {}
    for dim, expr in DIMENSIONS.items():
        res = all_rows(
            con,
            f"""
            WITH ep AS (SELECT entity_id, count(*) AS n FROM lists WHERE kind = 'black' GROUP BY 1)
            SELECT {expr} AS v, count(*) AS persons, coalesce(sum(ep.n), 0) AS listings
            FROM persons LEFT JOIN ep USING (entity_id) GROUP BY 1 ORDER BY 1""",
        )
        people = sum(r[1] for r in res)
        total = sum(r[2] for r in res)
        out[dim] = {
            str(v): {
                "listing_share": ratio(n, total),
                "population_share": ratio(p, people),
                "ratio": ratio(ratio(n, total), ratio(p, people)),
            }
            for v, p, n in res
        }
    return {"by": out}


def false_positives(con: duckdb.DuckDBPyConnection) -> tuple[dict, dict]:
    """False positive rate (listed although innocent) overall and per group, and its parity."""
    sql = "count(*) FILTER (WHERE innocent), count(*) FILTER (WHERE innocent AND listed)"
    n, fp = all_rows(con, f"SELECT {sql} FROM persons")[0]
    by: dict[str, dict[str, float | None]] = {}
    parity = {}
    for dim, expr in DIMENSIONS.items():
        res = all_rows(con, f"SELECT {expr}, {sql} FROM persons GROUP BY 1 ORDER BY 1")
        by[dim] = {str(v): ratio(f, i) for v, i, f in res}
        parity[dim] = four_fifths(by[dim])
    return {"innocent": n, "false_positives": fp, "rate": ratio(fp, n), "by": by}, parity


def false_negatives(con: duckdb.DuckDBPyConnection, manifest: dict) -> dict[str, Any]:
    """Per black list with item inclusion: persons with >= N truthful records of the item
    (``observed``: any status; ``accepted``: accepted only) never listed on that list."""
    per: dict[str, Any] = {}
    tot = {"observed": [0, 0], "accepted": [0, 0]}
    for key, (item, count) in sorted(black_list_items(manifest).items()):
        res = one_row(
            con,
            """
            WITH t AS (SELECT entity_id, count(*) AS n_any,
                              count(*) FILTER (WHERE status = 'accepted') AS n_acc
                       FROM records WHERE truthful AND item = ? GROUP BY 1),
                 l AS (SELECT DISTINCT entity_id FROM lists WHERE list = ?)
            SELECT count(*) FILTER (WHERE n_any >= ?) AS eo,
                   count(*) FILTER (WHERE n_any >= ? AND l.entity_id IS NULL) AS mo,
                   count(*) FILTER (WHERE n_acc >= ?) AS ea,
                   count(*) FILTER (WHERE n_acc >= ? AND l.entity_id IS NULL) AS ma
            FROM t JOIN persons USING (entity_id) LEFT JOIN l USING (entity_id)""",
            [item, key, count, count, count, count],
        )
        eo, mo, ea, ma = (int(res[k] or 0) for k in ("eo", "mo", "ea", "ma"))
        tot["observed"][0] += eo
        tot["observed"][1] += mo
        tot["accepted"][0] += ea
        tot["accepted"][1] += ma
        per[key] = {
            "item": item,
            "count": count,
            "eligible": eo,
            "missed": mo,
            "rate": ratio(mo, eo),
            "eligible_accepted": ea,
            "missed_accepted": ma,
            "rate_accepted": ratio(ma, ea),
        }
    return {
        "eligible": tot["observed"][0],
        "missed": tot["observed"][1],
        "rate": ratio(tot["observed"][1], tot["observed"][0]),
        "rate_accepted": ratio(tot["accepted"][1], tot["accepted"][0]),
        "by": {"list": per},
    }


def wrongful(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Untruthful accepted records (by error kind), wrongful listings and wrongful measures."""
    rec = one_row(
        con,
        """SELECT count(*) AS accepted, count(*) FILTER (WHERE NOT truthful) AS n
                       FROM records WHERE status = 'accepted'""",
    )
    kinds = all_rows(
        con,
        """SELECT coalesce(error, basis), count(*) FROM records
                         WHERE status = 'accepted' AND NOT truthful GROUP BY 1 ORDER BY 1""",
    )
    records = {
        "accepted": rec["accepted"],
        "untruthful": rec["n"],
        "share": ratio(rec["n"], rec["accepted"]),
        "by": {"error": {k: ratio(n, rec["accepted"]) for k, n in kinds}},
    }
    con.execute("""CREATE TEMP TABLE lw AS
        SELECT l.*, r.truthful IS NOT NULL AND NOT r.truthful AS wrongful,
               r.truthful IS NULL AS unknown
        FROM lists l LEFT JOIN records r ON r.record_id = l.trigger_record""")
    lres = all_rows(
        con,
        """SELECT list, count(*), count(*) FILTER (WHERE wrongful),
                        count(*) FILTER (WHERE unknown) FROM lw GROUP BY 1 ORDER BY 1""",
    )
    n_l = sum(r[1] - r[3] for r in lres)
    w_l = sum(r[2] for r in lres)
    listings = {
        "episodes": sum(r[1] for r in lres),
        "without_trigger": sum(r[3] for r in lres),
        "wrongful": w_l,
        "share": ratio(w_l, n_l),
        "by": {"list": {k: ratio(w, n - u) for k, n, w, u in lres}},
    }
    con.execute("""CREATE TEMP TABLE mw AS
        WITH m AS (SELECT *, substr(trigger, 6) AS lst FROM measures
                   WHERE trigger LIKE 'list:%')
        SELECT m.*, lw.wrongful FROM m ASOF LEFT JOIN lw
          ON m.via_entity = lw.entity_id AND m.lst = lw.list AND m.start_day >= lw.start_day""")
    mres = all_rows(
        con,
        """SELECT cause, count(*), count(*) FILTER (WHERE wrongful) FROM mw
                        WHERE NOT reward GROUP BY 1 ORDER BY 1""",
    )
    n_m = sum(r[1] for r in mres)
    w_m = sum(r[2] for r in mres)
    measures = {
        "list_sanctions": n_m,
        "wrongful": w_m,
        "share": ratio(w_m, n_m),
        "by": {"cause": {c: ratio(w, n) for c, n, w in mres}},
    }
    return {"records": records, "listings": listings, "measures": measures}


def association(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Measures imposed because of someone else, and points from association records."""
    m = one_row(
        con,
        """SELECT count(*) AS total, count(*) FILTER (WHERE cause = 'association') AS n,
                     count(DISTINCT entity_id) FILTER (WHERE cause = 'association') AS persons
                     FROM measures""",
    )
    r = one_row(
        con,
        """SELECT count(*) AS n, count(DISTINCT entity_id) AS entities,
                     CAST(coalesce(sum(applied), 0) AS DOUBLE) AS points
                     FROM records WHERE basis = 'association' AND status = 'accepted'""",
    )
    return {
        "measures": m["n"],
        "entities": m["persons"],
        "share": ratio(m["n"], m["total"]),
        "records": r["n"],
        "record_entities": r["entities"],
        "points": r["points"],
    }


def due_process(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Objections, overturns, days to decide, review rejections and the backlog."""
    return one_row(
        con,
        """SELECT count(*) FILTER (WHERE appealed) AS appealed,
        count(*) FILTER (WHERE status = 'overturned_on_appeal') AS overturned,
        CAST(avg(appeal_day - day) FILTER (WHERE appealed AND appeal_day IS NOT NULL)
             AS DOUBLE) AS days_to_decide_mean,
        CAST(median(appeal_day - day) FILTER (WHERE appealed AND appeal_day IS NOT NULL)
             AS DOUBLE) AS days_to_decide_median,
        count(*) FILTER (WHERE status = 'rejected_in_review') AS rejected_in_review,
        count(*) FILTER (WHERE status = 'pending') AS backlog FROM records""",
    )


def exposure(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Entities and persons on published lists, and how many of them by an untruthful trigger."""
    return one_row(
        con,
        """SELECT count(DISTINCT entity_id) AS entities,
        count(DISTINCT entity_id) FILTER (WHERE wrongful) AS wrongly_entities,
        count(DISTINCT entity_id) FILTER (WHERE p.entity_id IS NOT NULL) AS persons,
        count(DISTINCT entity_id) FILTER (WHERE wrongful AND p.entity_id IS NOT NULL)
            AS wrongly_persons
        FROM lw LEFT JOIN (SELECT entity_id FROM persons) p USING (entity_id)
        WHERE published""",
    )


def compute(con: duckdb.DuckDBPyConnection, manifest: dict) -> dict[str, Any]:
    """Every audit metric of the run behind ``con`` (views from ``store.query.connect``)."""
    con.execute(_PERSONS, [adverse_items(manifest)])
    rate, four = rates(con)
    fpr, parity = false_positives(con)
    wrong = wrongful(con)
    wrong["false_positive"] = fpr
    wrong["false_negative"] = false_negatives(con, manifest)
    return {
        "rates": rate,
        "disparity": {
            "four_fifths": four,
            "listing_share": listing_share(con),
            "fpr_parity": parity,
        },
        "wrongful": wrong,
        "association": association(con),
        "due_process": due_process(con),
        "chilling": chilling(manifest),
        "stratification": stratification(con, manifest),
        "exposure": exposure(con),
    }
