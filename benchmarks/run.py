"""Benchmarks: the reference model and suzhou at growing sizes; prints figures, asserts nothing.

    python benchmarks/run.py                 # 1e4, 1e5, 1e6 persons, 365 days
    python benchmarks/run.py --sizes 1e4,1e5,1e6,1e7,1.3e7
    python benchmarks/run.py --models reference --days 365

Each size runs in a fresh child process (``credsim run ... --quiet``), so peak memory is the
child's own maximum resident set (os.wait4). Prints wall time, person-days per second, records
per second, peak memory, and the scaling exponent of time over persons (least squares on
log-log). A run the memory budget refuses is reported as refused, with the budget's message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"reference": str(ROOT / "benchmarks" / "reference.yaml"), "suzhou": "suzhou"}


def one(model: str, persons: int, days: int, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "credsim.cli",
            "run",
            MODELS[model],
            "--population",
            str(persons),
            "--days",
            str(days),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--quiet",
            "--checkpoint-every",
            "0",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"model": model, "persons": persons, "refused": err.strip()[-300:]}
        m = json.loads((out / "manifest.json").read_text())
        records = int(m["counts"]["records"])
        return {
            "model": model,
            "persons": persons,
            "days": days,
            "wall_s": wall,
            "person_days_per_s": persons * days / wall,
            "records": records,
            "records_per_s": records / wall,
            "peak_gib": usage.ru_maxrss / 2**20,
            "timings": m["timings"],
        }


def exponent(rows: list[dict[str, object]]) -> float | None:
    pts = [
        (math.log(float(r["persons"])), math.log(float(r["wall_s"])))  # type: ignore[arg-type]
        for r in rows
        if "wall_s" in r and int(r["persons"]) >= 100_000
    ]  # type: ignore[call-overload]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="reference,suzhou")
    ap.add_argument("--sizes", default="1e4,1e5,1e6")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    print(f"credsim benchmarks on {os.cpu_count()} cores, {args.days} days")
    print(
        f"{'model':<10} {'persons':>11} {'wall s':>8} {'person-days/s':>14} "
        f"{'records':>11} {'records/s':>11} {'peak GiB':>9}"
    )
    for model in args.models.split(","):
        rows = []
        for n in sizes:
            r = one(model, n, args.days, args.seed)
            rows.append(r)
            if "refused" in r:
                print(f"{model:<10} {n:>11,} refused: {r['refused']}")
                continue
            peak = f"{r['peak_gib']:.2f}"
            print(
                f"{model:<10} {n:>11,} {r['wall_s']:>8.1f} {r['person_days_per_s']:>14,.0f} "
                f"{r['records']:>11,} {r['records_per_s']:>11,.0f} {peak:>9}",
                flush=True,
            )
        e = exponent(rows)
        if e is not None:
            print(f"{model:<10} scaling exponent of time over persons (>=1e5): {e:.2f}")
        slow = max((r for r in rows if "timings" in r), key=lambda r: r["persons"], default=None)
        if slow is not None:
            stages = sorted(slow["timings"].items(), key=lambda kv: -kv[1])[:5]  # type: ignore[union-attr]
            print(
                f"{model:<10} slowest stages at {slow['persons']:,}: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in stages)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
