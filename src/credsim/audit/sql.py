"""Small DuckDB helpers of the audit: JSON-safe numbers, safe ratios, one row or all rows."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import duckdb


def num(value: Any) -> Any:
    """A JSON-safe number: Decimal to float, NaN/inf to None, everything else unchanged."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ratio(part: Any, whole: Any) -> float | None:
    """``part / whole``, or None when ``whole`` is 0 or unknown."""
    return None if not whole or part is None else float(part) / float(whole)


def one_row(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> dict[str, Any]:
    rel = con.execute(sql, params or [])
    names = [d[0] for d in rel.description]
    row = rel.fetchone() or (None,) * len(names)
    return {n: num(v) for n, v in zip(names, row, strict=True)}


def all_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    return [tuple(num(v) for v in r) for r in con.execute(sql, params or []).fetchall()]
