"""Records streamed to the run folder while the run goes on (credsim.store.stream).

A streamed run releases the memory of every record it has written; a released record reads as
zeros, so if any stage read or changed a record after :meth:`Simulation.settled` let it go, the
streamed run would differ from the same run written all at once. Hand-overs after every day
(``flush_rows=1``) make that as likely as it can be; the mechanisms that look back (review
backlog, appeals, escalation windows, household spill-over) are all switched on.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import threading
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import credsim
from credsim import api
from credsim.engine import checkpoint
from credsim.engine.records import COLUMNS, LAZY, PENDING, RecordBuffer, Table
from credsim.errors import CredsimError
from credsim.store import parquet as parquet_module
from credsim.store import write_run
from credsim.store.parquet import Follower, sha256_file
from credsim.store.reader import RunStore
from credsim.store.runfolder import RunFolder
from credsim.store.schema import SCHEMAS
from credsim.store.stream import PARTIAL, SEGMENTS, STORE_NICE, TABLES_NICE, RecordStream
from credsim.store.verify import verify

TABLES = ("population", "records", "scores", "lists", "measures")

BACKLOG = """id: slow-review
name: "Review with a small team"
description: every record is reviewed, by fewer reviewers than records arrive
sources: [src-002]
patch:
  review:
    mode: required
    catch_false: {value: 0.8, assumption: "test"}
    reject_true: {value: 0.01, assumption: "test"}
    capacity_per_day: {value: %d, assumption: "test: a backlog"}
