"""The public API: load a scheme, run it over a synthetic population, keep or write the result.

``simulate`` runs in memory. ``run`` writes a run folder while the run goes on: the folder is
marked incomplete, the engine state is checkpointed every ``checkpoint_every`` days (by
default every 30 days once a minute of run time has passed since the last, none in a run
expected to take less than a minute), and the complete tables and manifest are committed at the
end (:mod:`credsim.store.runfolder`).
``resume`` continues an interrupted run from its last checkpoint and ends with the same tables as
an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from credsim._manifest import assumptions_of, provenance, record_labels, rules_of
from credsim._runner import LazyTables, RunResult, advance, check, finish, prepare
from credsim.engine import budget, checkpoint
from credsim.engine.shards import BLOCK_SIZE, Execution
from credsim.errors import CredsimError
from credsim.schemes.loader import LoadedScheme, load_scheme

__all__ = [
    "Execution",
    "RunResult",
    "simulate",
    "run",
    "resume",
    "assumptions_of",
    "provenance",
    "rules_of",
]
CHECKPOINT_EVERY = 30
CHECKPOINT_SECONDS = 60.0
"""By default a checkpoint is skipped when less than this many seconds of run time have passed
since the last one (or the start): a checkpoint waits for the records written so far, and a
one-minute run would otherwise spend a large part of its time checkpointing (1M-person
reference model: 10.2 to 11.0 s with a checkpoint every 30 days, 6.5 s without, eighteenth
speed session; 26 and 17.6 s when checkpoints needed segments). Only when checkpoints are taken
changes; never what the run computes."""
RECORD_SECONDS = 0.13e-6
"""Run time per expected record of a run written to a folder on the 2-core machine (reference
model, twenty-fifth speed session, without checkpoints: 4.3 s for 16.9M records at 1M persons,
21.2 s for 169M at 10M, 26.8 s for 220M at 13M; 0.4 us in the sixteenth session, 0.8 us when
first measured). By default a run expected to take less than :data:`CHECKPOINT_SECONDS` takes
no checkpoint and writes its records without waiting for the disk (a checkpointed run's
records are made durable as they are written: the 13M reference year 31.9 against 26.5 s);
killed, it starts again from day 0."""


def simulate(
    scheme: str | Path | LoadedScheme,
    population: int | None = None,
    days: int = 365,
    seed: int = 0,
    *,
    progress: bool = False,
    events: str | Path | None = None,
    scenarios: Sequence[str | Path] = (),
    overrides: Mapping[str, str] | None = None,
    execution: Execution | None = None,
) -> RunResult:
    """Run a scheme in memory and return its tables and manifest (nothing is written).

    ``events``: a CSV or Parquet file of hand-written case-study events to inject
    (:mod:`credsim.engine.events`). A file that cannot be used as a whole raises
    :class:`~credsim.errors.CredsimError` before anything runs; invalid rows are quarantined.
    The result then holds the tables ``events`` (accepted rows and their records) and
    ``quarantine`` (rejected rows and why), and ``manifest["events"]``.
    """
    loaded = (
        scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme, scenarios, overrides)
    )
    p = prepare(check(loaded, population, days, seed, events, execution))
    advance(p, 1, progress=progress)
    return finish(p)


def run(
    scheme: str | Path | LoadedScheme,
    population: int | None = None,
    days: int = 365,
    seed: int = 0,
    out: str | Path | None = None,
    *,
    progress: bool = False,
    events: str | Path | None = None,
    checkpoint_every: int | None = None,
    scenarios: Sequence[str | Path] = (),
    overrides: Mapping[str, str] | None = None,
    execution: Execution | None = None,
) -> RunResult:
    """Run a scheme and, when ``out`` is given, write the run folder (never overwriting).

    ``checkpoint_every``: save the engine state every so many simulated days (0: never), so that
    :func:`resume` can continue the run if the process dies. ``None`` (the default): every
    :data:`CHECKPOINT_EVERY` days, skipping any that would come less than
    :data:`CHECKPOINT_SECONDS` of run time after the last; none in a run expected to take less
    than that (:data:`RECORD_SECONDS`).
    """
    if out is None:
        return simulate(
            scheme,
            population,
            days,
            seed,
            progress=progress,
            events=events,
            scenarios=scenarios,
            overrides=overrides,
            execution=execution,
        )
    from credsim.store.runfolder import RunFolder

    if checkpoint_every is not None and checkpoint_every < 0:
        raise CredsimError(f"checkpoint_every must be 0 or more, got {checkpoint_every}")
    auto = checkpoint_every is None
    loaded = (
        scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme, scenarios, overrides)
    )
    req = check(loaded, population, days, seed, events, execution, streamed=True)
    if auto:
        long = budget.expected_records(req.cs, req.n, days) * RECORD_SECONDS >= CHECKPOINT_SECONDS
        checkpoint_every = CHECKPOINT_EVERY if long else 0
    params = {
        "scenarios": [dict(sc) for sc in loaded.scenarios if sc["id"] != "set"],
        "overrides": dict(overrides or {}),
        "scheme": {
            "id": loaded.scheme.id,
            "path": str(Path(loaded.path).absolute())
            if Path(loaded.path).exists()
            else loaded.path,
            "sha256": loaded.sha256,
        },
        "population": req.n,
        "days": days,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "checkpoint_seconds": CHECKPOINT_SECONDS if auto else 0.0,
        "block_size": req.execution.block_size,
        "events": None if events is None else str(Path(events).absolute()),
        "events_sha256": None if req.events is None else req.events.sha256,
    }
    folder = RunFolder.create(out, params)
    p = prepare(req)
    return _run_to_end(folder, p, 1, progress, [])


def resume(
    out: str | Path, *, progress: bool = False, execution: Execution | None = None
) -> RunResult:
    """Continue an interrupted run from its last checkpoint (or from the start if it had none).

    The scheme file and any events file must be unchanged (their sha256 is checked). The run
    keeps its block size; ``execution`` may choose other workers or another backend.
    """
    from credsim.store.runfolder import RunFolder

    folder = RunFolder.open_incomplete(out)
    prm: dict[str, Any] = folder.manifest["run"]
    scenarios = prm.get("scenarios") or []
    loaded = load_scheme(
        prm["scheme"]["path"], [sc["path"] for sc in scenarios], prm.get("overrides") or None
    )
    for was, now in zip(
        scenarios, [sc for sc in loaded.scenarios if sc["id"] != "set"], strict=True
    ):
        if was["sha256"] != now["sha256"]:
            raise CredsimError(
                f"{now['path']}: the scenario file changed since the run started; "
                "a resumed run must use the same scenarios"
            )
    if loaded.sha256 != prm["scheme"]["sha256"]:
        raise CredsimError(
            f"{loaded.path}: the scheme file changed since the run started "
            f"(sha256 {loaded.sha256[:12]}..., was {prm['scheme']['sha256'][:12]}...); "
            "a resumed run must use the same scheme"
        )
    ex = replace(execution or Execution(), block_size=int(prm.get("block_size", BLOCK_SIZE)))
    req = check(
        loaded, prm["population"], prm["days"], prm["seed"], prm.get("events"), ex, streamed=True
    )
    if req.events is not None and req.events.sha256 != prm.get("events_sha256"):
        raise CredsimError(f"{prm['events']}: the events file changed since the run started")
    resumed = list(folder.manifest.get("resumed_from", []))
    if not folder.has_checkpoint():
        p = prepare(req)
        resumed.append(0)
        return _run_to_end(folder, p, 1, progress, resumed)
    z, meta = checkpoint.load(folder.checkpoint_path)
    if meta.get("seed") != req.seed or meta.get("scheme_sha256") != loaded.sha256:
        raise CredsimError(f"{folder.checkpoint_path}: the checkpoint belongs to another run")
    p = prepare(req, fresh=False)
    checkpoint.restore(p.sim, z, int(meta.get("stream", {}).get("done", 0)))
    resumed.append(int(meta["day"]))
    folder.manifest["resumed_from"] = resumed
    return _run_to_end(folder, p, int(meta["day"]) + 1, progress, resumed, meta.get("stream"))


def _run_to_end(
    folder: Any,
    p: Any,
    first: int,
    progress: bool,
    resumed: list[int],
    streamed: dict[str, Any] | None = None,
) -> RunResult:
    from credsim.store import write_run
    from credsim.store.stream import FLUSH_ROWS, RecordStream, discard

    every = int(folder.manifest["run"].get("checkpoint_every") or 0)
    seconds = float(folder.manifest["run"].get("checkpoint_seconds") or 0.0)
    last = time.perf_counter()  # run time of the last checkpoint (or of the start)
    days = p.req.days
    meta = {"seed": p.req.seed, "scheme_sha256": p.req.loaded.sha256}
    basis = {  # what the ledger's genesis derives from, as the final manifest will give it
        "scheme": {"sha256": p.req.loaded.sha256},
        "seed": p.req.seed,
        "labels": record_labels(p.sim),
    }
    if streamed is None:
        discard(folder.path)  # leftovers of a run resumed from its start
    # batches of about a sixteenth of the records expected, so that a small run's records are
    # sealed and stored while it runs rather than after it (from 2^16 to 2^20 records)
    batch = budget.expected_records(p.req.cs, p.req.n, days) / 16
    flush = int(min(FLUSH_ROWS, max(FLUSH_ROWS >> 4, batch)))
    p.stream = RecordStream(
        p.sim,
        folder.path,
        basis,
        durable=every > 0,
        flush_rows=flush,
        resuming=streamed is not None,
    )
    if streamed is not None:
        t = time.perf_counter()
        try:
            p.stream.resume(streamed)
            p.sim.snap[:0] = p.stream.saved_snapshots(streamed)  # before those in the checkpoint
        except BaseException:
            p.stream.close()
            raise
        p.sim.timings["checkpoint"] += time.perf_counter() - t

    def after_day(day: int) -> None:
        nonlocal last
        p.stream.after_day(day)
        if every and day % every == 0 and day < days:
            t = time.perf_counter()
            if t - last < seconds:
                return
            state = {**meta, "stream": p.stream.checkpoint()}
            folder.checkpoint(lambda path: checkpoint.save(path, p.sim, day, state), day)
            last = time.perf_counter()
            p.sim.timings["checkpoint"] += last - t

    extra: dict[str, Any] = {"checkpoint_every": every, "checkpoint_seconds": seconds}
    if resumed:
        extra["resumed_from"] = resumed
    try:
        advance(p, first, progress=progress, after_day=after_day)
        result = finish(p, extra)
    except BaseException as exc:
        p.stream.close()  # its threads stopped, its partial files removed
        if isinstance(exc, OSError):  # writing records or tables as the run went on (full disk)
            raise folder.failed("the records and tables written as the run went on", exc) from None
        raise
    t = time.perf_counter()
    result.path = folder.commit(
        lambda path: write_run(path, result.tables, result.manifest, into_incomplete=True)
    )
    discard(result.path)
    result.tables = LazyTables(result.tables, result.path)
    result.manifest["timings"]["write"] = round(time.perf_counter() - t, 4)
    return result
