"""``credsim report DIR``: one self-contained HTML page about a run, sweep or comparison folder.

What DIR holds decides the page: ``manifest.json`` a run (this module), ``sweep.json`` a sweep
(:mod:`credsim.report.sweep_page`), ``privacy_control.csv`` a comparison made by
``credsim compare --out DIR`` (:mod:`credsim.report.compare_page`).

The page embeds Plotly's JavaScript once, inline, and loads nothing from anywhere else: it
opens offline. Numbers come from DuckDB aggregates (:mod:`credsim.report.data`); the page never
plots one point per record, so it stays small and quick on runs with millions of records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plotly.offline import get_plotlyjs

from credsim._fsio import replace_atomically
from credsim.errors import CredsimError, RunStoreError
from credsim.report import data as D
from credsim.report import figures as F
from credsim.report.markup import _Page, _table, e
from credsim.report.provenance import provenance
from credsim.store.query import connect, fmt_int, fmt_num, fmt_pct
from credsim.store.reader import RunStore
from credsim.store.summary import (
    MEASURE_HEADER,
    list_rows,
    list_stats,
    measure_rows,
    rule_name,
)

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1250px;padding:1.5em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.sub{color:#666;margin-top:0}.summary{background:#f4f7fb;border-left:4px solid #316eb4;
padding:.6em 1.2em}.summary li{margin:.3em 0}.note{color:#555;font-size:.93em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.plot{margin:1em 0;min-height:200px}.wrong{color:#b01e1e;font-weight:600}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:0 1.5em}
.wide{overflow-x:auto}td.yes{background:#fbe3e3}td.no{background:#e5f3e5}td.unknown{background:#f1f1f1}
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``DIR/report.html`` atomically and return its path.

    DIR is a run folder (``manifest.json``), a sweep folder (``sweep.json``) or a comparison
    folder (``privacy_control.csv``, from ``credsim compare --out DIR``).
    """
    given = Path(run_dir).expanduser().absolute()
    if (given / "manifest.json").exists() or not given.is_dir():
        store = RunStore(run_dir)  # raises RunStoreError on a missing folder
        path = store.dir
        page = render(store, path)
    elif (given / "sweep.json").exists():
        from credsim.report.sweep_page import render_sweep

        path, page = given, render_sweep(given)
    elif (given / "privacy_control.csv").exists():
        from credsim.report.compare_page import render_compare

        path, page = given, render_compare(given)
    else:
        raise CredsimError(
            f"{given}: not a run folder (manifest.json), a sweep folder (sweep.json) or a "
            "comparison folder (privacy_control.csv, from `credsim compare --out DIR`)"
        )
    out = path / REPORT_NAME
    replace_atomically(out, lambda fh: fh.write(page.encode("utf-8")))
    return out


