"""Records leave memory for the run folder while the run goes on.

A run written to a folder hands its records to a :class:`RecordStream` as soon as they are
settled (:meth:`~credsim.engine.simulation.Simulation.settled`: no review, appeal or escalation
changes or reads them any more). A second thread turns each batch into Arrow, chains it into the
ledger and appends it to the records file as row groups; then the records' memory is given back
(:meth:`~credsim.engine.records.Table.release`). Memory then holds the records that can still
change, not every record of the run. The run folder ends up with exactly what writing all records
at the end gives: the same rows, digests and ledger head; only the row groups of the file differ.

Resuming. A checkpoint closes the part of the records file being written, so that the file's
first bytes are a whole Parquet file of every record stored so far (:mod:`credsim.store.parts`),
and keeps their length and digest with the ledger's state (the head of the chain, its count, its
vocabularies). A resumed run checks those bytes, cuts off what was written after them, reads
back the little it needs of them (the records' days, where escalation looks back; the imported
records' rows) and goes on from the head: nothing is chained or stored twice. The score
snapshots (written to a table of their own on another thread) are saved for resuming as each is
written, in ``DIR/.segments/``; when the run is committed they go.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from credsim._fsio import replace_atomically
from credsim._libc import yield_to_others
from credsim.engine.output import (
    NO_SNAPSHOT,
    friendships_table,
    population_table,
    record_labels,
    record_names,
    records_arrow,
    score_part,
)
from credsim.engine.records import COLUMNS
from credsim.engine.simulation import Simulation
from credsim.errors import CredsimError, RunStoreError
from credsim.store.ledger import Sealer
from credsim.store.ledger_engine import EngineRecords
from credsim.store.parquet import ROW_GROUP_ROWS, StreamedTable, file_digest
from credsim.store.parts import PartedFile, TableFile
from credsim.store.pqwrite import table_writer
from credsim.store.schema import conform

PARTIAL = ".records.parquet.partial"
PARTIAL_TABLE = ".{}.parquet.partial"
"""The other tables written while the run goes on (population, friendships, scores)."""
SEGMENTS = ".segments"
"""Where a run that checkpoints saves its score snapshots for resuming."""
FLUSH_ROWS = 1 << 20
"""Settled records gathered before a batch goes to the writer thread."""
STORE_NICE = 5
"""How much lower the storing thread's priority is than the run's (see
:func:`~credsim._libc.yield_to_others`)."""
TABLES_NICE = 15
"""How much lower the priority of the thread writing the other tables is: nothing waits for
it until the run ends (or checkpoints)."""

_NO_ENTS, _NO_SCORES, _NO_GRADES = np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int16)


class StreamedRecords:
    """A finished records file, chained: what :func:`~credsim.store.writer.write_run` takes in
    place of a records table."""

    def __init__(self, path: Path, rows: int, file_digest: str, sealer: Sealer) -> None:
        self.path, self.num_rows, self.file_digest, self.sealer = path, rows, file_digest, sealer


class RecordStream:
    """Stream the settled records of ``sim`` into ``folder`` (see the module docstring).

    ``basis``: the manifest fields the ledger's genesis is derived from (scheme sha256, seed,
    and the label columns' vocabularies from ``labels``: :func:`credsim._manifest.record_labels`,
    the names the records' dictionaries are built over, so their indices are the codes).
    ``durable``: save the score snapshots for resuming (a run that checkpoints).
    ``resuming``: keep the records file for :meth:`resume`."""

    def __init__(
        self,
        sim: Simulation,
        folder: Path,
        basis: dict[str, Any],
        *,
        durable: bool,
        flush_rows: int | None = None,
        resuming: bool = False,
    ) -> None:
        self.sim, self.folder, self.durable = sim, folder, durable
        self.flush_rows = max(1, int(FLUSH_ROWS if flush_rows is None else flush_rows))
        self.path = folder / PARTIAL
        self.seg_dir = folder / SEGMENTS
        self.sealer = Sealer(basis)
        self.names = record_names(sim)
        self.labels = record_labels(self.names)
        self.done = 0  # records handed to the writer thread
        self._batch_first = 0  # first record of the last batch handed over
        # score snapshots saved: name, day, the file's digest (Sealer.file_digest)
        self.snapshots: list[dict[str, Any]] = []
        self._pending: Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="credsim-seal")
        # The days wait for the sealing thread (the chain is serial), which waits for nothing
        # but them: the storing thread, and the thread writing the other tables still more,
        # yield the cores to both (a 13M reference run: 44.7 to 45.0 s against 48.2 s).
        self._out = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="credsim-store",
            initializer=yield_to_others,
            initargs=(STORE_NICE,),
        )
        self._stored: Future[None] | None = None  # the last batch given to the file thread
        self._imports: list[tuple[np.ndarray, np.ndarray]] = []
        self._file = PartedFile(
            self.path, table_writer, resuming=resuming, digest=self.sealer.file_digest
        )
        # The population (and friendships), fixed from the start, and each score snapshot
        # as it is taken are written on a thread of their own, in order, while the days run.
        self.tables: dict[str, StreamedTable] = {}
        """The tables written while the run went on (complete after :meth:`finish`)."""
        self._files: dict[str, TableFile] = {}
        self._jobs: list[Future[None]] = []
        self._snaps_sent = 0  # score snapshots handed to the tables thread
        self._emptied = 0  # snapshots emptied (see _let_go)
        self._saved_before = 0  # snapshots saved before a resume (saved_snapshots)
        self._tables = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="credsim-tables",
            initializer=yield_to_others,
            initargs=(TABLES_NICE,),
        )
        self._submit(self._whole, "population")
        self._submit(self._whole, "friendships")

    # -- the run's side -------------------------------------------------------------------
    def after_day(self, day: int) -> None:
        """Hand over the records settled at the end of ``day`` once there are enough, and
        the score snapshots taken so far."""
        self._send_snapshots()
        if self.sim.records.n - self.done < self.flush_rows:
            return  # (not enough records even if all were settled: skip the look)
        upto = self.sim.settled(day)
        if upto - self.done >= self.flush_rows:
            self._hand_over(upto)

    def _hand_over(self, upto: int) -> None:
        """Give records ``done`` .. ``upto`` to the sealing thread. At most one batch is being
        sealed and one stored: the last batch must be sealed before the next goes, and once
        it is, the one before it is stored, so its records' memory can go."""
        rec = self.sim.records
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
            rec.release(self._batch_first, self.sim.kept_columns)  # stored: read no more
        # views (never written again); None: a column every record holds at its default
        cols = {k: rec.view(k, self.done, upto) for k in COLUMNS}
        self._pending = self._pool.submit(self._write, cols, self.done)
        self._batch_first, self.done = self.done, upto

    def checkpoint(self) -> dict[str, Any]:
        """Close the records file's part (every record handed over stored, the file a whole
        Parquet file, synced), wait until every score snapshot taken so far is saved (the
        tables thread saves each as it writes it), and return what the checkpoint keeps."""
        self._wait()
        length, sha = self._file.close_part()
        self._send_snapshots()
        self._drain_tables()
        return {
            "done": self.done,
            "records_file": {"length": length, self.sealer.file_digest: sha},
            "ledger": self.sealer.state(),
            "snapshots": list(self.snapshots),
        }

    def saved_snapshots(
        self, saved: dict[str, Any]
    ) -> list[tuple[np.ndarray, int, np.ndarray, np.ndarray]]:
        """The score snapshots a checkpoint lists, read back (checked)."""
        out = []
        how = self.sealer.file_digest
        for s in saved.get("snapshots", []):
            path = self.seg_dir / s["name"]
            if not path.is_file() or file_digest(path, how) != s.get(how):
                raise CredsimError(
                    f"{path}: this score snapshot saved before the checkpoint is missing or "
                    "changed; the run cannot be resumed (start it again)"
                )
            with ipc.open_file(path) as f:
                z = f.read_all()
            ents, score, grade = (z.column(c).to_numpy() for c in ("ents", "score", "grade"))
            out.append((ents, int(s["day"]), score, grade))
        self.snapshots = list(saved.get("snapshots", []))
        self._saved_before = len(self.snapshots)  # the snapshots put back first: saved already
        return out

    def finish(self) -> StreamedRecords:
        """Write the rest, close the file; the records' file, count, digest and chain. The
        other tables written meanwhile are then in :attr:`tables`."""
        self._send_snapshots()
        if self._snaps_sent == 0:  # a table with no snapshot: its schema, no rows
            self._submit(self._part, "scores", NO_SNAPSHOT)
        self._submit(self._finish_table, "scores")
        if self.sim.records.n > self.done:
            self._hand_over(self.sim.records.n)
        self._wait()
        rows = self.sealer.ledger()["records"]
        if rows == 0:  # no records at all: the schema, no rows
            empty: dict[str, np.ndarray] = {k: np.zeros(0, dt) for k, (dt, _) in COLUMNS.items()}
            schema = conform("records", records_arrow(empty, 0, self.names)).schema
            self._file.write_table(
                schema.append(self.sealer.digest_field).empty_table(), ROW_GROUP_ROWS
            )
        sha = self._file.finish()
        self._pool.shutdown()
        self._out.shutdown()
        self.sim.records.release(self.done, self.sim.kept_columns)
        self._drain_tables()
        self._tables.shutdown()
        return StreamedRecords(self.path, int(rows), sha, self.sealer)

    def imports(self) -> tuple[np.ndarray, np.ndarray]:
        """(record ids, data rows) of the imported records written so far."""
        if not self._imports:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        ids, rows = zip(*self._imports, strict=True)
        return np.concatenate(ids), np.concatenate(rows)

    def close(self) -> None:
        """Stop without finishing (the run failed): wait for the writer thread, close files."""
        try:
            self._wait()
        except BaseException:  # noqa: BLE001 - the run's own error is the one to report
            pass
        finally:
            self._pool.shutdown()
            self._out.shutdown()
            self._tables.shutdown(cancel_futures=True)  # after the part being written
            for file in self._files.values():
                file.close()
            for table in self.tables.values():
                table.path.unlink(missing_ok=True)
            self._file.close()  # kept as far as a checkpoint kept it

    # -- resuming ------------------------------------------------------------------------
    def resume(self, saved: dict[str, Any]) -> None:
        """Go on from a checkpoint: the records file cut back to what the checkpoint kept
        (checked), the chain from its head, and the score snapshots it lists kept (the other
        saved snapshots, taken after it, deleted)."""
        listed = {s["name"] for s in saved.get("snapshots", [])}
        if self.seg_dir.is_dir():
            for f in self.seg_dir.iterdir():
                if f.name not in listed:
                    f.unlink()
        done, kept = int(saved["done"]), saved["records_file"]
        try:
            self._file.resume(int(kept["length"]), str(kept.get(self.sealer.file_digest)))
            if self._file.rows != done:
                raise RunStoreError(f"{self.path}: does not hold the {done} records it should")
            self.sealer.restore(saved["ledger"])
        except RunStoreError as exc:
            raise CredsimError(
                f"{exc}: the records written before the checkpoint are missing or changed; "
                "the run cannot be resumed (start it again)"
            ) from None
        if done:
            # what the run reads of its settled records (their days), and the imported ones
            read = pq.read_table(self.path, columns=["import_row", *self.sim.kept_columns])
            for k in self.sim.kept_columns:
                self.sim.records.raw(k)[:done] = read.column(k).to_numpy()
            rows = read.column("import_row").combine_chunks()
            if rows.null_count < done:
                at = np.nonzero(np.asarray(rows.is_valid()))[0]
                self._imports.append((at, np.asarray(rows.drop_null()).astype(np.int32)))
        self.done = self._batch_first = done

    # -- the tables thread ----------------------------------------------------------------
    def _submit(self, fn: Any, *args: Any) -> None:
        self._jobs.append(self._tables.submit(fn, *args))

    def _send_snapshots(self) -> None:
        """Give the snapshots taken since the last call to the tables thread; raise the error
        of a table that could not be written."""
        snaps = self.sim.snap
        while self._snaps_sent < len(snaps):
            self._submit(self._snapshot, self._snaps_sent, snaps[self._snaps_sent])
            self._snaps_sent += 1
        self._let_go()
        done = [job for job in self._jobs if job.done()]
        for job in done:
            job.result()
        self._jobs = [job for job in self._jobs if not job.done()]

    def _drain_tables(self) -> None:
        """Until the tables thread has done every job given (raising the first error)."""
        for job in self._jobs:
            job.result()
        self._jobs = []

    def _let_go(self) -> None:
        """Empty the snapshots handed to the tables thread (it holds them until it has written
        and, when the run checkpoints, saved them): nothing else reads them (2.5 GB at 13M)."""
        snaps = self.sim.snap
        for i in range(self._emptied, self._snaps_sent):
            snaps[i] = (_NO_ENTS, snaps[i][1], _NO_SCORES, _NO_GRADES)
        self._emptied = max(self._emptied, self._snaps_sent)

    def _snapshot(self, i: int, snap: tuple[np.ndarray, int, np.ndarray, np.ndarray]) -> None:
        """Write snapshot ``i`` to the scores table and, in a run that checkpoints, save it
        for resuming (once: not those put back by a resume)."""
        self._part("scores", snap)
        ents, day, score, grade = snap
        if self.durable and i >= self._saved_before:
            self.seg_dir.mkdir(exist_ok=True)
            name = f"scores-{day:06d}.arrow"
            path = self.seg_dir / name
            table = pa.table({"ents": ents, "score": score, "grade": grade})
            replace_atomically(path, lambda fh: _write_ipc(fh, table))
            del table
            how = self.sealer.file_digest
            self.snapshots.append({"name": name, "day": int(day), how: file_digest(path, how)})
        # written (and saved): the driver emptied its entry when it handed the snapshot over
        self.sim.snapshots.give_back(score, grade)

    def _whole(self, name: str) -> None:
        """Write a table the run never changes (built here)."""
        if name == "population":
            table = population_table(self.sim, stored=True)
        else:
            table = friendships_table(self.sim)
        if table is None:
            return
        self._part(name, table)
        del table
        self._finish_table(name)

    def _part(
        self, name: str, part: pa.Table | tuple[np.ndarray, int, np.ndarray, np.ndarray]
    ) -> None:
        file = self._files.get(name)
        if file is None:
            path = self.folder / PARTIAL_TABLE.format(name)
            file = self._files[name] = TableFile(name, path, self.sealer)
        file.add(part if isinstance(part, pa.Table) else score_part(self.sim, part, stored=True))

    def _finish_table(self, name: str) -> None:
        self.tables[name] = self._files.pop(name).finish()

    # -- the writer thread ----------------------------------------------------------------
    def _wait(self) -> None:
        """Until every batch handed over is sealed and stored."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        if self._stored is not None:
            stored, self._stored = self._stored, None
            stored.result()

    def _write(self, cols: dict[str, np.ndarray | None], first: int) -> None:
        """Seal a batch (this thread: the chain is serial) and have the file thread store it
        while the next batch is sealed. Once the first records have fixed the ledger's
        vocabularies, the records are chained from the engine's columns alone and the file
        thread builds their table (off the chain's thread, the run's critical path)."""
        rows = cols["import_row"]  # None: no record so far was imported
        if rows is not None and (imp := rows >= 0).any():
            self._imports.append((np.nonzero(imp)[0] + first, rows[imp].copy()))
        engine = EngineRecords(cols, first, self.labels)  # the rows straight from these
        n = next(v.shape[0] for v in cols.values() if v is not None)
        tags = self.sealer.engine_records(engine, n, ROW_GROUP_ROWS)
        if tags is None:
            groups = self._tabled(cols, first)
        if self._stored is not None:  # at most one batch waits for the file thread
            self._stored.result()
        if tags is None:
            self._stored = self._out.submit(self._store, groups)
        else:
            self._stored = self._out.submit(self._store_tagged, cols, first, tags)

    def _tabled(self, cols: dict[str, np.ndarray | None], first: int) -> list[pa.Table]:
        """The batch's table sealed group by group (what fixes the vocabularies, and what
        refuses a label outside them), each group with its ``digest`` column."""
        table = records_arrow(cols, first, self.names, stored=True)
        tags = [digests for _, digests in self.sealer.records(table, ROW_GROUP_ROWS)]
        return self._groups(table, tags)

    def _groups(self, table: pa.Table, tags: list[np.ndarray]) -> list[pa.Table]:
        """The records of ``table`` as stored, a group for each of ``tags`` (what the group's
        ``digest`` column holds)."""
        final = conform("records", table, dictionaries=True)  # same values; schema nullability
        groups, at = [], 0
        for digests in tags:
            part = final.slice(at, digests.shape[0])
            at += digests.shape[0]
            groups.append(part.append_column(self.sealer.digest_field, self.sealer.stored(digests)))
        return groups

    def _store_tagged(
        self, cols: dict[str, np.ndarray | None], first: int, tags: list[np.ndarray]
    ) -> None:
        """Store a batch chained from the engine's columns (``tags``: what each group's
        ``digest`` column holds), building its table here."""
        self._store(self._groups(records_arrow(cols, first, self.names, stored=True), tags))

    def _store(self, groups: list[pa.Table]) -> None:
        for sealed in groups:
            self._file.write_table(sealed, ROW_GROUP_ROWS)
        self._file.catch_up()


def discard(folder: Path) -> None:
    """Remove a run's streaming leftovers (the partial files, the segments)."""
    for leftover in folder.glob(PARTIAL_TABLE.format("*")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(folder / SEGMENTS, ignore_errors=True)


def _write_ipc(fh: Any, table: pa.Table) -> None:
    with ipc.new_file(fh, table.schema) as w:
        w.write_table(table)
