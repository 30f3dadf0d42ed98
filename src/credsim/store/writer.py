"""Write a run folder atomically: either the whole run appears, or nothing does.

A run is evidence; a half-written folder that looks like a run would be worse than none. So
:func:`write_run` writes everything into a hidden temporary sibling folder, fsyncs the files
and the folder, and only then renames it to its final name - a single atomic step on one file
system. Any failure removes the temporary folder. An existing non-empty folder is never
overwritten.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import functools
import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim._fsio import fsync_dir, fsync_file, publish_dir, refuse_non_empty, staging_dir
from credsim.errors import RunExistsError, RunStoreError
from credsim.store.ledger import DIGEST_FIELD, Sealer, TableHasher, digest_array
from credsim.store.schema import (
    DIGEST_COLUMN,
    IMPORT_TABLES,
    RECORDS_CONTENT,
    REQUIRED_TABLES,
    SCHEMAS,
    conform,
)

MANIFEST = "manifest.json"


def write_run(
    out_dir: str | Path,
    tables: Mapping[str, pa.Table],
    manifest: dict,
    *,
    into_incomplete: bool = False,
) -> Path:
    """Write ``tables`` (conformed to their schemas) and ``manifest`` as a run folder.

    The five tables in :data:`~credsim.store.schema.REQUIRED_TABLES` must be given (possibly
    empty); ``friendships`` is optional. The manifest written is a copy of ``manifest`` with
    ``complete``, ``tables`` (rows and sha256 of each file) and ``created`` added, and sealed
    (:func:`_seal_table`, :func:`_seal_manifest`): records gain their ``digest`` column and the
    manifest its ``ledger``, ``table_digests``, ``field_digests`` and ``manifest_digest``. The
    caller's dict is not modified. Returns the absolute path of the run folder.

    With ``into_incomplete``, ``out_dir`` may be the folder of this very run, still marked
    incomplete (written while the run went on, see :mod:`credsim.store.runfolder`): each file is
    then moved into it atomically and the complete manifest moved last, the commit point.

    Raises :class:`~credsim.errors.RunExistsError` if ``out_dir`` exists and is not an empty
    folder, and :class:`~credsim.errors.RunStoreError` if a table does not fit its schema.
    """
    out = Path(out_dir).expanduser().absolute()
    into = into_incomplete and _is_incomplete_run(out)
    if not into:
        refuse_non_empty(out, RunExistsError, "a run")
    unknown = sorted(set(tables) - set(SCHEMAS) - set(IMPORT_TABLES))
    missing = [n for n in REQUIRED_TABLES if n not in tables]
    if unknown or missing:
        what = [f"unknown table(s) {unknown}"] if unknown else []
        what += [f"missing table(s) {missing}"] if missing else []
        raise RunStoreError(f"cannot write run {out}: {'; '.join(what)}")
    tmp = staging_dir(out)
    try:
        full = _plain(dict(manifest))
        sealer = Sealer(full)
        names = [n for n in (*SCHEMAS, *IMPORT_TABLES) if n in tables]  # the fixed order
        sealer.reserve(names)
        rows = {name: tables[name].num_rows for name in names}
        streamed = tables["records"] if hasattr(tables["records"], "sealer") else None
        # conformed in order (the first unfit table is the one named): the tables before the
        # records here, the records meanwhile with the chain when that changes none of their
        # values (same columns and types), the others by the thread that writes them
        first = {n: _conformed(n, tables[n]) for n in names[: names.index("records")]}
        rest = {**first, **{n: tables[n] for n in names if n not in first and n != "records"}}
        del first
        records = tables["records"]
        as_is = streamed is not None or [(f.name, f.type) for f in records.schema] == _CONTENT
        if not as_is:
            records = conform("records", records)
        # The main thread chains the records (serial; the longest part); a second writes their
        # row groups, each while the next is chained; a third writes the other tables one at a
        # time meanwhile. Written files are fsynced and hashed in the background too.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="credsim-write") as pool:
            files: dict[str, Future[str]] = {}
            others = pool.submit(_write_others, pool, sealer, rest, tmp, files)
            del rest
            path = tmp / "records.parquet"
            if streamed is not None:  # written and chained while the run went on
                sealer.take_records(streamed.sealer)
                os.replace(streamed.path, path)
                files["records"] = _done(streamed.sha256)
            else:
                conformed = pool.submit(conform, "records", records) if as_is else None
                files["records"] = _done(_write_records(pool, sealer, records, path, conformed))
                del conformed
            del records
            others.result()
            info: dict[str, dict[str, Any]] = {
                name: {"rows": rows[name], "sha256": files[name].result()} for name in names
            }
        full["complete"] = True
        full["tables"] = info
        full["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        full = _seal_manifest(sealer, full)
        text = json.dumps(full, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        fsync_file(tmp / MANIFEST)
        if into:
            fsync_dir(tmp)
            _commit_into(tmp, out)
            return out
        publish_dir(tmp, out, RunExistsError, "a run")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _is_incomplete_run(out: Path) -> bool:
    try:
        m = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("complete") is False


def _commit_into(tmp: Path, out: Path) -> None:
    """Move the files of ``tmp`` into the incomplete run folder ``out``, the manifest last."""
    for f in sorted(tmp.iterdir()):
        if f.name != MANIFEST:
            os.replace(f, out / f.name)
    fsync_dir(out)
    os.replace(tmp / MANIFEST, out / MANIFEST)
    fsync_dir(out)
    tmp.rmdir()


def _seal_table(sealer: Sealer, name: str, table: pa.Table) -> pa.Table:
    """Chain the records (adding their ``digest`` column) and digest the table's content."""
    return sealer.add(name, table)


