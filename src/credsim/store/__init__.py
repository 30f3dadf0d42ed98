"""The run store: one folder per run, holding Parquet tables and a manifest.

Write a run with :func:`write_run`, open it with :class:`RunStore`, ask it questions with
:func:`query` (DuckDB SQL), and read it in plain language with :func:`summarize` and
:func:`explain`. Runs are sealed as they are written (:mod:`credsim.store.ledger`); check one
with :func:`verify`.
"""

from credsim.store.explain import explain
from credsim.store.parquet import file_digest, sha256_file
from credsim.store.query import connect, format_table, query
from credsim.store.reader import RunStore
from credsim.store.schema import (
    FRIENDSHIPS,
    LISTS,
    MEASURES,
    POPULATION,
    RECORDS,
    REQUIRED_TABLES,
    SCHEMAS,
    SCORES,
    conform,
)
from credsim.store.summary import summarize
from credsim.store.verify import VerifyReport, verify
from credsim.store.writer import write_run

__all__ = [
    "FRIENDSHIPS",
    "LISTS",
    "MEASURES",
    "POPULATION",
    "RECORDS",
    "REQUIRED_TABLES",
    "SCHEMAS",
    "SCORES",
    "RunStore",
    "VerifyReport",
    "conform",
    "connect",
    "explain",
    "file_digest",
    "format_table",
    "query",
    "sha256_file",
    "summarize",
    "verify",
    "write_run",
]
