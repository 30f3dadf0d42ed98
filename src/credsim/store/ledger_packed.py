"""The packed canonical record row of ``credsim-ledger-v2`` to ``-v4`` (the same rows; v3 and
v4 records store 8 bytes of their digest, v2 records all 32; v4 hashes the previous digest after
the row's first 64 bytes, the others before the row) (:class:`PackedLayout`) and its encoder.

A packed row is little-endian bytes without padding: a null mask (uint32 for up to 32 chained
columns, uint64 for up to 64), then every chained column in its natural width (bool and int8 1
byte, int16 2, int32 and date32 4, int64 and double 8) and every string as its code in the
column's *vocabulary* (:mod:`credsim.store.ledger_vocab`; uint16, or uint32 for a vocabulary of
more than 65,535 values). For today's records schema that is 81 bytes: with the previous
digest, 2 SHA-256 compression blocks per record instead of the 5 of a v1 row. The vocabularies
are listed in the manifest (``ledger.vocabularies``) and bound by the genesis; the code width
of each string column is part of its entry in ``ledger.columns`` (``"item:string:u16"``).
docs/integrity.md specifies every byte.

Records as the engine builds them (dictionary arrays of its codes over the vocabularies' first
names) take their codes as they are; other string columns are mapped through the vocabulary, a
few distinct values at a time.

:class:`PackedEncoder` writes the rows with Numba kernels: each column becomes one int64 per row
(values straight from the Arrow buffers, as for v1; codes for strings), and the rows are
assembled from those by shifts into 64-bit words, a few hundred at a time in a buffer that
stays in the cache, which the CPU's SHA extensions then chain in one call
(:func:`_pack_rows_chain_kernel`), or each row as soon as it is assembled with OpenSSL
(:func:`_pack_chain_kernel`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.errors import RunStoreError
from credsim.store import ledger_packed_std, sha_block, sha_ni
from credsim.store.ledger_chain import (
    COMPACT,
    ENCODING,
    PACKED,
    _as_type,
    _fast,
    _room_for,
    chain,
    chain_split,
)
from credsim.store.ledger_compact import CHUNK, _compact_chain_kernel, _compact_kernel
from credsim.store.ledger_encode import _ARROW_TYPES, _column, _put_fixed
from credsim.store.schema import DIGEST_COLUMN

WIDTHS: dict[str, int] = {
    # arrow type string -> bytes in a v2 row
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "double": 8,
    "date32[day]": 4,
}

CODE_WIDTHS: dict[str, int] = {"u16": 2, "u32": 4}
"""A string column's code type in a v2 row (named in ``ledger.columns``) and its width."""

U16_VALUES = 65_535
"""Vocabularies of up to this many values take uint16 codes; larger ones uint32."""

MAX_VALUES = {"u16": U16_VALUES, "u32": 2**32 - 1}


def code_type(size: int) -> str:
    """The code type of a vocabulary of ``size`` values."""
    if size > MAX_VALUES["u32"]:
        raise RunStoreError(f"ledger: a vocabulary of {size:,} values is too large to encode")
    return "u16" if size <= U16_VALUES else "u32"


# --------------------------------------------------------------------------------------------
# The layout


