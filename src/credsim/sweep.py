"""Experiments: a grid of scheme settings over K seeds, run in parallel, with intervals.

``credsim sweep SCHEME --set review=none,required --seeds 5`` runs every cell of the grid (the
product of the ``--set`` values) with the seeds ``seed_base .. seed_base+K-1`` -- the same seeds in
every cell, so cells differ only by their settings (common random numbers). Each run is a
complete run folder under ``OUT/runs/``; its audit metrics (``credsim.audit``) become rows of
``OUT/metrics.parquet`` (one row per run and metric) and ``OUT/summary.csv`` holds, per cell and
metric, the mean over seeds with a 95% confidence interval (Student's t). Results do not depend
on the number of workers: each run depends only on its scheme, settings and seed.

``credsim diff A B`` compares two runs, or two cells of a sweep, metric by metric (see
:func:`diff`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim._fsio import replace_atomically
from credsim.engine.shards import Execution
from credsim.errors import CredsimError, RunExistsError

T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
    60: 2.000,
}


def t95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom (table, then 1.96)."""
    if df <= 0:
        return math.nan
    keys = [k for k in sorted(T95) if k <= df]
    return T95[keys[-1]] if df <= 60 else 1.96


@dataclass(frozen=True)
class Task:
    scheme: str
    settings: tuple[tuple[str, str], ...]
    seed: int
    population: int | None
    days: int
    scenarios: tuple[str, ...]
    out: str
    workers: int | None = None  # cores for this run; None: all (runs one at a time)

    @property
    def cell(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.settings) or "base"


def parse_sets(sets: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["review=none,required", "appeals.available=true,false"]`` -> grid axes."""
    axes = []
    for item in sets:
        key, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise CredsimError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        axes.append((key.strip(), vals))
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise CredsimError("--set: each key may appear once")
    return axes


def _run_one(task: Task) -> list[dict[str, Any]]:
    from credsim.api import run
    from credsim.audit import audit

    res = run(
        task.scheme,
        task.population,
        task.days,
        task.seed,
        task.out,
        scenarios=task.scenarios,
        overrides=dict(task.settings),
        checkpoint_every=0,
        execution=Execution(workers=task.workers),
    )
    assert res.path is not None
    flat = audit(res.path)["flat"]
    return [
        {
            "run": Path(task.out).name,
            "cell": task.cell,
            "seed": task.seed,
            **dict(task.settings),
            "metric": k,
            "value": float(v),
        }
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]


def sweep(
    scheme: str,
    sets: Sequence[str],
    seeds: int,
    out: str | Path,
    *,
    population: int | None = None,
    days: int = 365,
    scenarios: Sequence[str] = (),
    seed_base: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Run the grid and write ``OUT``; return its path."""
    from credsim.schemes.loader import load_scheme

    if seeds < 1:
        raise CredsimError(f"--seeds must be at least 1, got {seeds}")
    axes = parse_sets(sets)
    outp = Path(out).expanduser().absolute()
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())):
        raise RunExistsError(f"{outp} exists and is not empty; a sweep never overwrites")
    cells = list(itertools.product(*[[(k, v) for v in vals] for k, vals in axes])) or [()]
    for cell in cells:  # every cell must load before anything runs
        load_scheme(scheme, scenarios, dict(cell))
    (outp / "runs").mkdir(parents=True, exist_ok=True)
    tasks = [
        Task(
            scheme,
            tuple(cell),
            seed_base + s,
            population,
            days,
            tuple(scenarios),
            str(outp / "runs" / f"cell{ci:02d}-seed{seed_base + s}"),
        )
        for ci, cell in enumerate(cells)
        for s in range(seeds)
    ]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if n_workers > 1:  # the processes share the cores: each run keeps to one
        tasks = [replace(t, workers=1) for t in tasks]
    rows: list[dict[str, Any]] = []
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=f"sweep {scheme}", unit="run")
    if n_workers == 1:
        for t in tasks:
            rows += _run_one(t)
            if bar is not None:
                bar.update()
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for part in pool.map(_run_one, tasks):
                rows += part
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    params = [k for k, _ in axes]
    metrics = pa.Table.from_pylist(sorted(rows, key=lambda r: (r["cell"], r["seed"], r["metric"])))
    summary = summarize(metrics, params)
    replace_atomically(outp / "metrics.parquet", lambda fh: pq.write_table(metrics, fh))
    replace_atomically(outp / "summary.parquet", lambda fh: pq.write_table(summary, fh))
    csv = _csv(summary)
    replace_atomically(outp / "summary.csv", lambda fh: fh.write(csv.encode()))
    meta = {
        "kind": "sweep",
        "scheme": scheme,
        "sets": [f"{k}={','.join(v)}" for k, v in axes],
        "params": params,
        "seeds": [seed_base + s for s in range(seeds)],
        "population": population,
        "days": days,
        "scenarios": list(scenarios),
        "cells": sorted({t.cell for t in tasks}),
        "runs": len(tasks),
        "complete": True,
    }
    text = json.dumps(meta, indent=2) + "\n"
    replace_atomically(outp / "sweep.json", lambda fh: fh.write(text.encode()))
    return outp


