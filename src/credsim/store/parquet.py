"""How the run store's tables are laid out in Parquet, and written part by part.

:func:`parquet_options` chooses each column's encoding (only the bytes on disk depend on it,
never the values read back); :func:`label_writer` writes label columns from dictionary arrays
so that no string is built per row; :class:`Follower` hashes a file while it grows;
:class:`StreamedTable` is a table written that way while the run went on
(:class:`credsim.store.parts.TableFile`).
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import mmap
import os
from pathlib import Path
from typing import Any

import blake3
import pyarrow as pa
import pyarrow.parquet as pq

from credsim._libc import linux_function
from credsim.store.schema import DIGEST_COLUMN

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
bytes). The records' points, of few distinct values, compress as well plain. credsim's own
writer stores such a column with a dictionary when its values are whole numbers close together
(:mod:`credsim.store.pqwrite`), as a point scheme's scores are."""


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
    min and max skip nothing, and computing them was 20% of the time spent writing records;
    nor for flags (every row group holds both values: 5.7 against 4.6 ms a million rows).

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
        "write_statistics": [
            c
            for c in names
            if c != DIGEST_COLUMN
            and c not in strings
            and not pa.types.is_boolean(schema.field(c).type)
        ],
    }


def _few(t: pa.DataType) -> bool:
    """Whether a column of this type is given a dictionary (:func:`parquet_options`)."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    narrow = pa.types.is_integer(t) and t.bit_width <= 16
    return _is_string(t) or narrow or pa.types.is_date(t)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t.value_type if pa.types.is_dictionary(t) else t)


def label_writer(path: Path | pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer for tables whose label columns are dictionary arrays (as the engine
    builds them, :func:`credsim.engine.output.records_arrow`), so that no string is built per
    row.

    Parquet stores such a column as it stores strings: dictionary pages and indices. The Arrow
    schema kept in the file (``ARROW:schema``, what Arrow readers restore) is the plain one, so
    the file reads back exactly as if written from strings: the same types, values and schema.
    """
    labelled, options = as_strings(schema)
    return pq.ParquetWriter(path, labelled, **options)


def write_labelled(table: pa.Table, path: Path) -> None:
    """Write ``table`` whole (in row groups of :data:`ROW_GROUP_ROWS` rows), its dictionary
    columns stored as strings (:func:`label_writer`)."""
    labelled, options = as_strings(table.schema)
    table = table.replace_schema_metadata(labelled.metadata)
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, **options)


def as_strings(schema: pa.Schema) -> tuple[pa.Schema, dict[str, Any]]:
    """``schema`` with the plain schema (dictionary columns as their values' type) as the
    Arrow schema a Parquet file keeps, and the options that write it so."""
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
    labelled = schema.with_metadata({**(schema.metadata or {}), b"ARROW:schema": arrow_schema})
    return labelled, {"store_schema": False, **parquet_options(plain)}


FILE_DIGESTS: dict[str, Any] = {"sha256": hashlib.sha256, "blake3": blake3.blake3}
"""The digests of a file's bytes a manifest may hold (``tables.NAME.<name>``): BLAKE3 since
``credsim-ledger-v5``, SHA-256 before (:func:`credsim.store.ledger_chain.file_digest_name`).
A 13M reference run's records file is 2.7 GB: 1.7 s of SHA-256 on the storing thread, 0.8 s
of BLAKE3."""


