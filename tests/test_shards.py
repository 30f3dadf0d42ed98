"""Blocks, shards and parallel execution: the result does not depend on who computes it.

Expectations are invariants: blocks hold whole households of one district; the alias tables
give each entity exactly its share of the weight; the day's behaviours and every table of a
whole run are the same bytes for 1 worker, N workers, any shard count and the Ray backend.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import threading
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.core.compiler_lock import global_compiler_lock

from credsim import _libc as libc
from credsim.api import run, simulate
from credsim.engine import ahead as ahead_module
from credsim.engine.ahead import Ahead, AheadProcess
from credsim.engine.behave import Behaviour, draw_traits
from credsim.engine.shards import (
    Execution,
    LocalRunner,
    counting_order,
    pack_alias,
    partition,
    segment_alias,
)
from credsim.engine.simulation import Simulation
from credsim.errors import CredsimError
from credsim.population import generate_population
from credsim.schemes.compile import compile_scheme
from credsim.schemes.loader import bundled_ids, load_scheme

MAX_HOUSEHOLD = 8


@pytest.fixture(autouse=True)
def threads_even_for_small_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small days are drawn in one thread (SERIAL_BELOW); here shards always go to threads,
    so that the parallel path is the one compared."""
    monkeypatch.setattr("credsim.engine.shards.SERIAL_BELOW", 0)


def _population(scheme: str, n: int, seed: int = 3):  # noqa: ANN202
    loaded = load_scheme(scheme)
    cs = compile_scheme(loaded.scheme)
    pop = generate_population(
        loaded.scheme.population,
        n,
        np.random.SeedSequence(seed),
        with_friends=cs.needs_friends,
    )
    return cs, pop


@pytest.mark.parametrize("block_size", [1, 40, 500, 10**6])
def test_blocks_hold_whole_households_of_one_district(block_size: int) -> None:
    cs, pop = _population("suzhou", 3000)
    bl = partition(pop, len(cs.groups), block_size)
    assert np.array_equal(np.sort(bl.order), np.arange(pop.n))  # every entity once
    # members of a household share a block; a block lies in one district
    hh = pop.household[: pop.n_persons]
    first = pop.hh_start[hh]
    assert np.array_equal(bl.block[: pop.n_persons], bl.block[first])
    for b in range(bl.n_blocks):
        members = np.flatnonzero(bl.block == b)
        assert members.shape[0] > 0
        assert np.unique(pop.district[members]).shape[0] == 1
        assert np.unique(pop.kind[members]).shape[0] == 1  # persons and organisations apart
        assert members.shape[0] <= max(block_size, 1) + MAX_HOUSEHOLD - 1
    # segments: (block, group) cells in order
    G1 = bl.n_groups
    for b in range(bl.n_blocks):
        for g in range(G1):
            ents = bl.order[bl.seg[b * G1 + g] : bl.seg[b * G1 + g + 1]]
            assert (bl.block[ents] == b).all()


