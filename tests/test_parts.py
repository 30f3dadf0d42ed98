"""A Parquet file written in parts that checkpoints close (credsim.store.parts)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credsim.errors import RunStoreError
from credsim.store.parquet import label_writer
from credsim.store.parts import Opener, PartedFile, footer
from credsim.store.pqwrite import table_writer

OPENERS = pytest.mark.parametrize("opener", [label_writer, table_writer], ids=["arrow", "credsim"])
"""Arrow's writer (a later part through a descriptor) and credsim's (appending by itself)."""


def _rows(first: int, n: int) -> pa.Table:
    ids = np.arange(first, first + n, dtype=np.int64)
    labels = pa.DictionaryArray.from_arrays(pa.array(ids % 3, pa.int8()), pa.array(["a", "b", "c"]))
    return pa.table({"id": ids, "label": labels, "x": ids * 0.5})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _expected(n: int) -> pa.Table:
    t = _rows(0, n)
    return t.set_column(1, "label", t["label"].cast(pa.string()))


@OPENERS
@settings(max_examples=25, deadline=None)
@given(parts=st.lists(st.lists(st.integers(1, 300), max_size=3), min_size=1, max_size=5))
def test_parts_read_back_as_one_table_and_each_checkpoint_leaves_a_whole_file(
    tmp_path_factory: pytest.TempPathFactory, parts: list[list[int]], opener: Opener
) -> None:
    """Parts of any sizes (an empty part: a checkpoint with nothing new), written in tables
    of any sizes: the file reads back as every row in order, with pyarrow and DuckDB; at each
    checkpoint its first bytes are a whole Parquet file of the rows so far."""
    path = tmp_path_factory.mktemp("parts") / "t.parquet"
    f = PartedFile(path, opener)
    n = 0
    for sizes in parts:
        for size in sizes:
            f.write_table(_rows(n, size), row_group_size=128)
            n += size
        length, sha = f.close_part()
        data = path.read_bytes()
        assert len(data) == length and _sha(data) == sha
        if n:
            assert pq.read_table(path).equals(_expected(n))
            assert f.rows == n
        else:
            assert length == 0  # nothing written yet: an empty file
    f.write_table(_rows(n, 7), row_group_size=128)  # a last part, closed by finish
    n += 7
    sha = f.finish()
    assert _sha(path.read_bytes()) == sha
    assert pq.read_table(path).equals(_expected(n))
    got = duckdb.sql(f"select count(*), sum(id), count(distinct label) from '{path}'").fetchall()[0]
    assert got == (n, n * (n - 1) // 2, min(n, 3))


@OPENERS
def test_resume_cuts_back_to_the_checkpoint_and_goes_on(tmp_path: Path, opener: Opener) -> None:
    path = tmp_path / "t.parquet"
    f = PartedFile(path, opener)
    f.write_table(_rows(0, 100), row_group_size=64)
    f.close_part()
    f.write_table(_rows(100, 50), row_group_size=64)
    length, sha = f.close_part()
    f.write_table(_rows(150, 30), row_group_size=64)  # after the checkpoint: lost
    f.catch_up()
    f.close()  # the run failed: the part is closed, the file kept
    assert path.stat().st_size > length

    g = PartedFile(path, opener, resuming=True)
    meta = g.resume(length, sha)
    assert meta is not None and meta.num_rows == 150 and path.stat().st_size == length
    g.write_table(_rows(150, 80), row_group_size=64)
    sha_all = g.finish()
    assert _sha(path.read_bytes()) == sha_all
    assert pq.read_table(path).equals(_expected(230))
    assert pq.ParquetFile(path).metadata.num_row_groups == 2 + 1 + 2  # 64+36, 50, 64+16


@OPENERS
def test_resume_refuses_a_file_changed_or_cut_short(tmp_path: Path, opener: Opener) -> None:
    path = tmp_path / "t.parquet"
    f = PartedFile(path, opener)
    f.write_table(_rows(0, 100), row_group_size=64)
    length, sha = f.close_part()
    f.close()
    data = bytearray(path.read_bytes())
    data[length // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RunStoreError, match="changed since the checkpoint"):
        PartedFile(path, opener, resuming=True).resume(length, sha)
    path.write_bytes(bytes(data[: length - 1]))
    with pytest.raises(RunStoreError, match="shorter than"):
        PartedFile(path, opener, resuming=True).resume(length, sha)


def test_close_without_a_checkpoint_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    f = PartedFile(path, label_writer)
    f.write_table(_rows(0, 10), row_group_size=64)
    f.close()
    assert not path.exists()


def test_a_writer_that_records_offsets_of_its_own_is_refused(tmp_path: Path) -> None:
    """Through a Python file object Arrow counts positions from where it started, not the
    file's: the footer of such a part would point at the wrong bytes, so it is refused."""
    path = tmp_path / "t.parquet"
    handles = []

    def python_file(where: Path | pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
        if isinstance(where, Path):
            return label_writer(where, schema)
        fh = open(path, "ab")  # noqa: SIM115 - closed below
        handles.append(fh)
        return label_writer(pa.PythonFile(fh, mode="w"), schema)

    f = PartedFile(path, python_file)
    f.write_table(_rows(0, 10), row_group_size=64)
    f.close_part()
    f.write_table(_rows(10, 10), row_group_size=64)
    with pytest.raises(RunStoreError, match="offsets of its own"):
        f.close_part()
    for fh in handles:
        fh.close()


def test_footer_refuses_bytes_that_end_in_none(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.write_bytes(b"PAR1" + b"\0" * 40)
    with pytest.raises(RunStoreError, match="no Parquet footer"):
        footer(path, 44)


def test_a_pyarrow_that_cannot_take_a_descriptor_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before pyarrow 25, ``pa.OSFile`` took a path only: the part after a checkpoint cannot
    be opened, and the run says why and what to do (the descriptor is not leaked)."""
    path = tmp_path / "t.parquet"
    f = PartedFile(path, label_writer)
    f.write_table(_rows(0, 10), row_group_size=64)
    f.close_part()

    real = pa.OSFile

    def by_name_only(where: object, mode: str = "r") -> pa.NativeFile:
        if not isinstance(where, str | Path):
            raise TypeError("expected bytes, int found")
        return real(str(where), mode)

    monkeypatch.setattr(pa, "OSFile", by_name_only)
    with pytest.raises(RunStoreError, match="pyarrow .* 25 or later .*--checkpoint-every 0"):
        f.write_table(_rows(10, 10), row_group_size=64)
    f.close()
    assert pq.read_table(path).num_rows == 10  # what the checkpoint kept
