"""The fast engine stages give exactly what the plain ones did.

Observation writes each day's records with Numba kernels, one batch per delay, and hands a
single batch over without copying; the distinct entities of a day are read from a bitset; a new
list episode's exits are scheduled by a kernel. Here each is compared with a plain reference
written as the code was before (numpy, one batch per channel, concatenated on arrival;
``np.unique``; masks per distinct day), on the same inputs and the same random draws.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credsim.engine import kernels
from credsim.engine.lists import R_EXPIRED, R_REPAIRED, ListBook
from credsim.engine.observe import CAMERA, QUEUED, Batch, Observer
from credsim.engine.records import (
    B_BEHAVIOUR,
    B_FALSE_REPORT,
    E_DATA_ENTRY,
    E_FALSE_REPORT,
    E_MISID,
    E_NONE,
    E_PURCHASE,
)
from credsim.engine.rng import Streams, _Seeding
from credsim.engine.simulation import Simulation
from credsim.population import generate_population
from credsim.schemes.compile import compile_scheme
from credsim.schemes.loader import load_scheme

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "src" / "credsim" / "schemes" / "scenarios"


def plain_observe(
    ob: Observer,
    pending: dict[int, list[Batch]],
    day: int,
    actor: np.ndarray,
    kind: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Observer.observe as it was: numpy, channel by channel, one queued batch per channel."""
    cs = ob.cs
    excused = rng.random(actor.shape[0]) < cs.excusable[kind] if cs.excusable.any() else None
    if excused is not None and cs.context_aware:
        actor, kind, excused = actor[~excused], kind[~excused], None
    ordered = kind.shape[0] < 2 or bool((kind[1:] >= kind[:-1]).all())
    bounds = np.searchsorted(kind, np.arange(len(cs.behaviours) + 1)) if ordered else None
    for c in range(cs.ch_behaviour.shape[0]):
        k = int(cs.ch_behaviour[c])
        sel = slice(int(bounds[k]), int(bounds[k + 1])) if bounds is not None else kind == k
        who = actor[sel]
        seen = rng.random(who.shape[0]) < cs.ch_detect[c]
        who = who[seen]
        exc = excused[sel][seen] if excused is not None else np.zeros(who.shape[0], bool)
        if who.shape[0] == 0 and cs.ch_false_reports[c] == 0:
            continue
        entity = who.copy()
        error = np.full(who.shape[0], E_NONE, np.int8)
        if cs.ch_kind[c] == CAMERA:
            fmr = np.minimum(cs.ch_fmr[c, ob.group[who]] * cs.ch_fmr_sex[c, ob.sex[who]], 1.0)
            mis = rng.random(who.shape[0]) < fmr
            if mis.any():
                entity[mis] = ob._same_group(who[mis], rng)
                error[mis] = E_MISID
        actors = who
        if cs.ch_false_reports[c] > 0:
            nf = int(rng.poisson(ob.pop.n_persons * cs.ch_false_reports[c] / 365.0))
            if nf:
                targets = (rng.random(nf) * ob.pop.n_persons).astype(np.int32)
                entity = np.concatenate([entity, targets])
                actors = np.concatenate([actors, np.full(nf, -1, np.int32)])
                error = np.concatenate([error, np.full(nf, E_FALSE_REPORT, np.int8)])
                exc = np.concatenate([exc, np.zeros(nf, bool)])
        if cs.data_entry_error > 0 and entity.shape[0]:
            typo = rng.random(entity.shape[0]) < cs.data_entry_error
            if typo.any():
                entity[typo] = ob._wrong_entity(entity[typo], rng)
                error[typo] = np.where(error[typo] == E_FALSE_REPORT, E_FALSE_REPORT, E_DATA_ENTRY)
        m = entity.shape[0]
        if m == 0:
            continue
        item = int(cs.behaviour_item[k])
        batch = {
            "behaviour_day": np.where(actors >= 0, day, -1).astype(np.int32),
            "entity": entity.astype(np.int32),
            "actor": actors.astype(np.int32),
            "item": np.full(m, item, np.int32),
            "behaviour": np.full(m, k, np.int32),
            "channel": np.full(m, cs.ch_kind[c], np.int8),
            "agency": np.full(m, ob.ch_agency_ix[c], np.int32),
            "points": np.full(m, cs.points[item]),
            "truthful": (entity == actors) & ~cs.fraudulent[k],
            "basis": np.where(actors >= 0, B_BEHAVIOUR, B_FALSE_REPORT).astype(np.int8),
            "error": np.where(cs.fraudulent[k] & (error == E_NONE), E_PURCHASE, error).astype(
                np.int8
            ),
            "excused": exc,
            "import_row": np.full(m, -1, np.int32),
        }
        pending[day + int(cs.ch_delay[c])].append(batch)


