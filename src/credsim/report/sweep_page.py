"""The HTML report on a sweep folder (``credsim sweep``): means over seeds with 95% intervals.

The page reads ``sweep.json``, ``summary.parquet`` (per cell and metric: mean, sd and a 95%
Student's t interval over seeds) and ``metrics.parquet`` (one row per run and metric). It plots
a curated set of headline audit metrics per cell, the group and sex disparities of the main
rates per cell, and lists every summary row in a collapsible table.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pyarrow.parquet as pq

from credsim.errors import CredsimError
from credsim.report.figures import _layout
from credsim.report.markup import _Page, _table, e

# (flat audit metric, plain label); only those present in the sweep are shown, in this order.
HEADLINE: list[tuple[str, str]] = [
    ("rates.recorded.all", "Persons with an accepted record (share)"),
    ("rates.listed.all", "Persons black-listed (share)"),
    ("rates.sanctioned.all", "Persons sanctioned (share)"),
    ("rates.rewarded.all", "Persons rewarded (share)"),
    ("wrongful.records.share", "Accepted records that are untrue (share)"),
    ("wrongful.listings.share", "Listings triggered by an untrue record (share)"),
    ("wrongful.measures.share", "List sanctions resting on a wrongful listing (share)"),
    ("wrongful.false_positive.rate", "Innocent persons black-listed (false-positive rate)"),
    ("wrongful.false_negative.rate", "Eligible persons never listed (false-negative rate)"),
    ("due_process.appealed", "Records appealed"),
    ("due_process.overturned", "Records overturned on appeal"),
    ("due_process.rejected_in_review", "Records rejected in review"),
    ("due_process.backlog", "Records still pending at the end"),
    ("association.share", "Measures imposed because of someone else (share)"),
    ("association.entities", "People sanctioned or rewarded by association"),
    ("chilling.lawful_share", "Lawful acts prevented by a measure (share)"),
    ("stratification.gini", "Gini of last-day scores"),
]

# rate families broken down by group and sex
GROUP_FAMILIES: list[tuple[str, str]] = [
    ("rates.listed", "Black-listed"),
    ("rates.sanctioned", "Sanctioned"),
    ("rates.rewarded", "Rewarded"),
    ("rates.recorded", "With an accepted record"),
    ("wrongful.false_positive", "Innocent but black-listed (false-positive rate)"),
]
GROUP_DIMS = ("group", "sex", "group_x_sex")
_TAG = re.compile(r"^(?P<fam>[^\[]+)\[(?P<dim>[^=\]]+)=(?P<val>[^\]]*)\]$")
COLOURS = ["#316eb4", "#d9822b", "#3a9d5d", "#9b4dca", "#c8383c", "#6b6b6b", "#1aa3a3", "#b5a22c"]


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _positive(r: dict | None) -> bool:
    """Whether a summary row has a mean that is a number other than zero."""
    v = _num((r or {}).get("mean"))
    return not math.isnan(v) and v != 0


def _short(label: str) -> str:
    """``group_x_sex=migrant|female`` -> ``migrant, female``; ``sex=male`` -> ``male``."""
    return label.partition("=")[2].replace("|", ", ")


def _g(x: Any) -> str:
    v = _num(x)
    return "-" if math.isnan(v) else f"{v:.4g}"


def _is_share(metric: str) -> bool:
    base = metric.split("[")[0]
    if metric.startswith("rates.persons"):
        return False
    return (
        metric.startswith("rates.")
        or base == "wrongful.false_positive"
        or base.endswith((".share", "_share", ".rate"))
    )


def _read(path: Path) -> tuple[dict, list[dict], list[dict]]:
    try:
        meta = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
        summary = pq.read_table(path / "summary.parquet").to_pylist()
    except (OSError, ValueError) as exc:
        raise CredsimError(f"{path}: cannot read the sweep ({exc})") from exc
    try:
        runs = pq.read_table(path / "metrics.parquet", columns=["run", "cell", "seed"]).to_pylist()
    except (OSError, ValueError, KeyError):
        runs = []
    return (meta if isinstance(meta, dict) else {}), summary, runs


def render_sweep(path: Path) -> str:
    from credsim.report.html import document

    meta, summary, runs = _read(path)
    cells = [str(c) for c in meta.get("cells") or sorted({r["cell"] for r in summary})]
    by: dict[tuple[str, str], dict] = {(r["cell"], r["metric"]): r for r in summary}
    metrics = {r["metric"] for r in summary}
    pg = _Page()
    _intro(pg, meta, cells, by, metrics, runs)
    _headline(pg, cells, by, metrics)
    _groups(pg, cells, by, metrics)
    _all_rows(pg, meta, summary)
    return document(f"credsim sweep report: {meta.get('scheme') or path.name}", pg)


def _ci(r: dict | None) -> str:
    if r is None:
        return "-"
    lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
    if math.isnan(lo) or math.isnan(hi):
        return _g(r.get("mean"))
    return f"{_g(r.get('mean'))} [{_g(lo)}, {_g(hi)}]"


def _intro(
    pg: _Page,
    meta: dict,
    cells: list[str],
    by: dict[tuple[str, str], dict],
    metrics: set[str],
    runs: list[dict],
) -> None:
    seeds = meta.get("seeds") or []
    sets = meta.get("sets") or []
    scen = ", ".join(str(s) for s in meta.get("scenarios") or [])
    pg.add(f"<h1>Sweep: {e(meta.get('scheme'))}</h1>")
    pop = meta.get("population")
    pg.add(
        f'<p class="sub">Scheme <code>{e(meta.get("scheme"))}</code>, grid '
        + (", ".join(f"<code>{e(s)}</code>" for s in sets) or "(no settings: the base scheme)")
        + f", {len(cells)} cell{'s' if len(cells) != 1 else ''} &times; {len(seeds)} seed"
        + ("s" if len(seeds) != 1 else "")
        + (f" ({e(', '.join(str(s) for s in seeds))})" if seeds else "")
        + f" = {e(meta.get('runs', len(cells) * len(seeds)))} runs"
        + (f" of {e(pop)} synthetic persons" if pop else "")
        + f" over {e(meta.get('days'))} days"
        + (f", scenarios: {e(scen)}" if scen else "")
        + ". Every cell runs the same seeds, so cells differ only by their settings."
        + ("" if meta.get("complete", True) else " <b>The sweep is not complete.</b>")
        + " Everyone in it is invented; no real person is scored.</p>"
    )
    shown = [(m, label) for m, label in HEADLINE if m in metrics]
    pg.add('<div class="summary"><h2 style="margin-top:.4em;border:0">In short</h2>')
    if shown:
        body = [[label, *(_ci(by.get((c, m))) for c in cells)] for m, label in shown]
        pg.add(
            _table(["metric (mean [95% interval])", *cells], body, set(range(1, len(cells) + 1)))
        )
    else:
        pg.p("None of the headline audit metrics is in this sweep's summary.")
    n = len(seeds)
    pg.p(
        f"Each value is the mean over the {n} seed{'s' if n != 1 else ''} of a cell; the "
        "interval in brackets (and the error bars below) is a 95% confidence interval "
        "(Student's t over seeds)"
        + (
            ". With one seed there is no interval."
            if n < 2
            else (
                ". With so few seeds the intervals are wide; overlapping intervals mean the "
                "sweep cannot tell the cells apart."
                if n < 5
                else ". Overlapping intervals mean the sweep cannot tell the cells apart."
            )
        ),
        "note",
    )
    pg.add("</div>")
    if runs:
        seen: dict[str, tuple[str, Any]] = {}
        for r in runs:
            seen.setdefault(r["run"], (r["cell"], r["seed"]))
        body = [[run, cell, seed] for run, (cell, seed) in sorted(seen.items())]
        pg.add(
            f"<details><summary>The {len(body)} runs (folders under <code>runs/</code>; "
            "<code>credsim report runs/NAME</code> renders any of them)</summary>"
        )
        pg.add(_table(["run folder", "cell", "seed"], body, {2}))
        pg.add("</details>")


def _errors(rows: list[dict | None]) -> tuple[list[float | None], list[float], list[float]]:
    ys: list[float | None] = []
    plus: list[float] = []
    minus: list[float] = []
    for r in rows:
        mean = _num(r.get("mean")) if r else math.nan
        lo = _num(r.get("ci_low")) if r else math.nan
        hi = _num(r.get("ci_high")) if r else math.nan
        ys.append(None if math.isnan(mean) else mean)
        plus.append(0.0 if math.isnan(hi) or math.isnan(mean) else max(0.0, hi - mean))
        minus.append(0.0 if math.isnan(lo) or math.isnan(mean) else max(0.0, mean - lo))
    return ys, plus, minus


def headline_figure(
    metric: str, label: str, cells: list[str], rows: list[dict | None]
) -> go.Figure:
    ys, plus, minus = _errors(rows)
    share = _is_share(metric)
    fig = go.Figure(
        go.Bar(
            x=cells,
            y=ys,
            marker_color=[COLOURS[i % len(COLOURS)] for i in range(len(cells))],
            error_y={
                "type": "data",
                "array": plus,
                "arrayminus": minus,
                "visible": True,
                "color": "#222",
                "thickness": 1.5,
                "width": 8,
            },
            customdata=[
                [_g(r.get("ci_low")) if r else "-", _g(r.get("ci_high")) if r else "-"]
                for r in rows
            ],
            hovertemplate="%{x}: mean %{y:.4g}, 95% interval [%{customdata[0]}, "
            "%{customdata[1]}]<extra></extra>",
        )
    )
    _layout(
        fig,
        f"{label}<br><sup>{metric}</sup>",
        height=340,
        showlegend=False,
        yaxis_title="share" if share else "mean over seeds",
    )
    fig.update_layout(margin={"l": 60, "r": 20, "t": 70, "b": 60})
    if share:
        fig.update_yaxes(tickformat=".3~%")
    fig.update_yaxes(rangemode="tozero")
    return fig


def _headline(
    pg: _Page, cells: list[str], by: dict[tuple[str, str], dict], metrics: set[str]
) -> None:
    pg.add("<h2>Headline metrics by cell</h2>")
    shown = [(m, label) for m, label in HEADLINE if m in metrics]
    if not shown:
        pg.p("None of the headline audit metrics is in this sweep's summary; see the full table.")
        return
    pg.p(
        "Bars are means over seeds; whiskers are 95% confidence intervals. Metric names are "
        "the flat names of `credsim audit` (docs/audit.md).",
        "note",
    )
    zero = [(m, label) for m, label in shown if not any(_positive(by.get((c, m))) for c in cells)]
    drawn = [x for x in shown if x not in zero]
    if drawn:
        pg.add('<div class="grid">')
        for m, label in drawn:
            pg.plot(headline_figure(m, label, cells, [by.get((c, m)) for c in cells]))
        pg.add("</div>")
    if zero:
        pg.p(
            "Zero in every cell and seed, so not plotted: "
            + "; ".join(f"{label.lower()} ({m})" for m, label in zero)
            + ".",
            "note",
        )


def group_figure(
    title: str, family: str, cells: list[str], labels: list[str], by: dict[tuple[str, str], dict]
) -> go.Figure:
    fig = go.Figure()
    for i, c in enumerate(cells):
        rows = [by.get((c, f"{family}[{lab}]")) for lab in labels]
        ys, plus, minus = _errors(rows)
        fig.add_trace(
            go.Bar(
                name=c,
                x=[_short(lab) for lab in labels],
                y=ys,
                marker_color=COLOURS[i % len(COLOURS)],
                error_y={
                    "type": "data",
                    "array": plus,
                    "arrayminus": minus,
                    "visible": True,
                    "color": "#222",
                    "thickness": 1.2,
                    "width": 4,
                },
                hovertemplate=f"{c}<br>%{{x}}: %{{y:.2%}}<extra></extra>",
            )
        )
    _layout(
        fig,
        f"{title} by group and sex, per cell (mean over seeds, 95% interval)",
        height=400,
        barmode="group",
        yaxis_title="share of persons",
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
    )
    fig.update_layout(margin={"l": 60, "r": 20, "t": 90, "b": 60})
    fig.update_yaxes(tickformat=".3~%", rangemode="tozero")
    return fig


def _groups(
    pg: _Page, cells: list[str], by: dict[tuple[str, str], dict], metrics: set[str]
) -> None:
    pg.add("<h2>Who is affected: groups and sex</h2>")
    tagged: dict[str, list[str]] = {}
    for m in sorted(metrics):
        t = _TAG.match(m)
        if t and t["dim"] in GROUP_DIMS:
            tagged.setdefault(t["fam"], []).append(f"{t['dim']}={t['val']}")
    drawn = 0
    empty = []
    rows: list[list[Any]] = []
    for fam, title in GROUP_FAMILIES:
        labels = sorted(tagged.get(fam, []), key=lambda s: (GROUP_DIMS.index(s.split("=")[0]), s))
        if not labels:
            continue
        vals = [by.get((c, f"{fam}[{lab}]")) for c in cells for lab in labels]
        if not any(_positive(r) for r in vals):
            empty.append(f"{title.lower()} ({fam})")
            continue
        pg.plot(group_figure(title, fam, cells, labels, by))
        drawn += 1
        for lab in labels:
            rows.append([title, lab, *(_ci(by.get((c, f"{fam}[{lab}]"))) for c in cells)])
    if not drawn and not empty:
        pg.p("The sweep's summary has no metrics broken down by group or sex.")
        return
    if empty:
        pg.p(
            "Zero for every group in every cell, so not plotted: " + "; ".join(empty) + ".",
            "note",
        )
    if rows:
        pg.add("<details><summary>The same as a table (mean [95% interval])</summary>")
        pg.add(_table(["rate", "group", *cells], rows, set(range(2, len(cells) + 2))))
        pg.add("</details>")
    ratios = sorted(m for m in metrics if re.match(r"^disparity\.four_fifths\..*\.ratio$", m))
    if ratios:
        pg.add(
            "<details><summary>Four-fifths ratios (lowest group rate / highest; below 0.8 "
            "flags a disparity)</summary>"
        )
        body = [[m, *(_ci(by.get((c, m))) for c in cells)] for m in ratios]
        pg.add(_table(["metric", *cells], body, set(range(1, len(cells) + 1))))
        pg.add("</details>")


def _all_rows(pg: _Page, meta: dict, summary: list[dict]) -> None:
    pg.add("<h2>All metrics</h2>")
    params = [str(p) for p in meta.get("params") or []]
    header = ["cell", *params, "metric", "seeds", "mean", "sd", "95% low", "95% high"]
    body = [
        [
            r.get("cell"),
            *(r.get(p) for p in params),
            r.get("metric"),
            r.get("n"),
            _g(r.get("mean")),
            _g(r.get("sd")),
            _g(r.get("ci_low")),
            _g(r.get("ci_high")),
        ]
        for r in summary
    ]
    k = len(params)
    pg.add(
        f"<details><summary>Every row of summary.parquet ({len(body)} rows: cell by "
        "metric)</summary>"
    )
    pg.add(_table(header, body, set(range(k + 2, k + 7))))
    pg.add("</details>")
    pg.p(
        "The same rows are in summary.csv; metrics.parquet holds one value per run and metric, "
        "and `credsim diff SWEEP::CELL_A SWEEP::CELL_B` compares two cells seed by seed.",
        "note",
    )
