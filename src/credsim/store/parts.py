"""Parquet files written while a run goes on: the records file in parts, which a checkpoint
can close and a resumed run go on from (:class:`PartedFile`), and the other tables written part
by part as their parts come (:class:`TableFile`).

A Parquet file is readable only once its footer (the metadata saying where each row group lies)
is written at its end, and pyarrow cannot reopen a file it has closed. So a run that checkpoints
writes its records file in parts: :meth:`PartedFile.close_part` closes the part being written
(pyarrow writes its footer) and, from the second part on, appends a footer over the row groups of
every part so far. The file's first :attr:`PartedFile.length` bytes are then a whole Parquet file
holding every row written before the checkpoint. The next part is appended after them, and a
resumed run cuts the file back to them (:meth:`PartedFile.resume`) and goes on the same way.

What this leaves in the file besides the row groups are the footers of the parts and of the
checkpoints before the last (and four magic bytes before each); readers find the row groups
through the footer at the end only, so the table read back is the same, row for row and type for
type, as one written in a single part. Page indexes and Bloom filters, which would also hold
offsets, are not written (pyarrow's defaults).

Appending: the writer of a later part gets a file descriptor opened with ``O_APPEND`` and
positioned at 0. Arrow refuses to start a Parquet file in a stream that is not at its start,
and it asks the descriptor for its position (``lseek``) when it records where a page begins; with
``O_APPEND`` every write lands at the end of the file, so the positions it records after its
first write, and so its footer, are the file's own. :meth:`PartedFile.close_part` checks this
before it merges the footers. (Arrow's Python API takes a file descriptor since pyarrow 25.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from credsim.errors import RunStoreError
from credsim.store.ledger import Sealer
from credsim.store.parquet import ROW_GROUP_ROWS, Follower, StreamedTable
from credsim.store.pqwrite import table_writer
from credsim.store.schema import conform

_MAGIC = b"PAR1"

Opener = Callable[["Path | pa.NativeFile", pa.Schema], pq.ParquetWriter]
"""Makes the Parquet writer of a part: (where, schema) -> writer."""


def footer(path: Path, end: int) -> pq.FileMetaData:
    """The Parquet metadata of the footer that ends the first ``end`` bytes of ``path``."""
    with open(path, "rb") as fh:
        if end >= 12:
            fh.seek(end - 8)
            tail = fh.read(8)
            size = int.from_bytes(tail[:4], "little")
            if tail[4:] == _MAGIC and 0 < size <= end - 12:
                fh.seek(end - 8 - size)
                body = fh.read(size)
                try:
                    return pq.read_metadata(pa.BufferReader(_MAGIC + body + tail))
                except (OSError, pa.ArrowException):
                    pass
    raise RunStoreError(f"{path}: no Parquet footer ends its first {end} bytes")


def _first_offset(meta: pq.FileMetaData) -> int:
    """Where the first page of the first row group begins (the file's offset, as recorded)."""
    col = meta.row_group(0).column(0)
    offsets = [col.data_page_offset]
    if col.has_dictionary_page and col.dictionary_page_offset is not None:
        offsets.append(col.dictionary_page_offset)
    return min(offsets)


class PartedFile:
    """Write a Parquet file at ``path`` table by table, hashed as it grows (:class:`Follower`),
    in parts a checkpoint closes (see the module docstring). ``opener`` makes each part's
    writer. ``resuming``: the file is kept for :meth:`resume` (otherwise it starts empty).
    ``digest``: how the file's bytes are digested (a name in
    :data:`~credsim.store.parquet.FILE_DIGESTS`)."""

    def __init__(
        self, path: Path, opener: Opener, *, resuming: bool = False, digest: str = "sha256"
    ) -> None:
        self.path, self._opener = path, opener
        if not resuming:
            path.unlink(missing_ok=True)
        self._follower = Follower(path, digest)
        self._writer: pq.ParquetWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._start = 0  # where the open part began
        self._meta: pq.FileMetaData | None = None  # the row groups the file's last footer covers
        self.length: int | None = None
        """Bytes of the file that are a whole Parquet file (after :meth:`close_part` or
        :meth:`resume`; None before)."""

    @property
    def rows(self) -> int:
        """Rows under the file's last footer."""
        return 0 if self._meta is None else int(self._meta.num_rows)

    def write_table(self, table: pa.Table, row_group_size: int) -> None:
        if self._writer is None:
            self._open(table.schema)
        assert self._writer is not None
        if table.num_rows:  # (an empty table: the part's schema, no row group)
            self._writer.write_table(table, row_group_size=row_group_size)

    @property
    def open(self) -> bool:
        """Whether a part is being written."""
        return self._writer is not None

    def catch_up(self) -> None:
        """Hash what was written so far (:meth:`Follower.catch_up`)."""
        self._follower.catch_up()

    def _open(self, schema: pa.Schema) -> None:
        if self._meta is None:  # the first part: a new file
            self._writer = self._opener(self.path, schema)
            return
        self._start = os.stat(self.path).st_size
        append = getattr(self._opener, "append", None)
        writer = append(self.path, schema) if append is not None else None
        if writer is not None:  # a writer that appends by itself (credsim.store.pqwrite)
            self._writer = writer
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            self._sink = pa.OSFile(fd, mode="wb")  # owns the descriptor from here
        except TypeError:  # pyarrow before 25 opens files by name only
            os.close(fd)
            raise RunStoreError(
                f"{self.path}: pyarrow {pa.__version__} cannot write a file that a checkpoint "
                "closed (pyarrow 25 or later can); upgrade it, or run with --checkpoint-every 0"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._writer = self._opener(self._sink, schema)

    def close_part(self) -> tuple[int, str]:
        """Close the part being written, end the file with a footer over every row group so
        far, hash it all and sync it: (its length, its digest). Nothing written since the last
        call: the file as it was."""
        self._end_part()
        self._follower.catch_up()
        length, sha = self._follower.settle()
        self.length = length
        return length, sha

    def _end_part(self) -> None:
        """Close the part being written (if any) and end the file with a footer over every
        row group so far."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        part = footer(self.path, os.stat(self.path).st_size)
        if self._meta is None:  # the first part: its own footer covers every row
            self._meta = part
        else:
            self._merge(part)

    def _merge(self, part: pq.FileMetaData) -> None:
        """Append a footer over the row groups so far and those of ``part``."""
        assert self._meta is not None
        if part.num_row_groups and _first_offset(part) < self._start:
            raise RunStoreError(
                f"{self.path}: the Parquet writer recorded the appended part's pages at offsets "
                "of its own, not the file's; this version of pyarrow cannot write a file that "
                "a checkpoint closes (run with --checkpoint-every 0)"
            )
        try:
            self._meta.append_row_groups(part)
        except (RuntimeError, ValueError, pa.ArrowException) as exc:
            raise RunStoreError(f"{self.path}: cannot join the parts' footers ({exc})") from None
        out = pa.BufferOutputStream()
        self._meta.write_metadata_file(out)  # magic, footer, its length, magic
        with open(self.path, "ab") as fh:
            fh.write(out.getvalue().to_pybytes())

    def resume(self, length: int, digest: str) -> pq.FileMetaData | None:
        """Cut the file back to the ``length`` bytes a checkpoint kept (checked against their
        ``digest``) and go on after them: the metadata of the rows they hold (None: none)."""
        size = self.path.stat().st_size if self.path.is_file() else -1
        if size < length:
            raise RunStoreError(f"{self.path}: shorter than the {length} bytes the checkpoint kept")
        os.truncate(self.path, length)
        self._follower.catch_up()
        if self._follower.settle() != (length, digest):
            raise RunStoreError(
                f"{self.path}: its first {length} bytes changed since the checkpoint"
            )
        self._meta = footer(self.path, length) if length else None
        self.length = length
        return self._meta

    def finish(self) -> str:
        """Close the last part (its footer over every part), sync; the file's digest."""
        self._end_part()
        return self._follower.finish()

    def close(self) -> None:
        """Give up (the run failed): close the part being written. The file goes unless a
        checkpoint kept part of it (:attr:`length`); what came after that is cut off when the
        run resumes."""
        for closer in (self._writer, self._sink):
            if closer is not None:
                try:
                    closer.close()
                except (OSError, pa.ArrowException):
                    pass
        self._writer = self._sink = None
        self._follower.close()
        if self.length is None:
            self.path.unlink(missing_ok=True)


class TableFile:
    """Write table ``name`` to ``path`` part by part as the parts come: each conformed,
    added to the table's content digest and appended as row groups (the file hashed as it
    grows). :meth:`finish` gives the :class:`~credsim.store.parquet.StreamedTable`: the same
    values and content digest as :func:`write_run` gives the whole table."""

    def __init__(self, name: str, path: Path, sealer: Sealer) -> None:
        self.name, self.path = name, path
        self.rows = 0
        # the content digest and the file's digest of the run's encoding (since ledger v5: BLAKE3)
        self._hasher = sealer.hasher(name)
        self._file = PartedFile(path, table_writer, digest=sealer.file_digest)

    def add(self, part: pa.Table) -> None:
        """Append ``part``; its label columns may be dictionary arrays (stored and read back
        as strings, :mod:`credsim.store.pqwrite`)."""
        part = conform(self.name, part, dictionaries=True)
        self._hasher.update_table(part)
        self._file.write_table(part, ROW_GROUP_ROWS)
        self.rows += part.num_rows
        self._file.catch_up()

    def finish(self) -> StreamedTable:
        """Close the file (a part must have been added), sync it; the streamed table."""
        assert self._file.open, "a table file needs at least one part, maybe empty"
        sha = self._file.finish()
        return StreamedTable(self.path, self.rows, sha, self._hasher.hexdigest())

    def close(self) -> None:
        """Give up (the run failed): close and remove the file."""
        self._file.close()