def _stats(values: list[float]) -> dict[str, float]:
    vals = [v for v in values if not math.isnan(v)]
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    half = t95(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def summarize(metrics: pa.Table, params: Sequence[str]) -> pa.Table:
    """Mean and 95% interval over seeds, per cell and metric."""
    groups: dict[tuple[str, str], list[float]] = {}
    first: dict[str, dict[str, Any]] = {}
    for r in metrics.to_pylist():
        groups.setdefault((r["cell"], r["metric"]), []).append(r["value"])
        first.setdefault(r["cell"], {p: r.get(p) for p in params})
    out = [
        {"cell": c, **first[c], "metric": m, **_stats(v)} for (c, m), v in sorted(groups.items())
    ]
    return pa.Table.from_pylist(out)


def _csv(t: pa.Table) -> str:
    import io

    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    pacsv.write_csv(t, buf)
    return buf.getvalue().decode()


# --------------------------------------------------------------------------------------------
# diff


def _side(spec: str) -> tuple[str, dict[str, list[float]]]:
    """A run folder, or ``SWEEP_DIR:CELL`` (a cell of a sweep) -> (label, metric -> values)."""
    from credsim.audit import audit

    path, _, cell = spec.partition("::")
    p = Path(path)
    if (p / "sweep.json").exists():
        if not cell:
            cells = json.loads((p / "sweep.json").read_text())["cells"]
            raise CredsimError(
                f"{p} is a sweep: name a cell as {p}::CELL (cells: {', '.join(cells)})"
            )
        rows = pq.read_table(p / "metrics.parquet").to_pylist()
        vals: dict[str, list[float]] = {}
        for r in rows:
            if r["cell"] == cell:
                vals.setdefault(r["metric"], []).append(r["value"])
        if not vals:
            raise CredsimError(f"{p}: no cell {cell!r} in this sweep")
        return f"{p.name}::{cell}", vals
    flat = audit(p)["flat"]
    return p.name, {
        k: [float(v)]
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def diff(a: str, b: str) -> pa.Table:
    """Metric by metric: A, B, B - A, and a 95% interval of the difference (Welch) when both
    sides have several seeds. Same-seed cells of a sweep are paired, and the interval is then
    the paired one."""
    la, va = _side(a)
    lb, vb = _side(b)
    rows = []
    for m in sorted(set(va) & set(vb)):
        xa, xb = va[m], vb[m]
        sa, sb = _stats(xa), _stats(xb)
        d = sb["mean"] - sa["mean"]
        if len(xa) == len(xb) > 1:
            dd = _stats([y - x for x, y in zip(xa, xb, strict=True)])
            lo, hi = dd["ci_low"], dd["ci_high"]
        elif len(xa) > 1 and len(xb) > 1:
            se = math.sqrt(sa["sd"] ** 2 / len(xa) + sb["sd"] ** 2 / len(xb))
            df = max(1, min(len(xa), len(xb)) - 1)
            lo, hi = d - t95(df) * se, d + t95(df) * se
        else:
            lo = hi = math.nan
        rows.append(
            {
                "metric": m,
                "a": sa["mean"],
                "b": sb["mean"],
                "difference": d,
                "ci_low": lo,
                "ci_high": hi,
                "significant": bool(not math.isnan(lo) and (lo > 0 or hi < 0)),
            }
        )
    return pa.Table.from_pylist(rows, metadata={"a": la, "b": lb})


def format_diff(t: pa.Table, only_changed: bool = True, limit: int = 60) -> str:
    meta = t.schema.metadata or {}
    la, lb = (meta.get(k, b"?").decode() for k in (b"a", b"b"))
    lines = [
        f"A = {la}",
        f"B = {lb}",
        "",
        f"{'metric':<58} {'A':>12} {'B':>12} {'B - A':>12}  95% interval of B - A",
    ]
    shown = 0
    # headline metrics first, then the same metrics by group
    for r in sorted(t.to_pylist(), key=lambda r: ("[" in r["metric"], r["metric"])):
        if only_changed and r["difference"] == 0:
            continue
        ci = (
            ""
            if math.isnan(r["ci_low"])
            else f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]{' *' if r['significant'] else ''}"
        )
        lines.append(
            f"{r['metric'][:58]:<58} {r['a']:>12.4g} {r['b']:>12.4g} {r['difference']:>12.4g}  {ci}"
        )
        shown += 1
        if shown >= limit:
            lines.append(f"... {t.num_rows} metrics in all; see --csv")
            break
    lines.append("* the interval excludes 0")
    return "\n".join(lines)