"""


def _same(a: Path, b: Path) -> None:
    for name in TABLES:
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        assert ta.equals(tb), name
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    assert ma["ledger"] == mb["ledger"]
    assert ma["table_digests"] == mb["table_digests"]


def _in_memory(tmp: Path, name: str, *args: object, **kw: object) -> Path:
    """The same run, every record kept in memory and written at the end."""
    res = credsim.simulate(*args, **kw)  # type: ignore[arg-type]
    return write_run(tmp / name, res.tables, res.manifest)


@pytest.fixture
def every_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("credsim.store.stream.FLUSH_ROWS", 1)


@pytest.mark.parametrize(
    ("scheme", "scenarios", "capacity"),
    [
        ("nanjing", ["appeal"], 0),  # escalation within 365 days, appeals, spill-over
        ("suzhou", ["appeal"], 40_000),  # review with a backlog, appeals, grades
        ("benchmarks/reference.yaml", [], 0),
        ("suzhou", ["favouritism"], 0),  # an agency ("officials") first seen mid-run
    ],
)
def test_streamed_run_equals_the_run_written_at_once(
    tmp_path: Path, every_day: None, scheme: str, scenarios: list[str], capacity: int
) -> None:
    scen: list[str | Path] = list(scenarios)
    if capacity:
        slow = tmp_path / "slow-review.yaml"
        slow.write_text(BACKLOG % capacity)
        scen.append(slow)
    kw = {"population": 4000, "days": 200, "seed": 11, "scenarios": scen}
    streamed = credsim.run(scheme, out=tmp_path / "streamed", checkpoint_every=0, **kw)
    whole = _in_memory(tmp_path, "whole", scheme, **kw)
    _same(streamed.path, whole)  # type: ignore[arg-type]
    assert verify(streamed.path).ok  # type: ignore[arg-type]
    # the labels went to Parquet as dictionaries, never as strings, yet read back as strings
    path = streamed.path / "records.parquet"  # type: ignore[operator]
    assert pq.read_schema(path).equals(SCHEMAS["records"], check_metadata=True)
    assert pq.read_schema(whole / "records.parquet").equals(pq.read_schema(path))
    meta = pq.ParquetFile(path).metadata
    item = meta.schema.names.index("item")
    assert "RLE_DICTIONARY" in meta.row_group(0).column(item).encodings
    # row-group statistics where they can skip row groups: numbers, not labels or flags
    stats = {c: meta.row_group(0).column(i).is_stats_set for i, c in enumerate(meta.schema.names)}
    assert stats["day"] and stats["entity_id"] and stats["points"]
    assert not stats["item"] and not stats["truthful"] and not stats["digest"]
    rec = streamed.simulation.records  # type: ignore[union-attr]
    assert rec.base > 0  # records were released during the run
    # so were the score snapshots, once written (their days kept); the table holds them all
    snaps = streamed.simulation.snap  # type: ignore[union-attr]
    taken = [*range(0, 181, 30), 200]  # every 30 days, and the last day
    assert [d for _, d, _, _ in snaps] == taken
    assert all(e.size == s.size == g.size == 0 for e, _, s, g in snaps)
    if scheme != "nanjing":  # (Nanjing scores no one) the table holds every snapshot's rows
        held = pq.read_table(streamed.path / "scores.parquet", columns=["day"])  # type: ignore[operator]
        assert sorted(set(held["day"].to_pylist())) == taken
    assert streamed.tables["records"].num_rows == rec.n  # read back from the folder
    if capacity:
        m = streamed.manifest
        assert m["counts"]["records"] == rec.n
        status = pq.read_table(streamed.path / "records.parquet", columns=["review_day", "day"])
        waited = np.asarray(status["review_day"]) - np.asarray(status["day"])
        assert np.nanmax(waited) > 0  # the backlog held records over days


def _killed_after_checkpoint(
    monkeypatch: pytest.MonkeyPatch, out: Path, day: int, *args: object, **kw: object
) -> dict:
    """Run until the checkpoint of ``day`` is taken, then stop; that checkpoint's meta."""
    real = RunFolder.checkpoint

    def die_after(self: RunFolder, save: object, d: int) -> None:
        real(self, save, d)
        if d == day:
            raise KeyboardInterrupt  # the process stops right after a checkpoint

    monkeypatch.setattr(RunFolder, "checkpoint", die_after)
    with pytest.raises(KeyboardInterrupt):
        credsim.run(*args, out=out, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(RunFolder, "checkpoint", real)
    return checkpoint.load(out / "checkpoint.npz")[1]


def test_resume_goes_on_from_the_records_file_the_checkpoint_closed(
    tmp_path: Path, every_day: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"population": 3000, "days": 90, "seed": 4, "scenarios": ["appeal"]}  # review too
    out = tmp_path / "killed"
    meta = _killed_after_checkpoint(monkeypatch, out, 30, "suzhou", checkpoint_every=10, **kw)
    kept = meta["stream"]["records_file"]
    done = meta["stream"]["done"]
    assert done > 0, "records were handed over before the checkpoint of day 30"
    # the checkpoints of days 10, 20 and 30 each closed a part: the file's first bytes are a
    # whole Parquet file of the records stored by then, the last digest the ledger's head
    partial = out / PARTIAL
    prefix = tmp_path / "prefix.parquet"
    prefix.write_bytes(partial.read_bytes()[: kept["length"]])
    assert blake3.blake3(prefix.read_bytes()).hexdigest() == kept["blake3"]  # since ledger v5
    held = pq.read_table(prefix)
    assert held.num_rows == done == meta["stream"]["ledger"]["records"]
    assert held["record_id"].to_pylist() == list(range(done))
    assert held["digest"][-1].as_py().hex() == meta["stream"]["ledger"]["head"][:8]  # tag
    assert pq.ParquetFile(prefix).metadata.num_row_groups >= 3
    # records written after the checkpoint (lost with the process) are cut off
    with open(partial, "ab") as fh:
        fh.write(b"written after the checkpoint")
    (out / SEGMENTS / "scores-999999.arrow").write_bytes(b"saved after the checkpoint")
    resumed = api.resume(out)
    assert not (out / SEGMENTS).exists()
    # a run that checkpoints lets its score snapshots go too (each saved once, when written)
    snaps = resumed.simulation.snap  # type: ignore[union-attr]
    assert [d for _, d, _, _ in snaps] == [0, 30, 60, 90]
    assert all(e.size == s.size == g.size == 0 for e, _, s, g in snaps)
    whole = credsim.run("suzhou", out=tmp_path / "whole", checkpoint_every=0, **kw)
    _same(out, whole.path)  # type: ignore[arg-type]
    assert RunStore(out).manifest["resumed_from"] == [30]
    assert verify(out).ok
    # the same rows in more row groups (each part's), the resumed file beginning with the
    # bytes the checkpoint kept
    assert (out / "records.parquet").read_bytes()[: kept["length"]] == prefix.read_bytes()


def test_a_changed_records_file_or_snapshot_refuses_to_resume(
    tmp_path: Path, every_day: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    args = ("benchmarks/reference.yaml", 2000, 40, 1)
    meta = _killed_after_checkpoint(monkeypatch, out, 20, *args, checkpoint_every=20)
    length = meta["stream"]["records_file"]["length"]
    partial = out / PARTIAL
    (snap,) = (out / SEGMENTS).glob("scores-*.arrow")  # the snapshot of day 0
    original = partial.read_bytes()
    for path, at, what in (
        (snap, None, "score snapshot"),
        (partial, length // 2, "records written before the checkpoint"),
        (partial, length - 1, "records written before the checkpoint"),  # in the footer
    ):
        data = bytearray(path.read_bytes())
        at = len(data) // 2 if at is None else at
        data[at] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(CredsimError, match=f"{what} .*(missing or changed)"):
            api.resume(out)
        data[at] ^= 0xFF
        path.write_bytes(bytes(data))
    partial.write_bytes(original[: length - 1])  # shorter than the checkpoint kept
    with pytest.raises(CredsimError, match="shorter than .* records written before"):
        api.resume(out)
    partial.write_bytes(original)  # restored: it resumes
    api.resume(out)
    assert RunStore(out).manifest["resumed_from"] == [20]
    assert verify(out).ok


def test_release_gives_back_rows_and_keeps_the_rest() -> None:
    buf = RecordBuffer(1 << 20)
    n = 600_000
    buf.append(day=np.arange(n, dtype=np.int32) // 1000, entity=np.arange(n, dtype=np.int32))
    buf.release(400_000, keep=("day",))
    assert buf.base == 400_000
    assert np.array_equal(buf.col("day"), np.arange(n) // 1000)  # kept whole
    assert np.array_equal(buf.col("entity")[400_000:], np.arange(400_000, n))  # untouched
    buf.append(day=np.zeros(2_000_000, np.int32))  # grows: released rows are not copied
    assert np.array_equal(buf.col("day")[:n], np.arange(n) // 1000)
    assert np.array_equal(buf.col("entity")[400_000:n], np.arange(400_000, n))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mremap is Linux's")
def test_released_pages_move_ahead_and_the_rows_written_there_are_the_appended_ones() -> None:
    """Released pages are moved ahead of the rows (no fresh pages for the next appends): the
    released rows read as zeros, the rows kept are intact, and the rows appended over the
    moved pages (which still hold old values) are exactly the appended ones, scalars too."""
    buf = RecordBuffer(3_000_000)
    n = 1_000_000
    ids = np.arange(n, dtype=np.int32)
    buf.append(day=ids // 1000, entity=ids, points=ids * 0.5)
    before = buf.col("entity").ctypes.data
    buf.release(800_000, keep=("day",))
    page = 4096  # the whole pages of rows 0 .. 800,000 go just past the page of row n
    first, last = -(-before // page) * page, (before + 4 * 800_000) // page * page
    assert buf._ahead["entity"] == -(-(before + 4 * n) // page) * page + (last - first)
    assert not buf.col("entity")[1024:798_976].any()  # released whole pages: zeros
    assert np.array_equal(buf.col("day"), ids // 1000)  # kept whole
    assert np.array_equal(buf.col("entity")[800_000:], ids[800_000:])
    more = np.arange(n, 2 * n, dtype=np.int32)
    buf.append(day=7, entity=more, points=more * 0.5)  # over the moved pages
    assert buf.col("entity").ctypes.data == before  # the same array, not grown
    assert np.array_equal(buf.col("entity")[n:], more)
    assert np.array_equal(buf.col("points")[n:], more * 0.5)
    assert (buf.col("day")[n:] == 7).all() and (buf.col("status")[n:] == PENDING).all()
    assert np.array_equal(buf.col("entity")[800_000:n], ids[800_000:])
    # no room ahead any more: the pages are given back instead, the rows as before
    buf.append(entity=np.arange(900_000, dtype=np.int32))
    ahead = dict(buf._ahead)
    buf.release(2_800_000)
    assert buf._ahead["entity"] == ahead["entity"]
    assert not buf.col("entity")[801_024:2_790_000].any()  # (whole pages only)
    assert np.array_equal(buf.col("entity")[2_800_000:], np.arange(800_000, 900_000))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # rows appended
            st.sampled_from(
                ["none", "cause", "review_day", "appealed", "read", "defaults", "error"]
            ),
        ),
        max_size=12,
    )
)
def test_lazy_columns_read_as_if_always_written(steps: list[tuple[int, str]]) -> None:
    """A column most records leave at its default has no memory until a row needs another
    value; whatever the order of appends and reads, every column reads as in a table that
    writes every column on every append. An append giving a lazy column only its default
    (as the observer gives ``error``, ``excused`` and ``import_row``) allocates nothing."""
    lazy, eager = RecordBuffer(16), Table(COLUMNS, 16)
    needed: set[str] = set()  # lazy columns given another value than the default, or read
    for i, (m, what) in enumerate(steps):
        cols: dict[str, object] = {"day": np.full(m, i, np.int32)}
        if what in ("cause", "review_day"):
            cols[what] = np.arange(m, dtype=np.int32) + 100 * i
        elif what == "appealed":
            cols[what] = np.ones(m, np.bool_)
        elif what == "defaults":
            cols |= {"error": np.full(m, -1, np.int8), "excused": np.zeros(m, np.bool_)}
            cols["import_row"] = -1
        elif what == "error":  # every other record in error, the first not
            cols["error"] = np.where(np.arange(m) % 2 == 1, 2, -1).astype(np.int8)
        for t in (lazy, eager):
            t.append(**cols)  # type: ignore[arg-type]
        for k, v in cols.items():
            if k in LAZY and np.any(np.asarray(v) != COLUMNS[k][1]):
                needed.add(k)
        if what == "read":  # handed out to be written: allocated from now on, defaults kept
            assert np.array_equal(lazy.col("appeal_day"), np.full(lazy.n, -1))
            needed.add("appeal_day")
    for k, (_, fill) in COLUMNS.items():
        v = lazy.view(k)
        assert (v is None) == (k in LAZY and k not in needed), k
        if v is None:  # never needed: every row is the default, and nothing was allocated
            assert (eager.col(k) == fill).all()
        else:
            assert np.array_equal(v, eager.col(k)), k


def test_a_lazy_column_allocated_after_a_release_fills_only_the_rows_kept() -> None:
    buf = RecordBuffer(1 << 12)
    buf.append(day=np.zeros(3000, np.int32))
    buf.release(2048)
    assert buf.view("cause") is None
    buf.append(day=np.ones(10, np.int32), cause=np.arange(10))
    cause = buf.col("cause")
    assert (cause[2048:3000] == -1).all() and np.array_equal(cause[3000:], np.arange(10))


@settings(max_examples=25, deadline=None)
@given(parts=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=12))
def test_follower_hashes_a_growing_file_in_small_reads(tmp_path_factory, parts):
    """The file hashed as it grows, read through a reused buffer smaller than the parts (and
    its written pages dropped from the cache), gives the file's own sha256, and the file
    keeps every byte."""
    import hashlib

    from credsim.store import parquet

    path = tmp_path_factory.mktemp("follow") / "grow.bin"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parquet, "_CHUNK", 64)
        follower = parquet.Follower(path)
        with open(path, "ab") as fh:
            for part in parts:
                fh.write(part)
                fh.flush()
                follower.catch_up()
        digest = follower.finish()
    whole = b"".join(parts)
    assert digest == hashlib.sha256(whole).hexdigest()
    assert path.read_bytes() == whole


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 3 * mmap.ALLOCATIONGRANULARITY), min_size=1, max_size=8),
    st.integers(0, 4),
)
def test_follower_hashes_a_growing_file_mapped_or_read(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[int], fail_after: int
) -> None:
    """A file appended in pieces of any size, hashed after each by :class:`Follower` through
    windows of the file mapped into memory (here a window is one allocation granule, so that
    pieces straddle windows), and by reading where mapping fails (after ``fail_after``
    mappings): the sha256 of the whole file, as :func:`sha256_file` gives it too."""
    path = tmp_path_factory.mktemp("follow") / "f.bin"
    rng = np.random.default_rng(len(pieces) + fail_after)
    maps = {"left": fail_after}
    real = mmap.mmap

    def flaky(*args: object, **kwargs: object) -> mmap.mmap:
        if maps["left"] == 0:
            raise OSError("cannot map")
        maps["left"] -= 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parquet_module, "_WINDOW", mmap.ALLOCATIONGRANULARITY)
        mp.setattr(parquet_module.mmap, "mmap", flaky)
        follower = Follower(path)
        whole = b""
        with path.open("ab") as out:
            for n in pieces:
                piece = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                out.write(piece)
                out.flush()
                whole += piece
                follower.catch_up()
        assert follower.finish() == hashlib.sha256(whole).hexdigest()
        maps["left"] = fail_after
        assert sha256_file(path) == hashlib.sha256(whole).hexdigest()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice: Linux")
def test_the_storing_threads_yield_the_cores_to_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread storing the records and the one writing the other tables run at a lower
    priority than the run's (the days and the chain, which the run waits for)."""
    seen: dict[str, int] = {}

    def mine() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def spy(name: str, real: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            seen[name] = mine()
            return real(*args)

        return wrapped

    monkeypatch.setattr(RecordStream, "_store", spy("store", RecordStream._store))
    monkeypatch.setattr(RecordStream, "_whole", spy("tables", RecordStream._whole))
    monkeypatch.setattr(RecordStream, "_write", spy("seal", RecordStream._write))
    credsim.run("nanjing", population=500, days=20, seed=1, out=tmp_path / "run")
    base = mine()
    assert seen == {
        "seal": base,
        "store": min(19, base + STORE_NICE),
        "tables": min(19, base + TABLES_NICE),
    }
    assert base < seen["store"] < seen["tables"] or base == 19