def document(title: str, pg: _Page) -> str:
    """The whole page: head with the CSS and Plotly's JavaScript (inline, once), then ``pg``."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(pg.parts)
        + "</body></html>"
    )


def _manifest(path: Path) -> dict:
    try:
        m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunStoreError(f"cannot read {path / 'manifest.json'}: {exc}") from exc
    return m if isinstance(m, dict) else {}


def render(store: RunStore | Path | str, path: Path) -> str:
    m = _manifest(path)
    con = connect(store)
    try:
        pg = _Page()
        _summary(pg, con, m)
        _records(pg, con)
        _flow(pg, con, m)
        _scores(pg, con, m)
        _lists(pg, con, m)
        _disparities(pg, con, path)
        _spillover(pg, con, m)
        provenance(pg, m, _table)
    finally:
        con.close()
    scheme = m.get("scheme") or {}
    title = f"credsim report: {scheme.get('name') or scheme.get('id') or path.name}"
    return document(title, pg)


def _summary(pg: _Page, con: Any, m: dict) -> None:
    o = D.overview(con)
    scheme = m.get("scheme") or {}
    pg.add(f"<h1>{e(scheme.get('name') or scheme.get('id'))}</h1>")
    scen = ", ".join(
        str(s.get("id", s)) if isinstance(s, dict) else str(s) for s in m.get("scenarios") or []
    )
    pg.add(
        f'<p class="sub">Scheme <code>{e(scheme.get("id"))}</code>, '
        f"{fmt_int(o['persons'])} synthetic persons and {fmt_int(o['orgs'])} organisations over "
        f"{fmt_int(m.get('days'))} days, seed {e(m.get('seed'))}"
        + (f", scenarios: {e(scen)}" if scen else "")
        + f". Made with credsim {e(m.get('credsim_version'))} on {e(m.get('created'))}."
        " Everyone in it is invented; no real person is scored.</p>"
    )
    items = [
        f"<b>{fmt_int(o['recorded'])}</b> persons or organisations got at least one accepted "
        f"record ({fmt_int(o['accepted'])} records); <span class=wrong>"
        f"{fmt_int(o['wrongful'])} of those records ({fmt_pct(o['wrongful'], o['accepted'])}) "
        f"were untrue</span>, landing on {fmt_int(o['recorded_wrongly'])} entities.",
    ]
    if o["listings"]:
        items.append(
            f"<b>{fmt_int(o['black'])}</b> were put on a black list and {fmt_int(o['red'])} on a "
            f"red list ({fmt_int(o['listings'])} listings); <span class=wrong>"
            f"{fmt_int(o['black_wrongly'])} were black-listed on an untrue record</span>."
        )
    else:
        items.append("Nobody was put on a black or red list in this run.")
    if o["sanctioned"]:
        items.append(
            f"<b>{fmt_int(o['sanctioned'])}</b> were sanctioned (at least one penalty); "
            f"<span class=wrong>{fmt_int(o['sanctioned_wrongly'])} because of a wrongful "
            f"listing</span>. {fmt_int(o['rewarded'])} received a reward."
        )
    else:
        items.append(f"Nobody was sanctioned; {fmt_int(o['rewarded'])} received a reward.")
    if o["assoc_measures"] or o["assoc_records"]:
        items.append(
            f"Spill-over: <b>{fmt_int(o['sanctioned_assoc'])}</b> people were sanctioned because "
            f"of a relative ({fmt_int(o['assoc_measures'])} measures), and "
            f"{fmt_int(o['assoc_records'])} records ({fmt_num(o['assoc_points'])} points) fell on "
            f"{fmt_int(o['assoc_entities'])} people because of someone else's deduction."
        )
    else:
        items.append("Nothing spilled over onto relatives or friends in this run.")
    pg.add(
        '<div class="summary"><h2 style="margin-top:.4em;border:0">In short</h2><ul>'
        + "".join(f"<li>{i}</li>" for i in items)
        + "</ul>"
    )
    pg.p(
        "This is a single run with one seed: its numbers carry chance. Confidence intervals "
        "across runs belong to sweeps over many seeds (`credsim sweep`, whose folder this "
        "report also renders); treat small differences here as noise.",
        "note",
    )
    pg.add("</div>")


def _records(pg: _Page, con: Any) -> None:
    pg.add("<h2>Records and review</h2>")
    body = [[r["status"], r["why"], fmt_int(r["n"])] for r in D.record_table(con)]
    if body:
        pg.add(_table(["review outcome", "truthful, or why untrue", "records"], body, {2}))
    else:
        pg.p("The run made no records.")


def _flow(pg: _Page, con: Any, m: dict) -> None:
    pg.add("<h2>From behaviour to measure</h2>")
    links = D.flow(con)
    if not links:
        pg.p("No records, listings or measures: there is no flow to draw.")
        return
    pg.p(
        "Each band is a number of records, listings or measures. Red bands trace what began "
        "with an untrue record (a wrong match, a typing error, a false report) through review, "
        "lists and measures; grey bands are measures not tied to a record (enrolment, grades).",
        "note",
    )
    pg.plot(F.flow_sankey(links, m))


def _scores(pg: _Page, con: Any, m: dict) -> None:
    pg.add("<h2>Scores and grades</h2>")
    snap = D.score_snapshots(con)
    if snap is None:
        pg.p("This scheme keeps no score, so there are no score distributions or grades.")
        return
    pg.plot(F.score_boxes(snap))
    pg.plot(F.score_histograms(snap))
    body = [
        [
            f"day {r['day']}",
            fmt_int(r["n"]),
            fmt_num(r["min"]),
            *map(fmt_num, r["q"]),
            fmt_num(r["max"]),
            fmt_num(round(r["mean"], 2)),
        ]
        for r in snap["quant"]
    ]
    pg.add(
        _table(
            ["snapshot", "scored", "min", "5%", "25%", "median", "75%", "95%", "max", "mean"],
            body,
            set(range(1, 10)),
        )
    )
    mob = D.grade_mobility(con, m)
    if mob is None:
        pg.p("This scheme gives no grades, so there is no grade mobility to show.")
    else:
        pg.plot(F.grade_heatmap(mob))


def _lists(pg: _Page, con: Any, m: dict) -> None:
    pg.add("<h2>Lists</h2>")
    table = list_stats(con)
    if not table:
        pg.p("Nobody was put on a list in this run.")
        return
    kinds = {r["list"]: r["kind"] for r in table}
    pg.plot(F.list_sizes(D.list_sizes(con, int(m.get("days") or 0)), m, kinds))
    body = list_rows(table, m)
    pg.add(
        _table(
            ["list", "kind", "listings", "listed at end", "wrongful", "published"],
            body,
            {2, 3, 4, 5},
        )
    )
    pg.p(
        "A listing is wrongful when the record that triggered it was not truthful. Listings "
        "that followed a score or grade have no single record and count as truthful.",
        "note",
    )
    body = measure_rows(con, m)
    if body:
        pg.add("<h3>Measures (penalties and rewards)</h3>")
        pg.add(
            _table(
                MEASURE_HEADER,
                body,
                {2, 3, 4, 5, 6},
            )
        )


def _disparities(pg: _Page, con: Any, path: Path) -> None:
    pg.add("<h2>Who is affected: groups and sex</h2>")
    found = D.disparities(con)
    if not found:
        pg.p("The run has no persons, so there are no group disparities to show.")
        return
    if any(r["listed"] or r["sanctioned"] for r in found):
        pg.plot(F.disparities(found))
    else:
        pg.p("Nobody was black-listed or sanctioned, so there is no disparity to plot.")
    body = [
        [
            r["by"],
            r["value"],
            fmt_int(r["n"]),
            f"{fmt_int(r['listed'])} ({fmt_pct(r['listed'], r['n'])})",
            f"{fmt_int(r['wrong'])} ({fmt_pct(r['wrong'], r['n'])})",
            f"{fmt_int(r['sanctioned'])} ({fmt_pct(r['sanctioned'], r['n'])})",
            f"{fmt_int(r['assoc'])} ({fmt_pct(r['assoc'], r['n'])})",
        ]
        for r in found
    ]
    pg.add(
        _table(
            [
                "by",
                "value",
                "persons",
                "black-listed",
                "wrongly black-listed",
                "sanctioned",
                "sanctioned for a relative",
            ],
            body,
            {2, 3, 4, 5, 6},
        )
    )
    audit = D.read_audit(path)
    flat = audit.get("flat") if audit else None
    if isinstance(flat, dict) and flat:
        pg.add(
            "<details><summary>Audit metrics (from audit.json, written by "
            "<code>credsim audit</code>)</summary>"
        )
        pg.add(_table(["metric", "value"], [[k, v] for k, v in sorted(flat.items())], {1}))
        pg.add("</details>")
        pg.p(
            "The rates above are computed from the run's tables; the audit's own metrics are "
            "listed beside them.",
            "note",
        )
    else:
        pg.p(
            "Rates computed from the run's tables (no audit.json in the run folder; "
            "`credsim audit DIR` writes one).",
            "note",
        )


def _spillover(pg: _Page, con: Any, m: dict) -> None:
    pg.add("<h2>Spill-over through families</h2>")
    sp = D.spillover(con)
    if not sp["measures"] and not sp["records"]:
        pg.p(
            "Nothing fell on anyone because of a relative or friend in this run: no measure "
            "was imposed by association and no deduction spilled over."
        )
        return
    if sp["measures"]:
        pg.plot(F.spillover(sp["measures"], m))
        body = [
            [
                rule_name(m, "measures", r["measure"]),
                "reward" if r["reward"] else "sanction",
                fmt_int(r["assoc"]),
                fmt_int(r["assoc_entities"]),
                fmt_int(r["via"]),
            ]
            for r in sp["measures"]
        ]
        pg.add(
            _table(
                [
                    "measure",
                    "type",
                    "imposed by association",
                    "people affected",
                    "relatives it came from",
                ],
                body,
                {2, 3, 4},
            )
        )
    if sp["records"]:
        body = [
            [
                rule_name(m, "items", r["item"]),
                r["status"],
                fmt_int(r["n"]),
                fmt_int(r["entities"]),
                fmt_num(r["points"]),
            ]
            for r in sp["records"]
        ]
        pg.add("<h3>Deductions that spilled over (records with basis association)</h3>")
        pg.add(_table(["item", "status", "records", "people", "points applied"], body, {2, 3, 4}))
