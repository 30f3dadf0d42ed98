"""The numbers behind the HTML report, aggregated in DuckDB (never one row per record in Python).

Every function takes a connection from :func:`credsim.store.query.connect` and returns small
Python structures: counts, per-day series, histograms with a few dozen bins. A run with
millions of records costs a handful of grouped scans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from credsim.store.query import rows
from credsim.store.summary import STATUS_LABELS, WRONG_LABELS, grade_order

Con = Any

HIST_BINS = 40

# A listing is wrongful when the record that triggered it was untrue; a listing that followed a
# score or grade (no trigger record) counts as truthful here.
_LISTINGS = """
    SELECT l.*, coalesce(r.truthful, true) AS truthful
    FROM lists l LEFT JOIN records r ON r.record_id = l.trigger_record"""


def overview(con: Con) -> dict[str, Any]:
    """Headline counts for the plain-language summary."""
    pop = rows(
        con,
        """SELECT count(*) FILTER (kind = 'person') AS persons,
                  count(*) FILTER (kind <> 'person') AS orgs,
                  count(*) FILTER (enrolled) AS enrolled FROM population""",
    )[0]
    rec = rows(
        con,
        """SELECT count(*) AS records,
                  count(*) FILTER (status = 'accepted') AS accepted,
                  count(*) FILTER (status = 'accepted' AND NOT truthful) AS wrongful,
                  count(DISTINCT entity_id) FILTER (status = 'accepted') AS recorded,
                  count(DISTINCT entity_id) FILTER (status = 'accepted' AND NOT truthful)
                      AS recorded_wrongly,
                  count(*) FILTER (basis = 'association') AS assoc_records,
                  count(DISTINCT entity_id) FILTER (basis = 'association') AS assoc_entities,
                  coalesce(sum(applied) FILTER (basis = 'association'), 0) AS assoc_points
           FROM records""",
    )[0]
    lst = rows(
        con,
        f"""SELECT count(DISTINCT entity_id) FILTER (kind = 'black') AS black,
                   count(DISTINCT entity_id) FILTER (kind = 'black' AND NOT truthful)
                       AS black_wrongly,
                   count(DISTINCT entity_id) FILTER (kind = 'red') AS red,
                   count(*) AS listings,
                   count(*) FILTER (NOT truthful) AS wrongful_listings
            FROM ({_LISTINGS})""",
    )[0]
    mea = rows(
        con,
        """SELECT count(DISTINCT entity_id) FILTER (NOT reward) AS sanctioned,
                  count(DISTINCT entity_id) FILTER (NOT reward AND cause = 'association')
                      AS sanctioned_assoc,
                  count(DISTINCT entity_id) FILTER (reward) AS rewarded,
                  count(*) FILTER (cause = 'association') AS assoc_measures
           FROM measures""",
    )[0]
    wrong_sanctioned = rows(
        con,
        f"""SELECT count(DISTINCT m.entity_id) AS n FROM measures m
            JOIN ({_LISTINGS}) l ON l.entity_id = m.via_entity
                 AND m.trigger = 'list:' || l.list AND NOT l.truthful
            WHERE NOT m.reward""",
    )[0]["n"]
    return {**pop, **rec, **lst, **mea, "sanctioned_wrongly": wrong_sanctioned}


def score_snapshots(con: Con) -> dict[str, Any] | None:
    """Histogram and quantiles of scores per snapshot day, or None without scores."""
    b = rows(con, "SELECT min(score) AS lo, max(score) AS hi, count(*) AS n FROM scores")[0]
    if not b["n"]:
        return None
    lo, hi = float(b["lo"]), float(b["hi"])
    width = (hi - lo) / HIST_BINS if hi > lo else 1.0
    hist = rows(
        con,
        """SELECT day, least(floor((score - $lo) / $w), $nb - 1)::INTEGER AS bin, count(*) AS n
           FROM scores GROUP BY ALL ORDER BY day, bin""",
        params={"lo": lo, "w": width, "nb": HIST_BINS},  # type: ignore[arg-type]
    )
    quant = rows(
        con,
        """SELECT day, count(*) AS n, min(score) AS min, max(score) AS max, avg(score) AS mean,
                  quantile_cont(score, [0.05, 0.25, 0.5, 0.75, 0.95]) AS q
           FROM scores GROUP BY day ORDER BY day""",
    )
    days = [int(r["day"]) for r in quant]
    counts: dict[int, list[int]] = {d: [0] * HIST_BINS for d in days}
    for r in hist:
        counts[int(r["day"])][int(r["bin"])] = int(r["n"])
    centers = [lo + (i + 0.5) * width for i in range(HIST_BINS)]
    return {"days": days, "centers": centers, "width": width, "counts": counts, "quant": quant}


def grade_mobility(con: Con, manifest: dict) -> dict[str, Any] | None:
    """Counts of (grade on the first snapshot, grade on the last), or None without grades."""
    found = rows(
        con,
        """WITH s AS (SELECT entity_id, day, grade FROM scores WHERE grade IS NOT NULL),
                b AS (SELECT min(day) AS d0, max(day) AS d1 FROM s)
           SELECT a.grade AS g0, z.grade AS g1, count(*) AS n, any_value(b.d0) AS d0,
                  any_value(b.d1) AS d1
           FROM s a JOIN s z USING (entity_id) CROSS JOIN b
           WHERE a.day = b.d0 AND z.day = b.d1 GROUP BY ALL""",
    )
    if not found:
        return None
    seen = {r["g0"] for r in found} | {r["g1"] for r in found}
    order = [g for g in grade_order(manifest) if g in seen] + sorted(
        seen - set(grade_order(manifest))
    )
    return {
        "order": order,
        "counts": {(r["g0"], r["g1"]): int(r["n"]) for r in found},
        "d0": int(found[0]["d0"]),
        "d1": int(found[0]["d1"]),
    }


def list_sizes(con: Con, days: int) -> dict[str, list[int]]:
    """Members of each list on each day 0..days (a listing counts from start to end day)."""
    deltas = rows(
        con,
        """SELECT list, day, sum(delta) AS d FROM (
               SELECT list, start_day AS day, 1 AS delta FROM lists
               UNION ALL
               SELECT list, end_day AS day, -1 AS delta FROM lists WHERE end_day IS NOT NULL)
           GROUP BY ALL ORDER BY list, day""",
    )
    out: dict[str, list[int]] = {}
    for r in deltas:
        series = out.setdefault(r["list"], [0] * (days + 2))
        series[min(max(int(r["day"]), 0), days + 1)] += int(r["d"])
    for name, series in out.items():
        total, cum = 0, []
        for v in series[: days + 1]:
            total += v
            cum.append(total)
        out[name] = cum
    return out


def record_table(con: Con) -> list[dict]:
    """Records by review outcome and by why they were untrue."""
    found = rows(
        con,
        """SELECT status, CASE WHEN truthful THEN 'truthful' ELSE coalesce(error, basis) END
                  AS why, count(*) AS n
           FROM records GROUP BY ALL ORDER BY status, n DESC""",
    )
    for r in found:
        r["status"] = STATUS_LABELS.get(r["status"], r["status"])
        r["why"] = "truthful" if r["why"] == "truthful" else WRONG_LABELS.get(r["why"], r["why"])
    return found


def disparities(con: Con) -> list[dict]:
    """Per population group and per sex (persons): how many, listed, sanctioned, wrongly."""
    return rows(
        con,
        f"""WITH p AS (SELECT entity_id, "group" AS grp, sex FROM population
                       WHERE kind = 'person'),
                 bl AS (SELECT entity_id, bool_or(NOT truthful) AS wrong FROM ({_LISTINGS})
                        WHERE kind = 'black' GROUP BY entity_id),
                 sa AS (SELECT entity_id, bool_or(cause = 'association') AS assoc
                        FROM measures WHERE NOT reward GROUP BY entity_id),
                 j AS (SELECT p.*, bl.entity_id IS NOT NULL AS listed,
                              coalesce(bl.wrong, false) AS wrong,
                              sa.entity_id IS NOT NULL AS sanctioned,
                              coalesce(sa.assoc, false) AS assoc
                       FROM p LEFT JOIN bl USING (entity_id) LEFT JOIN sa USING (entity_id))
            SELECT 'group' AS by, coalesce(grp, '(none)') AS value, count(*) AS n,
                   count(*) FILTER (listed) AS listed, count(*) FILTER (wrong) AS wrong,
                   count(*) FILTER (sanctioned) AS sanctioned, count(*) FILTER (assoc) AS assoc
            FROM j GROUP BY ALL
            UNION ALL
            SELECT 'sex', coalesce(sex, '(none)'), count(*), count(*) FILTER (listed),
                   count(*) FILTER (wrong), count(*) FILTER (sanctioned),
                   count(*) FILTER (assoc)
            FROM j GROUP BY ALL ORDER BY 1, 2""",
    )


def spillover(con: Con) -> dict[str, list[dict]]:
    """What fell on entities because of someone else: measures and records by association."""
    measures = rows(
        con,
        """SELECT measure, bool_or(reward) AS reward, count(*) FILTER (cause = 'own') AS own,
                  count(*) FILTER (cause = 'association') AS assoc,
                  count(DISTINCT entity_id) FILTER (cause = 'association') AS assoc_entities,
                  count(DISTINCT via_entity) FILTER (cause = 'association') AS via
           FROM measures GROUP BY measure HAVING count(*) FILTER (cause = 'association') > 0
           ORDER BY assoc DESC, measure""",
    )
    records = rows(
        con,
        """SELECT item, status, count(*) AS n, count(DISTINCT entity_id) AS entities,
                  sum(applied) AS points
           FROM records WHERE basis = 'association' GROUP BY ALL ORDER BY n DESC""",
    )
    return {"measures": measures, "records": records}


def flow(con: Con) -> list[dict]:
    """Links (source, target, truthful, n) from behaviour to record to review to list to measure."""
    links: list[dict] = []
    for r in rows(
        con,
        """SELECT CASE WHEN truthful AND basis = 'behaviour' THEN 'own behaviour'
                       WHEN truthful THEN basis ELSE coalesce(error, basis) END AS origin,
                  status, truthful, count(*) AS n
           FROM records GROUP BY ALL""",
    ):
        origin = "origin:" + r["origin"]
        links.append({"s": origin, "t": "record", "ok": r["truthful"], "n": r["n"]})
        links.append(
            {"s": "record", "t": "status:" + r["status"], "ok": r["truthful"], "n": r["n"]}
        )
    for r in rows(
        con,
        f"""SELECT list, trigger_record IS NULL AS by_score, truthful, count(*) AS n
            FROM ({_LISTINGS}) GROUP BY ALL""",
    ):
        src = "score or grade" if r["by_score"] else "status:accepted"
        links.append({"s": src, "t": "list:" + r["list"], "ok": r["truthful"], "n": r["n"]})
    for r in rows(
        con,
        f"""WITH l AS ({_LISTINGS}),
                 m AS (SELECT measure, cause, via_entity, start_day, trigger,
                              substr(trigger, 6) AS list FROM measures
                       WHERE trigger LIKE 'list:%')
            SELECT m.measure, m.cause, m.list, coalesce(l.truthful, true) AS truthful,
                   count(*) AS n
            FROM m ASOF LEFT JOIN l ON m.via_entity = l.entity_id AND m.list = l.list
                 AND m.start_day >= l.start_day
            GROUP BY ALL""",
    ):
        links.append(
            {
                "s": "list:" + r["list"],
                "t": f"measure:{r['measure']}:{r['cause']}",
                "ok": r["truthful"],
                "n": r["n"],
            }
        )
    for r in rows(
        con,
        """SELECT measure, cause, trigger, count(*) AS n FROM measures
           WHERE trigger NOT LIKE 'list:%' GROUP BY ALL""",
    ):
        links.append(
            {
                "s": "trigger:" + r["trigger"],
                "t": f"measure:{r['measure']}:{r['cause']}",
                "ok": None,
                "n": r["n"],
            }
        )
    return links


def read_audit(run_dir: Path) -> dict[str, Any] | None:
    """``DIR/audit.json`` (written by ``credsim audit``) if present and readable, else None."""
    path = run_dir / "audit.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
