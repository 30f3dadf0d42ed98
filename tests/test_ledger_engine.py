"""Sealing records from the engine's columns (credsim.store.ledger_engine) gives the tags, head
and ledger of sealing the records table built from them (the generic path of every version):
random columns with nulls, columns left at their default, labels outside the manifest's, group
and chunk boundaries anywhere; a label outside the vocabularies is refused either way."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credsim.engine.output import record_labels, records_arrow
from credsim.engine.records import COLUMNS, LAZY
from credsim.errors import RunStoreError
from credsim.store import ledger, ledger_engine
from credsim.store.ledger_engine import EngineRecords
from credsim.store.schema import conform

NAMES = {
    "item": ["speeding", "volunteering", "noise", "unpaid-fine", "court-default"],
    "behaviour": ["speeding", "volunteering", "noise", "unpaid-fine"],
    "agency": ["traffic-police", "court", "civil-affairs"],
}
LABELS = record_labels(NAMES)


def _manifest(
    item_labels: int, rng: np.random.Generator | None = None, engine_order: bool = False
) -> dict:
    """Labels for every label column in an order of their own (the vocabularies' codes are
    then not the engine's), or with ``engine_order`` in the engine's (its codes are the
    vocabulary's: the kernel takes them without a table), the first ``item_labels`` items
    only: the records' other items follow in the vocabulary, sorted."""
    rng = rng or np.random.default_rng(0)
    labels = {
        k: [str(w) for w in (v if engine_order else rng.permutation(v))] for k, v in LABELS.items()
    }
    labels["item"] = labels["item"][:item_labels]
    return {"scheme": {"sha256": "ab" * 32}, "seed": 7, "labels": labels}


def _columns(rng: np.random.Generator, n: int, lazy: set[str], items: int) -> dict:
    """Engine columns as Table.view gives them (None: a lazy column at its default); label
    codes below ``items`` for the item column."""

    def ints(lo: int, hi: int, dtype: type, null_share: float = 0.0) -> np.ndarray:
        v = rng.integers(lo, hi, n).astype(dtype)
        v[rng.random(n) < null_share] = -1
        return v

    nulls = rng.choice([0.0, 0.3, 1.0])
    points = rng.choice(np.array([-5.0, 2.5, -0.0, 0.0, np.nan, np.inf, 1e-300]), n)
    share = rng.choice(np.array([0.0, 1.0, 0.5, -0.0]), n)
    cols: dict[str, np.ndarray | None] = {
        "day": np.sort(ints(0, 400, np.int32)),
        "behaviour_day": ints(0, 400, np.int32, nulls),
        "entity": ints(0, 2**31 - 1, np.int32),
        "actor": ints(0, 10**6, np.int32, nulls),
        "item": ints(0, items, np.int32),
        "behaviour": ints(0, len(NAMES["behaviour"]), np.int32, nulls),
        "channel": ints(0, len(LABELS["channel"]), np.int8),
        "agency": ints(0, len(NAMES["agency"]), np.int32, nulls),
        "points": points,
        "applied": np.where(share == 1.0, points, share),
        "status": ints(0, len(LABELS["status"]), np.int8),
        "truthful": rng.random(n) < 0.9,
        "basis": ints(0, len(LABELS["basis"]), np.int8),
        "error": ints(0, len(LABELS["error"]), np.int8, nulls),
        "cause": ints(0, 2**40, np.int64, nulls),
        "review_day": ints(0, 400, np.int32, nulls),
        "appeal_day": ints(0, 400, np.int32, nulls),
        "appealed": rng.random(n) < 0.2,
        "import_row": ints(0, 10**5, np.int32, nulls),
        "excused": rng.random(n) < 0.1,
    }
    for name, (dtype, _) in COLUMNS.items():
        assert cols[name] is None or cols[name].dtype == np.dtype(dtype), name  # type: ignore[union-attr]
    return {k: None if k in lazy else v for k, v in cols.items()}


def _seal(
    manifest: dict,
    batches: list[tuple[dict, int]],
    group: int,
    engine: bool,
    encoding: str | None = None,
) -> tuple:
    """Every batch sealed in turn (its engine columns and first id): the tags of each group
    and the ledger. With ``engine``, as a streamed run seals them: from the engine's columns
    alone once the first batch has fixed the vocabularies (Sealer.engine_records), else from
    the table."""
    sealer = ledger.Sealer(manifest, encoding=encoding)
    tags = []
    for cols, first in batches:
        n = next(v.shape[0] for v in cols.values() if v is not None)
        given_engine = EngineRecords(cols, first, LABELS) if engine else None
        alone = sealer.engine_records(given_engine, n, group) if given_engine else None
        if alone is not None:
            tags += alone
            continue
        table = conform("records", records_arrow(cols, first, NAMES, stored=True))
        tags += [out.copy() for _, out in sealer.records(table, group)]
    return tags, sealer.ledger()


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The records each call of the engine kernel chained."""
    calls: list[int] = []
    chain = ledger_engine.chain

    def spy(encoder, records, lo, n, prev, out):  # noqa: ANN001, ANN202
        calls.append(n)
        return chain(encoder, records, lo, n, prev, out)

    monkeypatch.setattr(ledger_engine, "chain", spy)
    return calls


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(5, 1500), min_size=2, max_size=3),
    group=st.sampled_from([1, 255, 256, 257, 1000, 1 << 20]),
    # (the kernel is compiled for each set of columns at their default: a few sets, each
    # column both ways)
    lazy=st.sampled_from([set(), set(LAZY), {"cause", "error", "excused"}, set(LAZY[:4])]),
    gap=st.sampled_from([0, 0, 3]),
    engine_order=st.booleans(),
)
def test_engine_columns_seal_as_the_table(
    seed: int, sizes: list[int], group: int, lazy: set[str], gap: int, engine_order: bool
) -> None:
    rng = np.random.default_rng(seed)
    batches, first = [], int(rng.integers(0, 10**6))
    items = len(NAMES["item"])
    for n in sizes:
        batches.append((_columns(rng, n, lazy, items), first))
        first += n + gap  # a gap: ids no longer contiguous, which both must say
    batches[0][0]["item"][:items] = np.arange(items)[: sizes[0]]  # the first fix the vocabulary
    manifest = _manifest(int(rng.integers(0, items)), rng, engine_order)
    calls: list[int] = []
    chain = ledger_engine.chain

    def spy(encoder, records, lo, n, prev, out):  # noqa: ANN001, ANN202
        calls.append(n)
        return chain(encoder, records, lo, n, prev, out)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_engine, "chain", spy)
        fused_tags, fused = _seal(manifest, batches, group, engine=True)
    tags, generic = _seal(manifest, batches, group, engine=False)
    assert fused == generic
    assert len(fused_tags) == len(tags)
    assert all(np.array_equal(a, b) for a, b in zip(fused_tags, tags, strict=True))
    assert generic["contiguous_ids"] is (gap == 0 or len(sizes) == 1)
    # the engine's kernel chained every record after the first batch (whose table fixes the
    # vocabularies)
    assert sum(calls) == sum(sizes[1:])


def test_a_label_outside_the_vocabularies_is_refused_from_the_engine_columns(
    fused_calls: list[int],
) -> None:
    """The first batch holds items 0 and 1 only, which fix the vocabulary; the second holds
    item 2 as well: from the engine's columns nothing is chained (the table is needed), and
    the table is refused with the generic path's message."""
    rng = np.random.default_rng(3)
    first = _columns(rng, 600, set(), items=2)
    second = _columns(rng, 700, set(), items=3)
    manifest = _manifest(item_labels=0)
    for engine in (True, False):
        sealer = ledger.Sealer(manifest)
        for cols, start in ((first, 0), (second, 600)):
            table = conform("records", records_arrow(cols, start, NAMES, stored=True))
            if start == 0:
                list(sealer.records(table, 256))
                head = sealer.ledger()["head"]
                continue
            if engine:  # from the engine's columns alone: nothing chained, the table needed
                alone = EngineRecords(cols, start, LABELS)
                assert sealer.engine_records(alone, 700, 256) is None
                assert sealer.ledger()["head"] == head
            with pytest.raises(RunStoreError, match="outside the ledger's vocabularies.*noise"):
                list(sealer.records(table, 256))
        assert sealer.ledger()["head"] == head and sealer.ledger()["records"] == 600
    assert fused_calls == [256]  # its first group holds item 2


def test_the_first_records_fix_the_vocabularies_from_their_table() -> None:
    rng = np.random.default_rng(6)
    cols = _columns(rng, 300, set(), 5)
    sealer = ledger.Sealer(_manifest(5))
    assert sealer.engine_records(EngineRecords(cols, 0, LABELS), 300, 100) is None
    assert sealer.ledger()["records"] == 0


def test_an_encoding_before_v7_is_sealed_from_the_table(fused_calls: list[int]) -> None:
    """The engine's kernel builds v7's compact rows: a sealer of v6 (as the tests seal earlier
    runs) takes the table, and gets v6's chain, not v7's."""
    rng = np.random.default_rng(4)
    batches = [(_columns(rng, 900, {"cause"}, 5), 10), (_columns(rng, 400, {"cause"}, 5), 910)]
    v6 = ledger.ENCODING_V6
    want = _seal(_manifest(2), batches, 300, engine=False, encoding=v6)
    assert _seal(_manifest(2), batches, 300, engine=True, encoding=v6)[1] == want[1]
    assert fused_calls == []
    v7 = _seal(_manifest(2), batches, 300, engine=True)[1]
    assert v7["encoding"] == ledger.ENCODING_V7 and v7["head"] != want[1]["head"]
    assert fused_calls == [300, 100]


def test_a_column_of_another_type_is_sealed_from_the_table(fused_calls: list[int]) -> None:
    rng = np.random.default_rng(5)
    batches = [(_columns(rng, 500, set(), 5), 0), (_columns(rng, 500, set(), 5), 500)]
    for cols, _ in batches:
        cols["day"] = cols["day"].astype(np.int64)  # not the engine's int32
    want = _seal(_manifest(5), batches, 1 << 20, engine=False)
    assert _seal(_manifest(5), batches, 1 << 20, engine=True)[1] == want[1]
    assert fused_calls == []