def test_shards_are_contiguous_balanced_block_ranges() -> None:
    cs, pop = _population("suzhou", 5000)
    bl = partition(pop, len(cs.groups), 200)
    for n in (1, 2, 3, 7, bl.n_blocks, bl.n_blocks + 5):
        ranges = bl.shards(n)
        assert ranges[0][0] == 0 and ranges[-1][1] == bl.n_blocks
        assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))
        assert len(ranges) == min(n, bl.n_blocks)
    sizes = [int(bl.seg[b1 * bl.n_groups] - bl.seg[b0 * bl.n_groups]) for b0, b1 in bl.shards(2)]
    assert abs(sizes[0] - sizes[1]) < 0.2 * sum(sizes)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(0, 50, allow_nan=False), min_size=0, max_size=30),
        min_size=1,
        max_size=5,
    )
)
def test_alias_tables_give_each_position_its_share(segments: list[list[float]]) -> None:
    w = np.array([x for s in segments for x in s], np.float64)
    seg = np.concatenate(([0], np.cumsum([len(s) for s in segments]))).astype(np.int64)
    prob, alias, total = segment_alias(w, seg)
    for s in range(len(segments)):
        a, e = seg[s], seg[s + 1]
        assert total[s] == pytest.approx(w[a:e].sum())
        if e == a or total[s] <= 0:
            continue
        n = e - a
        # P(position j) = (prob[j] + sum of (1 - prob[i]) over i whose alias is j) / n
        p = prob[a:e].copy()
        np.add.at(p, alias[a:e] - a, 1.0 - prob[a:e])
        assert (alias[a:e] >= a).all() and (alias[a:e] < e).all()
        np.testing.assert_allclose(p / n, w[a:e] / total[s], atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    prob=st.lists(
        st.one_of(
            st.floats(0, 1, allow_nan=False),
            st.integers(0, 2**32).map(lambda t: t / 2**32),  # thresholds exactly on a coin
            st.sampled_from([0.0, 1.0, np.nextafter(1.0, 0.0), 2.0**-33, 1 - 2.0**-33]),
        ),
        min_size=1,
        max_size=8,
    ),
    coins=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8),
)
def test_packed_alias_entries_decide_as_the_probabilities(
    prob: list[float], coins: list[int]
) -> None:
    """For the coin's 32 bits m: m / 2**32 < p exactly when m < the packed threshold (the
    float comparison the kernel made before); the entry names the entity and its alias's."""
    m = len(prob)
    p = np.array([prob])
    alias = np.array([np.arange(m)[::-1]], np.int32)
    order = (np.arange(m, dtype=np.int32) * 7 + 3)[::-1].copy()
    table = pack_alias(p, alias, order)
    for j in range(m):
        thr, ids = int(table[0, j, 0]), int(table[0, j, 1])
        assert ids & 0xFFFFFFFF == order[j] and ids >> 32 == order[alias[0, j]]
        for c in [*coins, 0, 2**32 - 1, min(thr, 2**32 - 1), max(thr - 1, 0)]:
            assert (c < thr) == (float(c) * (1.0 / 4294967296.0) < prob[j])


def _behaviour(scheme: str, n: int, block_size: int) -> Behaviour:
    cs, pop = _population(scheme, n)
    traits = draw_traits(cs, pop.n_persons, pop.n_orgs, np.random.default_rng(1))
    return Behaviour(cs, pop, traits, block_size)


def test_a_day_is_the_same_for_any_shards_and_workers_with_measures_in_force() -> None:
    b = _behaviour("court-defaulters", 4000, 150)
    assert b.blocks.n_blocks > 10
    k = int(np.argmax(b.lam.sum(axis=(1, 2))))
    b.multiplier = {k: np.where(np.arange(b.table.shape[1]) % 3 == 0, 0.0, 0.5)}
    days = []
    for workers, shards in ((1, 1), (1, 4), (2, 2), (2, 9), (2, b.blocks.n_blocks)):
        b.runner = LocalRunner(b, workers, shards)
        b.events[:] = 0
        b.blocked[:] = 0
        out = [b.day(np.random.default_rng(d), np.random.default_rng(100 + d)) for d in range(5)]
        b.runner.close()
        days.append((out, b.events.copy(), b.blocked.copy()))
    first = days[0]
    assert first[2][k] > 0  # the multiplier did thin
    for other in days[1:]:
        for (w0, k0), (w1, k1) in zip(first[0], other[0], strict=True):
            assert np.array_equal(w0, w1) and np.array_equal(k0, k1)
        assert np.array_equal(first[1], other[1]) and np.array_equal(first[2], other[2])


