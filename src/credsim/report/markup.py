"""HTML building blocks of the report: escaping, tables, and a page that embeds Plotly divs."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: list[str], body: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    trs = []
    for row in body:
        cells = "".join(
            f'<td class="n">{e(c)}</td>' if i in numeric else f"<td>{e(c)}</td>"
            for i, c in enumerate(row)
        )
        trs.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n_plots = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def p(self, text: str, cls: str = "") -> None:
        self.parts.append(f'<p class="{cls}">{e(text)}</p>' if cls else f"<p>{e(text)}</p>")

    def plot(self, fig: go.Figure) -> None:
        self.n_plots += 1
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{self.n_plots}",
            config={"displaylogo": False, "responsive": True},
        )
        self.parts.append(f'<div class="plot">{div}</div>')
