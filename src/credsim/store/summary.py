"""A plain-language summary of one run, for readers who will never write SQL.

The summary answers the questions a journalist or auditor asks first: who was in the system,
how many records were made and what happened to them, how many of the records that counted
were untrue and why, who ended up on which list (and how many of them wrongly), which
penalties and rewards followed - including those imposed because of someone else - and where
the scores ended. Every figure is one DuckDB aggregate over the run's Parquet files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from credsim.store.query import align, connect, fmt_count, fmt_int, fmt_num, fmt_pct, rows
from credsim.store.reader import RunStore

STATUS_LABELS = {
    "accepted": "accepted",
    "rejected_in_review": "rejected in review",
    "overturned_on_appeal": "overturned on appeal",
    "pending": "pending review",
}

WRONG_LABELS = {
    "misidentification": "misidentification (someone else's behaviour, wrong person matched)",
    "data_entry": "data-entry error (typed against the wrong entity)",
    "false_report": "false report (no such behaviour took place)",
    "association": "someone else's deduction spilled over (association)",
    "escalation": "escalation counted on untrue records",
}
"""Why an accepted record was untrue, keyed by its ``error`` or else its ``basis``."""


def rule_name(manifest: dict, section: str, key: str) -> str:
    """The human name of an item, list or measure from ``manifest['rules']``, else its id."""
    entry = ((manifest.get("rules") or {}).get(section) or {}).get(key)
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"{name} ({key})" if name and name != key else key


def grade_order(manifest: dict) -> list[str]:
    """Grade names from best to worst, as the scheme lists them (lowest first)."""
    score = (manifest.get("rules") or {}).get("score") or {}
    names = [g.get("grade") if isinstance(g, dict) else g for g in score.get("grades") or []]
    return [str(n) for n in reversed(names) if n is not None]


def summarize(run_dir: str | Path | RunStore) -> str:
    """Return the plain-text summary of the run in ``run_dir``."""
    store = run_dir if isinstance(run_dir, RunStore) else RunStore(run_dir)
    m = store.manifest
    con = connect(store)
    try:
        out = _header(store, con)
        out += _records(con)
        out += _imports(m)
        out += _lists(con, m)
        out += _measures(con, m)
        out += _scores(con, m)
    finally:
        con.close()
    out += _footer(store)
    return "\n".join(out).rstrip() + "\n"


def _header(store: RunStore, con: Any) -> list[str]:
    m = store.manifest
    scheme = m.get("scheme") or {}
    p = rows(
        con,
        """
        SELECT count(*) FILTER (kind = 'person') AS persons,
               count(*) FILTER (kind = 'organization') AS orgs,
               count(*) FILTER (enrolled) AS enrolled,
               count(*) FILTER (enrolled AND kind = 'person') AS enrolled_persons,
               count(*) FILTER (enrolled AND kind = 'organization') AS enrolled_orgs
        FROM population""",
    )[0]
    total = p["persons"] + p["orgs"]
    name = scheme.get("name") or scheme.get("id") or "unknown scheme"
    if scheme.get("id") and scheme.get("id") != name:
        name += f" ({scheme['id']})"
    facts = [
        ["Scheme", name],
        [
            "Population",
            f"{fmt_count(p['persons'], 'person')}, "
            f"{fmt_count(p['orgs'], 'organisation')} (synthetic)",
        ],
        ["Simulated", f"{fmt_count(m.get('days'), 'day')}, random seed {m.get('seed')}"],
        [
            "Enrolled",
            f"{fmt_int(p['enrolled'])} of {fmt_count(total, 'entity', 'entities')} "
            f"({fmt_pct(p['enrolled'], total)}): "
            f"{fmt_int(p['enrolled_persons'])} of {fmt_count(p['persons'], 'person')}, "
            f"{fmt_int(p['enrolled_orgs'])} of {fmt_count(p['orgs'], 'organisation')}",
        ],
    ]
    if m.get("credsim_version"):
        facts.append(["Made by", f"credsim {m['credsim_version']}, {m.get('created', '')}"])
    title = "credsim run summary"
    return [title, "=" * len(title), *align(facts), ""]


def _imports(m: dict) -> list[str]:
    """One line on the case-study events imported with ``run --events``, if any."""
    ev = m.get("events")
    if not isinstance(ev, dict):
        return []
    name = Path(str(ev.get("file") or "?")).name
    return [
        f"Imported events: {fmt_int(ev.get('rows_read'))} row(s) read from {name}, "
        f"{fmt_int(ev.get('accepted'))} accepted as records (channel 'import'), "
        f"{fmt_int(ev.get('quarantined'))} quarantined (quarantine.parquet).",
        "",
    ]


def _records(con: Any) -> list[str]:
    by_status = {
        r["status"]: r["n"]
        for r in rows(con, "SELECT status, count(*) AS n FROM records GROUP BY status")
    }
    total = sum(by_status.values())
    out = [f"Records: {fmt_int(total)} in total"]
    order = [s for s in STATUS_LABELS if s in by_status]
    order += sorted(set(by_status) - set(STATUS_LABELS))
    out += align(
        [
            [STATUS_LABELS.get(s, s), fmt_int(by_status[s]), fmt_pct(by_status[s], total)]
            for s in order
        ],
        right=[False, True, True],
        indent="  ",
    )
    t = rows(
        con,
        """
        SELECT count(*) FILTER (truthful) AS truthful, count(*) FILTER (NOT truthful) AS wrongful
        FROM records WHERE status = 'accepted'""",
    )[0]
    accepted = t["truthful"] + t["wrongful"]
    out += ["", f"Accepted records ({fmt_int(accepted)}): were they true?"]
    body = [
        [
            "truthful (a real behaviour of that very person or organisation)",
            fmt_int(t["truthful"]),
            fmt_pct(t["truthful"], accepted),
        ],
        [
            "wrongful (no such behaviour of theirs lies behind it)",
            fmt_int(t["wrongful"]),
            fmt_pct(t["wrongful"], accepted),
        ],
    ]
    for r in rows(
        con,
        """
            SELECT coalesce(error, basis) AS why, count(*) AS n FROM records
            WHERE status = 'accepted' AND NOT truthful GROUP BY why ORDER BY n DESC, why""",
    ):
        label = WRONG_LABELS.get(r["why"], f"untrue, no error recorded (basis: {r['why']})")
        body.append([f"  {label}", fmt_int(r["n"]), fmt_pct(r["n"], accepted)])
    return out + align(body, right=[False, True, True], indent="  ") + [""]


def list_stats(con: Any) -> list[dict]:
    """Per list: kind, listings entered, listed at the end, wrongful (untrue trigger record),
    without a trigger record, published (shared by the summary and the HTML report)."""
    return rows(
        con,
        """
        SELECT l.list, any_value(l.kind) AS kind, count(*) AS entered,
               count(*) FILTER (l.end_day IS NULL) AS at_end,
               count(*) FILTER (r.truthful = false) AS wrongful,
               count(*) FILTER (l.trigger_record IS NULL) AS untriggered,
               count(*) FILTER (l.published) AS published
        FROM lists l LEFT JOIN records r ON r.record_id = l.trigger_record
        GROUP BY l.list ORDER BY l.list""",
    )


def list_rows(found: list[dict], m: dict) -> list[list[str]]:
    """:func:`list_stats` formatted as table rows."""
    return [
        [
            rule_name(m, "lists", r["list"]),
            r["kind"],
            fmt_int(r["entered"]),
            fmt_int(r["at_end"]),
            f"{fmt_int(r['wrongful'])} ({fmt_pct(r['wrongful'], r['entered'])})",
            fmt_int(r["published"]),
        ]
        for r in found
    ]


def _lists(con: Any, m: dict) -> list[str]:
    found = list_stats(con)
    if not found:
        return ["Lists: nobody was put on a list.", ""]
    body = list_rows(found, m)
    out = ["Lists (black: sanctions; red: rewards)"]
    out += align(
        body,
        header=["list", "kind", "entered", "listed at end", "wrongful", "published"],
        right=[False, False, True, True, True, True],
        indent="  ",
    )
    out.append("  A listing is wrongful when the record that triggered it was not truthful.")
    untriggered = sum(r["untriggered"] for r in found)
    if untriggered:
        out.append(
            f"  {fmt_int(untriggered)} listing(s) followed a score or grade, not one record;"
            " they are not counted as wrongful."
        )
    return out + [""]


MEASURE_HEADER = [
    "measure",
    "type",
    "imposed",
    "own record",
    "someone else's",
    "in force at end",
    "entities",
]
"""Column names of :func:`measure_rows`."""


def measure_rows(con: Any, m: dict) -> list[list[str]]:
    """Per measure: name, sanction or reward, imposed, own record, someone else's, in force at
    the end, entities (formatted; shared by the summary and the HTML report)."""
    found = rows(
        con,
        """
        SELECT measure, any_value(kind) AS kind, bool_or(reward) AS reward, count(*) AS n,
               count(*) FILTER (cause = 'own') AS own,
               count(*) FILTER (cause = 'association') AS assoc,
               count(*) FILTER (end_day IS NULL) AS at_end,
               count(DISTINCT entity_id) AS entities
        FROM measures GROUP BY measure ORDER BY reward, measure""",
    )
    return [
        [
            rule_name(m, "measures", r["measure"]),
            "reward" if r["reward"] else "sanction",
            fmt_int(r["n"]),
            fmt_int(r["own"]),
            fmt_int(r["assoc"]),
            fmt_int(r["at_end"]),
            fmt_int(r["entities"]),
        ]
        for r in found
    ]


def _measures(con: Any, m: dict) -> list[str]:
    body = measure_rows(con, m)
    if not body:
        return ["Measures: no penalty or reward was imposed.", ""]
    out = ["Measures (penalties and rewards)"]
    out += align(
        body,
        header=MEASURE_HEADER,
        right=[False, False, True, True, True, True, True],
        indent="  ",
    )
    out.append(
        "  \"someone else's\": imposed because of a relative's, friend's or employer's"
        " listing or grade."
    )
    return out + [""]


def latest_scores(con: Any) -> str:
    """SQL of each entity's latest row of the ``scores`` table.

    Every score snapshot of a run lists the same entities (those scored from the start,
    :attr:`~credsim.engine.simulation.Simulation.scored_ids`), so when every snapshot day holds
    as many rows as the last one, the latest rows are the last snapshot's, read from its own
    row groups: the summary of a 13M-person run took 5.2 s, 26.2 s when the 182M rows of
    every snapshot were ranked. A table of other snapshots (hand-made, or of some other tool)
    is ranked row by row."""
    days = rows(
        con,
        "SELECT min(n) AS lo, max(n) AS hi, max(day) AS last "
        "FROM (SELECT day, count(*) AS n FROM scores GROUP BY day)",
    )[0]
    if days["last"] is not None and days["lo"] == days["hi"]:
        return f"SELECT * FROM scores WHERE day = {int(days['last'])}"
    return """SELECT * FROM scores
              QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY day DESC) = 1"""


def _scores(con: Any, m: dict) -> list[str]:
    latest = latest_scores(con)
    s = rows(
        con,
        f"""
        SELECT count(*) AS n, max(day) AS day, avg(score) AS mean, min(score) AS lo,
               max(score) AS hi, quantile_cont(score, [0.1, 0.25, 0.5, 0.75, 0.9]) AS q
        FROM ({latest})""",
    )[0]
    if not s["n"]:
        return ["Scores: this run has no scores (the scheme keeps lists, not a score).", ""]
    q = s["q"]
    out = [
        f"Scores at the end (each entity's latest score; last day {s['day']}; "
        f"{fmt_int(s['n'])} entities)"
    ]
    out += align(
        [
            ["mean", "min", "10%", "25%", "median", "75%", "90%", "max"],
            [fmt_num(v, 2) for v in (s["mean"], s["lo"], *q, s["hi"])],
        ],
        right=[True] * 8,
        indent="  ",
    )
    grades = {
        r["grade"]: r["n"]
        for r in rows(con, f"SELECT grade, count(*) AS n FROM ({latest}) GROUP BY grade")
    }
    if any(g is not None for g in grades):
        order: list[str | None] = [g for g in grade_order(m) if g in grades]
        order += sorted((g for g in grades if g not in order and g is not None), key=str)
        order += [None] if None in grades else []
        body = [
            ["no grade" if g is None else str(g), fmt_int(grades[g]), fmt_pct(grades[g], s["n"])]
            for g in order
        ]
        out += [
            "",
            *align(
                body, header=["grade", "entities", "share"], right=[False, True, True], indent="  "
            ),
        ]
    return out + [""]


def _footer(store: RunStore) -> list[str]:
    m = store.manifest
    out: list[str] = []
    timings = {k: v for k, v in (m.get("timings") or {}).items() if isinstance(v, int | float)}
    if timings:
        body = [[stage, f"{secs:.2f} s"] for stage, secs in timings.items()]
        body.append(["total", f"{sum(timings.values()):.2f} s"])
        out += ["Timings", *align(body, right=[False, True], indent="  "), ""]
    n_assumptions = len(m.get("assumptions") or [])
    out.append(
        f"Assumptions: {fmt_int(n_assumptions)} number(s) in this run rest on stated "
        'assumptions rather than published sources (see manifest.json, "assumptions").'
    )
    out.append(f"Run folder: {store.dir}")
    return out