def test_actors_are_drawn_in_proportion_to_their_propensity() -> None:
    """Over many days each entity's count of a behaviour is about rate x trait x days."""
    b = _behaviour("suzhou", 2000, 97)
    k = int(np.argmax(b.lam.sum(axis=(1, 2))))
    days = 400
    counts = np.zeros(b.table.shape[1])
    rng = np.random.default_rng(5)
    for _ in range(days):
        who, kind = b.day(rng)
        counts += np.bincount(who[kind == k], minlength=counts.shape[0])
    # the expected count per entity from the cell rates: lam of the cell x entity's share
    bl = b.blocks
    expected = np.zeros_like(counts)
    for cell in range(bl.n_blocks * bl.n_groups):
        a, e = bl.seg[cell], bl.seg[cell + 1]
        if e == a:
            continue
        # each position: its entity with the coin's odds, else its alias's entity
        entry = b.table[b.key_row[k], a:e]
        accept = entry[:, 0].astype(np.float64) / 2**32
        hit = (entry[:, 1] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        miss = (entry[:, 1] >> np.uint64(32)).astype(np.int64)
        assert set(hit.tolist()) == set(bl.order[a:e].tolist())  # the cell's entities
        assert set(miss.tolist()) <= set(hit.tolist())
        share = np.zeros(counts.shape[0])
        np.add.at(share, hit, accept)
        np.add.at(share, miss, 1.0 - accept)
        lam = b.lam[k].reshape(-1)[cell]
        expected += lam * days * share / (e - a)
    total = counts.sum()
    assert total == pytest.approx(expected.sum(), rel=4 / np.sqrt(expected.sum()))
    # by decile of expected count, the observed mean tracks the expectation
    q = np.quantile(expected, np.linspace(0, 1, 11))
    for lo, hi in zip(q[:-1], q[1:], strict=True):
        sel = (expected >= lo) & (expected <= hi)
        m = expected[sel].sum()
        if m > 100:
            assert counts[sel].sum() == pytest.approx(m, rel=5 / np.sqrt(m))


def _tables_equal(a: dict, b: dict) -> None:  # noqa: ANN001
    assert set(a) == set(b)
    for name in a:
        assert a[name].equals(b[name]), name


def test_a_whole_run_is_the_same_for_any_workers_and_shards() -> None:
    common = dict(population=3000, days=60, seed=11)
    ref = simulate("suzhou", execution=Execution(workers=1, block_size=200), **common)
    other = simulate("suzhou", execution=Execution(workers=2, shards=5, block_size=200), **common)
    _tables_equal(ref.tables, other.tables)
    assert ref.manifest["behaviour_events"] == other.manifest["behaviour_events"]
    assert ref.manifest["execution"] == {"backend": "local", "workers": 1}
    assert other.manifest["execution"] == {"backend": "local", "workers": 2}
    assert ref.manifest["block_size"] == 200
    # the block size is part of the random structure: another one draws differently
    third = simulate("suzhou", execution=Execution(workers=1, block_size=150), **common)
    assert not third.tables["records"].equals(ref.tables["records"])


@pytest.mark.parametrize("where", ["process", "thread"])
@pytest.mark.parametrize(
    ("scheme", "ahead"),
    [
        ("nanjing", True),  # review, delays, spill-over, escalation: the rates never change
        ("court-defaulters", False),  # a listing bans flights and trains: rates change
    ],
)
def test_drawing_days_ahead_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, scheme: str, ahead: bool, where: str
) -> None:
    common = dict(population=3000, days=60, seed=5, scenarios=["appeal"])
    common["execution"] = Execution(workers=2)  # one worker: one core, nothing drawn ahead
    monkeypatch.setattr(ahead_module, "AHEAD_MIN_CANDIDATES", 0)  # a small run
    if where == "thread":  # where a process cannot be forked
        monkeypatch.setattr(ahead_module, "can_fork", lambda: False)
    threads: list[str] = []
    observed = Simulation._observed

    def spy(self: Simulation, day: int):  # noqa: ANN202
        threads.append(threading.current_thread().name)  # in this process only
        return observed(self, day)

    monkeypatch.setattr(Simulation, "_observed", spy)
    drawn_ahead = simulate(scheme, **common)  # type: ignore[arg-type]
    sim = drawn_ahead.simulation
    assert sim.behave.independent is ahead  # type: ignore[union-attr]
    # every day but the first is drawn ahead, exactly when nothing the run changes feeds back
    # into the rates; in a process, this process draws the first day only
    drawer = sim._ahead  # type: ignore[union-attr]
    if not ahead:
        assert drawer is None and len(threads) == 60
    elif where == "process":
        assert isinstance(drawer, AheadProcess) and drawer.delivered == 59
        assert threads == ["MainThread"] and not drawer.alive
        assert drawer.wait_closed(30)  # the child has been reaped
    else:
        assert isinstance(drawer, Ahead) and len(threads) == 60
        assert sum(t.startswith("credsim-ahead") for t in threads) == 59
    threads.clear()
    one_core = simulate(scheme, **{**common, "execution": Execution(workers=1)})  # type: ignore[arg-type]
    assert len(threads) == 60 and not [t for t in threads if t.startswith("credsim-ahead")]
    _tables_equal(drawn_ahead.tables, one_core.tables)
    monkeypatch.setattr(Simulation, "_ahead_of", lambda self, day: None)
    in_turn = simulate(scheme, **common)  # type: ignore[arg-type]
    _tables_equal(drawn_ahead.tables, in_turn.tables)
    assert drawn_ahead.manifest["behaviour_events"] == in_turn.manifest["behaviour_events"]
    assert not [t for t in threading.enumerate() if t.name.startswith("credsim-ahead")]