class PackedLayout:
    """The row of a record in ``credsim-ledger-v2`` to ``-v4`` (:attr:`encoding`): packed
    little-endian bytes, no padding.

    The null mask (bit j set when chained column j is null; uint32 for up to 32 chained
    columns, uint64 for up to 64), then each chained column in order in its natural width
    (:data:`WIDTHS`; a double's IEEE-754 bits as stored, a bool 0/1, a date32 its days since
    1970-01-01) or, for a string, its code in the column's vocabulary (uint16 or uint32, see
    :data:`CODE_WIDTHS`). A null is all zero bytes and its mask bit.

    ``columns`` lists (name, arrow type) like :class:`~credsim.store.ledger_encode.RecordLayout`;
    ``codes`` the code type of each string column; ``vocabularies`` its values in code order;
    ``fields`` (name, type, byte offset, width) from the mask on; ``size`` the row's bytes;
    ``split`` where a link's message holds the previous digest (after the row's first
    ``split`` bytes: :func:`~credsim.store.ledger_chain.chain_split`).
    """

    def __init__(
        self,
        columns: list[tuple[str, str]],
        codes: Mapping[str, str],
        vocabularies: Mapping[str, list[str]],
        encoding: str = ENCODING,
    ) -> None:
        if encoding not in PACKED:
            raise RunStoreError(f"ledger: {encoding!r} has no packed rows")
        self.encoding = encoding
        if len(columns) > 64:
            raise RunStoreError("the ledger's null mask covers at most 64 record columns")
        strings = [name for name, t in columns if t == "string"]
        if sorted(vocabularies) != sorted(strings):
            raise RunStoreError(
                "ledger: the vocabularies must list exactly the string columns "
                f"({', '.join(strings) or 'none'}), not {', '.join(sorted(vocabularies)) or 'none'}"
            )
        self.columns = columns
        self.codes = {name: codes[name] for name in strings}
        self.vocabularies = {name: list(vocabularies[name]) for name in strings}
        mask = 4 if len(columns) <= 32 else 8
        self.fields: list[tuple[str, str, int, int]] = [
            ("nulls", "uint32" if mask == 4 else "uint64", 0, mask)
        ]
        offset = mask
        for name, t in columns:
            if t == "string":
                code = self.codes[name]
                vocab = self.vocabularies[name]
                if not all(isinstance(w, str) for w in vocab) or len(set(vocab)) != len(vocab):
                    raise RunStoreError(
                        f"ledger: the vocabulary of {name!r} must list distinct strings"
                    )
                if len(vocab) > MAX_VALUES[code]:
                    raise RunStoreError(
                        f"ledger: the vocabulary of {name!r} has {len(vocab):,} values, more "
                        f"than its {code} codes hold"
                    )
                width = CODE_WIDTHS[code]
            elif t in WIDTHS:
                width = WIDTHS[t]
            else:
                raise RunStoreError(f"ledger: column {name!r} has a type ({t}) it cannot encode")
            self.fields.append((name, t, offset, width))
            offset += width
        self.size = offset
        """The row's bytes (in a compact row, ``credsim-ledger-v7``: when no column is null)."""
        self.split = chain_split(encoding, offset)
        self.compact = encoding in COMPACT
        """Whether a null column takes no bytes and the row's blocks are chained by SHA-256's
        compression function (:data:`~credsim.store.ledger_chain.COMPACT`)."""
        self.stride = 64 * -(-offset // 64)
        """The bytes of the longest compact row's blocks."""

    @classmethod
    def of_schema(
        cls,
        schema: pa.Schema,
        vocabularies: Mapping[str, list[str]],
        encoding: str = ENCODING,
    ) -> PackedLayout:
        """The layout of a records schema (a dictionary column counts as its values' type)
        with these vocabularies (one for each string column); code types from their sizes."""
        columns = [
            (f.name, str(f.type.value_type if pa.types.is_dictionary(f.type) else f.type))
            for f in schema
            if f.name != DIGEST_COLUMN
        ]
        codes = {name: code_type(len(vocabularies[name])) for name, t in columns if t == "string"}
        return cls(columns, codes, vocabularies, encoding)

    @classmethod
    def parse(cls, spec: Any, vocabularies: Any, encoding: str = ENCODING) -> PackedLayout:
        """From the manifest's ``ledger.columns`` (``["record_id:int64", ..., "item:string:u16",
        ...]``) and ``ledger.vocabularies``; refuses (RunStoreError) what is malformed."""
        if not isinstance(spec, list) or not all(isinstance(c, str) for c in spec):
            raise RunStoreError("ledger: 'columns' is not a list of column specs")
        if not isinstance(vocabularies, dict) or not all(
            isinstance(v, list) for v in vocabularies.values()
        ):
            raise RunStoreError("ledger: 'vocabularies' is not a mapping of columns to lists")
        columns: list[tuple[str, str]] = []
        codes: dict[str, str] = {}
        for c in spec:
            parts = c.split(":")
            if len(parts) == 3 and parts[1] == "string" and parts[2] in CODE_WIDTHS:
                codes[parts[0]] = parts[2]
            elif len(parts) != 2 or parts[1] == "string":
                raise RunStoreError(f"ledger: column spec {c!r} is malformed")
            columns.append((parts[0], parts[1]))
        return cls(columns, codes, vocabularies, encoding)

    def spec(self) -> list[str]:
        """``ledger.columns``: ``"name:type"``, or ``"name:string:u16"`` (``u32``) for a
        string column, in order."""
        return [
            f"{name}:string:{self.codes[name]}" if t == "string" else f"{name}:{t}"
            for name, t in self.columns
        ]

    def genesis_fields(self) -> dict[str, Any]:
        """What the genesis binds besides the scheme sha256 and seed."""
        return {"columns": self.spec(), "vocabularies": self.vocabularies}


# --------------------------------------------------------------------------------------------
# Kernels


@numba.njit(cache=True, nogil=True, inline="always")
def _put_row(words, vals, i, at, shift, mask, spill):  # type: ignore[no-untyped-def]
    """Row ``i`` as 64-bit words (little-endian: the row's bytes in memory order): column
    ``c``'s value, its width's low bytes (``mask``), goes to bit ``shift[c]`` of word
    ``at[c]`` and, when it straddles two words (``spill[c]``), the rest to the next one."""
    for w in range(words.shape[0]):
        words[w] = 0
    for c in range(vals.shape[0]):
        v = vals[c, i] & mask[c]
        k = at[c]
        words[k] |= v << shift[c]
        if spill[c]:
            words[k + 1] |= v >> (np.uint64(64) - shift[c])


@numba.njit(cache=True, nogil=True)
def _pack_kernel(vals, at, shift, mask, spill, rows):  # type: ignore[no-untyped-def]
    """The rows as words into ``rows`` ((n, words) uint64)."""
    for i in range(rows.shape[0]):
        _put_row(rows[i], vals, i, at, shift, mask, spill)


@numba.njit(cache=True, nogil=True)
def _pack_rows_chain_kernel(  # type: ignore[no-untyped-def]
    vals, at, shift, mask, spill, width, prev, out, head, chain
):
    """As :func:`_pack_chain_kernel`, with the CPU's SHA extensions
    (:func:`credsim.store.sha_ni.chain_function`): the rows are built, zero past their bytes
    up to ``width`` (which that function reads), ``CHUNK`` at a time in a buffer that stays in
    the core's first-level cache, and each chunk is chained in one call, the previous digest
    carried from row to row in registers. ``out`` ((n, w) uint8) takes each digest's first
    ``w`` bytes (a tag, or all 32), ``head`` the last digest."""
    n = out.shape[0]
    w = out.shape[1]
    rows = np.zeros((CHUNK, (width + 7) // 8), np.uint64)
    digests = np.empty((CHUNK, 32), np.uint8)
    head[:] = prev
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        for r in range(m):
            _put_row(rows[r], vals, s + r, at, shift, mask, spill)
        chain(rows.ctypes.data, rows.shape[1] * 8, m, head.ctypes.data, digests.ctypes.data)
        for r in range(m):
            for q in range(w):
                out[s + r, q] = digests[r, q]
        head[:] = digests[m - 1]


@numba.njit(cache=True, nogil=True)
def _pack_chain_kernel(  # type: ignore[no-untyped-def]
    vals, at, shift, mask, spill, size, split, prev, out, init, update, final
):
    """Each row assembled in a scratch buffer (it never leaves the cache) and hashed at once
    with OpenSSL: out[i] = SHA256(row_i[:split] || out[i-1] || row_i[split:]), out[-1] = prev.
    Little-endian machines only."""
    n = out.shape[0]
    words = np.zeros((size + 7) // 8, np.uint64)
    r = words.ctypes.data
    ctx = np.empty(256, np.uint8)  # SHA256_CTX is 112 bytes
    c = ctx.ctypes.data
    p = prev.ctypes.data
    for i in range(n):
        _put_row(words, vals, i, at, shift, mask, spill)
        init(c)
        update(c, r, split)
        update(c, p, 32)
        update(c, r + split, size - split)
        final(out[i].ctypes.data, c)
        p = out[i].ctypes.data


# --------------------------------------------------------------------------------------------
# The encoder


_PAD = 8
"""Values a column of :meth:`PackedEncoder.values` is longer than the batch, so that the
columns do not start a power of two apart. The row kernels read one value of every column for
each row; with batches of 2**18 rows the 22 columns were 2 MB apart, all in the same set of
the CPU's caches, which holds 8 to 16 lines: a million rows took 44 against 20 ms to pack
(and to chain, 116 against 97 ms)."""


class PackedEncoder:
    """Encodes batches of records into v2 rows (:class:`PackedLayout`).

    :meth:`encode` gives the rows (and, in :attr:`unknown`, the rows holding a string outside
    its vocabulary: their rows are not the records', which a verifier must report);
    :meth:`chain` chains them and refuses such rows.
    """

    def __init__(self, layout: PackedLayout) -> None:
        self.layout = layout
        self._index = {
            name: {w: i for i, w in enumerate(vocab)} for name, vocab in layout.vocabularies.items()
        }
        offs = np.array([off for _, _, off, _ in layout.fields], np.int64)
        widths = np.array([w for _, _, _, w in layout.fields], np.int64)
        self._words = (layout.size + 7) // 8
        self._place = (  # where each value goes in the row's 64-bit words (see _put_row)
            (offs // 8).astype(np.intp),
            ((offs % 8) * 8).astype(np.uint64),
            np.array([(1 << (8 * int(w))) - 1 for w in widths], np.uint64),
            (offs % 8) + widths > 8,
        )
        self._vals = np.empty((len(layout.fields), 0), np.int64)
        self._standard = layout.spec() == ledger_packed_std.SPEC  # its own chain kernel
        if layout.compact:
            if sys.byteorder != "little":  # pragma: no cover - the rows are stored natively
                raise RunStoreError(f"{layout.encoding} rows are built on little-endian machines")
            sha_block.check()  # the compiled compression against hashlib, once a process
        self._rows = np.empty((0, self._words), np.uint64)
        self.unknown: np.ndarray | None = None
        """After :meth:`values`: True for the rows holding a string outside its vocabulary
        (None when there is none)."""
        self._unknown_values: dict[str, set[str]] = {}
        self._digests = np.empty((0, 32), np.uint8)  # whole digests, when tags are kept
        self._widths = widths
        self._masks = self._place[2]
        self._flat = np.empty(0, np.uint8)
        self.counts = np.empty(0, np.uint8)
        """After :meth:`encode` of compact rows: the blocks each row takes."""

    def encode(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        """(n, layout.size) uint8 rows; valid until the next call. See :attr:`unknown`.
        Compact rows (``credsim-ledger-v7``) are (n, layout.stride), each zero after its bytes,
        the blocks each takes in :attr:`counts`."""
        n = batch.num_rows
        if self.layout.compact:
            return self._encode_compact(batch)
        if self._rows.shape[0] < n:
            self._rows = np.empty((n, self._words), np.uint64)
        rows = self._rows[:n]
        if n:
            _pack_kernel(self.values(batch).view(np.uint64), *self._place, rows)
        else:
            self.unknown = None
        if sys.byteorder != "little":  # pragma: no cover - the words hold the bytes in order
            rows = rows.byteswap()
        return rows.view(np.uint8)[:, : self.layout.size]

    def _encode_compact(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        n, stride = batch.num_rows, self.layout.stride
        if self._flat.shape[0] < n * stride + 8:
            self._flat = np.empty(n * stride + 8, np.uint8)
        self.counts = np.empty(n, np.uint8)
        if n == 0:
            self.unknown = None
        else:
            vals = self.values(batch).view(np.uint64)
            _compact_kernel(vals, self._widths, self._masks, self._flat, stride, self.counts)
        return self._flat[: n * stride].reshape(n, stride)

    def chain(self, batch: pa.Table | pa.RecordBatch, prev: bytes, out: np.ndarray) -> bytes:
        """The chain over the batch's rows after ``prev``, each row hashed as soon as it is
        assembled: with the CPU's SHA extensions (:mod:`credsim.store.sha_ni`) or else with
        OpenSSL. ``out`` ((n, w) uint8, C-contiguous) takes each record's digest, or its first
        ``w`` bytes (a tag: what the ``digest`` column stores); returns the last digest.
        Refuses a string outside its vocabulary."""
        n, w = out.shape
        if n == 0:
            return prev
        if self.layout.compact:
            vals = self.values(batch).view(np.uint64)
            self._refuse_unknown()
            state = sha_block.state_of(prev)
            stride = self.layout.stride
            _compact_chain_kernel(vals, self._widths, self._masks, stride, state, out)
            return sha_block.digest_of(state)
        fast = _fast()
        size, split = self.layout.size, self.layout.split
        little = sys.byteorder == "little"
        link = sha_ni.chain_function(size, split) if little else None
        prev_arr = np.frombuffer(prev, np.uint8).copy()
        if link is not None:
            vals = self.values(batch).view(np.uint64)
            self._refuse_unknown()
            head = np.empty(32, np.uint8)
            self._rows_chain(vals, prev_arr, out, head, link)
            return head.tobytes()
        if w < 32:
            if self._digests.shape[0] < n:
                self._digests = np.empty((n, 32), np.uint8)
            digests = self._digests[:n]
        else:
            digests = out
        if fast is None or not little:
            rows = self.encode(batch)
            self._refuse_unknown()
            chain(rows, prev, out=digests, split=split)
        else:
            vals = self.values(batch).view(np.uint64)
            self._refuse_unknown()
            if self._standard:
                ledger_packed_std.pack_chain(vals, prev_arr, digests, split, *fast)
            else:
                _pack_chain_kernel(vals, *self._place, size, split, prev_arr, digests, *fast)
        if w < 32:
            out[:] = digests[:, :w]
        return digests[n - 1].tobytes()

    def _rows_chain(
        self, vals: np.ndarray, prev: np.ndarray, out: np.ndarray, head: np.ndarray, link: Any
    ) -> None:
        """The chain of the rows of ``vals`` (:meth:`values`) with the SHA extensions'
        ``link`` (:func:`~credsim.store.sha_ni.chain_function`): each digest's first
        ``out.shape[1]`` bytes into ``out``, the last digest into ``head``."""
        width = sha_ni.width(self.layout.size, self.layout.split)
        if self._standard:
            ledger_packed_std.pack_rows_chain(vals, prev, out, head, width, link)
        else:
            _pack_rows_chain_kernel(vals, *self._place, width, prev, out, head, link)

    def _refuse_unknown(self) -> None:
        if self.unknown is None:
            return
        what = "; ".join(
            f"{name}: {', '.join(repr(w) for w in sorted(ws)[:5])}"
            for name, ws in sorted(self._unknown_values.items())
        )
        raise RunStoreError(
            f"records hold label(s) outside the ledger's vocabularies, fixed by the first "
            f"records sealed ({what}): give every label in the manifest's 'labels'"
        )

    def values(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        """(columns + 1, n) int64: the null mask, then each column's value (its code for a
        string), zero when null; sets :attr:`unknown`."""
        n = batch.num_rows
        k = len(self.layout.fields)
        if self._vals.shape[1] < n:
            self._vals = np.empty((k, n + _PAD), np.int64)
        vals = self._vals[:, :n]
        nulls = vals[0].view(np.uint64)
        nulls[:] = 0
        self.unknown = None
        self._unknown_values = {}
        for j, (name, t, _, _) in enumerate(self.layout.fields[1:]):
            arr = _column(batch, name)
            if t == "string":
                self._codes(name, arr, vals[j + 1], nulls, j)
            else:
                arr = _as_type(arr, _ARROW_TYPES[t])
                _put_fixed(vals[j + 1], arr, t, nulls, j)
        return vals

    def _codes(self, name: str, arr: pa.Array, dst: np.ndarray, nulls: np.ndarray, j: int) -> None:
        """Column ``name``'s codes into ``dst`` (0 for a null, with bit ``j`` of ``nulls``)."""
        n = len(arr)
        if arr.null_count == n:
            dst[:] = 0
            if n:
                nulls |= np.uint64(1) << np.uint64(j)
            return
        if pa.types.is_dictionary(arr.type):  # as the engine builds them: its codes
            dictionary, indices = arr.dictionary, arr.indices
        else:
            enc = pc.dictionary_encode(_as_type(arr, pa.string()))
            dictionary, indices = enc.dictionary, enc.indices
        words = _as_type(dictionary, pa.string()).to_pylist()
        if indices.null_count:
            indices = pc.fill_null(_room_for(indices, len(words)), len(words))
        idx = np.asarray(indices.to_numpy(zero_copy_only=False))
        vocab = self.layout.vocabularies[name]
        k = len(words)
        if arr.null_count == 0 and words == vocab[:k]:
            dst[:] = idx  # the engine's codes over the vocabulary: they are the codes
            return
        index = self._index[name]
        codes = [index.get(w, -1) if w is not None else -1 for w in words]
        to_code = np.array([*codes, 0], np.int64)  # (the last: for null rows)
        np.take(to_code, idx, out=dst, mode="clip")  # idx <= k: in range
        if arr.null_count:
            nulls |= (idx == k).astype(np.uint64) * (np.uint64(1) << np.uint64(j))
        if to_code.min() < 0:
            bad = dst < 0
            if bad.any():
                dst[bad] = 0
                self.unknown = bad if self.unknown is None else self.unknown | bad
                self._unknown_values[name] = {str(words[i]) for i in np.unique(idx[bad])}
