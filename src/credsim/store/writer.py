"""Write a run folder atomically: either the whole run appears, or nothing does.

A run is evidence; a half-written folder that looks like a run would be worse than none. So
:func:`write_run` writes everything into a hidden temporary sibling folder, fsyncs the files
and the folder, and only then renames it to its final name - a single atomic step on one file
system. Any failure removes the temporary folder. An existing non-empty folder is never
overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim._fsio import fsync_dir, fsync_file, publish_dir, refuse_non_empty, staging_dir
from credsim.errors import RunExistsError, RunStoreError
from credsim.store.ledger import Sealer
from credsim.store.parquet import (
    ROW_GROUP_ROWS,
    Follower,
    StreamedTable,
    file_digest,
    write_labelled,
)
from credsim.store.pqwrite import table_writer
from credsim.store.schema import (
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
    ``complete``, ``tables`` (rows and digest of each file: ``blake3`` since
    ``credsim-ledger-v5``, ``sha256`` before) and ``created`` added, and sealed
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
    streamed = tables["records"] if hasattr(tables["records"], "sealer") else None
    tmp = staging_dir(out)
    try:
        full = _plain(dict(manifest))
        sealer = Sealer(full)
        names = [n for n in (*SCHEMAS, *IMPORT_TABLES) if n in tables]  # the fixed order
        sealer.reserve(names)
        rows = {name: tables[name].num_rows for name in names}
        # conformed in order (the first unfit table is the one named): the tables before the
        # records here, the records meanwhile with the chain when that changes none of their
        # values (same columns and types), the others by the thread that writes them
        first = {n: _conformed(n, tables[n]) for n in names[: names.index("records")]}
        rest = {**first, **{n: tables[n] for n in names if n not in first and n != "records"}}
        del first
        records = tables["records"]
        as_is = streamed is not None or _content(records.schema) == _CONTENT
        if not as_is:
            records = conform("records", records, dictionaries=True)
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
                files["records"] = _done(streamed.file_digest)
            else:
                conformed = pool.submit(_conform_labels, "records", records) if as_is else None
                files["records"] = _done(_write_records(pool, sealer, records, path, conformed))
                del conformed
            del records
            others.result()
            info: dict[str, dict[str, Any]] = {
                name: {"rows": rows[name], sealer.file_digest: files[name].result()}
                for name in names
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
        if streamed is not None and (tmp / "records.parquet").is_file():
            # what the run's checkpoint kept of it is where a resume looks for it
            os.replace(tmp / "records.parquet", streamed.path)
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


def _content(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """The names and types of ``schema``, a dictionary column's as its values' type (as
    :func:`_conform_labels` leaves it, the same values)."""
    return [
        (f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type) for f in schema
    ]


def _conform_labels(name: str, table: pa.Table) -> pa.Table:
    """``table`` conformed to its schema, its dictionary columns (the label columns of a
    simulation's tables, :mod:`credsim.engine.output`) kept as they are and written as strings
    (:func:`~credsim.store.parquet.label_writer`): no string is built per row."""
    return conform(name, table, dictionaries=True)


def _write_records(
    pool: ThreadPoolExecutor,
    sealer: Sealer,
    table: pa.Table,
    path: Path,
    conformed: Future[pa.Table] | None = None,
) -> str:
    """Chain the records and write them with their ``digest`` column, one row group at a time:
    ``pool`` writes group k while this thread chains group k + 1 (the chain is serial), and
    hashes and starts syncing the file as it grows. Returns the file's digest (it is synced).

    With ``conformed`` (the table being conformed meanwhile, which changes no value of it:
    same columns and types), ``table`` is chained as it is and written as conformed."""
    follower = Follower(path, sealer.file_digest)
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
    writer: Any = None
    try:
        start = 0
        for part, digests in sealer.records(table, ROW_GROUP_ROWS):
            if writer is None:
                final = conformed.result() if conformed is not None else table
                schema = final.schema.append(sealer.digest_field)
                writer = table_writer(path, schema)
            if conformed is not None:
                part = final.slice(start, part.num_rows)
            start += part.num_rows
            sealed = part.append_column(sealer.digest_field, sealer.stored(digests))
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
            files[name] = _done(given.file_digest)
            continue
        if hasattr(given, "parts"):  # built part by part (engine.output.TableParts)
            _write_parts(sealer, name, given.parts(), path)
        else:
            table = _conform_labels(name, given)  # (a no-op for one conformed already)
            table = _seal_table(sealer, name, table)  # every table gets a content digest
            write_labelled(table, path)
            del table
        del given
        files[name] = pool.submit(_finish_file, path, sealer.file_digest)


def _conformed(name: str, table: Any) -> Any:
    return table if isinstance(table, StreamedTable) else _conform_labels(name, table)


def _write_parts(sealer: Sealer, name: str, parts: Any, path: Path) -> None:
    """Conform, digest and write a table given as parts, one row group (or more) per part:
    part k is written by a second thread while this one builds and digests part k + 1 (the
    digest is serial; at most one part waits)."""
    writer: Any = None
    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="credsim-parts") as pool:
        try:
            for part in parts:
                table = _seal_table(sealer, name, _conform_labels(name, part))
                if writer is None:
                    writer = table_writer(path, table.schema)
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


def _finish_file(path: Path, digest: str) -> str:
    """fsync a written table file and return its digest (in the writer's second thread)."""
    fsync_file(path)
    return file_digest(path, digest)


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