def plain_arrivals(pending: dict[int, list[Batch]], day: int) -> Batch | None:
    batches = pending.pop(day, [])
    if not batches:
        return None
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _sim(
    scheme: str, scenarios: tuple[str, ...], persons: int, seed: int, **overrides: str
) -> Simulation:
    loaded = load_scheme(scheme, [SCENARIOS / f"{s}.yaml" for s in scenarios], overrides)
    cs = compile_scheme(loaded.scheme)
    pop = generate_population(loaded.scheme.population, persons, seed, with_friends=False)
    return Simulation(cs, pop, seed)


NO_TYPOS = {"data_entry.error_rate": "0"}  # detection is then a channel's only draw
CASES = [
    (str(ROOT / "benchmarks" / "reference.yaml"), (), {}),  # detection only: the fused kernel
    ("suzhou", (), {}),  # cameras (mismatches by group and sex), data entry errors, delays
    ("suzhou", ("black-market",), {}),  # bought records (fraudulent behaviours)
    ("suzhou", ("black-market", "context-blind"), NO_TYPOS),  # both, in the fused kernel
    ("suzhou", ("context-blind",), {}),  # excused occurrences recorded anyway
    ("nanjing", ("context-aware",), {}),  # excused occurrences dropped
    ("xinjiang", (), {}),  # informants' false reports
]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("scheme", "scenarios", "overrides"), CASES)
def test_observe_matches_the_plain_numpy_version(
    scheme: str, scenarios: tuple[str, ...], overrides: dict[str, str], shuffle: bool
) -> None:
    days, seed = 40, 7
    sim = _sim(scheme, scenarios, 4000, seed, **overrides)
    ob = sim.observer
    pending: dict[int, list[Batch]] = defaultdict(list)
    shuffler = np.random.default_rng(1)
    seen = 0
    last = days + int(sim.cs.ch_delay.max(initial=0)) + 1
    for day in range(1, last + 1):
        if day <= days:
            actor, kind = sim.behave.day(sim.streams.get("behave", day))
            if shuffle:  # not in behaviour order: the channels select by mask instead
                p = shuffler.permutation(actor.shape[0])
                actor, kind = actor[p], kind[p]
            ob.observe(day, actor, kind, np.random.default_rng([seed, day]))
            plain_observe(ob, pending, day, actor, kind, np.random.default_rng([seed, day]))
        got, want = ob.arrivals(day), plain_arrivals(pending, day)
        assert (got is None) == (want is None), day
        if got is None or want is None:
            continue
        assert list(got) == list(want) == list(QUEUED)
        for k in want:
            assert got[k].dtype == want[k].dtype, (day, k)
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"day {day} column {k}")
        seen += want["entity"].shape[0]
    assert not ob.pending and not pending
    assert seen > 100, "the case must produce records"


def test_an_arriving_queued_batch_is_a_copy() -> None:
    """Callers change arriving records in place (intrusion): an injected batch stays as given."""
    sim = _sim("suzhou", (), 500, 1)
    ent = np.arange(5, dtype=np.int32)
    sim.observer.queue(3, {"entity": ent, "actor": ent.copy()})
    arr = sim.observer.arrivals(3)
    assert arr is not None
    arr["entity"][:] = 99
    np.testing.assert_array_equal(ent, np.arange(5))


