"""The HTML report on a comparison folder (``credsim compare --out DIR``).

The page reads the five CSV tables the comparison wrote (inputs, incentives, privacy_control,
ethics, eu_ai_act) and shows the privacy-control index with the range its unknowns leave open,
the index's components per scheme, the ethics verdicts as a heat map, the EU AI Act
Art. 5(1)(c) test and the inputs and incentives tables.
"""

from __future__ import annotations

import csv
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative

from credsim.errors import CredsimError
from credsim.report.figures import _layout
from credsim.report.markup import _Page, _table, e

TABLES = ["inputs", "incentives", "privacy_control", "ethics", "eu_ai_act"]
VERDICTS = ["upholds", "unknown", "violates"]
VERDICT_COLOURS = ["#3a9d5d", "#c9c9c9", "#c8383c"]
_CLASSES = {"yes", "no", "unknown"}


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise CredsimError(f"cannot read {path}: {exc}") from exc


def _f(x: str | None) -> float:
    try:
        return float(x or 0)
    except ValueError:
        return 0.0


def _marked(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table whose yes / no / unknown cells are tinted (yes: the property holds)."""
    numeric = numeric or set()
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    trs = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = [c] if c in _CLASSES else []
            if i in numeric:
                cls.append("n")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{e(c)}</td>")
        trs.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(trs)}</tbody></table></div>"
    )


def render_compare(path: Path) -> str:
    from credsim.report.html import document

    t = {
        name: _read_csv(path / f"{name}.csv") for name in TABLES if (path / f"{name}.csv").exists()
    }
    priv = t.get("privacy_control") or []
    pg = _Page()
    pg.add(f"<h1>Comparison of {len(priv)} scoring schemes</h1>")
    pg.add(
        '<p class="sub">Made by <code>credsim compare</code> from the schemes\' rules and the '
        "bundled criteria (docs/compare.md): nothing here is simulated, every verdict follows "
        "from what a scheme's rules say, and <i>unknown</i> means the sources are silent. "
        f"The tables are also in this folder as CSV and Markdown ({e(', '.join(TABLES))}).</p>"
    )
    _summary(pg, priv, t.get("eu_ai_act") or [], t.get("ethics") or [])
    _privacy(pg, priv)
    _ethics(pg, t.get("ethics") or [])
    _eu(pg, t.get("eu_ai_act") or [])
    _inputs(pg, t.get("inputs") or [])
    _incentives(pg, t.get("incentives") or [])
    _provenance(pg, path)
    return document(f"credsim comparison: {len(priv)} schemes", pg)


def _summary(
    pg: _Page, priv: list[dict[str, str]], eu: list[dict[str, str]], eth: list[dict[str, str]]
) -> None:
    items = []
    if priv:
        lo, hi = priv[0], priv[-1]
        items.append(
            f"Privacy-control index (0 = maximum privacy, {e(lo.get('index_max'))} = maximum "
            f"control): lowest <b>{e(lo['scheme'])}</b> ({e(lo['index'])}), highest "
            f"<b>{e(hi['scheme'])}</b> ({e(hi['index'])})."
        )
    if eu:
        by: dict[str, list[str]] = {}
        for r in eu:
            by.setdefault(r.get("art_5_1_c", ""), []).append(r["scheme"])
        items.append(
            "EU AI Act Art. 5(1)(c) (prohibited social scoring): "
            + "; ".join(
                f"<b>{e(v)}</b> for {len(by[v])} ({e(', '.join(by[v]))})"
                for v in ("yes", "unknown", "no")
                if v in by
            )
            + "."
        )
    if eth:
        n = {v: sum(1 for r in eth if r.get("verdict") == v) for v in VERDICTS}
        items.append(
            f"China's 2019 AI governance principles: of {len(eth)} scheme-principle pairs, "
            f"{n['violates']} violated, {n['upholds']} upheld, {n['unknown']} unknown."
        )
    if items:
        pg.add(
            '<div class="summary"><h2 style="margin-top:.4em;border:0">In short</h2><ul>'
            + "".join(f"<li>{i}</li>" for i in items)
            + "</ul></div>"
        )


def components_of(priv: list[dict[str, str]]) -> list[str]:
    if not priv:
        return []
    cols = list(priv[0])
    try:
        return cols[cols.index("unknown") + 1 : cols.index("components")]
    except ValueError:
        return []


def privacy_figure(priv: list[dict[str, str]]) -> go.Figure:
    ids = [r["scheme"] for r in priv]
    idx = [_f(r["index"]) for r in priv]
    lows = [_f(r["index_low"]) for r in priv]
    highs = [_f(r["index_high"]) for r in priv]
    mx = max((_f(r["index_max"]) for r in priv), default=1.0)
    fig = go.Figure(
        go.Bar(
            y=ids,
            x=idx,
            orientation="h",
            marker_color="#316eb4",
            error_x={
                "type": "data",
                "array": [h - i for h, i in zip(highs, idx, strict=True)],
                "arrayminus": [i - lo for i, lo in zip(idx, lows, strict=True)],
                "visible": True,
                "color": "#222",
                "thickness": 1.5,
                "width": 5,
            },
            customdata=[
                [r.get("name", ""), r["index_low"], r["index_high"], r.get("unknown") or "none"]
                for r in priv
            ],
            hovertemplate="<b>%{y}</b> (%{customdata[0]})<br>index %{x}, range "
            "%{customdata[1]} to %{customdata[2]}<br>unknown: %{customdata[3]}<extra></extra>",
        )
    )
    _layout(
        fig,
        "Privacy-control index (bar) and the range its unknowns leave open (whiskers)",
        height=120 + 32 * len(ids),
        xaxis_title=f"index (0 = maximum privacy, {mx:g} = maximum control)",
        showlegend=False,
    )
    fig.update_layout(margin={"l": 140, "r": 30, "t": 60, "b": 50})
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, mx])
    return fig


def components_figure(priv: list[dict[str, str]]) -> go.Figure:
    ids = [r["scheme"] for r in priv]
    comps = components_of(priv)
    palette = qualitative.Dark24
    fig = go.Figure()
    for i, c in enumerate(comps):
        fig.add_trace(
            go.Bar(
                name=c,
                y=ids,
                x=[_f(r.get(c)) for r in priv],
                orientation="h",
                marker_color=palette[i % len(palette)],
                hovertemplate=f"%{{y}}: {c} %{{x}} points<extra></extra>",
            )
        )
    _layout(
        fig,
        "What the index is made of: points per component (an unknown property scores half)",
        height=160 + 32 * len(ids),
        barmode="stack",
        xaxis_title="points",
        legend={"traceorder": "normal"},
    )
    fig.update_layout(margin={"l": 140, "r": 30, "t": 60, "b": 50})
    fig.update_yaxes(autorange="reversed")
    return fig


def ethics_figure(eth: list[dict[str, str]]) -> go.Figure:
    schemes = list(dict.fromkeys(r["scheme"] for r in eth))
    principles = list(dict.fromkeys(r.get("principle_name") or r["principle"] for r in eth))
    cell = {(r["scheme"], r.get("principle_name") or r["principle"]): r for r in eth}
    z, text, hover = [], [], []
    for s in schemes:
        zr, tr, hr = [], [], []
        for p in principles:
            r = cell.get((s, p))
            v = r.get("verdict", "") if r else ""
            zr.append(VERDICTS.index(v) if v in VERDICTS else None)
            tr.append(v)
            reason = (r or {}).get("reason", "")
            hr.append(reason if len(reason) <= 240 else reason[:237] + "...")
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    scale = []
    for i, col in enumerate(VERDICT_COLOURS):
        scale += [[i / 3, col], [(i + 1) / 3, col]]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=principles,
            y=schemes,
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            zmin=-0.5,
            zmax=2.5,
            colorscale=scale,
            xgap=2,
            ygap=2,
            colorbar={"tickvals": [0, 1, 2], "ticktext": VERDICTS, "title": "verdict"},
            hovertemplate="<b>%{y}</b>, %{x}: %{text}<br>%{customdata}<extra></extra>",
        )
    )
    _layout(
        fig,
        "China's AI governance principles (2019): verdict per scheme and principle",
        height=160 + 34 * len(schemes),
    )
    fig.update_layout(margin={"l": 140, "r": 30, "t": 60, "b": 90})
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="bottom", tickangle=-20)
    return fig


def _privacy(pg: _Page, priv: list[dict[str, str]]) -> None:
    pg.add("<h2>From maximum privacy to maximum control</h2>")
    if not priv:
        pg.p("privacy_control.csv has no rows.")
        return
    pg.p(
        "Each component scores its points when the scheme has the property, nothing when it "
        "has not, and half when the sources are silent; the whiskers run from the index with "
        "every unknown counted as 0 to the index with every unknown counted in full.",
        "note",
    )
    pg.plot(privacy_figure(priv))
    if components_of(priv):
        pg.plot(components_figure(priv))
    body = [
        [
            r["rank"],
            r["scheme"],
            r.get("name", ""),
            r["index"],
            f"{r['index_low']} to {r['index_high']}",
            r.get("index_max", ""),
            r.get("unknown") or "-",
        ]
        for r in priv
    ]
    pg.add("<details><summary>The index as a table</summary>")
    pg.add(
        _table(["rank", "scheme", "name", "index", "range", "maximum", "unknown"], body, {0, 3, 5})
    )
    pg.add("</details>")


def _ethics(pg: _Page, eth: list[dict[str, str]]) -> None:
    pg.add("<h2>China's AI governance principles (2019)</h2>")
    if not eth:
        pg.p("ethics.csv has no rows.")
        return
    pg.p(
        "Violates: a violating condition holds. Upholds: no violating condition can hold and "
        "every upholding condition holds. Unknown: the scheme's rules do not say enough. Hover "
        "over a square for the reason.",
        "note",
    )
    pg.plot(ethics_figure(eth))
    body = [
        [r["scheme"], r.get("principle_name", r["principle"]), r["verdict"], r["reason"]]
        for r in eth
    ]
    pg.add("<details><summary>Every verdict with its reason</summary>")
    pg.add(_table(["scheme", "principle", "verdict", "reason"], body))
    pg.add("</details>")


def _eu(pg: _Page, eu: list[dict[str, str]]) -> None:
    pg.add("<h2>EU AI Act Art. 5(1)(c): prohibited social scoring</h2>")
    if not eu:
        pg.p("eu_ai_act.csv has no rows.")
        return
    pg.p(
        "Would the scheme fall under the prohibition (yes, no, unknown)? It must be a social "
        "score leading to detrimental treatment, and that treatment must be (i) in a context "
        "unrelated to where the data came from or (ii) unjustified or disproportionate to the "
        "behaviour.",
        "note",
    )
    cols = [c for c in eu[0] if c not in ("name", "reason", "properties", "basis")]
    pg.add(_marked(cols, [[r.get(c, "") for c in cols] for r in eu]))
    pg.add("<details><summary>The reason for each verdict</summary>")
    pg.add(
        _table(
            ["scheme", "art_5_1_c", "reason"],
            [[r["scheme"], r.get("art_5_1_c", ""), r.get("reason", "")] for r in eu],
        )
    )
    pg.add("</details>")


def _inputs(pg: _Page, rows: list[dict[str, str]]) -> None:
    pg.add("<h2>What goes in: inputs and channels</h2>")
    if not rows:
        pg.p("inputs.csv has no rows.")
        return
    cols = [c for c in rows[0] if c not in ("name", "detail", "private_sector_data_basis")]
    numeric = {i for i, c in enumerate(cols) if c in ("items", "observed_behaviours")}
    pg.add(_marked(cols, [[r.get(c, "") for c in cols] for r in rows], numeric))
    pg.add("<details><summary>Which items fall in each category</summary>")
    pg.add(
        _table(
            ["scheme", "name", "items by category", "private-sector data"],
            [
                [
                    r["scheme"],
                    r.get("name", ""),
                    r.get("detail", ""),
                    r.get("private_sector_data_basis", ""),
                ]
                for r in rows
            ],
        )
    )
    pg.add("</details>")


def _incentives(pg: _Page, rows: list[dict[str, str]]) -> None:
    pg.add("<h2>Rewards and penalties</h2>")
    if not rows:
        pg.p("incentives.csv has no rows.")
        return
    cols = [c for c in rows[0] if c not in ("name", "low_score_basis")]
    numeric = {
        i
        for i, c in enumerate(cols)
        if c in ("rewards", "penalties", "items_gaining_points", "items_losing_points")
        or c.endswith("_lists")
    }
    pg.add(_marked(cols, [[r.get(c, "") for c in cols] for r in rows], numeric))
    pg.add("<details><summary>Why a low score is (or is not) penalised</summary>")
    pg.add(
        _table(
            ["scheme", "name", "low score penalised", "basis"],
            [
                [
                    r["scheme"],
                    r.get("name", ""),
                    r.get("low_score_penalised", ""),
                    r.get("low_score_basis", ""),
                ]
                for r in rows
            ],
        )
    )
    pg.add("</details>")


def _provenance(pg: _Page, path: Path) -> None:
    md = path / "privacy_control.md"
    try:
        lines = md.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    gen = next((ln for ln in lines if ln.startswith("Generated by")), "")
    if gen:
        pg.add("<h2>Sources</h2>")
        pg.p(gen.replace("`", ""), "note")
