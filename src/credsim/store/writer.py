"""Write a run folder atomically: either the whole run appears, or nothing does.

A run is evidence; a half-written folder that looks like a run would be worse than none. So
:func:`write_run` writes everything into a hidden temporary sibling folder, fsyncs the files
and the folder, and only then renames it to its final name - a single atomic step on one file
system. Any failure removes the temporary folder. An existing non-empty folder is never
overwritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim._fsio import fsync_dir, fsync_file, publish_dir, refuse_non_empty, staging_dir
from credsim.errors import RunExistsError, RunStoreError
from credsim.store.ledger import Sealer
from credsim.store.schema import DIGEST_COLUMN, IMPORT_TABLES, REQUIRED_TABLES, SCHEMAS, conform

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
        info: dict[str, dict[str, Any]] = {}
        full = _plain(dict(manifest))
        sealer = Sealer(full)
        for name in (*SCHEMAS, *IMPORT_TABLES):  # fixed order; one table at a time (memory)
            if name not in tables:
                continue
            table = conform(name, tables[name])
            table = _seal_table(sealer, name, table)  # every table gets a content digest
            path = tmp / f"{name}.parquet"
            pq.write_table(table, path, compression="zstd", use_dictionary=_dictionary(table))
            fsync_file(path)
            info[name] = {"rows": table.num_rows, "sha256": sha256_file(path)}
            del table
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


def _dictionary(table: pa.Table) -> bool | list[str]:
    """Dictionary-encode every column but the digests (random bytes: a dictionary never pays)."""
    names = table.column_names
    return [c for c in names if c != DIGEST_COLUMN] if DIGEST_COLUMN in names else True


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
