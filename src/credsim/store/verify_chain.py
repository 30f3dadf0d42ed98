"""The records' part of ``credsim verify`` (:mod:`credsim.store.verify`): the hash chain
checked batch by batch as the records file is streamed, every link, the id sequence and the
head, and a name for whatever fails (content changed, digest altered, records moved).

Runs sealed before ``credsim-ledger-v3`` store each record's whole digest: every link is
checked on its own (``sha256(stored digest before || row) == stored digest``), so each failing
record is named. A v3 or v4 record stores its *tag* (the digest's first 8 bytes): the chain is
recomputed from the genesis and each tag compared. A tag that fails alone (the next record's
matches) was altered, its record intact; a record whose content changed (or that was deleted,
inserted or moved) breaks every later tag, since each digest covers the one before: it is
named, and the records after it cannot be checked one by one (the run fails all the same)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from credsim.errors import RunStoreError
from credsim.store import ledger, sha_ni
from credsim.store.schema import DIGEST_COLUMN

if TYPE_CHECKING:
    from credsim.store.verify import _Verifier

MAX_RECORD_PROBLEMS = 10
"""Failing records named one by one; beyond this only their number is given."""

TAG_ALTERED = "its stored digest was altered (its content is intact)"


def _short(hexdigest: str | None) -> str:
    return f"{hexdigest[:16]}..." if hexdigest else "nothing"


class RecordChain:
    """Streaming check of the records chain for :mod:`credsim.store.verify`: every link, the
    id sequence and the head."""

    def __init__(self, v: _Verifier, schema: pa.Schema) -> None:
        self.v = v
        lg = v._section("ledger")
        self.lg = lg
        columns = lg.get("columns")
        self.layout: ledger.Layout = ledger.RECORD_LAYOUT
        encoding = lg.get("encoding")
        if encoding in ledger.PACKED:
            self.layout = ledger.PackedLayout.parse(columns, lg.get("vocabularies"), encoding)
        elif isinstance(columns, list):
            self.layout = ledger.RecordLayout.parse(columns)
        absent = [c for c, _ in self.layout.columns if c not in schema.names]
        if absent:
            raise RunStoreError(
                f"the ledger's column(s) {', '.join(absent)} are missing (removed): the chain "
                "cannot be checked"
            )
        self.notes = []  # how the stored columns differ from the ledger's
        chained = {c: t for c, t in self.layout.columns}
        extra = [c for c in schema.names if c not in chained and c != DIGEST_COLUMN]
        if extra:
            self.notes.append(f"unexpected column(s) {', '.join(extra)}")
        for c, t in self.layout.columns:
            stored = schema.field(c).type
            if pa.types.is_dictionary(stored):
                stored = stored.value_type
            if str(stored) != t:
                self.notes.append(f"column '{c}' stored as {stored}, not {t}")
        self.prev = v.genesis  # stored digest of the previous record (genesis before the first)
        self.computed_prev = v.genesis  # recomputed chain, used when there is no digest column
        self.pos = 0
        self.bad = 0
        first = lg.get("first_record_id")
        self.check_ids = bool(lg.get("contiguous_ids")) and isinstance(first, int)
        self.first_id: int = first if isinstance(first, int) else 0
        self.id_break_reported = False
        self.encoder: ledger.Encoder = (
            ledger.PackedEncoder(self.layout)
            if isinstance(self.layout, ledger.PackedLayout)
            else ledger.RecordEncoder(self.layout)
        )
        self.unknown: set[int] = set()  # rows of the batch holding a label outside the vocabulary
        self.has_digest = DIGEST_COLUMN in schema.names
        self.stored_bytes = ledger.stored_bytes(encoding)  # 8: tags (since v3), 32: digests
        self.split = getattr(self.layout, "split", 0)  # (v4) the row's bytes before prev
        self.pending: tuple[int, int, str] | None = None  # (since v3) the last record's tag failed
        self.lost_at: int | None = None  # (since v3) the record that broke the chain

    def update(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if n == 0:
            return
        rows = self.encoder.encode(batch)
        unknown = self.encoder.unknown  # (v2) a label its vocabulary lacks: content changed
        self.unknown = set() if unknown is None else {int(k) for k in np.flatnonzero(unknown)}
        ids = np.asarray(batch.column("record_id").to_numpy(zero_copy_only=False))
        if self.check_ids and not self.id_break_reported:
            expect = np.arange(self.first_id + self.pos, self.first_id + self.pos + n)
            wrong = np.flatnonzero(ids != expect)
            if wrong.size:
                k = int(wrong[0])
                self.v.table_problems.append(
                    f"records: record_id sequence broken at position {self.pos + k} "
                    f"(expected {int(expect[k])}, found {int(ids[k])}): "
                    "records deleted, inserted or reordered"
                )
                self.id_break_reported = True
        if self.has_digest and self.stored_bytes < 32:
            self._update_tags(batch, rows, ids)
            self.pos += n
            return
        if not self.has_digest:
            digests = self._chain(rows)
            self.computed_prev = digests[-1].tobytes()
            for k in sorted(self.unknown):
                self.bad += 1
                if self.bad <= MAX_RECORD_PROBLEMS:
                    self.v.table_problems.append(
                        f"record {self.pos + k} (record_id {int(ids[k])}): digest mismatch - "
                        "content changed"
                    )
            self.pos += n
            return
        stored = ledger.stored_digests(batch.column(DIGEST_COLUMN))
        prevs = np.empty_like(stored)
        prevs[0] = np.frombuffer(self.prev, np.uint8)
        prevs[1:] = stored[:-1]
        computed = ledger.links(rows, prevs, split=self.split)
        if self.unknown:  # such a row is not the record's: its link must fail
            wrong = np.array(sorted(self.unknown))
            computed[wrong] = ~stored[wrong]
        bad = {int(k) for k in np.flatnonzero(np.any(computed != stored, axis=1))}
        follows_altered_digest = set()
        for k in sorted(bad):
            self.bad += 1
            if k in follows_altered_digest or self.bad > MAX_RECORD_PROBLEMS:
                continue
            why = self._why(k, rows, stored, computed, ids, bad)
            if why == TAG_ALTERED:
                follows_altered_digest.add(k + 1)
            self.v.table_problems.append(
                f"record {self.pos + k} (record_id {int(ids[k])}): digest mismatch - {why}"
            )
        self.prev = stored[-1].tobytes()
        self.pos += n

    def _update_tags(self, batch: pa.RecordBatch, rows: np.ndarray, ids: np.ndarray) -> None:
        """(since v3) The chain recomputed over the batch, each tag compared with the stored one."""
        if self.lost_at is not None:
            return
        computed = self._chain(rows)
        w = self.stored_bytes
        stored = ledger.stored_digests(batch.column(DIGEST_COLUMN), w)
        wrong = np.any(computed[:, :w] != stored, axis=1)
        if self.pending is not None:  # the record before this batch failed its tag
            at, record_id, why = self.pending
            self.pending = None
            if wrong[0]:
                self._lost(at, record_id, why)
                return
            self._record_problem(at, record_id, TAG_ALTERED)
        n = len(rows)
        for k in sorted({*np.flatnonzero(wrong).tolist(), *self.unknown}):
            record_id = int(ids[k])
            if k in self.unknown:  # a label its vocabulary lacks: not the record's row
                if wrong[k]:  # (and so the chain after it, wherever the batch ends)
                    self._lost(self.pos + k, record_id, "content changed")
                    return
                self._record_problem(self.pos + k, record_id, "content changed")
            elif k + 1 == n:  # the next record (or the head) tells
                self.pending = (self.pos + k, record_id, self._why_tag(k, ids))
            elif wrong[k + 1]:
                self._lost(self.pos + k, record_id, self._why_tag(k, ids))
                return
            else:
                self._record_problem(self.pos + k, record_id, TAG_ALTERED)
        self.computed_prev = computed[-1].tobytes()

    def _chain(self, rows: np.ndarray) -> np.ndarray:
        """The digests of the batch's rows (just encoded) after :attr:`computed_prev`."""
        if getattr(self.layout, "compact", False):  # (since v7) blocks from the digest before
            counts = self.encoder.counts  # type: ignore[union-attr]
            return ledger.chain_blocks(rows, counts, self.computed_prev)
        return ledger.chain(rows, self.computed_prev, split=self.split)

    def _why_tag(self, k: int, ids: np.ndarray) -> str:
        """(since v3) Why record ``k``'s tag and the next fail: its content or its place."""
        if self.check_ids and ids[k] != self.first_id + self.pos + k:
            return "chain broken: records deleted, inserted or moved at this point"
        if not self.check_ids:
            return "content changed, or the record before it was deleted, inserted or moved"
        return "content changed"

    def _record_problem(self, at: int, record_id: int, why: str) -> None:
        self.bad += 1
        if self.bad <= MAX_RECORD_PROBLEMS:
            self.v.table_problems.append(
                f"record {at} (record_id {record_id}): digest mismatch - {why}"
            )

    def _lost(self, at: int, record_id: int, why: str) -> None:
        """(since v3) Record ``at`` changed: every later digest depends on it."""
        self._record_problem(at, record_id, why)
        self.lost_at = at

    def _why(
        self,
        k: int,
        rows: np.ndarray,
        stored: np.ndarray,
        computed: np.ndarray,
        ids: np.ndarray,
        bad: set[int],
    ) -> str:
        """Why link ``k`` fails: its content, its stored digest, or its place in the chain."""
        if self.check_ids and ids[k] != self.first_id + self.pos + k:
            return "chain broken: records deleted, inserted or moved at this point"
        if k in self.unknown:  # a label its vocabulary lacks
            return "content changed"
        if k + 1 < len(rows) and (k + 1) in bad and (k + 1) not in self.unknown:
            link = sha_ni.message(rows[k + 1].tobytes(), computed[k].tobytes(), self.split)
            relinked = hashlib.sha256(link).digest()
            if relinked == stored[k + 1].tobytes():
                return TAG_ALTERED
        if not self.check_ids:
            return "content changed, or the record before it was deleted, inserted or moved"
        before = np.flatnonzero(ids == ids[k] - 1)
        for j in before[before != k - 1]:
            link = sha_ni.message(rows[k].tobytes(), stored[j].tobytes(), self.split)
            if hashlib.sha256(link).digest() == bytes(stored[k]):
                return "content intact, but the record before it was moved away"
        return "content changed"

    def strings_in(self, schema: pa.Schema) -> list[str]:
        """String columns to read as Parquet stores them, dictionary-encoded (faster)."""
        return [c for c, t in self.layout.columns if t == "string" and c in schema.names]

    def content_digest(self) -> str | None:
        """The records' content digest, or None when a link fails (the content changed)."""
        if self.bad or self.notes:
            return None
        head = self.prev if self._stored_head() else self.computed_prev
        return ledger.records_digest(self.pos, head, self.layout)

    def finish(self) -> list[str]:
        """Report the chain's end; returns notes on the columns (for a content mismatch)."""
        v, lg = self.v, self.lg
        n = self.pos
        if not self.has_digest:
            self.notes.append("missing column(s) digest")
        if self.pending is not None:  # the last record's tag failed: the head tells why
            at, record_id, why = self.pending
            self.pending = None
            if self.computed_prev.hex() == lg.get("head"):
                why = TAG_ALTERED
            self._record_problem(at, record_id, why)
        if self.lost_at is not None and self.lost_at + 1 < n:
            v.table_problems.append(
                f"records: the {n - self.lost_at - 1:,} records after record {self.lost_at} "
                "cannot be checked one by one (each digest covers the one before; this run "
                "stores 8 bytes of each)"
            )
        if self.bad > MAX_RECORD_PROBLEMS:
            v.table_problems.append(
                f"records: {self.bad:,} records fail their digest check in all "
                f"(the first {MAX_RECORD_PROBLEMS} are named above)"
            )
        head = (self.prev if self._stored_head() else self.computed_prev).hex()
        if not self.bad:
            v.report.head = head
        v.report.records = n
        if not lg:
            return self.notes
        if lg.get("records") != n:
            v.blame(
                "ledger.records",
                f"says {lg.get('records')}; records.parquet holds {n}",
                f"records: records.parquet holds {n} records, the ledger says {lg.get('records')}",
            )
        if head != lg.get("head") and not self.bad:
            where = "the chain ends" if self.has_digest else "the recomputed chain ends"
            v.blame(
                "ledger.head",
                f"{where} in {_short(head)}",
                f"records: {where} in {_short(head)}, not in the ledger head "
                f"{_short(str(lg.get('head')))}: records altered, or removed from or added "
                "at the end",
            )
        return self.notes

    def _stored_head(self) -> bool:
        """Whether the chain's end is a stored digest (a whole one: before v3)."""
        return self.has_digest and self.stored_bytes == 32