def _seal_manifest(sealer: Sealer, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add ``ledger``, ``table_digests``, ``field_digests`` and ``manifest_digest``; call last."""
    return sealer.finish(manifest)


_CONTENT = [(f.name, f.type) for f in RECORDS_CONTENT]

ROW_GROUP_ROWS = 1 << 20
"""Rows per Parquet row group of the records (Arrow's default for ``write_table``)."""

_DISTINCT = frozenset(
    {
        "record_id",
        "cause_record",
        "trigger_record",
        "import_row",
        "entity_id",
        "actor_id",
        "household_id",
        "employer_id",
        "friend_id",
        "via_entity",
        "code",
        "row",
    }
)
"""Columns of (mostly) distinct values: identifiers. A Parquet dictionary for them overflows
and falls back to plain encoding after costing a hash of every value, so they go without."""


_SPREAD = frozenset({"score"})
"""Floating-point columns of many distinct values (the scores table's ``score``): stored
``BYTE_STREAM_SPLIT`` (each byte of the values in a stream of its own), which zstd compresses
better and faster than the plain values (3M scores: 13 against 29 ns a value, 0.94 against 1.19
bytes). The records' points, of few distinct values, compress as well plain."""


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """How a table is stored: zstd, with dictionary pages for the labels (strings other than
    the identity codes), except for the records' ``digest`` (random bytes: incompressible,
    every value distinct). Only the encoding on disk depends on this, never the values read
    back.

    Wide numbers (32 and 64 bits: days, points, scores) go without a dictionary: zstd
    compresses their few distinct values as well, and hashing every value into a dictionary
    took longer than compressing (3M score rows: 42 against 58 ms; the ``score`` column alone
    11 against 20 ms). Narrow integers (age, income decile) and dates keep it (smaller files:
    age 0.9 against 1.25 MB a million rows).

    Row-group statistics (min, max, nulls: what lets a query skip row groups) are kept for the
    numeric and date columns, not for strings: a row group holds nearly every label, so their
    min and max skip nothing, and computing them was 20% of the time spent writing records.

    Integer identifiers are stored delta-encoded (Parquet's ``DELTA_BINARY_PACKED``, read by
    every Parquet reader) without compression: ascending ones (``record_id``, the population's
    and the scores' ``entity_id``) shrink to a few bits a row, and writing the records took
    10 % less time than with zstd (1.1M records: 184 against 203 ms; ``record_id`` alone 6
    against 30 ms), the files 7 % (records) to 98 % (the scores' ``entity_id``) less."""
    names = schema.names
    strings = {f.name for f in schema if _is_string(f.type)}
    delta = {c for c in _DISTINCT & set(names) if pa.types.is_integer(schema.field(c).type)}
    spread = {c for c in _SPREAD & set(names) if pa.types.is_floating(schema.field(c).type)}
    encodings = {c: "DELTA_BINARY_PACKED" for c in sorted(delta)}
    encodings |= {c: "BYTE_STREAM_SPLIT" for c in sorted(spread)}
    return {
        "compression": {c: "none" if c == DIGEST_COLUMN or c in delta else "zstd" for c in names},
        "use_dictionary": [c for c in names if c not in _DISTINCT and _few(schema.field(c).type)],
        "column_encoding": encodings,
        "write_statistics": [c for c in names if c != DIGEST_COLUMN and c not in strings],
    }


def _few(t: pa.DataType) -> bool:
    """Whether a column of this type is given a dictionary (:func:`parquet_options`)."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    narrow = pa.types.is_integer(t) and t.bit_width <= 16
    return _is_string(t) or narrow or pa.types.is_date(t)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t.value_type if pa.types.is_dictionary(t) else t)


def label_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer for tables whose label columns are dictionary arrays (as built by
    ``records_arrow(..., dictionary=True)``), so that no string is built per row.

    Parquet stores such a column as it stores strings: dictionary pages and indices. The Arrow
    schema kept in the file (``ARROW:schema``, what Arrow readers restore) is the plain one, so
    the file reads back exactly as if written from strings: the same types, values and schema.
    """
    plain = pa.schema(
        [
            pa.field(
                f.name,
                f.type.value_type if pa.types.is_dictionary(f.type) else f.type,
                f.nullable,
                f.metadata,
            )
            for f in schema
        ],
        metadata=schema.metadata,
    )
    arrow_schema = base64.b64encode(plain.serialize().to_pybytes())
    return pq.ParquetWriter(
        path,
        schema.with_metadata({**(schema.metadata or {}), b"ARROW:schema": arrow_schema}),
        store_schema=False,
        **parquet_options(plain),
    )


def _write_records(
    pool: ThreadPoolExecutor,
    sealer: Sealer,
    table: pa.Table,
    path: Path,
    conformed: Future[pa.Table] | None = None,
) -> str:
    """Chain the records and write them with their ``digest`` column, one row group at a time:
    ``pool`` writes group k while this thread chains group k + 1 (the chain is serial), and
    hashes and starts syncing the file as it grows. Returns the file's sha256 (it is synced).

    With ``conformed`` (the table being conformed meanwhile, which changes no value of it:
    same columns and types), ``table`` is chained as it is and written as conformed."""
    follower = Follower(path)
    try:
        _write_groups(pool, sealer, table, path, conformed, follower)
    except BaseException:
        follower.close()
        raise
    return follower.finish()


def _write_groups(
    pool: ThreadPoolExecutor,
    sealer: Sealer,
    table: pa.Table,
    path: Path,
    conformed: Future[pa.Table] | None,
    follower: Follower,
) -> None:
    pending: Future[None] | None = None
    writer: pq.ParquetWriter | None = None
    try:
        start = 0
        for part, digests in sealer.records(table, ROW_GROUP_ROWS):
            if writer is None:
                final = conformed.result() if conformed is not None else table
                schema = final.schema.append(DIGEST_FIELD)
                writer = pq.ParquetWriter(path, schema, **parquet_options(schema))
            if conformed is not None:
                part = final.slice(start, part.num_rows)
            start += part.num_rows
            sealed = part.append_column(DIGEST_FIELD, digest_array(digests))
            if pending is not None:
                pending.result()
            pending = pool.submit(_write_group, writer, sealed, follower)
            del sealed, part, digests
    finally:
        if pending is not None:
            wait([pending])  # never close the file under a write (its error, if any, below)
        if writer is not None:
            writer.close()
    if pending is not None:
        pending.result()


def _write_group(writer: pq.ParquetWriter, group: pa.Table, follower: Follower) -> None:
    writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
    follower.catch_up()


class Follower:
    """Hashes a file while another writer appends to it (Parquet never goes back), and asks
    the system to start writing the new bytes to disk (Linux), so that little is left to hash
    and to sync when the file is complete."""

    def __init__(self, path: Path) -> None:
        path.touch()
        self._fd = os.open(path, os.O_RDONLY)
        self._sha = hashlib.sha256()
        self._done = 0

    def catch_up(self) -> None:
        size = os.fstat(self._fd).st_size
        while self._done < size:
            chunk = os.pread(self._fd, min(size - self._done, 1 << 24), self._done)
            if not chunk:
                break
            self._sha.update(chunk)
            self._done += len(chunk)
        _start_writeback(self._fd)

    def finish(self) -> str:
        """Hash the rest, fsync; the file's sha256."""
        try:
            self.catch_up()
            os.fsync(self._fd)
            return self._sha.hexdigest()
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _start_writeback(fd: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE): start writing dirty pages, without waiting."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, ctypes.c_int64(0), ctypes.c_int64(0), 2)


@functools.cache
def _sync_file_range() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _write_others(
    pool: ThreadPoolExecutor,
    sealer: Sealer,
    tables: dict[str, pa.Table],
    tmp: Path,
    files: dict[str, Future[str]],
) -> None:
    """Conform, seal and write the tables other than the records, in order, one at a time
    (memory)."""
    while tables:
        name = next(iter(tables))
        given = tables.pop(name)
        path = tmp / f"{name}.parquet"
        if isinstance(given, StreamedTable):  # written while the run went on
            os.replace(given.path, path)
            sealer.adopt(name, given.digest)
            files[name] = _done(given.sha256)
            continue
        if hasattr(given, "parts"):  # built part by part (engine.output.TableParts)
            _write_parts(sealer, name, given.parts(), path)
        else:
            table = conform(name, given)  # (a no-op for one conformed already)
            table = _seal_table(sealer, name, table)  # every table gets a content digest
            pq.write_table(table, path, **parquet_options(table.schema))
            del table
        del given
        files[name] = pool.submit(_finish_file, path)


class StreamedTable:
    """A table other than the records, written, digested and synced while the run went on
    (:class:`TableFile`): what :func:`write_run` takes in place of the table."""

    def __init__(self, path: Path, rows: int, sha256: str, digest: str) -> None:
        self.path, self.num_rows, self.sha256, self.digest = path, rows, sha256, digest


class TableFile:
    """Write table ``name`` to ``path`` part by part as the parts come: each conformed,
    added to the table's content digest and appended as row groups (the file hashed as it
    grows). :meth:`finish` gives the :class:`StreamedTable`: the same values and content
    digest as :func:`write_run` gives the whole table."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.rows = 0
        self._hasher = TableHasher(name)
        self._writer: pq.ParquetWriter | None = None
        self._follower = Follower(path)

    def add(self, part: pa.Table) -> None:
        """Append ``part``; its label columns may be dictionary arrays (:func:`label_writer`:
        stored and read back as strings)."""
        part = conform(self.name, part, dictionaries=True)
        self._hasher.update_table(part)
        if self._writer is None:
            self._writer = label_writer(self.path, part.schema)
        self._writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
        self.rows += part.num_rows
        self._follower.catch_up()

    def finish(self) -> StreamedTable:
        """Close the file (a part must have been added), sync it; the streamed table."""
        assert self._writer is not None, "a table file needs at least one part, maybe empty"
        self._writer.close()
        self._writer = None
        sha = self._follower.finish()
        return StreamedTable(self.path, self.rows, sha, self._hasher.hexdigest())

    def close(self) -> None:
        """Give up (the run failed): close and remove the file."""
        try:
            if self._writer is not None:
                self._writer.close()
        except (OSError, pa.ArrowException):
            pass
        finally:
            self._writer = None
            self._follower.close()
            self.path.unlink(missing_ok=True)


def _conformed(name: str, table: Any) -> Any:
    return table if isinstance(table, StreamedTable) else conform(name, table)


def _write_parts(sealer: Sealer, name: str, parts: Any, path: Path) -> None:
    """Conform, digest and write a table given as parts, one row group (or more) per part:
    part k is written by a second thread while this one builds and digests part k + 1 (the
    digest is serial; at most one part waits)."""
    writer: pq.ParquetWriter | None = None
    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="credsim-parts") as pool:
        try:
            for part in parts:
                table = _seal_table(sealer, name, conform(name, part))
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, **parquet_options(table.schema))
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write_table, table, row_group_size=ROW_GROUP_ROWS)
                del table
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                wait([pending])
            if writer is not None:
                writer.close()


def _done(value: str) -> Future[str]:
    done: Future[str] = Future()
    done.set_result(value)
    return done


def _finish_file(path: Path) -> str:
    """fsync a written table file and return its sha256 (in the writer's second thread)."""
    fsync_file(path)
    return sha256_file(path)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (the tables may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a manifest value: numpy scalars and arrays to Python, paths and
    dates to strings, tuples and sets to lists, NaN and infinities to null (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=str)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    raise RunStoreError(
        f"manifest value {value!r} ({type(value).__name__}) cannot be saved as JSON"
    )
