"""SQL over a run folder with DuckDB, and plain-text rendering of the results.

Each Parquet file becomes a view (``population``, ``records``, ``scores``, ``lists``,
``measures`` and, if present, ``friendships``), so any question about a run is one SQL query,
and DuckDB reads only the columns and row groups it needs - runs can hold millions of records.
Note that ``group`` is an SQL keyword: write ``population."group"``.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from credsim.errors import QueryError, RunStoreError
from credsim.store.reader import RunStore

_MAX_CELL = 60


def connect(run: str | Path | RunStore) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table file present in ``run``."""
    store = run if isinstance(run, RunStore) else RunStore(run)
    con = duckdb.connect(":memory:")
    # a progress bar of its own would be printed into the text of a summary or report
    con.execute("SET enable_progress_bar = false")
    for name in store.tables:
        literal = str(store.path(name)).replace("'", "''")
        try:
            con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{literal}')")
        except duckdb.Error as exc:
            con.close()
            raise RunStoreError(f"cannot read {store.path(name)}: {exc}") from exc
    return con


def query(run_dir: str | Path | RunStore, sql: str) -> pa.Table:
    """Run ``sql`` against the run's tables and return the result as a pyarrow table.

    SQL errors are re-raised as :class:`~credsim.errors.QueryError` carrying DuckDB's message.
    A statement for which DuckDB returns no result at all gives an empty table.
    """
    con = connect(run_dir)
    try:
        relation = con.sql(sql)
        return pa.table({}) if relation is None else relation.to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    finally:
        con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """Run a small query and return its rows as dicts (for the report builders)."""
    relation = con.sql(sql, params=params)
    names = relation.columns
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """Render ``table`` as an aligned text table: numbers right-aligned, nulls as ``null``.

    At most ``max_rows`` rows are shown; a footer gives the row count and how many were omitted.
    """
    names = table.column_names
    shown = table.slice(0, max(max_rows, 0))
    cells = [[_cell(v) for v in shown.column(i).to_pylist()] for i in range(len(names))]
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in table.schema
    ]
    body = [[col[r] for col in cells] for r in range(shown.num_rows)]
    out = align(body, header=names, right=numeric) if names else []
    n = table.num_rows
    if n > shown.num_rows:
        k = shown.num_rows
        out.append(f"({n:,} rows; showing the first {k:,}, {n - k:,} omitted)")
    else:
        out.append(f"({n:,} row{'' if n == 1 else 's'})")
    return "\n".join(out)


def align(
    body: list[list[str]],
    header: list[str] | None = None,
    right: list[bool] | None = None,
    indent: str = "",
) -> list[str]:
    """Lay out rows of strings in columns two spaces apart; ``right`` marks numeric columns.

    With a ``header``, a dashed rule is drawn beneath it. Trailing spaces are trimmed.
    """
    table = ([header] if header else []) + body
    if not table:
        return []
    ncols = max(len(r) for r in table)
    table = [r + [""] * (ncols - len(r)) for r in table]
    flags = (right or []) + [False] * (ncols - len(right or []))
    widths = [max(len(r[i]) for r in table) for i in range(ncols)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if f else v.ljust(w) for v, w, f in zip(values, widths, flags, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    lines = [line(r) for r in table]
    if header:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = fmt_num(value)
    elif isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def fmt_num(value: float | int | None, digits: int = 4) -> str:
    """A number without float noise: ``-5``, ``2.5``, ``0.3333``, ``1.2e-06``, ``nan``."""
    if value is None:
        return "null"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) < 10**-digits:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def fmt_int(value: int | None) -> str:
    """An integer with thousands separators (``12,345``); ``?`` when unknown."""
    return "?" if value is None else f"{int(value):,}"


def fmt_count(value: int | None, singular: str, plural: str | None = None) -> str:
    """``1 organisation``, ``3 organisations``: a count with its noun in the right number."""
    noun = singular if value == 1 else (plural or singular + "s")
    return f"{fmt_int(value)} {noun}"


def fmt_pct(part: float | int | None, whole: float | int | None) -> str:
    """``part`` as a percentage of ``whole`` with one decimal, or ``-`` when ``whole`` is 0."""
    if not whole:
        return "-"
    return f"{100.0 * (part or 0) / whole:.1f}%"


def fmt_points(value: float | None) -> str:
    """Points with an explicit sign (``+5``, ``-2.5``, ``0``)."""
    if value is None:
        return "null"
    return ("+" if value > 0 else "") + fmt_num(value)
