"""Plotly figures for the HTML report, built from the small aggregates of :mod:`.data`."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from credsim.store.summary import STATUS_LABELS, WRONG_LABELS, rule_name

TRUE_COLOUR = "rgba(49, 110, 180, 0.45)"
WRONG_COLOUR = "rgba(200, 40, 40, 0.65)"
NEUTRAL_COLOUR = "rgba(140, 140, 140, 0.35)"


def _layout(fig: go.Figure, title: str, height: int = 420, **kw: Any) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 60, "r": 30, "t": 60, "b": 50},
        template="plotly_white",
        **kw,
    )
    return fig


def score_histograms(snap: dict) -> go.Figure:
    """A heat map: snapshot day (rows) by score bin (columns), colour = entities (log)."""
    days = snap["days"]
    counts = [snap["counts"][d] for d in days]
    z = [[math.log10(c) if c else None for c in row] for row in counts]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[round(c, 2) for c in snap["centers"]],
            y=[f"day {d}" for d in days],
            customdata=counts,
            colorscale="Viridis",
            colorbar={
                "title": "entities",
                "tickvals": [0, 1, 2, 3, 4, 5, 6, 7],
                "ticktext": ["1", "10", "100", "1k", "10k", "100k", "1M", "10M"],
            },
            hovertemplate="%{y}, score about %{x}: %{customdata:,} entities<extra></extra>",
        )
    )
    return _layout(
        fig,
        "Score distribution on each snapshot day (colour: number of entities, log scale)",
        height=160 + 30 * len(days),
        xaxis_title="score",
    )


def score_boxes(snap: dict) -> go.Figure:
    q = snap["quant"]
    fig = go.Figure(
        go.Box(
            x=[f"day {r['day']}" for r in q],
            lowerfence=[r["q"][0] for r in q],
            q1=[r["q"][1] for r in q],
            median=[r["q"][2] for r in q],
            q3=[r["q"][3] for r in q],
            upperfence=[r["q"][4] for r in q],
            mean=[r["mean"] for r in q],
            name="score",
            marker_color="rgb(49,110,180)",
            boxpoints=False,
            boxmean=True,
        )
    )
    return _layout(
        fig,
        "Scores over time (box: middle half; whiskers: 5th to 95th percentile; dashed: mean)",
        xaxis_title="snapshot",
        yaxis_title="score",
        showlegend=False,
    )


def grade_heatmap(mob: dict) -> go.Figure:
    order = mob["order"]
    counts = mob["counts"]
    z, text = [], []
    for g0 in order:
        row_total = sum(counts.get((g0, g1), 0) for g1 in order)
        z.append([100.0 * counts.get((g0, g1), 0) / row_total if row_total else 0 for g1 in order])
        text.append(
            [f"{counts.get((g0, g1), 0):,}<br>{v:.1f}%" for g1, v in zip(order, z[-1], strict=True)]
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=order,
            y=order,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            colorbar={"title": "% of row"},
            hovertemplate="from %{y} to %{x}: %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(
        fig,
        f"Grade mobility: grade on day {mob['d0']} (rows) against day {mob['d1']} (columns)",
        height=120 + 60 * len(order),
        xaxis_title=f"grade on day {mob['d1']}",
        yaxis_title=f"grade on day {mob['d0']}",
    )


def list_sizes(sizes: dict[str, list[int]], manifest: dict, kinds: dict[str, str]) -> go.Figure:
    fig = go.Figure()
    for name, series in sorted(sizes.items()):
        fig.add_trace(
            go.Scatter(
                x=list(range(len(series))),
                y=series,
                mode="lines",
                name=f"{rule_name(manifest, 'lists', name)} [{kinds.get(name, '?')}]",
                line={"dash": "dot" if kinds.get(name) == "red" else "solid"},
            )
        )
    return _layout(
        fig,
        "Members of each list, day by day (solid: black lists; dotted: red lists)",
        xaxis_title="day",
        yaxis_title="entities listed",
        legend={"orientation": "h", "y": -0.2},
        height=480,
    )


def disparities(rows: list[dict]) -> go.Figure:
    labels = [f"{r['by']}: {r['value']}" for r in rows]

    def per1000(key: str) -> list[float]:
        return [1000.0 * r[key] / r["n"] if r["n"] else 0.0 for r in rows]

    fig = go.Figure()
    for key, name, colour in (
        ("listed", "on a black list", "rgb(49,110,180)"),
        ("wrong", "wrongly black-listed", "rgb(200,40,40)"),
        ("sanctioned", "sanctioned", "rgb(120,120,120)"),
        ("assoc", "sanctioned for a relative", "rgb(230,150,30)"),
    ):
        fig.add_trace(
            go.Bar(
                x=labels,
                y=per1000(key),
                name=name,
                marker_color=colour,
                customdata=[r[key] for r in rows],
                hovertemplate="%{x}: %{y:.2f} per 1,000 (%{customdata:,} persons)<extra></extra>",
            )
        )
    return _layout(
        fig,
        "Listing and sanction rates by population group and sex (per 1,000 persons)",
        barmode="group",
        yaxis_title="per 1,000 persons",
    )


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _node_label(key: str, manifest: dict) -> str:
    return _short(_node_label_full(key, manifest))


def _node_label_full(key: str, manifest: dict) -> str:
    kind, _, rest = key.partition(":")
    if kind == "origin":
        if rest == "own behaviour":
            return "real behaviour of the person"
        return WRONG_LABELS.get(rest, rest).split(" (")[0]
    if kind == "record":
        return "record made"
    if kind == "status":
        return STATUS_LABELS.get(rest, rest)
    if kind == "list":
        return "list: " + rule_name(manifest, "lists", rest)
    if kind == "measure":
        measure, _, cause = rest.rpartition(":")
        name = rule_name(manifest, "measures", measure)
        return name + (" (because of a relative)" if cause == "association" else "")
    if kind == "trigger":
        return "trigger: " + rest
    return key


def flow_sankey(links: list[dict], manifest: dict) -> go.Figure:
    agg: dict[tuple[str, str, bool | None], int] = {}
    for lk in links:
        k = (lk["s"], lk["t"], lk["ok"])
        agg[k] = agg.get(k, 0) + int(lk["n"])
    nodes: list[str] = []
    index: dict[str, int] = {}
    for s, t, _ in agg:
        for key in (s, t):
            if key not in index:
                index[key] = len(nodes)
                nodes.append(key)
    src, tgt, val, col, lab = [], [], [], [], []
    for (s, t, ok), n in agg.items():
        src.append(index[s])
        tgt.append(index[t])
        val.append(n)
        col.append(NEUTRAL_COLOUR if ok is None else TRUE_COLOUR if ok else WRONG_COLOUR)
        lab.append("not tied to a record" if ok is None else "truthful" if ok else "wrongful")
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": [_node_label(k, manifest) for k in nodes],
                "pad": 14,
                "thickness": 16,
                "color": "rgb(90,90,90)",
            },
            link={
                "source": src,
                "target": tgt,
                "value": val,
                "color": col,
                "customdata": lab,
                "hovertemplate": "%{source.label} → %{target.label}: %{value:,} (%{customdata})"
                "<extra></extra>",
            },
        )
    )
    return _layout(
        fig,
        "From behaviour to record, review, list and measure (blue: truthful; red: wrongful)",
        height=max(520, 40 * len(nodes)),
        font={"size": 12},
    )


def spillover(measures: list[dict], manifest: dict) -> go.Figure:
    names = [rule_name(manifest, "measures", r["measure"]) for r in measures]
    fig = go.Figure(
        [
            go.Bar(
                y=names,
                x=[r["own"] for r in measures],
                name="own listing or grade",
                orientation="h",
                marker_color="rgb(49,110,180)",
            ),
            go.Bar(
                y=names,
                x=[r["assoc"] for r in measures],
                name="because of a relative",
                orientation="h",
                marker_color="rgb(230,150,30)",
            ),
        ]
    )
    return _layout(
        fig,
        "Measures imposed on people for their own record or for a relative's",
        barmode="stack",
        xaxis_title="measures imposed",
        height=160 + 40 * len(names),
    )
