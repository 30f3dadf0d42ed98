"""The tamper-evident ledger of a run: canonical encodings, the record hash chain, table digests.

A sealed run folder carries, besides the file SHA-256s the writer always recorded:

* a ``digest`` column in ``records.parquet``: each record's link in the hash chain, whose
  digest covers the record's canonical row and the digest before it (the first: the
  *genesis*, derived from the scheme's sha256 and the seed, and since v2 from the row layout
  and the vocabularies). New runs are sealed with ``credsim-ledger-v7`` (:class:`PackedLayout`
  with compact rows: values packed in their natural widths, labels as codes in per-column
  vocabularies, a null column taking no bytes, 59 bytes for the reference model's records;
  each link SHA-256's compression function over the row's 64-byte blocks from the previous
  digest, :mod:`credsim.store.sha_block`; each record stores the first 4 bytes of its digest,
  its *tag*; the other tables' content digests ``credsim-table-v2``, BLAKE3); runs sealed with
  ``credsim-ledger-v6`` (81-byte rows, ``sha256(row_i[:64] || digest_{i-1} || row_i[64:])``,
  4-byte tags), ``-v5`` (the same, 8-byte tags), ``-v4`` (as v5, the tables' digests
  ``credsim-table-v1``, SHA-256), ``-v3``
  (the same rows and tags, ``digest_i = sha256(digest_{i-1} || row_i)``), ``-v2`` (as v3,
  all 32 bytes stored) and ``-v1`` (:class:`RecordLayout`: 64-bit words, strings as 16 bytes
  of their sha256, 232 bytes, 5 blocks) are still verified;
* in the manifest, ``ledger`` (encoding, genesis, head = the last digest, record count, first
  record id, the chained columns and, in v2, the vocabularies), ``table_digests`` (a digest of
  the logical content of every table, not of the file's bytes), ``field_digests`` (a short
  digest of each top-level manifest field, to name an altered field) and ``manifest_digest``
  (sha256 of the canonical JSON of all the other fields).

``docs/integrity.md`` specifies every byte so that the check can be re-implemented elsewhere;
:func:`credsim.store.verify.verify` is this package's implementation of it.

The writer seals a run through :class:`Sealer` (``add`` each table as it is written, then
``finish`` the manifest); records may be added in several chunks, in order, so a writer that
streams records can chain them as they come.

Cost. The chain is inherently sequential, and SHA-256 through :mod:`hashlib` costs 1.3-2 us per
call in CPython (setting up the context dominates). So the chain runs compiled: a v7 record's
row is built a chunk at a time and compressed with the CPU's SHA extensions where it has them
(:mod:`credsim.store.sha_block`: one block, 41 to 43 ns, 67 ns a record with building its row
from the engine's columns), portably elsewhere (about 0.2 us a block); the rows of v4 to v6 in
a loop built for the row size (:mod:`credsim.store.sha_ni`, 64 ns per v4 record, 86 per v2 or
v3 record), else in a Numba loop calling OpenSSL's one-context ``SHA256_Init/Update/Final``
(the library :mod:`hashlib` itself uses): about 0.12 us per record for a packed row (0.26 us
for v1). Where neither can be used, the same digests are computed with :mod:`hashlib`,
slower. Rows are built by Numba kernels reading the Arrow buffers
(:mod:`credsim.store.ledger_packed`, :mod:`credsim.store.ledger_encode`) or, for a streamed
run, the engine's columns (:mod:`credsim.store.ledger_engine`), strings through dictionary
indices, a chunk of rows at a time. The writer chains the records in groups
(:meth:`Sealer.records`) and writes each group while the next is chained.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numba
import numpy as np
import pyarrow as pa

from credsim.errors import RunStoreError
from credsim.store import ledger_engine
from credsim.store.ledger_chain import (  # noqa: F401  (re-exported: the ledger's public API)
    ENCODING,
    ENCODING_V1,
    ENCODING_V2,
    ENCODING_V3,
    ENCODING_V4,
    ENCODING_V5,
    ENCODING_V6,
    ENCODING_V7,
    ENCODINGS,
    PACKED,
    TAG_BYTES,
    TAGGED,
    _as_type,
    _buf,
    canonical_json,
    chain,
    chain_blocks,
    chain_py,
    chain_split,
    digest_array,
    fast_path,
    file_digest_name,
    genesis,
    links,
    links_py,
    stored_bytes,
    stored_digests,
    table_version,
)
from credsim.store.ledger_encode import (  # noqa: F401  (re-exported: the ledger's public API)
    _FIXED,
    RECORD_LAYOUT,
    STRING_HASH_BYTES,
    RecordEncoder,
    RecordLayout,
    string_hash,
)
from credsim.store.ledger_engine import EngineRecords
from credsim.store.ledger_packed import PackedEncoder, PackedLayout
from credsim.store.ledger_vocab import (  # noqa: F401  (re-exported: the ledger's public API)
    check_vocabulary,
    labels_of,
    vocabularies,
)
from credsim.store.schema import DIGEST_COLUMN, RECORDS_CONTENT
from credsim.store.table_digest import (  # noqa: F401  (TableHasher, table_digest re-exported)
    TableHasher,
    batches,
    table_digest,
)


@numba.njit(cache=True, nogil=True)
def _runs_on(ids: np.ndarray, start: int) -> bool:
    """Whether ``ids`` are ``start, start + 1, ...`` (one pass, no temporary arrays)."""
    for i in range(ids.shape[0]):
        if ids[i] != start + i:
            return False
    return True


BATCH_ROWS = 1 << 18
"""Rows encoded and hashed at a time (bounds memory: 2**18 records are ~60 MB of row bytes or
column values)."""


def digest_field(encoding: str | None) -> pa.Field:
    """The records' ``digest`` column as an encoding stores it."""
    return pa.field(DIGEST_COLUMN, pa.binary(stored_bytes(encoding)), nullable=False)


