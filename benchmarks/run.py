"""Benchmarks: the reference model and suzhou at growing sizes; prints figures, asserts nothing.

    python benchmarks/run.py                 # 1e4, 1e5, 1e6 persons, 365 days
    python benchmarks/run.py --sizes 1e4,1e5,1e6,1e7,1.3e7
    python benchmarks/run.py --models reference --days 365
    python benchmarks/run.py --full          # the issue's sizes: 1e4 .. 1.3e7, and Mesa
    python benchmarks/run.py --weak 1e6      # weak scaling: 1e6 persons per worker, 1 and 2
    python benchmarks/run.py --mesa          # also the Mesa side by side (mesa_reference.py)

Each size runs in a fresh child process (``credsim run ... --quiet``). Its peak memory is the
larger of its own maximum resident set (os.wait4) and the most, polled every quarter second, of
its resident set plus the pages its own children hold privately (the process that draws days
ahead, :class:`MemoryWatch`). Prints wall time, person-days per second, records
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"reference": str(ROOT / "benchmarks" / "reference.yaml"), "suzhou": "suzhou"}


TARGET_WALL_S, TARGET_GIB, TARGET_EXPONENT, TARGET_SUZHOU_RATIO = 30.0, 6.0, 1.1, 2.0
FULL_SIZES = "1e4,1e5,1e6,1e7,1.3e7"


def one(
    model: str, persons: int, days: int, seed: int, workers: int | None = None
) -> dict[str, object]:
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
            *(["--workers", str(workers)] if workers else []),
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        watch = MemoryWatch(proc.pid)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        watch.stop()
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
            # the run's peak, or more: its resident memory and its children's own pages at once
            "peak_gib": max(usage.ru_maxrss * 1024, watch.peak) / 2**30,
            "timings": m["timings"],
        }


class MemoryWatch:
    """Polls a run's memory every quarter second: its resident set plus the pages its child
    processes hold of their own (the process drawing days ahead shares the run's arrays,
    copy-on-write; what it allocates or copies is its own). The run's own peak resident set
    (``ru_maxrss``) does not count those; Linux reports the largest of the processes.

    The children's own pages are read every second (the last figure counts in between):
    ``smaps_rollup`` walks a child's whole address space (10 ms of CPU at 13M persons, and the
    child's memory map locked meanwhile), which four times a second took 4% of a core from
    the run being measured; they change little from second to second."""

    CHILD_EVERY = 4
    """Polls between two readings of the children's own pages."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        polls, own = 0, 0
        while not self._done.wait(0.25):
            try:
                total = _kib(f"/proc/{self.pid}/status", ("VmRSS:",))
                if polls % self.CHILD_EVERY == 0:
                    kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
                    private = ("Private_Clean:", "Private_Dirty:")
                    own = sum(_kib(f"/proc/{kid}/smaps_rollup", private) for kid in kids)
            except OSError:  # not Linux, or the process is ending
                continue
            finally:
                polls += 1
            self.peak = max(self.peak, (total + own) * 1024)


def _kib(path: str, keys: tuple[str, ...]) -> int:
    """The sum of the ``kB`` fields ``keys`` of a /proc file (0 if it is gone)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in lines if line.startswith(keys))


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


def weak(persons_per_worker: int, days: int, seed: int, max_workers: int) -> None:
    """Fixed persons per worker, 1 .. max_workers workers: ideal weak scaling keeps time flat."""
    print(f"weak scaling: reference model, {persons_per_worker:,} persons per worker, {days} days")
    base = None
    for w in range(1, max_workers + 1):
        r = one("reference", persons_per_worker * w, days, seed, workers=w)
        if "refused" in r:
            print(f"  {w} worker(s): refused: {r['refused']}")
            continue
        t = float(r["wall_s"])  # type: ignore[arg-type]
        base = base or t
        behave = float(r["timings"].get("behave", 0.0))  # type: ignore[union-attr]
        print(
            f"  {w} worker(s) {persons_per_worker * w:>12,} persons {t:8.1f} s "
            f"(behave {behave:.1f} s)  efficiency {base / t:.2f}  "
            f"peak {float(r['peak_gib']):.2f} GiB",  # type: ignore[arg-type]
            flush=True,
        )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(results: dict[str, list[dict[str, object]]]) -> None:
    """The issue's targets against what was measured."""
    ref = {int(r["persons"]): r for r in results.get("reference", []) if "wall_s" in r}  # type: ignore[call-overload]
    suz = {int(r["persons"]): r for r in results.get("suzhou", []) if "wall_s" in r}  # type: ignore[call-overload]
    print("targets:")
    big = ref.get(13_000_000)
    if big is None:
        print("  reference 13,000,000 x 365: not measured (or refused) - target NOT met")
    else:
        t, g = float(big["wall_s"]), float(big["peak_gib"])  # type: ignore[arg-type]
        ok = t <= TARGET_WALL_S and g <= TARGET_GIB
        print(
            f"  reference 13,000,000 x 365: {t:.1f} s, {g:.2f} GiB "
            f"(target <= {TARGET_WALL_S:.0f} s, <= {TARGET_GIB:.0f} GiB): {_met(ok)}"
        )
    full = max(suz, default=None)
    if full is not None and full in ref:
        ratio = float(suz[full]["wall_s"]) / float(ref[full]["wall_s"])  # type: ignore[arg-type]
        print(
            f"  suzhou / reference time at {full:,}: {ratio:.2f} "
            f"(target <= {TARGET_SUZHOU_RATIO:.0f}): {_met(ratio <= TARGET_SUZHOU_RATIO)}"
        )
    for model, rows in results.items():
        e = exponent(rows)
        if e is not None:
            print(
                f"  {model} scaling exponent: {e:.2f} (target <= {TARGET_EXPONENT}): "
                f"{_met(e <= TARGET_EXPONENT)}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="reference,suzhou")
    ap.add_argument("--sizes", default="1e4,1e5,1e6")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="default: all local cores")
    ap.add_argument("--full", action="store_true", help=f"sizes {FULL_SIZES}, and --mesa")
    ap.add_argument("--mesa", action="store_true", help="also run mesa_reference.py")
    ap.add_argument("--weak", type=float, default=None, metavar="P", help="weak scaling only")
    args = ap.parse_args()
    if args.weak:
        weak(int(args.weak), args.days, args.seed, os.cpu_count() or 1)
        return 0
    sizes = [int(float(x)) for x in (FULL_SIZES if args.full else args.sizes).split(",")]
    results: dict[str, list[dict[str, object]]] = {}
    print(f"credsim benchmarks on {os.cpu_count()} cores, {args.days} days")
    print(
        f"{'model':<10} {'persons':>11} {'wall s':>8} {'person-days/s':>14} "
        f"{'records':>11} {'records/s':>11} {'peak GiB':>9}"
    )
    for model in args.models.split(","):
        rows = results.setdefault(model, [])
        for n in sizes:
            r = one(model, n, args.days, args.seed, args.workers)
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
    targets(results)
    if args.mesa or args.full:
        print(flush=True)
        mesa = [sys.executable, str(ROOT / "benchmarks" / "mesa_reference.py")]
        return subprocess.call(mesa, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
