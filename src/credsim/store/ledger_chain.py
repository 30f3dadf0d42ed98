"""The record hash chain of the ledger: ``digest_i = sha256(digest_{i-1} || row_i)`` (v1 to
v3); since ``credsim-ledger-v4`` the previous digest follows the row's first 64 bytes,
``sha256(row_i[:64] || digest_{i-1} || row_i[64:])``, so that the row's first block is hashed
without waiting on the chain (:func:`chain_split`); since ``credsim-ledger-v7`` each digest is
SHA-256's compression function applied to the (compact) row's 64-byte blocks from the previous
digest (:func:`chain_blocks`, :mod:`credsim.store.sha_block`): one block a record where the
row fits in one.

The chain is inherently sequential, and SHA-256 through :mod:`hashlib` costs 1.3-2 us per call
in CPython (setting up the context dominates). Where the CPU has SHA extensions (x86-64), the
chain and the links run in a loop compiled for the row size (:mod:`credsim.store.sha_ni`):
86 ns a record for an 81-byte ``credsim-ledger-v2`` or ``-v3`` row in a chain, 64 ns in v4,
62 to 66 ns for independent links. Elsewhere a Numba loop calls OpenSSL's one-context
``SHA256_Init/Update/Final`` (the library :mod:`hashlib` itself uses): about 0.12 us per v2
row (with the previous digest, 2 compression blocks), 0.26 us for a 232-byte v1 row (5
blocks). Where neither can be used, the same digests are computed with :mod:`hashlib`, slower;
:func:`fast_path` tells whether a
compiled path is in use. See :mod:`credsim.store.ledger` for the whole scheme and
``docs/integrity.md`` for every byte.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import pyarrow as pa

from credsim.store import sha_ni

ENCODING_V1 = "credsim-ledger-v1"
"""The first scheme: 64-bit words per value, a string as 16 bytes of its sha256 (232-byte rows,
5 SHA-256 blocks per record). Still verified; no longer written."""
ENCODING_V2 = "credsim-ledger-v2"
"""Packed rows: values in their natural widths, labels as codes in vocabularies bound by the
genesis (81-byte rows, 2 SHA-256 blocks per record)."""
ENCODING_V3 = "credsim-ledger-v3"
"""The rows and the chain of v2; each record stores the first 8 bytes of its
digest (its *tag*) instead of all 32: a quarter of the bytes to write, hash and keep (a 13M
run's records file 2.7 against 8.0 GB), the head still all 32."""
ENCODING_V4 = "credsim-ledger-v4"
"""The rows and tags of v3; each link hashes the row's first 64 bytes, then the previous
digest, then the rest of the row (:func:`chain_split`): the first block does not wait on the
chain, and a record is chained in 64 ns against 86 (a 13M reference run's 220M records: 4 s
less on the sealing thread, the run's critical path)."""
ENCODING_V5 = "credsim-ledger-v5"
"""The records, rows, tags and chain of v4; the other tables' content digests are
``credsim-table-v2`` (:mod:`credsim.store.table_digest`): BLAKE3 over validity bits and 32-bit
string lengths instead of SHA-256 over a byte per row and 64-bit lengths (a 13M reference run's
182M score rows: 17 against 29.5 bytes a row, hashed at 3.5 against 1.6 GB/s); and each table
file's bytes are digested with BLAKE3 (``tables.NAME.blake3``) instead of SHA-256."""
ENCODING_V6 = "credsim-ledger-v6"
"""The records, rows, chain and table digests of v5; each record's tag is the first
:data:`TAG_BYTES` (4) bytes of its digest instead of 8: a 13M reference run's records file 1.9
against 2.7 GB, and a third fewer bytes of it to write and hash. A tag only says where the
chain breaks (the head, all 32 bytes, is what makes the run tamper-evident): a changed record
whose tag still matches by chance, once in 2^32, is named one record later."""
ENCODING_V7 = "credsim-ledger-v7"
"""The vocabularies, tags and table digests of v6; a null column takes no bytes in a record's
row (the null mask says which are null: today's reference model's rows are 59 bytes instead of
81), and each link is SHA-256's compression function applied to the row's 64-byte blocks, the
row followed by zeros, from the previous digest as the state (:mod:`credsim.store.sha_block`):
one block a record where the row fits in 64 bytes, against two, and the rows built from the
engine's columns a chunk at a time (a 13M reference run's 220M records: 60 against 83 ns a
record, the sealing thread 12.7 against 20 s)."""
ENCODINGS = (
    ENCODING_V1,
    ENCODING_V2,
    ENCODING_V3,
    ENCODING_V4,
    ENCODING_V5,
    ENCODING_V6,
    ENCODING_V7,
)
"""The encodings ``credsim verify`` checks."""
PACKED = (ENCODING_V2, ENCODING_V3, ENCODING_V4, ENCODING_V5, ENCODING_V6, ENCODING_V7)
"""The encodings with packed rows and label vocabularies (:mod:`credsim.store.ledger_packed`)."""
COMPACT = (ENCODING_V7,)
"""The encodings whose rows leave null columns out and whose links are SHA-256's compression
function over the row's blocks (:mod:`credsim.store.sha_block`)."""
TAGS = {ENCODING_V3: 8, ENCODING_V4: 8, ENCODING_V5: 8, ENCODING_V6: 4, ENCODING_V7: 4}
"""The encodings whose records store a tag, and its bytes (the first of their digest)."""
TAGGED = tuple(TAGS)
"""The encodings whose records store a tag (:data:`TAGS`)."""
SPLIT = (ENCODING_V4, ENCODING_V5, ENCODING_V6)
"""The encodings whose links put the previous digest after the row's first blocks."""
BLAKE3 = (ENCODING_V5, ENCODING_V6, ENCODING_V7)
"""The encodings whose table files and table contents are digested with BLAKE3."""
ENCODING = ENCODING_V7
"""Name and version of the whole scheme new runs are sealed with: record layout, chain, table
and manifest digests."""
TAG_BYTES = TAGS[ENCODING]
"""Bytes of its digest a record stores in new runs (8 in ``credsim-ledger-v3`` to ``-v5``)."""


def stored_bytes(encoding: str | None) -> int:
    """Bytes of its digest a record of this encoding stores: 4 since v6, 8 in v3 to v5, all
    32 before."""
    return TAGS.get(str(encoding), 32)


def chain_split(encoding: str | None, size: int) -> int:
    """Where the previous digest goes in a link's message, after the row's first bytes:
    since v4 its whole 64-byte blocks (64 for today's 81-byte rows; 0 for a row shorter than
    a block), before the row (0) in v1 to v3."""
    return 64 * (size // 64) if encoding in SPLIT else 0


def file_digest_name(encoding: str | None) -> str:
    """The digest of each table file's bytes a run sealed with ``encoding`` holds in its
    manifest (``tables.NAME.<name>``): ``blake3`` since ``credsim-ledger-v5``, ``sha256``
    before."""
    return "blake3" if encoding in BLAKE3 else "sha256"


def table_version(encoding: str | None) -> int:
    """The version of the other tables' content digests (``credsim-table-vN``) a run sealed
    with ``encoding`` holds: 2 since ``credsim-ledger-v5``, 1 before."""
    return 2 if encoding in BLAKE3 else 1


def _buf(a: np.ndarray) -> memoryview:
    """The bytes of an array (C order), as a flat memoryview for hashing."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8).data


def _as_type(arr: pa.Array | pa.ChunkedArray, type_: pa.DataType) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == type_ else arr.cast(type_)


def _room_for(indices: pa.Array, k: int) -> pa.Array:
    """Dictionary ``indices`` as a type that holds the value ``k`` (that of null rows, one past
    the dictionary's last entry): an int8 index holds at most 127."""
    t = indices.type
    fits = pa.types.is_integer(t) and (1 << (t.bit_width - 1)) > k
    return indices if fits else indices.cast(pa.int64())


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys, no whitespace, no ASCII escaping, no NaN (Python's json)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def genesis(
    manifest: Mapping[str, Any], encoding: str, columns: Any = None, vocabularies: Any = None
) -> bytes:
    """digest_{-1}: sha256(encoding || \\0 || canonical JSON of the basis).

    The basis is the manifest's scheme sha256 and seed (``credsim-ledger-v1``), and for
    ``credsim-ledger-v2`` to ``-v4`` also the chained ``columns`` (``ledger.columns``) and the
    label ``vocabularies`` (``ledger.vocabularies``), as they stand in the manifest (any JSON value:
    a malformed one gives another genesis, never an error). Binding the chain to them means an
    edited ``seed``, scheme hash or vocabulary in the manifest no longer reproduces the chain's
    start.
    """
    scheme = manifest.get("scheme")
    scheme_sha = scheme.get("sha256") if isinstance(scheme, Mapping) else None
    basis = {"scheme_sha256": scheme_sha, "seed": manifest.get("seed")}
    if encoding in PACKED:
        basis |= {"columns": columns, "vocabularies": vocabularies}
    elif encoding != ENCODING_V1:
        raise ValueError(f"unknown ledger encoding {encoding!r}")
    return hashlib.sha256(encoding.encode() + b"\0" + canonical_json(basis)).digest()


def chain_py(rows: np.ndarray, prev: bytes, split: int = 0) -> np.ndarray:
    """Reference chain with :mod:`hashlib`: ``out[i] = sha256(out[i-1] || rows[i])``, or with
    ``split``, ``sha256(rows[i, :split] || out[i-1] || rows[i, split:])``."""
    n, w = rows.shape
    flat = bytes(_buf(rows))
    out = bytearray(32 * n)
    sha = hashlib.sha256
    for i in range(n):
        prev = sha(sha_ni.message(flat[i * w : (i + 1) * w], prev, split)).digest()
        out[32 * i : 32 * i + 32] = prev
    return np.frombuffer(bytes(out), np.uint8).reshape(n, 32)


def links_py(rows: np.ndarray, prevs: np.ndarray, split: int = 0) -> np.ndarray:
    """Reference link check with :mod:`hashlib`: ``out[i] = sha256(prevs[i] || rows[i])`` (with
    ``split``: the previous digest after the row's first ``split`` bytes)."""
    n, w = rows.shape
    flat = bytes(_buf(rows))
    pv = bytes(_buf(prevs))
    sha = hashlib.sha256
    parts = []
    for i in range(n):
        row = flat[i * w : (i + 1) * w]
        parts.append(sha(sha_ni.message(row, pv[32 * i : 32 * i + 32], split)).digest())
    return np.frombuffer(b"".join(parts), np.uint8).reshape(n, 32)


@numba.njit(cache=True, nogil=True)
def _chain_kernel(rows, prev, out, split, init, update, final):  # type: ignore[no-untyped-def]
    """out[k] = SHA256(rows[k, :split] || out[k-1] || rows[k, split:]) with OpenSSL's
    one-context calls (passed in)."""
    n, w = rows.shape
    ctx = np.empty(256, np.uint8)  # SHA256_CTX is 112 bytes
    c = ctx.ctypes.data
    p = prev.ctypes.data
    for k in range(n):
        r = rows[k].ctypes.data
        init(c)
        update(c, r, split)
        update(c, p, 32)
        update(c, r + split, w - split)
        final(out[k].ctypes.data, c)
        p = out[k].ctypes.data


@numba.njit(cache=True, nogil=True)
def _fill_chain_kernel(  # type: ignore[no-untyped-def]
    fixed, fixed_at, strings, table, strings_at, words, prev, out, init, update, final
):
    """The canonical rows assembled as ``ledger_encode._fill`` does, but each in a one-row
    scratch buffer hashed at once (it never leaves the cache): out[k] = SHA256(out[k-1] ||
    row_k). Little-endian machines only (the words are written natively)."""
    n = out.shape[0]
    row = np.zeros(words, np.uint64)
    r = row.ctypes.data
    ctx = np.empty(256, np.uint8)
    c = ctx.ctypes.data
    p = prev.ctypes.data
    for i in range(n):
        for k in range(fixed.shape[0]):
            row[fixed_at[k]] = fixed[k, i]
        for s in range(strings.shape[0]):
            j = strings[s, i]
            w = strings_at[s]
            row[w] = table[j, 0]
            row[w + 1] = table[j, 1]
        init(c)
        update(c, p, 32)
        update(c, r, words * 8)
        final(out[i].ctypes.data, c)
        p = out[i].ctypes.data


@numba.njit(cache=True, nogil=True)
def _links_kernel(rows, prevs, out, split, init, update, final):  # type: ignore[no-untyped-def]
    """out[k] = SHA256(rows[k, :split] || prevs[k] || rows[k, split:])."""
    n, w = rows.shape
    ctx = np.empty(256, np.uint8)
    c = ctx.ctypes.data
    for k in range(n):
        r = rows[k].ctypes.data
        init(c)
        update(c, r, split)
        update(c, prevs[k].ctypes.data, 32)
        update(c, r + split, w - split)
        final(out[k].ctypes.data, c)


_Fns = tuple[Any, Any, Any]
_FAST: _Fns | None | bool = False  # False: not tried yet


def _load_fast() -> _Fns | None:
    """OpenSSL's SHA256_Init/Update/Final (the library hashlib uses), checked, or None."""
    lib = None
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None or not all(
        hasattr(lib, s) for s in ("SHA256_Init", "SHA256_Update", "SHA256_Final")
    ):
        return None
    vp, i = ctypes.c_void_p, ctypes.c_int
    init = lib.SHA256_Init
    init.restype, init.argtypes = i, [vp]
    update = lib.SHA256_Update
    update.restype, update.argtypes = i, [vp, vp, ctypes.c_size_t]
    final = lib.SHA256_Final
    final.restype, final.argtypes = i, [vp, vp]
    fns = (init, update, final)
    # self-test against hashlib before trusting it
    probe = np.arange(3 * 40, dtype=np.uint8).reshape(3, 40)
    start = np.full(32, 7, np.uint8)
    got = np.empty((3, 32), np.uint8)
    for split in (0, 16):
        _chain_kernel(probe, start, got, split, *fns)
        if not np.array_equal(got, chain_py(probe, start.tobytes(), split)):
            return None
        prevs = np.ascontiguousarray(np.vstack([start, got[:-1]]))
        got2 = np.empty((3, 32), np.uint8)
        _links_kernel(probe, prevs, got2, split, *fns)
        if not np.array_equal(got2, got):
            return None
    return fns


def _fast() -> _Fns | None:
    global _FAST
    if _FAST is False:
        try:
            _FAST = _load_fast()
        except Exception:  # any failure (no library, odd platform): use hashlib
            _FAST = None
    return _FAST  # type: ignore[return-value]


def fast_path() -> bool:
    """Whether the Numba/OpenSSL loop can run (else, without SHA extensions, :mod:`hashlib`)."""
    return _fast() is not None


def _widened(rows: np.ndarray, split: int) -> np.ndarray:
    """The rows with the zero bytes after them that :mod:`~credsim.store.sha_ni` reads."""
    n, w = rows.shape
    out = np.zeros((n, sha_ni.width(w, split)), np.uint8)
    out[:, :w] = rows
    return out


def chain(
    rows: np.ndarray, prev: bytes, out: np.ndarray | None = None, split: int = 0
) -> np.ndarray:
    """Digests of consecutive records: ``out[i] = sha256(out[i-1] || rows[i])``, out[-1] = prev
    (with ``split``, :func:`chain_split`: ``sha256(rows[i, :split] || out[i-1] || rows[i,
    split:])``).

    ``rows`` is an (n, w) uint8 array (canonical rows); returns (n, 32) uint8, written into
    ``out`` when given (a C-contiguous (n, 32) uint8 array).
    """
    fast = _fast()
    n = rows.shape[0]
    if n and sha_ni.available(rows.shape[1], split):
        if out is None:
            out = np.empty((n, 32), np.uint8)
        start = np.frombuffer(prev, np.uint8)
        sha_ni.chain(_widened(rows, split), rows.shape[1], start, out, split)
        return out
    if fast is None or n == 0:
        got = chain_py(rows, prev, split)
        if out is None:
            return got
        out[...] = got
        return out
    if out is None:
        out = np.empty((n, 32), np.uint8)
    start = np.frombuffer(prev, np.uint8).copy()
    _chain_kernel(np.ascontiguousarray(rows), start, out, split, *fast)
    return out


def chain_blocks(
    rows: np.ndarray, counts: np.ndarray, prev: bytes, out: np.ndarray | None = None
) -> np.ndarray:
    """Digests of consecutive records whose rows are whole 64-byte blocks (``credsim-ledger-v7``,
    :data:`COMPACT`): ``out[i]`` is SHA-256's compression function applied to row ``i``'s
    ``counts[i]`` blocks from ``out[i-1]`` (``prev`` for the first); (n, 32) uint8, written into
    ``out`` when given."""
    from credsim.store import sha_block

    if out is None:
        out = np.empty((len(counts), 32), np.uint8)
    sha_block.chain_rows(rows, counts, prev, out)
    return out


def links(rows: np.ndarray, prevs: np.ndarray, split: int = 0) -> np.ndarray:
    """Independent link digests ``out[i] = sha256(prevs[i] || rows[i])`` (with ``split``: the
    previous digest after the row's first ``split`` bytes); (n, 32) uint8."""
    fast = _fast()
    n = rows.shape[0]
    out = np.empty((n, 32), np.uint8)
    if n and sha_ni.available(rows.shape[1], split):
        sha_ni.links(_widened(rows, split), rows.shape[1], prevs, out, split)
        return out
    if fast is None or n == 0:
        return links_py(rows, prevs, split)
    prevs = np.ascontiguousarray(prevs, np.uint8)
    _links_kernel(np.ascontiguousarray(rows), prevs, out, split, *fast)
    return out


def digest_array(digests: np.ndarray) -> pa.Array:
    """An (n, w) uint8 array (digests, w = 32, or tags, w = 8) as an Arrow
    fixed_size_binary(w) array (sharing its memory)."""
    n, w = digests.shape
    buf = pa.py_buffer(np.ascontiguousarray(digests, np.uint8))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, buf])


def stored_digests(arr: pa.Array | pa.ChunkedArray, size: int = 32) -> np.ndarray:
    """The ``digest`` column as (n, size) uint8 (nulls as zeros)."""
    arr = _as_type(arr, pa.binary(size))
    n = len(arr)
    if n == 0:
        return np.zeros((0, size), np.uint8)
    data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * size : (arr.offset + n) * size]
    out = data.reshape(n, size).copy()
    if arr.null_count:
        out[~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)] = 0
    return out