class _Digested:
    """A table digest computed elsewhere (:meth:`Sealer.adopt`)."""

    def __init__(self, digest: str) -> None:
        self._digest = digest

    def hexdigest(self) -> str:
        return self._digest


def records_digest(n: int, head: bytes, layout: RecordLayout | PackedLayout) -> str:
    """Content digest of the records table: derived from the chain, which already covers every
    record's content, order and number (hashing the records a second time would double the
    cost). sha256("credsim-table-v1\\0records\\0" || canonical JSON of the chained columns ||
    record count (uint64 LE) || head)."""
    h = hashlib.sha256(b"credsim-table-v1\0records\0" + canonical_json(layout.spec()))
    h.update(n.to_bytes(8, "little") + head)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The manifest


SELF_FIELDS = ("field_digests", "manifest_digest")
"""Manifest fields not covered by ``field_digests`` (they are the digests)."""


def field_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """First 16 hex digits of sha256(canonical JSON) of each top-level field: a locator only."""
    return {
        k: hashlib.sha256(canonical_json(v)).hexdigest()[:16]
        for k, v in sorted(manifest.items())
        if k not in SELF_FIELDS
    }


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of every manifest field except ``manifest_digest``."""
    return hashlib.sha256(
        canonical_json({k: v for k, v in manifest.items() if k != "manifest_digest"})
    ).hexdigest()


# --------------------------------------------------------------------------------------------
# Sealing a run as it is written


Layout = RecordLayout | PackedLayout
Encoder = RecordEncoder | PackedEncoder


def layout_genesis(manifest: Mapping[str, Any], layout: Layout) -> bytes:
    """The genesis of a chain of rows in ``layout`` for a run with this scheme and seed."""
    return genesis(manifest, layout.encoding, **layout.genesis_fields())


class Sealer:
    """Seal a run while it is written: ``add`` every table (records in order, possibly in
    chunks), then ``finish`` the manifest.

    ``add("records", t)`` returns ``t`` with its ``digest`` column (re)computed as the last
    column; other tables are returned unchanged. Tables must already be conformed.
    :meth:`records` chains the records group by group instead (what the writer uses, to write
    each group while the next is chained). Tables other than the records may be added from
    another thread while the records are chained (each has its own hasher).

    ``encoding``: :data:`ENCODING` (``credsim-ledger-v7``) unless told; ``credsim-ledger-v6``
    to ``-v1`` seal as runs were sealed before it (to test that such runs stay verifiable).
    :meth:`stored` gives what the records' ``digest`` column holds (since v6 each digest's
    first 4 bytes, 8 in v3 to v5; :attr:`digest_field` its field). Since v2 the row layout,
    the label vocabularies and so the genesis are fixed by the first records chained (or by
    :meth:`ledger` when there are none): each vocabulary is the manifest's ``labels`` for the
    column, then the values those records hold that the labels lack, sorted
    (:func:`~credsim.store.ledger_vocab.vocabularies`). Records chained later may hold no other
    value.
    """

    def __init__(self, manifest: Mapping[str, Any], *, encoding: str | None = None) -> None:
        self.encoding = encoding or ENCODING
        if self.encoding not in ENCODINGS:
            raise RunStoreError(f"unknown ledger encoding {self.encoding!r}")
        scheme = manifest.get("scheme")
        sha = scheme.get("sha256") if isinstance(scheme, Mapping) else None
        self._basis = {"scheme": {"sha256": sha}, "seed": manifest.get("seed")}
        self._labels = labels_of(manifest) if self.encoding in PACKED else {}
        self.digest_field = digest_field(self.encoding)
        """The records' ``digest`` column as this encoding stores it."""
        self._encoder: Encoder | None = None
        self._genesis = b""
        self._head = b""
        self._records = 0
        self._first_id: int | None = None
        self._next_id: int | None = None
        self._contiguous = True
        # None: the records (their digest comes from the chain)
        self._hashers: dict[str, TableHasher | _Digested | None] = {}

    def _fix(self, table: pa.Table | None) -> Encoder:
        """Fix the row layout (v2: and the vocabularies) from the first records, and so the
        genesis. Without records: the records schema, the labels as vocabularies."""
        schema = RECORDS_CONTENT if table is None else table.schema
        if self.encoding == ENCODING_V1:
            encoder: Encoder = RecordEncoder(RecordLayout.of_schema(schema))
        else:
            strings = [
                f.name
                for f in schema
                if f.name != DIGEST_COLUMN
                and pa.types.is_string(
                    f.type.value_type if pa.types.is_dictionary(f.type) else f.type
                )
            ]
            vocab = vocabularies(self._labels, table, strings)
            encoder = PackedEncoder(PackedLayout.of_schema(schema, vocab, self.encoding))
        self._encoder = encoder
        self._genesis = self._head = layout_genesis(self._basis, encoder.layout)
        return encoder

    @property
    def encoder(self) -> Encoder:
        return self._encoder if self._encoder is not None else self._fix(None)

    @property
    def layout(self) -> Layout:
        return self.encoder.layout

    @property
    def genesis(self) -> bytes:
        """digest_{-1} (see :func:`~credsim.store.ledger_chain.genesis`)."""
        self.encoder  # noqa: B018  (fixes the layout, and so the genesis, if not yet)
        return self._genesis

    def reserve(self, names: Iterable[str]) -> None:
        """Fix the order of ``table_digests`` (the tables' order), whatever order the tables
        are then added in (the writer adds the records while it adds the others)."""
        for name in names:
            if name not in self._hashers:
                self._hashers[name] = None if name == "records" else self.hasher(name)

    @property
    def file_digest(self) -> str:
        """The digest of each table file's bytes this encoding's manifest holds
        (``tables.NAME.<file_digest>``)."""
        return file_digest_name(self.encoding)

    def hasher(self, name: str, schema: pa.Schema | None = None) -> TableHasher:
        """A content digest of table ``name`` of the version this encoding holds."""
        return TableHasher(name, schema, table_version(self.encoding))

    def add(self, name: str, table: pa.Table) -> pa.Table:
        if name == "records":
            ((part, digests),) = self.records(table, max(table.num_rows, 1))  # one group
            return part.append_column(self.digest_field, self.stored(digests))
        hasher = self._hashers.get(name)
        if isinstance(hasher, _Digested):
            raise RunStoreError(f"table {name!r} was written and digested already")
        if hasher is None:
            hasher = self._hashers[name] = self.hasher(name, table.schema)
        hasher.update_table(table)
        return table

    def adopt(self, name: str, digest: str) -> None:
        """Take table ``name``'s content digest as computed already (a table written while
        the run went on, :class:`~credsim.store.parquet.StreamedTable`)."""
        self._hashers[name] = _Digested(digest)

    def records(self, table: pa.Table, group_rows: int) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Chain the records of ``table`` (in order, after any added before): yields, for each
        run of ``group_rows`` records, the table's slice (without ``digest``) and what their
        ``digest`` column stores ((m, 32) uint8 digests; since v3 (m, 8) tags, copied out of
        the digests of each few hundred records as they are chained, so the group's new memory
        is the tags only), a new array each time. An empty table yields itself once. (A
        streamed run's records, once the first have fixed the vocabularies, are chained from
        the engine's columns instead: :meth:`engine_records`.)"""
        self._hashers["records"] = None
        if DIGEST_COLUMN in table.column_names:
            table = table.drop_columns([DIGEST_COLUMN])
        encoder = self._encoder if self._encoder is not None else self._fix(table)
        w = self.digest_field.type.byte_width
        if table.num_rows == 0:
            yield table, np.zeros((0, w), np.uint8)
            return
        for start in range(0, table.num_rows, group_rows):
            part = table.slice(start, group_rows)
            out = np.empty((part.num_rows, w), np.uint8)
            at = 0
            for batch in batches(part, BATCH_ROWS):
                m = batch.num_rows
                self._head = encoder.chain(batch, self._head, out[at : at + m])
                self._ids(batch.column("record_id"))
                at += m
            self._records += part.num_rows
            yield part, out

    def engine_records(
        self, engine: EngineRecords, n: int, group_rows: int
    ) -> list[np.ndarray] | None:
        """As :meth:`records` for the ``n`` records of ``engine`` (the engine's columns), without
        their table: what each group's ``digest`` column stores. None, with nothing chained,
        when the table is needed: before the first records have fixed the layout and the
        vocabularies, where the kernel cannot run (:func:`ledger_engine.usable`), or for a
        label outside the vocabularies (:meth:`records` refuses it)."""
        encoder = self._encoder
        if encoder is None or n <= 0 or not ledger_engine.usable(encoder, engine):
            return None
        w = self.digest_field.type.byte_width
        head = self._head
        out = []
        for start in range(0, n, group_rows):
            m = min(group_rows, n - start)
            out.append(np.empty((m, w), np.uint8))
            got = ledger_engine.chain(encoder, engine, start, m, head, out[-1])
            if got is None:
                return None
            head = got
        self._hashers["records"] = None
        self._head = head
        self._id_run(engine.first, n)
        self._records += n
        return out

    def stored(self, digests: np.ndarray) -> pa.Array:
        """The ``digest`` column holding what :meth:`records` yields (sharing its memory)."""
        return digest_array(digests)

    def take_records(self, other: Sealer) -> None:
        """Adopt the records ``other`` chained (streamed while the run went on); its genesis
        must be this run's, and (v2) its vocabularies must start with this run's labels."""
        if other.encoding != self.encoding:
            raise RunStoreError(
                f"the streamed records were chained as {other.encoding}, not {self.encoding}"
            )
        layout = other.layout
        if isinstance(layout, PackedLayout):
            for name, vocab in layout.vocabularies.items():
                given = list(dict.fromkeys(self._labels.get(name, ())))
                if vocab[: len(given)] != given:
                    raise RunStoreError(
                        f"the streamed records were chained with other labels for {name!r} "
                        "than the run's manifest gives"
                    )
        if layout_genesis(self._basis, layout) != other.genesis:
            raise RunStoreError("the streamed records were chained for another run (genesis)")
        self._hashers["records"] = None
        self._encoder, self._genesis = other.encoder, other.genesis
        self._head, self._records = other._head, other._records
        self._first_id, self._next_id = other._first_id, other._next_id
        self._contiguous = other._contiguous

    def state(self) -> dict[str, Any]:
        """What :meth:`restore` needs to go on chaining after the records chained so far (JSON;
        a checkpoint keeps it): the ``ledger`` section and the next record id."""
        if self._encoder is None:  # nothing chained: the layout is not fixed yet
            return {"records": 0}
        return {**self.ledger(), "next_record_id": self._next_id}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Go on after the records a checkpoint's :meth:`state` describes (since v2), refusing
        a state made for another run (genesis) or another encoding."""
        if not state.get("records"):
            return
        if state.get("encoding") != self.encoding or self.encoding not in PACKED:
            raise RunStoreError(f"the checkpoint's records were chained as {state.get('encoding')}")
        layout = PackedLayout.parse(state["columns"], state["vocabularies"], self.encoding)
        encoder = PackedEncoder(layout)
        genesis = layout_genesis(self._basis, encoder.layout)
        if genesis.hex() != state["genesis"]:
            raise RunStoreError("the checkpoint's records were chained for another run (genesis)")
        self._hashers["records"] = None
        self._encoder, self._genesis = encoder, genesis
        self._head, self._records = bytes.fromhex(state["head"]), int(state["records"])
        self._first_id, self._next_id = state["first_record_id"], state["next_record_id"]
        self._contiguous = bool(state["contiguous_ids"])

    def _ids(self, column: pa.ChunkedArray) -> None:
        """Follow the record ids: the first, and whether they run first, first + 1, ..."""
        ids = np.asarray(column.to_numpy())
        if not len(ids):
            return
        if self._first_id is None:
            self._first_id = self._next_id = int(ids[0])
        if self._contiguous:
            start = int(self._next_id or 0)
            self._contiguous = _runs_on(ids, start)
        self._next_id = int(ids[-1]) + 1

    def _id_run(self, first: int, n: int) -> None:
        """As :meth:`_ids` for the ids ``first`` .. ``first + n - 1``."""
        if n <= 0:
            return
        if self._first_id is None:
            self._first_id = self._next_id = first
        if self._contiguous:
            self._contiguous = first == self._next_id
        self._next_id = first + n

    def ledger(self) -> dict[str, Any]:
        """The manifest's ``ledger`` section."""
        layout = self.layout
        out = {
            "encoding": self.encoding,
            "genesis": self.genesis.hex(),
            "head": self._head.hex(),
            "records": self._records,
            "first_record_id": self._first_id,
            "contiguous_ids": self._contiguous,
            "columns": layout.spec(),
        }
        if isinstance(layout, PackedLayout):
            out["vocabularies"] = layout.vocabularies
        return out

    def table_digests(self) -> dict[str, str]:
        return {
            name: h.hexdigest()
            if h is not None
            else records_digest(self._records, self._head, self.layout)
            for name, h in self._hashers.items()
        }

    def finish(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``manifest`` with ``ledger``, ``table_digests``, ``field_digests`` and
        ``manifest_digest`` set (in that order, last in the file)."""
        out = {k: v for k, v in manifest.items() if k not in ("ledger", "table_digests")}
        out = {k: v for k, v in out.items() if k not in SELF_FIELDS}
        out["ledger"] = self.ledger()
        out["table_digests"] = self.table_digests()
        out["field_digests"] = field_digests(out)
        out["manifest_digest"] = manifest_digest(out)
        return out
