"""Open a run folder for reading, refusing anything that is not a complete run.

Every consumer (``query``, ``summary``, ``explain``, the CLI) opens runs through
:class:`RunStore`, so a folder left behind by a crash, a folder copied in part, or a typo in a
path gives one clear :class:`~credsim.errors.RunStoreError` naming the folder and the problem,
rather than a confusing failure deep inside a query.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim.errors import RunStoreError
from credsim.store.ledger_chain import file_digest_name
from credsim.store.parquet import file_digest
from credsim.store.schema import ALL_TABLES
from credsim.store.writer import MANIFEST


class RunStore:
    """A complete run folder: its manifest and its Parquet tables.

    ``RunStore(path)`` checks that ``path`` is a folder holding a readable ``manifest.json``
    with ``"complete": true``. Tables are read lazily, on request.
    """

    def __init__(self, path: str | Path) -> None:
        self.dir = Path(path).expanduser().absolute()
        if not self.dir.exists():
            raise RunStoreError(f"no run folder at {self.dir}")
        if not self.dir.is_dir():
            raise RunStoreError(f"{self.dir} is a file, not a run folder")
        manifest_path = self.dir / MANIFEST
        if not manifest_path.is_file():
            raise RunStoreError(
                f"{self.dir} is not a credsim run: it has no {MANIFEST} "
                "(the run was interrupted, or this is another folder)"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunStoreError(f"{manifest_path} cannot be read: {exc}") from exc
        if not isinstance(manifest, dict):
            raise RunStoreError(f"{manifest_path} does not hold a JSON object")
        if manifest.get("complete") is not True:
            raise RunStoreError(
                f'the run in {self.dir} is incomplete: its {MANIFEST} lacks "complete": true '
                "(the run did not finish writing); run the simulation again"
            )
        self.manifest: dict[str, Any] = manifest

    def __repr__(self) -> str:
        return f"RunStore({str(self.dir)!r})"

    @property
    def tables(self) -> list[str]:
        """Names of the tables present in this run, in the canonical order."""
        return [name for name in ALL_TABLES if (self.dir / f"{name}.parquet").is_file()]

    def has(self, name: str) -> bool:
        """Whether the run holds table ``name`` (``friendships``, ``events`` and ``quarantine``
        are optional)."""
        return name in ALL_TABLES and (self.dir / f"{name}.parquet").is_file()

    def path(self, name: str) -> Path:
        """Path of table ``name``'s Parquet file; an error if the run does not hold it."""
        if name not in ALL_TABLES:
            raise RunStoreError(f"unknown table {name!r}; a run holds {', '.join(ALL_TABLES)}")
        file = self.dir / f"{name}.parquet"
        if not file.is_file():
            raise RunStoreError(f"the run in {self.dir} has no {name} table ({file.name})")
        return file

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Read table ``name`` (optionally only some ``columns``) into memory.

        For large runs prefer :func:`credsim.store.query.query`, which filters before loading.
        """
        try:
            return pq.read_table(self.path(name), columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise RunStoreError(f"cannot read {self.path(name)}: {exc}") from exc

    def verify(self) -> None:
        """Check every table file against the row count and digest in the manifest (BLAKE3
        in runs sealed since ``credsim-ledger-v5``, SHA-256 before).

        Raises :class:`~credsim.errors.RunStoreError` listing each mismatch; cost is one read
        of every file, so this is an explicit step rather than part of opening.
        """
        listed = self.manifest.get("tables")
        if not isinstance(listed, dict):
            raise RunStoreError(f'the manifest in {self.dir} has no "tables" section')
        ledger = self.manifest.get("ledger")
        how = file_digest_name(ledger.get("encoding") if isinstance(ledger, dict) else None)
        problems = []
        for name, meta in listed.items():
            file = self.dir / f"{name}.parquet"
            if not file.is_file():
                problems.append(f"{file.name} is missing")
                continue
            if file_digest(file, how) != meta.get(how):
                problems.append(f"{file.name} has changed since the run was written ({how})")
            elif pq.ParquetFile(file).metadata.num_rows != meta.get("rows"):
                problems.append(f"{file.name} does not hold {meta.get('rows')} rows")
        if problems:
            raise RunStoreError(f"the run in {self.dir} is damaged: " + "; ".join(problems))