@pytest.mark.skipif(not ahead_module.can_fork(), reason="a process is forked on Linux only")
@pytest.mark.parametrize("scheme", bundled_ids())
def test_the_days_drawn_ahead_never_read_the_runs_outcome(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """The process drawing days ahead is forked without the run's outcome arrays
    (Simulation._outcome: scores, listings, records, ...; every one of them here, however
    small): a child reading any of them would crash. Each bundled scheme whose days are drawn
    ahead gives the tables of its days drawn in turn."""
    monkeypatch.setattr(libc, "MIN_PRIVATE_BYTES", 0)
    monkeypatch.setattr(ahead_module, "AHEAD_MIN_CANDIDATES", 0)
    common = dict(population=2000, days=40, seed=3, execution=Execution(workers=2))
    drawn_ahead = simulate(scheme, **common)  # type: ignore[arg-type]
    drawer = drawn_ahead.simulation._ahead  # type: ignore[union-attr]
    if drawer is None:
        assert not drawn_ahead.simulation.behave.independent  # type: ignore[union-attr]
        return
    assert isinstance(drawer, AheadProcess) and drawer.delivered == 39
    monkeypatch.setattr(Simulation, "_ahead_of", lambda self, day: None)
    _tables_equal(drawn_ahead.tables, simulate(scheme, **common).tables)  # type: ignore[arg-type]


@pytest.mark.skipif(not ahead_module.can_fork(), reason="fork: Linux only")
def test_a_child_forked_within_not_inherited_has_no_pages_of_those_arrays() -> None:
    big = np.arange(1 << 18, dtype=np.int64)  # 2 MB
    small = np.arange(1000, dtype=np.int64)  # below MIN_PRIVATE_BYTES: shared as ever

    def child_reads(a: np.ndarray) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                faulthandler.disable()  # (pytest's: it would print the crash expected here)
                os._exit(int(a[a.shape[0] // 2]) % 7)  # a page in the middle
            finally:
                os._exit(99)
        return os.waitpid(pid, 0)[1]

    with libc.not_inherited([big, small]):
        status = child_reads(big)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
        assert os.WEXITSTATUS(child_reads(small)) == 500 % 7
    assert os.WEXITSTATUS(child_reads(big)) == (1 << 17) % 7  # forks as before again
    big[0] = 5  # and this process keeps its pages
    assert big[0] == 5 and big[-1] == (1 << 18) - 1


def test_a_small_run_draws_its_days_in_turn() -> None:
    """Handing a day over costs more than drawing a small one: below
    :data:`AHEAD_MIN_CANDIDATES` candidates a day nothing is drawn ahead."""
    small = simulate("nanjing", population=3000, days=5, seed=1, execution=Execution(workers=2))
    sim = small.simulation
    assert sim is not None and sim.behave.lam.sum() < ahead_module.AHEAD_MIN_CANDIDATES
    assert sim._ahead is None


def test_days_too_large_for_their_slot_come_through_the_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A day drawn ahead whose arrays exceed its shared slot is sent whole instead: the same
    run."""
    common = dict(population=3000, days=30, seed=2, execution=Execution(workers=2))
    monkeypatch.setattr(ahead_module, "AHEAD_MIN_CANDIDATES", 0)
    whole = simulate("nanjing", **common)  # type: ignore[arg-type]
    monkeypatch.setattr(ahead_module, "MIN_SLOT", 4096)
    monkeypatch.setattr(ahead_module, "AHEAD_BYTES", 0)  # slots of 4 KiB: days overflow
    piped = simulate("nanjing", **common)  # type: ignore[arg-type]
    assert piped.simulation._ahead.delivered == 29  # type: ignore[union-attr]
    _tables_equal(whole.tables, piped.tables)


def _compile_in_the_child(day: int) -> int:
    """A kernel of the child's own: compiling it takes Numba's compiler lock in the child."""
    return int(numba.njit(lambda x: x + 1)(day))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the days ahead are drawn on a thread")
def test_a_fork_while_another_thread_compiles_leaves_the_child_free_to_compile() -> None:
    """Another thread of the run (the tables', the sealing one) may hold Numba's compiler lock
    when the process drawing ahead is forked; the fork waits for it, else the child would
    wait forever for a lock its owner's thread did not come along to release."""
    held, go = threading.Event(), threading.Event()

    def compile_elsewhere() -> None:
        with global_compiler_lock:
            held.set()
            go.wait(5)

    other = threading.Thread(target=compile_elsewhere)
    other.start()
    held.wait(5)
    threading.Timer(0.3, go.set).start()  # the lock is let go while the fork waits for it
    drawer = AheadProcess(_compile_in_the_child, slot_bytes=4096, depth=1)
    try:
        drawer.start(41)
        assert drawer._conn is not None and drawer._conn.poll(60), "the child never answered"
        assert drawer.take(41) == 42
    finally:
        drawer.close()
        other.join()


def test_days_are_drawn_in_turn_when_no_process_can_be_forked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = dict(population=3000, days=20, seed=4, execution=Execution(workers=2))
    monkeypatch.setattr(ahead_module, "AHEAD_MIN_CANDIDATES", 0)
    drawn = simulate("suzhou", **common)  # type: ignore[arg-type]

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(ahead_module.os, "fork", no_fork)
    in_turn = simulate("suzhou", **common)  # type: ignore[arg-type]
    drawer = in_turn.simulation._ahead  # type: ignore[union-attr]
    assert isinstance(drawer, AheadProcess) and drawer.delivered == 0
    assert drawer.unavailable is not None and "BlockingIOError" in drawer.unavailable
    _tables_equal(drawn.tables, in_turn.tables)


def test_an_error_drawing_ahead_is_raised_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = os.getpid()
    observed = Simulation._observed

    def failing(self: Simulation, day: int):  # noqa: ANN202
        if os.getpid() != parent and day == 5:
            raise ValueError("no behaviours today")
        return observed(self, day)

    monkeypatch.setattr(Simulation, "_observed", failing)
    monkeypatch.setattr(ahead_module, "AHEAD_MIN_CANDIDATES", 0)
    drawers: list = []
    made = ahead_module.drawer

    def kept(*args):  # noqa: ANN002, ANN202
        drawers.append(made(*args))
        return drawers[-1]

    monkeypatch.setattr(ahead_module, "drawer", kept)
    with pytest.raises(RuntimeError, match="day 5") as err:
        simulate("suzhou", population=2000, days=20, seed=1, execution=Execution(workers=2))
    assert "ValueError: no behaviours today" in str(err.value)  # the child's traceback
    assert len(drawers) == 1 and not drawers[0].alive
    assert drawers[0].wait_closed(30)  # no child is left behind, not even a zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(drawers[0].pid_was, os.WNOHANG)


def _same_content(a: Path | None, b: Path | None) -> None:
    """Same table digests and ledger head (the manifest digest differs: timings, workers)."""
    assert a is not None and b is not None
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["table_digests"] == mb["table_digests"] and ma["ledger"] == mb["ledger"]
    assert ma["ledger"]["records"] > 100  # something to compare


def test_run_folders_have_the_same_content_hash_for_one_and_many_workers(tmp_path) -> None:  # noqa: ANN001
    common = dict(population=2000, days=40, seed=4, checkpoint_every=0)
    a = run("suzhou", out=tmp_path / "a", execution=Execution(workers=1, block_size=100), **common)
    b = run(
        "suzhou",
        out=tmp_path / "b",
        execution=Execution(workers=2, shards=7, block_size=100),
        **common,
    )
    _same_content(a.path, b.path)


@pytest.fixture(scope="module")
def ray_runtime():  # noqa: ANN201
    """One local Ray runtime for the module's tests (a runner leaves a runtime it did not
    start running)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_backend_gives_the_same_tables_and_hash(tmp_path, ray_runtime) -> None:  # noqa: ANN001
    common = dict(population=2500, days=45, seed=8, checkpoint_every=0)
    ex = Execution(workers=1, block_size=120)
    a = run("suzhou", out=tmp_path / "a", execution=ex, **common)
    ray_ex = Execution(workers=2, shards=3, backend="ray", block_size=120)
    b = run("suzhou", out=tmp_path / "b", execution=ray_ex, **common)
    assert b.manifest["execution"] == {"backend": "ray", "workers": 2}
    _same_content(a.path, b.path)
    _tables_equal(a.tables, b.tables)


def test_ray_shards_draw_the_same_day_with_measures_in_force(ray_runtime) -> None:  # noqa: ANN001
    from credsim.engine.ray_runner import RayRunner

    b = _behaviour("court-defaulters", 3000, 150)
    k = int(np.argmax(b.lam.sum(axis=(1, 2))))
    b.multiplier = {k: np.where(np.arange(b.table.shape[1]) % 3 == 0, 0.0, 0.5)}
    local = [b.day(np.random.default_rng(d), np.random.default_rng(50 + d)) for d in range(3)]
    b.runner = RayRunner(b, 2, 4, None)
    try:
        remote = [b.day(np.random.default_rng(d), np.random.default_rng(50 + d)) for d in range(3)]
        # a change of the multipliers reaches the actors (as packed index/value patches)
        b.multiplier[k][:] = 1.0
        after = b.day(np.random.default_rng(9))
    finally:
        b.runner.close()
    for (w0, k0), (w1, k1) in zip(local, remote, strict=True):
        assert np.array_equal(w0, w1) and np.array_equal(k0, k1)
    b.runner = LocalRunner(b, 1)
    again = b.day(np.random.default_rng(9))
    assert np.array_equal(after[0], again[0]) and np.array_equal(after[1], again[1])


def test_bad_execution_settings_are_refused_before_anything_runs() -> None:
    for ex, msg in (
        (Execution(workers=0), "workers must be at least 1"),
        (Execution(block_size=0), "block size must be at least 1"),
        (Execution(backend="mpi"), "backend must be one of local, ray"),
    ):
        with pytest.raises(CredsimError, match=msg):
            simulate("suzhou", population=100, days=2, execution=ex)


def test_a_result_laid_out_in_the_ring_reads_back_the_same() -> None:
    """What the process drawing ahead sends: arrays copied into a slot of the shared ring
    (aligned), the rest of the result as it was; read back as views of the ring, equal in
    types, dtypes, shapes and values; a result larger than the slot is marked as not fitting."""
    import mmap
    import pickle

    from credsim.engine.ahead import _RINGS, _Layout
    from credsim.engine.observe import _Own

    ring = mmap.mmap(-1, 1 << 16)
    _RINGS[-1] = ring  # as the parent registers its child's ring
    batch = _Own(entity=np.arange(5, dtype=np.int32), points=np.array([-1.0, 2.5]))
    result = (
        np.array([3, 0, 7], np.int64),
        None,
        [(4, batch), (9, _Own(excused=np.zeros(0, np.bool_)))],
        0.25,
        np.ones((2, 3), np.int8),
    )
    laid = _Layout(ring, -1, 4096, 8192)
    back = pickle.loads(pickle.dumps(laid.put(result)))  # as it goes down the pipe
    assert laid.fits and type(back) is tuple and back[1] is None and back[3] == 0.25
    assert type(back[2][0][1]) is _Own and back[2][0][0] == 4
    for got, want in [
        (back[0], result[0]),
        (back[4], result[4]),
        (back[2][0][1]["entity"], batch["entity"]),
        (back[2][0][1]["points"], batch["points"]),
        (back[2][1][1]["excused"], np.zeros(0, np.bool_)),
    ]:
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
        assert np.shares_memory(got, np.frombuffer(ring, np.uint8)) or got.size == 0
    small = _Layout(ring, -1, 0, 16)
    small.put(result)
    assert not small.fits
    del _RINGS[-1]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    threads=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_alias_tables_built_on_threads_are_the_same(
    sizes: list[int], threads: int, seed: int
) -> None:
    """Segments split among threads give the tables, totals and packed entries of one thread;
    the packed entries are those of the rule spelled out in numpy."""
    rng = np.random.default_rng(seed)
    seg = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    w = rng.gamma(0.5, 2.0, int(seg[-1])) * (rng.random(int(seg[-1])) < 0.8)
    one = segment_alias(w, seg)
    many = segment_alias(w, seg, threads)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)
    prob, alias, _ = one
    order = rng.permutation(int(seg[-1])).astype(np.int32)
    want = np.empty((1, order.shape[0], 2), np.uint64)
    want[0, :, 0] = np.ceil(prob * 2.0**32).astype(np.uint64)
    want[0, :, 1] = order.astype(np.uint64) | (order[alias].astype(np.uint64) << np.uint64(32))
    for t in (1, threads):
        np.testing.assert_array_equal(pack_alias(prob[None], alias[None], order, threads=t), want)


def test_a_behaviour_set_up_on_threads_is_the_same() -> None:
    cs, pop = _population("suzhou", 3000)
    traits = draw_traits(cs, pop.n_persons, pop.n_orgs, np.random.default_rng(1))
    one = Behaviour(cs, pop, traits, 100)
    many = Behaviour(cs, pop, traits, 100, blocks=partition(pop, len(cs.groups), 100), threads=3)
    assert one.table.shape[0] >= 2  # several weightings: several rows of tables
    np.testing.assert_array_equal(one.table, many.table)
    np.testing.assert_array_equal(one.lam, many.lam)
    np.testing.assert_array_equal(one.blocks.order, many.blocks.order)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=300), st.integers(0, 3))
def test_counting_order_is_a_stable_argsort(keys: list[int], spare: int) -> None:
    """The order numpy's stable sort gives, and where each key's run starts (keys that never
    occur, ``spare`` of them past the largest, have empty runs)."""
    key = np.array(keys, np.int64)
    n_keys = (max(keys) + 1 if keys else 0) + spare
    order, start = counting_order(key, n_keys)
    assert order.dtype == np.int32
    assert order.tolist() == np.argsort(key, kind="stable").tolist()
    assert start.tolist() == np.searchsorted(key[order], np.arange(n_keys + 1)).tolist()
    for bad in (-1, n_keys):
        with pytest.raises(ValueError, match="keys must lie in"):
            counting_order(np.append(key, bad), n_keys)


def test_partition_orders_as_lexsort() -> None:
    """Entities by (block, group), ties in entity order: ``np.lexsort`` over the blocks and the
    groups (organisations the last group), and each segment where the sorted cells change."""
    cs = compile_scheme(load_scheme("suzhou").scheme)
    pop = generate_population(cs.scheme.population, 6_000, 4, with_friends=False)
    bl = partition(pop, len(cs.groups), 500)
    g = np.where(pop.kind == 1, len(cs.groups), pop.group)
    assert bl.order.tolist() == np.lexsort((g, bl.block)).tolist()
    cell = bl.block[bl.order].astype(np.int64) * bl.n_groups + g[bl.order]
    assert (
        bl.seg.tolist() == np.searchsorted(cell, np.arange(bl.n_blocks * bl.n_groups + 1)).tolist()
    )
    # every block holds whole households of one district
    hh = pop.household[: pop.n_persons]
    assert (bl.block[: pop.n_persons] == bl.block[pop.hh_start[hh]]).all()
    for b in range(bl.n_blocks):
        members = np.flatnonzero(bl.block == b)
        assert np.unique(pop.district[members]).shape[0] == 1