class Follower:
    """Hashes a file while another writer appends to it (Parquet never goes back), and asks
    the system to start writing the new bytes to disk (Linux), so that little is left to hash
    and to sync when the file is complete. ``digest``: a name in :data:`FILE_DIGESTS`."""

    def __init__(self, path: Path, digest: str = "sha256") -> None:
        path.touch()
        self._fd = os.open(path, os.O_RDONLY)
        self._sha = FILE_DIGESTS[digest]()
        self._done = 0
        self._buf = bytearray(_CHUNK)
        self._view = memoryview(self._buf)
        self._dropped = 0
        self._lag = 0

    def catch_up(self) -> None:
        size = os.fstat(self._fd).st_size
        self._done = _hash_mapped(self._fd, self._sha, self._done, size)
        while self._done < size:
            got = _read_into(self._fd, self._view[: min(size - self._done, _CHUNK)], self._done)
            if not got:
                break
            self._sha.update(self._view[:got])
            self._done += got
        _start_writeback(self._fd)
        if self._lag > self._dropped:  # written back since the last call: out of the cache
            _drop_cached(self._fd, self._dropped, self._lag)
            self._dropped = self._lag
        self._lag = self._done

    def settle(self) -> tuple[int, str]:
        """fsync; (bytes hashed, their digest): the file so far, if :meth:`catch_up` was
        called since the last write."""
        os.fsync(self._fd)
        return self._done, self._sha.copy().hexdigest()

    def finish(self) -> str:
        """Hash the rest, fsync; the file's digest (hex)."""
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


_WINDOW = 1 << 28
"""Bytes of a file mapped at once to hash them (:func:`_hash_mapped`)."""


def _hash_mapped(fd: int, sha: Any, lo: int, hi: int) -> int:
    """Hash bytes ``lo`` .. ``hi`` of the file straight from the page cache, mapped into
    memory, rather than copied out by ``read`` (a copy of each byte: 4 GB cost 1.9 s of system
    CPU, mapped 0.03 s; the hash itself 3 s). Returns where it stopped: ``hi``, or earlier
    where the file cannot be mapped (the caller reads the rest)."""
    at = lo - lo % mmap.ALLOCATIONGRANULARITY
    while lo < hi:
        end = min(hi, at + _WINDOW)
        try:
            m = mmap.mmap(fd, end - at, access=mmap.ACCESS_READ, offset=at)
        except (OSError, ValueError):
            return lo
        with m, memoryview(m) as view, view[lo - at :] as part:
            sha.update(part)
        lo = at = end
    return lo


def _read_into(fd: int, view: memoryview, at: int) -> int:
    """Read the file's bytes from ``at`` into ``view``; how many were read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], at)
    chunk = os.pread(fd, len(view), at)  # pragma: no cover - systems without preadv
    view[: len(chunk)] = chunk
    return len(chunk)


def _drop_cached(fd: int, lo: int, hi: int) -> None:
    """Ask the system to drop bytes ``lo`` .. ``hi`` of the file from its page cache (the
    pages already written to disk go; the others stay). A run's records file is written once
    and hashed as it grows, never read again by the run: at 13M persons its 8 GB would
    otherwise fill the cache, each page taken from free memory that this machine's host must
    first hand back (about 1 ms a MB); dropped, the cache keeps recycling the same pages."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)


_CHUNK = 1 << 22
"""Bytes read at once to hash a growing file, into one buffer reused (a fresh 16 MB ``bytes``
object a read was fresh memory each time)."""


def _sync_file_range() -> Any:
    return linux_function(
        "sync_file_range", (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    )


class StreamedTable:
    """A table other than the records, written, digested and synced while the run went on
    (:class:`~credsim.store.parts.TableFile`): what :func:`write_run` takes in place of the
    table."""

    def __init__(self, path: Path, rows: int, file_digest: str, digest: str) -> None:
        self.path, self.num_rows, self.file_digest, self.digest = path, rows, file_digest, digest


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (the tables may be large)."""
    return file_digest(path, "sha256")


def file_digest(path: str | Path, name: str) -> str:
    """Hex digest ``name`` (:data:`FILE_DIGESTS`) of a file's bytes, mapped or read in
    chunks (the tables may be large)."""
    digest = FILE_DIGESTS[name]()
    with open(path, "rb") as fh:
        done = _hash_mapped(fh.fileno(), digest, 0, os.fstat(fh.fileno()).st_size)
        fh.seek(done)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
