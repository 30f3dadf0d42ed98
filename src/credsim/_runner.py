"""Drive one run: check the request, build the simulation, advance it, collect the result.

Shared by :func:`credsim.simulate` (in memory), :func:`credsim.run` (writes a folder, with
checkpoints) and resuming an interrupted run. Everything that can be refused (bad parameters,
not enough memory, an unusable events file) is refused before anything is allocated or written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim._manifest import build_manifest
from credsim.engine import budget
from credsim.engine.behave import draw_traits
from credsim.engine.events import EventsFile, ImportedEvents, read_events_file, validate_events
from credsim.engine.output import all_tables
from credsim.engine.rng import Streams
from credsim.engine.shards import BACKENDS, Execution, make_runner
from credsim.engine.simulation import Simulation
from credsim.errors import CredsimError
from credsim.population import generate_population
from credsim.population.generate import organizations
from credsim.schemes.compile import Compiled, compile_scheme
from credsim.schemes.loader import LoadedScheme

MAX_DAYS = 36_500
MAX_PERSONS = 2**31 - 1 - 2**26  # entity ids are int32; room left for organisations


@dataclass
class RunResult:
    """A finished run: its tables, its manifest and, when written, its folder."""

    tables: Mapping[str, pa.Table]
    manifest: dict[str, Any]
    path: Path | None = None
    simulation: Simulation | None = field(default=None, repr=False)


class LazyTables(Mapping[str, pa.Table]):
    """The tables of a run written to a folder whose records were streamed out: the records
    are read from the folder when first asked for (they may not fit in memory)."""

    def __init__(self, tables: Mapping[str, Any], folder: Path) -> None:
        self._tables = dict(tables)
        self._folder = folder

    def __getitem__(self, name: str) -> pa.Table:
        t = self._tables[name]
        if not isinstance(t, pa.Table):  # streamed: read back from the run folder
            t = self._tables[name] = pq.read_table(self._folder / f"{name}.parquet")
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


@dataclass
class Request:
    """A checked request, with what could be refused already refused."""

    loaded: LoadedScheme
    cs: Compiled
    n: int
    days: int
    seed: int
    events: EventsFile | None
    execution: Execution = field(default_factory=Execution)
    t0: float = field(default_factory=time.perf_counter)


def check(
    loaded: LoadedScheme,
    population: int | None,
    days: int,
    seed: int,
    events: str | Path | None,
    execution: Execution | None = None,
    streamed: bool = False,
) -> Request:
    """``streamed``: the run writes a folder, its settled records leaving memory."""
    s = loaded.scheme
    n = int(s.population.size.value) if population is None else int(population)
    if not 1 <= n <= MAX_PERSONS:
        raise CredsimError(f"population must lie in [1, {MAX_PERSONS:,}], got {n:,}")
    if not 1 <= days <= MAX_DAYS:
        raise CredsimError(f"days must lie in [1, {MAX_DAYS}], got {days}")
    if not 0 <= seed < 2**63:
        raise CredsimError(f"seed must be a non-negative integer below 2**63, got {seed}")
    ex = execution or Execution()
    if ex.backend not in BACKENDS:
        raise CredsimError(f"backend must be one of {', '.join(BACKENDS)}, got {ex.backend!r}")
    for what, v in (("workers", ex.workers), ("shards", ex.shards), ("block size", ex.block_size)):
        if v is not None and int(v) < 1:
            raise CredsimError(f"{what} must be at least 1, got {v}")
    cs = compile_scheme(s)
    budget.check(cs, n, days, streamed)
    ev = read_events_file(events) if events is not None else None
    return Request(loaded, cs, n, days, seed, ev, ex)


@dataclass
class Prepared:
    req: Request
    sim: Simulation
    imported: ImportedEvents | None
    stream: Any = None
    """A :class:`~credsim.store.stream.RecordStream` when the records go to a folder as the
    run goes on."""


def prepare(req: Request, *, fresh: bool = True) -> Prepared:
    """Population, simulation and imported events. ``fresh``: also queue the events and set
    up day 0 (a resumed run gets both from its checkpoint instead)."""
    tp = time.perf_counter()
    s = req.loaded.scheme
    ex = req.execution
    threads = ex.n_workers() if ex.backend == "local" else 1  # (Ray's workers: not here)
    # on another thread: the propensities while the population is made (they depend on its
    # numbers of persons and organisations only), then the identity codes while the
    # simulation is set up (it reads none)
    with ThreadPoolExecutor(1, thread_name_prefix="credsim-aside") as helper:
        traits = None
        if threads > 1:
            orgs = organizations(s.population, req.n)
            draws = Streams(req.seed).get("traits")
            traits = helper.submit(draw_traits, req.cs, req.n, orgs, draws)
        pop = generate_population(
            s.population,
            req.n,
            Streams(req.seed).seed_sequence("population"),
            with_friends=req.cs.needs_friends,
            helper=helper if threads > 1 else None,
        )
        sim = Simulation(req.cs, pop, req.seed, ex.block_size, threads=threads, traits=traits)
        pop.complete()  # (should the simulation fail, leaving the block waits for the codes)
    # room for the records expected (and a margin), so that they are not copied as they grow
    sim.records.reserve(int(1.25 * budget.expected_records(req.cs, pop.n, req.days)) + 1024)
    sim.timings["population"] = time.perf_counter() - tp
    sim.behave.runner = make_runner(sim.behave, req.execution)
    imported = None
    if req.events is not None:
        te = time.perf_counter()
        imported = validate_events(req.events, pop, req.cs, req.days)
        if fresh:
            sim.inject(imported.batches)
        sim.timings["events"] = time.perf_counter() - te
    if fresh:
        sim.start()
    return Prepared(req, sim, imported)


def advance(
    p: Prepared, first: int, *, progress: bool, after_day: Callable[[int], None] | None = None
) -> None:
    """Run days ``first`` .. last, calling ``after_day(day)`` at the end of each."""
    days = p.req.days
    days_iter: Any = range(first, days + 1)
    if progress:
        from tqdm import tqdm

        days_iter = tqdm(
            days_iter,
            desc=f"{p.req.loaded.scheme.id} x {p.req.n:,}",
            unit="day",
            file=sys.stderr,
            dynamic_ncols=True,
            total=days,
            initial=first - 1,
        )
    p.sim.horizon = days
    try:
        for day in days_iter:
            p.sim.step(day)
            p.sim.snapshot_if_due(day, days)
            if after_day is not None:
                after_day(day)
    except BaseException:
        p.sim.close()  # no worker threads or Ray actors left behind (the caller closes a stream)
        raise


def finish(p: Prepared, extra: dict[str, Any] | None = None) -> RunResult:
    """Tables and manifest of a finished simulation."""
    sim, req = p.sim, p.req
    sim.close()
    tt = time.perf_counter()
    if p.stream is not None:
        streamed = p.stream.finish()
        accepted = p.imported.attach_ids(*p.stream.imports()) if p.imported else None
        tables: dict[str, Any] = all_tables(sim, records=False, written=p.stream.tables)
        tables["records"] = streamed
    else:
        accepted = p.imported.attach(sim.records) if p.imported is not None else None
        tables = all_tables(sim)
    if p.imported is not None and accepted is not None:
        tables["events"], tables["quarantine"] = accepted, p.imported.quarantine
    sim.timings["tables"] = time.perf_counter() - tt
    more: dict[str, Any] = dict(extra or {})
    if p.imported is not None:
        more["events"] = p.imported.manifest()
    more["counts"] = {name: t.num_rows for name, t in tables.items()}
    ex = req.execution
    more["block_size"] = ex.block_size  # part of the random structure, like the seed
    more["execution"] = {"backend": ex.backend, "workers": sim.behave.runner.workers}
    manifest = build_manifest(req.loaded, sim, req.n, req.days, req.seed, more)
    manifest["wall_seconds"] = round(time.perf_counter() - req.t0, 3)
    return RunResult(tables, manifest, None, sim)