@pytest.mark.parametrize("n", [1, 64, 65, 1000, 100_003])
def test_unique_ids_matches_np_unique(n: int) -> None:
    rng = np.random.default_rng(n)
    mark = np.zeros(n, np.bool_)
    sizes = [0, 1, 2, 3, n // 600, n // 500, n // 3, n, 3 * n]
    for m in sizes:
        for ids in (
            rng.integers(0, n, m).astype(np.int32),
            np.full(m, n - 1, np.int32),
            np.sort(rng.integers(0, n, m)).astype(np.int32)[::-1].copy(),
        ):
            got = kernels.unique_ids(ids, mark)
            assert got.dtype == np.intp  # indices: numpy gathers by them without a cast
            np.testing.assert_array_equal(got, np.unique(ids))
            assert not mark.any(), "the marker array is left all False"
    edge = np.array([n - 1, 0, 63 % n, 64 % n, 0, n - 1], np.int32).repeat(max(1, n // 64))
    np.testing.assert_array_equal(kernels.unique_ids(edge, mark), np.unique(edge))


def plain_schedule(
    cs: SimpleNamespace, ids: np.ndarray, lst: np.ndarray, day: int, rng: np.random.Generator
) -> tuple[dict[int, list[tuple[np.ndarray, np.ndarray]]], dict[int, list[np.ndarray]]]:
    """The exits ListBook.start scheduled, as it did: numpy, a mask per distinct day."""
    scheduled: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    clean_checks: dict[int, list[np.ndarray]] = defaultdict(list)
    m = lst.shape[0]
    dur = cs.duration[lst]
    p = cs.perform_daily[lst]
    big = np.iinfo(np.int32).max
    exp_day = np.where(dur >= 0, day + dur, big)
    rep_wait = np.full(m, big, np.int64)
    has_p = p > 0
    if has_p.any():
        rep_wait[has_p] = rng.geometric(p[has_p])
    rep_day = np.where(has_p, day + np.minimum(rep_wait, big - day), big)
    when = np.minimum(exp_day, rep_day)
    why = np.where(rep_day < exp_day, R_REPAIRED, R_EXPIRED).astype(np.int8)
    for d in np.unique(when[when < big]):
        sel = when == d
        scheduled[int(d)].append((ids[sel], why[sel]))
    clean = cs.clean_days[lst]
    for d in np.unique(clean[clean >= 0]):
        sel = clean == d
        clean_checks[day + int(d)].append(ids[sel])
    return scheduled, clean_checks


@pytest.mark.parametrize("seed", range(6))
def test_list_exits_are_scheduled_as_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    L, n = 5, 300
    cs = SimpleNamespace(
        lists=[f"l{i}" for i in range(L)],
        inc_kind=np.full(L, 1, np.int8),  # not item lists
        inc_item=np.full(L, -1, np.int32),
        duration=rng.choice([-1, 0, 1, 30, 365], L).astype(np.int32),
        perform_daily=np.where(rng.random(L) < 0.5, rng.choice([0.01, 0.2, 1.0], L), 0.0),
        clean_days=rng.choice([-1, 0, 7, 90], L).astype(np.int32),
    )
    book = ListBook(cs, n)  # type: ignore[arg-type]
    for day in (0, 3, 3, 40):
        for m in (0, 1, 2, 50):
            lst = rng.integers(0, L, m).astype(np.int32)
            ent = rng.permutation(n)[:m].astype(np.int32)
            book.ep_of[lst, ent] = -1
            first = book.eps.n
            book.scheduled.clear()
            book.clean_checks.clear()
            book.start(lst, ent, np.arange(m, dtype=np.int64), day, np.random.default_rng(m))
            ids = np.arange(first, first + m, dtype=np.int64)
            want_s, want_c = plain_schedule(cs, ids, lst, day, np.random.default_rng(m))
            assert list(book.scheduled) == list(want_s)
            for d, parts in want_s.items():
                got = book.scheduled[d]
                assert len(got) == len(parts)
                for (gi, gw), (wi, ww) in zip(got, parts, strict=True):
                    assert gi.dtype == wi.dtype and gw.dtype == ww.dtype
                    np.testing.assert_array_equal(gi, wi)
                    np.testing.assert_array_equal(gw, ww)
            assert list(book.clean_checks) == list(want_c)
            for d, cparts in want_c.items():
                assert len(book.clean_checks[d]) == len(cparts)
                for gi, wi in zip(book.clean_checks[d], cparts, strict=True):
                    assert gi.dtype == wi.dtype
                    np.testing.assert_array_equal(gi, wi)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.one_of(st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**63 - 1]), st.integers(0, 2**63 - 1)),
    stage=st.text(min_size=1, max_size=12),
    day=st.integers(0, 100_000),
    extra=st.lists(st.integers(0, 2**40), max_size=2),
)
def test_streams_are_numpys_seed_sequence_generators(
    seed: int, stage: str, day: int, extra: list[int]
) -> None:
    """The fast stream construction (rng.py) gives NumPy's own generator, state for state."""
    key = (zlib.crc32(stage.encode()), day, *extra)
    want = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    got = Streams(seed).get(stage, day, *extra)
    assert got.bit_generator.state == want.bit_generator.state
    assert np.array_equal(got.random(5), want.random(5))
    words = np.random.SeedSequence(seed, spawn_key=key).generate_state(7)
    assert np.array_equal(_Seeding(_entropy(seed, key)).generate_state(7), words)


def _entropy(seed: int, key: tuple[int, ...]) -> np.ndarray:
    """SeedSequence's assembled entropy, written from NumPy's definition: the seed's 32-bit
    words padded with zeros to the pool size (4), then the spawn key's words."""

    def words(x: int) -> list[int]:
        return [(x >> (32 * i)) & 0xFFFFFFFF for i in range(max(1, (x.bit_length() + 31) // 32))]

    run = words(seed)
    return np.array(run + [0] * (4 - len(run)) + [w for k in key for w in words(k)], np.uint64)
