"""credsim against Mesa on the reference model: throughput side by side, statistical equivalence.

    python benchmarks/mesa_reference.py [--persons 100000] [--mesa-days 20] [--seed 1] [--repeat 5]

The reference model (benchmarks/reference.yaml) is read with credsim's own loader and compiler,
then simulated three ways:

* credsim, in process, for 365 days: ``simulate`` (in memory), timed as a whole and its days
  alone, and ``run`` writing the run store to a temporary folder, timed as a whole, each the
  median of ``--repeat`` runs (the same seed: the same work; a shared machine's speed varies
  from second to second, which Mesa's long run averages out). The days alone are what Mesa's
  figure times: Mesa's agents are built before its clock starts, and it keeps counts, not a
  table of records (credsim's days still append every record to its ledger);
* Mesa 3 (``mesa.Model`` / ``mesa.Agent``, ``model.agents.shuffle_do("step")``): one agent per
  person holding its propensity, score, b0 count and listed flag; each agent-day draws, for each
  behaviour, a Poisson count with mean rate * p / 365 (by inversion with the model's stdlib RNG,
  the cheapest exact per-agent draw; ``--mesa-rng numpy`` uses ``model.rng.poisson`` per
  behaviour instead), detects each occurrence with the channel's probability, applies the points
  clamped to the score bounds and lists on the N-th detected b0 as credsim's ``by_items`` does
  (listed persons are not counted again; the list has no duration, so a listing is for good);
* mesa-frames (polars-backed agent set, vectorised day step), if it can be imported.

Mesa's cost per agent-day is constant (agents are independent, events are rare), so its
throughput is measured over a shorter horizon (``--mesa-days``) and the run then continues to a
full year for the statistics when that fits the time budget; otherwise the year is run on a
smaller population (``--mesa-year-persons``). What was done is printed.

Equivalence: detected records per behaviour per person-year against the analytic expectation
(rate x E[p] x detection, E[p] = shape x scale = 1), judged within max(1 %, 3 standard errors);
the standard error accounts for the Poisson noise and the spread of propensities
(Var = mu/t + Var[p] mu^2 per person, t years). Persons listed in the year against the exact
probability P(Poisson(rate_b0 x det_b0 x p) >= N) under the Gamma propensity (a negative
binomial), judged within max(3 %, 3 standard errors). Prints everything, asserts nothing; the
exit status is 1 if a check fails.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCHEME = ROOT / "benchmarks" / "reference.yaml"
YEAR = 365
LIST_NAME = "reference-black"
INSTALL_MESA = "pip install 'credsim[bench]', or python3 dev.py test, whose environment has it"
TARGET_RATIO = 300.0  # the issue's target: credsim's throughput at least 300 times Mesa's,
TARGET_PERSONS = 100_000  # on the side-by-side benchmark at 10^5 persons


# -- the model's numbers, from credsim's own compiler -------------------------------------------
@dataclass(frozen=True)
class RefParams:
    behaviours: list[str]
    rate: list[float]  # annual rate per behaviour (E[p] = 1)
    detect: list[float]  # detection probability of the behaviour's single channel
    points: list[float]  # points of the behaviour's item
    base: float
    lo: float
    hi: float
    list_behaviour: int  # the behaviour whose item the black list counts
    list_count: int  # listed on this many accepted records
    shape: float  # Gamma propensity
    scale: float

    @property
    def mean_p(self) -> float:
        return self.shape * self.scale

    @property
    def var_p(self) -> float:
        return self.shape * self.scale**2


def reference_params(path: Path = SCHEME) -> tuple[Any, RefParams]:
    """(LoadedScheme, parameters) of the reference model; refuses a model this script cannot
    reproduce (several channels, review, delays, list exits, ...)."""
    from credsim.schemes.compile import INC_ITEM, NO_LIMIT, compile_scheme
    from credsim.schemes.loader import load_scheme

    loaded = load_scheme(path)
    cs = compile_scheme(loaded.scheme)
    K = len(cs.behaviours)
    problems = []
    if len(cs.groups) != 1 or len(cs.traits) != 1 or (cs.trait_of != 0).any():
        problems.append("one group and one propensity expected")
    if sorted(cs.ch_behaviour.tolist()) != list(range(K)) or (cs.ch_delay != 0).any():
        problems.append("exactly one undelayed channel per behaviour expected")
    if cs.review or cs.appeals or cs.esc_item.shape[0] or cs.data_entry_error:
        problems.append("no review, appeals, escalations or data-entry errors expected")
    if cs.household_share or cs.friend_share or cs.recovery_days != NO_LIMIT:
        problems.append("no association or score recovery expected")
    if len(cs.lists) != 1 or cs.inc_kind[0] != INC_ITEM:
        problems.append("a single list by item expected")
    elif cs.duration[0] != NO_LIMIT or cs.clean_days[0] != NO_LIMIT or cs.perform_daily[0] > 0:
        problems.append("a list without exit rules expected")
    if len(cs.measures) or (cs.ch_fmr != 0).any() or (cs.ch_false_reports != 0).any():
        problems.append("no measures, false matches or false reports expected")
    prop = loaded.scheme.propensities[cs.traits[0]] if cs.traits else None
    if prop is None or prop.distribution != "gamma":
        problems.append("a Gamma propensity expected")
    if problems:
        raise SystemExit(f"{path}: not the reference model this script implements: {problems}")
    assert prop is not None
    chan = np.argsort(cs.ch_behaviour)  # channel of each behaviour
    item = int(cs.inc_item[0])
    return loaded, RefParams(
        behaviours=list(cs.behaviours),
        rate=[float(x) for x in cs.rate[:, 0]],
        detect=[float(cs.ch_detect[c]) for c in chan],
        points=[float(cs.points[i]) if i >= 0 else 0.0 for i in cs.behaviour_item],
        base=float(cs.base),
        lo=float(cs.lo),
        hi=float(cs.hi),
        list_behaviour=int(np.flatnonzero(cs.behaviour_item == item)[0]),
        list_count=int(cs.inc_count[0]),
        shape=float(prop.shape.value),  # type: ignore[union-attr]
        scale=float(prop.scale.value),  # type: ignore[union-attr]
    )


# -- Mesa ----------------------------------------------------------------------------------------
def _mesa_classes() -> tuple[type, type]:
    """The Mesa agent and model classes (defined lazily: Mesa is an optional dependency)."""
    import mesa

    class Person(mesa.Agent):  # type: ignore[misc]
        """One person: propensity, score, count of detected list-item records, listed flag."""

        def __init__(self, model: Any, p: float) -> None:
            super().__init__(model)
            prm: RefParams = model.params
            self.p = p
            self.lam = [r * p / YEAR for r in prm.rate]  # expected occurrences per day
            self.none = [math.exp(-x) for x in self.lam]  # P(no occurrence today)
            self.score = prm.base
            self.count = 0  # detected list-item records since the last listing (credsim's count)
            self.seen = 0  # all detected list-item records (for checks)
            self.listed = False
            self.listed_day = -1

        def step(self) -> None:
            m = self.model
            rand = m.random.random
            detect = m.params.detect
            numpy_rng = m.numpy_rng
            for k in range(len(self.lam)):
                if numpy_rng:
                    n = int(m.rng.poisson(self.lam[k]))
                else:
                    u = rand()
                    if u <= self.none[k]:
                        continue
                    n, p, s = 1, self.none[k] * self.lam[k], self.none[k]  # Poisson by inversion
                    s += p
                    while u > s and p > 0.0:
                        n += 1
                        p *= self.lam[k] / n
                        s += p
                for _ in range(n):
                    if rand() < detect[k]:
                        self.record(k)

        def record(self, k: int) -> None:
            """A detected behaviour: an accepted record, its points, the list rule."""
            m = self.model
            prm: RefParams = m.params
            m.records[k] += 1
            self.score = min(prm.hi, max(prm.lo, self.score + prm.points[k]))
            if k == prm.list_behaviour:
                self.seen += 1
                if not self.listed:
                    self.count += 1
                    if self.count >= prm.list_count:
                        self.count = 0
                        self.listed = True
                        self.listed_day = m.day
                        m.listings += 1

    class ReferenceModel(mesa.Model):  # type: ignore[misc]
        """The reference model in Mesa, all persons enrolled, one agent per person."""

        def __init__(self, params: RefParams, n: int, seed: int, numpy_rng: bool = False) -> None:
            super().__init__(rng=seed)
            self.params = params
            self.numpy_rng = numpy_rng
            self.day = 0
            self.records = [0] * len(params.behaviours)
            self.listings = 0
            for _ in range(n):
                Person(self, float(self.rng.gamma(params.shape, params.scale)))

        def step(self) -> None:
            self.day += 1
            self.agents.shuffle_do("step")

    return Person, ReferenceModel


def make_mesa_model(params: RefParams, n: int, seed: int, numpy_rng: bool = False) -> Any:
    return _mesa_classes()[1](params, n, seed, numpy_rng)


# -- mesa-frames ---------------------------------------------------------------------------------
def make_frames_model(params: RefParams, n: int, seed: int) -> Any:
    """The reference model in mesa-frames: the agents are a polars frame, a day is vectorised."""
    import polars as pl
    from mesa_frames import AgentSetPolars, ModelDF

    rate = np.asarray(params.rate) / YEAR
    detect = np.asarray(params.detect)
    lb = params.list_behaviour

    class People(AgentSetPolars):  # type: ignore[misc]
        def __init__(self, model: Any) -> None:
            super().__init__(model)
            self.add(
                pl.DataFrame(
                    {
                        "unique_id": np.arange(n, dtype=np.int64),
                        "p": model.random.gamma(params.shape, params.scale, n),
                        "score": np.full(n, params.base),
                        "count": np.zeros(n, np.int32),
                        "listed": np.zeros(n, bool),
                    }
                )
            )

        def step(self) -> None:
            m = self.model
            agents = cast(pl.DataFrame, self._agents)  # the frame behind ``self.agents``
            p = agents["p"].to_numpy()
            happened = m.random.poisson(np.outer(p, rate))
            det = m.random.binomial(happened, detect)
            m.records += det.sum(axis=0)
            cols = {f"d{k}": det[:, k] for k in range(det.shape[1])}
            score = pl.col("score")
            for k, pts in enumerate(params.points):  # record order: behaviour order, as credsim
                if pts:
                    score = (score + pl.col(f"d{k}") * pts).clip(params.lo, params.hi)
            reach = (pl.col("count") + pl.col(f"d{lb}")) >= params.list_count
            new = ~pl.col("listed") & reach
            df = agents.with_columns(**{k: pl.Series(v) for k, v in cols.items()})
            df = df.with_columns(
                score=score,
                count=pl.when(new)
                .then(0)
                .when(pl.col("listed"))
                .then(pl.col("count"))
                .otherwise(pl.col("count") + pl.col(f"d{lb}")),
                listed=pl.col("listed") | new,
                new=new,
            )
            m.listings += int(df["new"].sum())
            self.agents = df.drop([*cols, "new"])

    class FramesModel(ModelDF):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(seed)
            self.records = np.zeros(len(params.behaviours), np.int64)
            self.listings = 0
            self.people = People(self)
            self.agents += self.people

        def step(self) -> None:
            self.people.step()

    return FramesModel()


# -- measurements --------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Outcome:
    label: str
    persons: int
    days: int
    seconds: float
    records: list[int]
    listed: int
    note: str = ""

    @property
    def rate(self) -> float:
        return self.persons * self.days / self.seconds


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[len(ys) // 2] if len(ys) % 2 else (ys[len(ys) // 2 - 1] + ys[len(ys) // 2]) / 2


def run_credsim(
    loaded: Any, prm: RefParams, n: int, seed: int, repeat: int
) -> tuple[Outcome, Outcome, Outcome]:
    """credsim's three outcomes, each the median of ``repeat`` runs (the same seed, so the same
    work; a shared machine's speed varies from second to second, and Mesa's long run averages
    that out): the days alone (what Mesa's figure times: its agents are built before the clock
    starts and it builds no table), ``simulate`` as a whole (population, days, tables), and
    ``run`` writing the run store.

    ``simulate`` is timed in its three parts, called as ``simulate`` calls them."""
    from credsim._runner import advance, check, finish, prepare
    from credsim.api import run, simulate

    simulate(loaded, population=1000, days=2, seed=seed)  # load numba's cache outside the timing
    times, loops = [], []
    res = None
    for _ in range(repeat):
        res = None  # the run before let go first (its tables and state), as in the probe's runs
        gc.collect()
        t = time.perf_counter()
        p = prepare(check(loaded, n, YEAR, seed, None))
        t1 = time.perf_counter()
        advance(p, 1, progress=False)
        loops.append(time.perf_counter() - t1)
        res = finish(p)
        times.append(time.perf_counter() - t)
        del p
    assert res is not None
    sim_s = _median(times)
    beh = res.tables["records"].column("behaviour").to_pylist()
    recs = [0] * len(prm.behaviours)
    ix = {b: k for k, b in enumerate(prm.behaviours)}
    for b in beh:
        recs[ix[b]] += 1
    basis = set(res.tables["records"].column("basis").to_pylist())
    status = set(res.tables["records"].column("status").to_pylist())
    lists = res.tables["lists"].column("list").to_pylist()
    tm = res.manifest["timings"]
    note = (
        f"median of {repeat} (min {min(times):.2f}s, max {max(times):.2f}s); last: population "
        f"{tm['population']:.2f}s + days {loops[-1]:.2f}s + tables {tm['tables']:.2f}s; records "
        f"basis {sorted(basis)}, status {sorted(status)}"
    )
    mem = Outcome("credsim simulate()", n, YEAR, sim_s, recs, lists.count(LIST_NAME), note)
    note = (
        f"median of {repeat} (min {min(loops):.2f}s, max {max(loops):.2f}s): the 365 days of "
        "the runs above, population built before and tables after, as Mesa's timing"
    )
    days = Outcome("credsim days", n, YEAR, _median(loops), recs, mem.listed, note)
    del res, beh
    gc.collect()
    run_times = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = run(loaded, population=n, days=YEAR, seed=seed, out=Path(tmp) / f"run{i}")
            run_times.append(time.perf_counter() - t)
            write = res.manifest["timings"].get("write", float("nan"))
        del res
        gc.collect()
    run_s = _median(run_times)
    note = (
        f"median of {repeat} (min {min(run_times):.2f}s, max {max(run_times):.2f}s); "
        f"write {write:.2f}s"
    )
    full = Outcome("credsim run() + store", n, YEAR, run_s, recs, mem.listed, note)
    return days, mem, full


def _probe_serve(conn: Any, n: int, seed: int) -> None:
    """A process of its own that runs credsim's ``simulate`` whenever asked (a true message)
    and answers (seconds of the days alone, seconds of ``simulate`` as a whole)."""
    from credsim._runner import advance, check, finish, prepare
    from credsim.api import simulate
    from credsim.schemes.loader import load_scheme

    loaded = load_scheme(SCHEME)
    simulate(loaded, population=1000, days=2, seed=seed)  # load numba's cache outside the timing
    conn.send("ready")
    while conn.recv():
        gc.collect()
        t = time.perf_counter()
        p = prepare(check(loaded, n, YEAR, seed, None))
        t1 = time.perf_counter()
        advance(p, 1, progress=False)
        t2 = time.perf_counter()
        finish(p)
        conn.send((t2 - t1, time.perf_counter() - t))
        del p
    conn.close()


class Probe:
    """credsim runs between stretches of Mesa's run (:func:`run_mesa`), each in a process of
    its own (spawned: nothing of Mesa's model in its memory), so that each credsim run and the
    Mesa days around it see the machine at the same speed."""

    def __init__(self, n: int, seed: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_probe_serve, args=(child, n, seed), daemon=True)
        self._proc.start()
        child.close()
        self._conn.recv()  # ready

    def run(self) -> tuple[float, float]:
        self._conn.send(True)
        return cast(tuple[float, float], self._conn.recv())

    def close(self) -> None:
        self._conn.send(False)
        self._proc.join(30)


@dataclass
class Pairs:
    """Paired measurements (:func:`run_mesa`): for each credsim run, Mesa's seconds per
    agent-day over the stretches just before and just after it."""

    mesa_days: int  # days of a stretch
    ratios_days: list[float]  # credsim days / Mesa, per pair
    ratios_sim: list[float]  # credsim simulate() / Mesa, per pair

    @staticmethod
    def of(
        stretches: list[float],
        stretch_days: int,
        mesa_n: int,
        probes: list[tuple[float, float]],
        n: int,
    ) -> Pairs:
        """Probe i ran between stretches i and i + 1 (each ``stretch_days`` of Mesa days)."""
        rd, rs = [], []
        for i, (days_s, sim_s) in enumerate(probes):
            mesa = (stretches[i] + stretches[i + 1]) / (2 * stretch_days * mesa_n)  # s/agent-day
            rd.append(mesa / (days_s / (YEAR * n)))
            rs.append(mesa / (sim_s / (YEAR * n)))
        return Pairs(stretch_days, rd, rs)


def run_mesa(
    prm: RefParams, args: argparse.Namespace
) -> tuple[Outcome, Outcome, str, Pairs | None]:
    """(throughput run, year run, decision, paired ratios) of the Mesa model. With
    ``args.pairs``, the year run stops that many times between stretches of equal length
    for a credsim run in a process of its own (:class:`Probe`; Mesa's clock stopped
    meanwhile)."""
    gc.collect()
    r0 = rss_bytes()
    t = time.perf_counter()
    model = make_mesa_model(prm, args.persons, args.seed, args.mesa_rng == "numpy")
    build_s = time.perf_counter() - t
    per_agent = (rss_bytes() - r0) / args.persons
    t = time.perf_counter()
    for _ in range(args.mesa_days):
        model.step()
    secs = time.perf_counter() - t
    short = Outcome(
        f"Mesa ({args.mesa_rng} RNG)",
        args.persons,
        args.mesa_days,
        secs,
        list(model.records),
        model.listings,
        f"building {args.persons:,} agents {build_s:.1f}s; RSS {per_agent:.0f} bytes/agent",
    )
    rest = (YEAR - args.mesa_days) * secs / args.mesa_days
    if rest <= args.mesa_year_budget:
        decision = (
            f"the Mesa run at {args.persons:,} persons continues to day {YEAR} "
            f"(about {rest:.0f}s more, within the {args.mesa_year_budget:.0f}s budget)"
        )
        rest_s, pairs = _year_rest(model, args.persons, YEAR - args.mesa_days, args)
        year_s = secs + rest_s
        year = Outcome(
            "Mesa year",
            args.persons,
            YEAR,
            year_s,
            list(model.records),
            model.listings,
            f"the run above continued to day {YEAR}",
        )
    else:
        m = args.mesa_year_persons
        decision = (
            f"a full year at {args.persons:,} persons would take about {rest + secs:.0f}s "
            f"(budget {args.mesa_year_budget:.0f}s): the year is run at {m:,} persons instead"
        )
        del model
        gc.collect()
        model = make_mesa_model(prm, m, args.seed + 1, args.mesa_rng == "numpy")
        year_s, pairs = _year_rest(model, m, YEAR, args)
        year = Outcome("Mesa year", m, YEAR, year_s, list(model.records), model.listings)
    return short, year, decision, pairs


def _year_rest(
    model: Any, agents: int, days: int, args: argparse.Namespace
) -> tuple[float, Pairs | None]:
    """Step ``model`` (of ``agents`` agents) for ``days`` days: (Mesa's seconds, the pairs).
    With ``args.pairs`` > 0, the days go in ``pairs + 1`` equal stretches (the remainder
    first) with a credsim run between each two; else no pairs."""
    p = max(0, int(args.pairs))
    stretch = days // (p + 1) if p else 0
    if stretch < 1:
        t = time.perf_counter()
        for _ in range(days):
            model.step()
        return time.perf_counter() - t, None
    probe = Probe(args.persons, args.seed)
    total = 0.0
    stretches: list[float] = []
    probes: list[tuple[float, float]] = []
    try:
        t = time.perf_counter()
        for _ in range(days - stretch * (p + 1)):
            model.step()
        total += time.perf_counter() - t
        for i in range(p + 1):
            t = time.perf_counter()
            for _ in range(stretch):
                model.step()
            stretches.append(time.perf_counter() - t)
            if i < p:
                probes.append(probe.run())
    finally:
        probe.close()
    total += sum(stretches)
    return total, Pairs.of(stretches, stretch, agents, probes, args.persons)


def run_frames(prm: RefParams, args: argparse.Namespace) -> Outcome:
    gc.collect()
    r0 = rss_bytes()
    model = make_frames_model(prm, args.persons, args.seed + 2)
    per_agent = (rss_bytes() - r0) / args.persons
    t = time.perf_counter()
    for _ in range(args.frames_days):
        model.step()
    secs = time.perf_counter() - t
    return Outcome(
        "mesa-frames",
        args.persons,
        args.frames_days,
        secs,
        [int(x) for x in model.records],
        model.listings,
        f"RSS {per_agent:.0f} bytes/agent",
    )


# -- statistics ----------------------------------------------------------------------------------
def listed_probability(prm: RefParams, days: int) -> float:
    """P(at least N detected list-item records in ``days``) under the Gamma propensity: the count
    is negative binomial with r = shape and success probability 1 / (1 + scale x mean)."""
    k = prm.list_behaviour
    mu = prm.rate[k] * prm.detect[k] * days / YEAR
    r, q = prm.shape, 1.0 / (1.0 + prm.scale * mu)
    below = sum(
        math.exp(
            math.lgamma(r + j)
            - math.lgamma(r)
            - math.lgamma(j + 1)
            + r * math.log(q)
            + j * math.log1p(-q)
        )
        for j in range(prm.list_count)
    )
    return 1.0 - below


def judge(observed: float, expected: float, se: float, floor: float) -> tuple[float, float, bool]:
    """(relative difference, tolerance, pass) with tolerance max(floor, 3 s.e.), relative."""
    rel = observed / expected - 1.0
    tol = max(floor, 3.0 * se / expected)
    return rel, tol, abs(rel) <= tol


def rates_table(prm: RefParams, runs: list[Outcome]) -> bool:
    mus = [r * prm.mean_p * d for r, d in zip(prm.rate, prm.detect, strict=True)]
    names = [*prm.behaviours, "all"]
    mus.append(sum(mus))
    print(
        "\nDetected records per person-year: analytic = rate x E[p] x detection; "
        "tolerance = max(1%, 3 s.e.),"
    )
    print(
        f"s.e. of a t-year run: sqrt((mu/t + Var[p] mu^2) / persons), Var[p] = {prm.var_p:g} "
        "(Poisson noise and propensity spread); short runs are scaled to a year."
    )
    head = f"{'':>4} {'rate':>6} {'det':>4} {'analytic':>9}"
    for r in runs:
        head += f" | {r.label.split()[0]:>11} {'diff':>7} {'tol':>6} {'':4}"
    print(head)
    ok = True
    for k, name in enumerate(names):
        rate = f"{prm.rate[k]:>6g} {prm.detect[k]:>4g}" if k < len(prm.rate) else f"{'':>6} {'':>4}"
        line = f"{name:>4} {rate} {mus[k]:>9.4f}"
        for r in runs:
            t = r.days / YEAR
            recs = r.records[k] if k < len(prm.rate) else sum(r.records)
            obs = recs / (r.persons * t)
            se = math.sqrt((mus[k] / t + prm.var_p * mus[k] ** 2) / r.persons)
            rel, tol, good = judge(obs, mus[k], se, 0.01)
            ok &= good
            line += f" | {obs:>11.4f} {rel:>+7.2%} {tol:>6.1%} {'PASS' if good else 'FAIL'}"
        print(line)
    return ok


def listing_table(prm: RefParams, runs: list[Outcome]) -> bool:
    print(
        f"\nPersons listed ({prm.list_count}th detected {prm.behaviours[prm.list_behaviour]}, "
        "no exit) in the run: expected = persons x P(NegBin >= N); tolerance = max(3%, 3 s.e.)"
    )
    print(f"{'run':<24} {'persons':>9} {'days':>5} {'expected':>10} {'listed':>8} {'diff':>7}")
    ok = True
    for r in runs:
        pr = listed_probability(prm, r.days)
        exp = r.persons * pr
        se = math.sqrt(r.persons * pr * (1 - pr))
        row = f"{r.label:<24} {r.persons:>9,} {r.days:>5} {exp:>10.1f} {r.listed:>8,}"
        if exp < 5:
            print(f"{row}  not judged: fewer than 5 listings expected")
            continue
        rel, tol, good = judge(r.listed, exp, se, 0.03)
        ok &= good
        print(f"{row} {rel:>+7.2%}  tol {tol:.1%} {'PASS' if good else 'FAIL'}")
    return ok


def version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--mesa-days", type=int, default=20, help="Mesa throughput horizon")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--repeat", type=int, default=5, help="credsim runs timed; the median is reported"
    )
    ap.add_argument("--mesa-rng", choices=["python", "numpy"], default="python")
    ap.add_argument("--mesa-year-budget", type=float, default=180.0, help="seconds")
    ap.add_argument("--mesa-year-persons", type=int, default=20_000)
    ap.add_argument("--frames-days", type=int, default=YEAR)
    ap.add_argument(
        "--pairs",
        type=int,
        default=24,
        help="credsim runs interleaved with Mesa's year run, for paired ratios (0: none)",
    )
    args = ap.parse_args()
    args.mesa_days = max(1, min(args.mesa_days, YEAR))

    loaded, prm = reference_params()
    print(f"credsim vs Mesa, reference model ({SCHEME.relative_to(ROOT)}), {os.cpu_count()} cores")
    print(
        f"  {len(prm.behaviours)} behaviours, rates {prm.rate}, detection {prm.detect}, "
        f"points {prm.points}"
    )
    print(
        f"  score {prm.base:g} in [{prm.lo:g}, {prm.hi:g}]; listed on detected "
        f"{prm.behaviours[prm.list_behaviour]} #{prm.list_count}, no exit; "
        f"p ~ Gamma({prm.shape:g}, {prm.scale:g})"
    )
    mesa_v, frames_v = version("mesa"), version("mesa-frames")
    print(f"  numpy {np.__version__}, credsim {version('credsim')}, mesa {mesa_v}, ", end="")
    print(f"mesa-frames {frames_v}")

    print("\nRunning credsim (365 days, in process; numba cache warmed first) ...", flush=True)
    cs_days, cs_mem, cs_run = run_credsim(loaded, prm, args.persons, args.seed, max(1, args.repeat))
    timed: list[Outcome] = [cs_days, cs_mem, cs_run]
    stats_runs: list[Outcome] = [cs_mem]
    listing_runs: list[Outcome] = [cs_mem]

    mesa_short: Outcome | None = None
    mesa_year: Outcome | None = None
    pairs: Pairs | None = None
    if mesa_v is None:
        print(f"Mesa is not installed ({INSTALL_MESA}): Mesa runs skipped")
    else:
        print(f"Running Mesa ({args.mesa_days} days, then the year) ...", flush=True)
        mesa_short, mesa_year, decision, pairs = run_mesa(prm, args)
        print(f"  Mesa year run: {decision}")
        timed += [mesa_short, mesa_year]
        stats_runs.append(mesa_year)
        listing_runs.append(mesa_year)

    frames: Outcome | None = None
    if frames_v is None:
        print("mesa-frames is not installed (pip install mesa-frames): skipped")
    else:
        reqs = [r for r in md.requires("mesa-frames") or [] if "extra" not in r]
        print(f"Running mesa-frames {frames_v} (requires {reqs}) ...", flush=True)
        try:
            frames = run_frames(prm, args)
        except Exception as e:  # noqa: BLE001 - an incompatible alpha must not stop the benchmark
            print(f"  mesa-frames failed, skipped: {type(e).__name__}: {e}")
        else:
            timed.append(frames)
            stats_runs.append(frames)
            listing_runs.append(frames)

    print("\nThroughput (Mesa's cost per agent-day is constant: a short horizon measures it)")
    print(f"{'run':<24} {'persons':>9} {'days':>5} {'wall s':>8} {'person-days/s':>14}  notes")
    for r in timed:
        row = f"{r.label:<24} {r.persons:>9,} {r.days:>5} {r.seconds:>8.2f} {r.rate:>14,.0f}"
        print(f"{row}  {r.note}")
    if mesa_short is not None:
        print(
            f"credsim/Mesa throughput ratio: {cs_days.rate / mesa_short.rate:,.0f}x (days, "
            f"Mesa's scope), {cs_mem.rate / mesa_short.rate:,.0f}x (simulate: with population "
            f"and tables), {cs_run.rate / mesa_short.rate:,.0f}x (run with store)"
        )
        if mesa_year is not None and mesa_year.persons == mesa_short.persons:
            # the same model measured over the whole year: the machine's speed, which varies
            # from minute to minute, averaged over a longer time than the short run's
            print(
                f"  against Mesa's year run ({mesa_year.rate:,.0f} agent-days/s): "
                f"{cs_days.rate / mesa_year.rate:,.0f}x (days), "
                f"{cs_mem.rate / mesa_year.rate:,.0f}x (simulate), "
                f"{cs_run.rate / mesa_year.rate:,.0f}x (run with store)"
            )
    if pairs is not None and pairs.ratios_days:
        q = len(pairs.ratios_days)
        print(
            f"  paired ({q} credsim runs, each in a process of its own between two stretches of "
            f"{pairs.mesa_days} days of Mesa's year run, against Mesa's rate over those two "
            "stretches: the machine's speed, which changes from minute to minute, is then the "
            f"same for both): median {_median(pairs.ratios_days):,.0f}x (days; "
            f"{min(pairs.ratios_days):,.0f} to {max(pairs.ratios_days):,.0f}), "
            f"{_median(pairs.ratios_sim):,.0f}x (simulate; {min(pairs.ratios_sim):,.0f} to "
            f"{max(pairs.ratios_sim):,.0f})"
        )
        for scope, ratios in (
            ("the days (Mesa's scope)", pairs.ratios_days),
            ("simulate() as a whole", pairs.ratios_sim),
        ):
            verdict = "met" if _median(ratios) >= TARGET_RATIO else "NOT met"
            if args.persons != TARGET_PERSONS:
                verdict = f"(the target is judged at {TARGET_PERSONS:,} persons)"
            print(
                f"target: throughput >= {TARGET_RATIO:.0f}x Mesa's, {scope}: paired median "
                f"{_median(ratios):,.0f}x, {verdict}"
            )
    if mesa_v is None:
        print(f"target: throughput >= {TARGET_RATIO:.0f}x Mesa's: not measured ({INSTALL_MESA})")
    if frames is not None:
        print(
            f"credsim/mesa-frames throughput ratio: {cs_days.rate / frames.rate:,.1f}x (days), "
            f"{cs_mem.rate / frames.rate:,.1f}x (simulate), "
            f"{cs_run.rate / frames.rate:,.1f}x (run with store)"
        )

    ok = rates_table(prm, stats_runs)
    ok &= listing_table(prm, listing_runs)
    scope = "" if mesa_v is not None else " (credsim against the analytic expectation only)"
    print(f"\nEquivalence{scope}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
