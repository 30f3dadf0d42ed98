"""Parquet's value encodings, for :mod:`credsim.store.pqwrite`: compiled loops for the two
that pack bits (``DELTA_BINARY_PACKED`` and the bit-packed runs of ``RLE_DICTIONARY``), NumPy
for the rest. Each function returns the encoded bytes of one page's values as a NumPy
``uint8`` array (or a buffer).

The formats are Apache Parquet's (``Encodings.md`` of parquet-format):

* **PLAIN**: fixed-width values little-endian, back to back; booleans one bit each, the first
  value in the lowest bit; a string as a 4-byte length and its UTF-8 bytes (the dictionary
  page).
* **RLE/bit-packing hybrid** (definition levels, dictionary indices): runs, each led by a
  ULEB128 header; ``(groups << 1) | 1`` starts a bit-packed run of ``groups`` x 8 values,
  ``count << 1`` a repeated run of one value (in ``ceil(width / 8)`` bytes). Values are packed
  from the lowest bit of the first byte on.
* **DELTA_BINARY_PACKED**: a header (block size 128, 4 miniblocks, value count, first value as
  a zigzag ULEB128), then per block of 128 deltas their minimum (zigzag ULEB128), the bit width
  of each miniblock of 32 (one byte each) and the miniblocks, each ``delta - minimum`` packed
  in its width; the last miniblock is padded to 32 values, miniblocks past the last value are
  left out (their width written as 0).
* **BYTE_STREAM_SPLIT**: byte k of every value, then byte k + 1 of every value, ...
"""

from __future__ import annotations

import sys
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

BLOCK = 128
MINI = 32


@numba.njit(cache=True, nogil=True, inline="always")
def _uleb(out: np.ndarray, j: int, v: np.uint64) -> int:
    while v >= np.uint64(0x80):
        out[j] = np.uint8((v & np.uint64(0x7F)) | np.uint64(0x80))
        v >>= np.uint64(7)
        j += 1
    out[j] = np.uint8(v)
    return j + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _zigzag(v: np.int64) -> np.uint64:
    return np.uint64((v << np.int64(1)) ^ (v >> np.int64(63)))


@numba.njit(cache=True, nogil=True)
def _delta_into(values: np.ndarray, bits: int, out: np.ndarray) -> int:
    """Integer ``values`` DELTA_BINARY_PACKED into ``out``; the bytes used, or -1 when a
    delta does not fit the column's ``bits`` (32: an INT32 column decoded with 32-bit
    arithmetic)."""
    n = values.shape[0]
    j = _uleb(out, 0, np.uint64(BLOCK))
    j = _uleb(out, j, np.uint64(BLOCK // MINI))
    j = _uleb(out, j, np.uint64(n))
    j = _uleb(out, j, _zigzag(np.int64(values[0]) if n else np.int64(0)))
    lo32, hi32 = -(2**31), 2**31 - 1
    if n > 1 and _one_stride(values):  # (ids in order: every block its minimum, widths 0)
        d = np.int64(values[1]) - np.int64(values[0])
        if bits == 32 and (d < lo32 or d > hi32):
            return -1
        for _ in range(1, n, BLOCK):
            j = _uleb(out, j, _zigzag(d))
            for q in range(BLOCK // MINI):
                out[j + q] = 0
            j += BLOCK // MINI
        return j
    widths = np.zeros(BLOCK // MINI, np.int64)
    deltas = np.zeros(BLOCK, np.int64)
    scratch = np.zeros(2 * MINI + 2, np.uint32)
    start = 1
    while start < n:
        m = min(BLOCK, n - start)
        last = np.int64(values[start - 1])
        dmin = dmax = np.int64(values[start]) - last
        for k in range(m):  # (no branch in the loop: min and max, checked after)
            x = np.int64(values[start + k])
            d = x - last
            last = x
            deltas[k] = d
            dmin = min(dmin, d)
            dmax = max(dmax, d)
        if bits == 32 and (dmin < lo32 or dmax > hi32):
            return -1
        for k in range(m, BLOCK):
            deltas[k] = dmin  # padding: packs to 0
        j = _uleb(out, j, _zigzag(dmin))
        used = (m + MINI - 1) // MINI
        for q in range(BLOCK // MINI):
            w = 0
            if q < used:
                top = np.uint64(0)
                for k in range(q * MINI, (q + 1) * MINI):
                    top |= np.uint64(deltas[k] - dmin)
                w = _bit_length(top)
                if bits == 32 and w > 32:
                    return -1
            widths[q] = w
            out[j + q] = np.uint8(w)
        j += BLOCK // MINI
        for q in range(used):
            j = _pack(deltas, q * MINI, MINI, widths[q], dmin, out, j, scratch)
        start += m
    return j


@numba.njit(cache=True, nogil=True)
def _one_stride(values):  # noqa: ANN001, ANN201
    """Whether consecutive ``values`` (two at least) all differ by the same amount (record
    ids: one pass without a branch, against a delta, a minimum and a maximum a value)."""
    d = np.int64(values[1]) - np.int64(values[0])
    n = values.shape[0]
    if np.int64(values[n - 1]) - np.int64(values[0]) != d * (n - 1):
        return False  # (what other values mostly show at once)
    same = True
    for i in range(1, n):
        same &= np.int64(values[i]) - np.int64(values[i - 1]) == d
    return same


@numba.njit(cache=True, nogil=True, inline="always")
def _bit_length(x: np.uint64) -> int:
    """Bits ``x`` takes (0 for 0), in six steps."""
    w = 0
    for step in (32, 16, 8, 4, 2, 1):
        if x >> np.uint64(step):
            w += step
            x >>= np.uint64(step)
    return w + int(x)


@numba.njit(cache=True, nogil=True, inline="always")
def _put(words: np.ndarray, p: int, v: np.uint64) -> None:
    """OR the bits of ``v`` (at most 32) into ``words`` (uint32) from bit ``p`` on."""
    q = p >> 5
    x = v << np.uint64(p & 31)
    words[q] |= np.uint32(x & np.uint64(0xFFFFFFFF))
    words[q + 1] |= np.uint32(x >> np.uint64(32))


@numba.njit(cache=True, nogil=True, inline="always")
def _pack_words(
    vals: np.ndarray, first: int, count: int, w: int, base: np.int64, words: np.ndarray
) -> None:  # noqa: E501
    """Pack ``vals[first:first+count] - base`` in ``w`` bits each into ``words`` (uint32,
    zeroed, at least ``count * w / 32 + 2`` of them), from its first bit on."""
    uw = np.uint64(w)
    low = np.uint64(0xFFFFFFFF)
    mask = (np.uint64(1) << uw) - np.uint64(1) if w < 64 else ~np.uint64(0)
    p = 0
    for k in range(first, first + count):
        v = np.uint64(np.int64(vals[k]) - base) & mask
        if w <= 32:
            _put(words, p, v)
        else:  # the low 32 bits, then the rest
            _put(words, p, v & low)
            _put(words, p + 32, v >> np.uint64(32))
        p += w


@numba.njit(cache=True, nogil=True, inline="always")
def _pack(
    vals: np.ndarray,
    first: int,
    count: int,
    w: int,
    base: np.int64,
    out: np.ndarray,
    j: int,
    words: np.ndarray,
) -> int:  # noqa: E501
    """Pack ``vals[first:first+count] - base`` in ``w`` bits each into ``out`` from byte ``j``
    on (``count`` a multiple of 8; ``words``: scratch of ``count * w / 32 + 2``, for widths
    over 32): the next free byte."""
    if w == 0:
        return j
    if w > 32:
        n = count * w // 32
        for q in range(n + 2):
            words[q] = 0
        _pack_words(vals, first, count, w, base, words)
        for q in range(n):
            x = words[q]
            for b in range(4):
                out[j + b] = np.uint8((x >> np.uint32(8 * b)) & np.uint32(0xFF))
            j += 4
        return j
    mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
    acc = np.uint64(0)
    nb = 0
    for k in range(first, first + count):  # whole 32-bit words out of a 64-bit register
        acc |= (np.uint64(np.int64(vals[k]) - base) & mask) << np.uint64(nb)
        nb += w
        if nb >= 32:
            out[j] = np.uint8(acc & np.uint64(0xFF))
            out[j + 1] = np.uint8((acc >> np.uint64(8)) & np.uint64(0xFF))
            out[j + 2] = np.uint8((acc >> np.uint64(16)) & np.uint64(0xFF))
            out[j + 3] = np.uint8((acc >> np.uint64(24)) & np.uint64(0xFF))
            j += 4
            acc >>= np.uint64(32)
            nb -= 32
    while nb > 0:  # (a whole number of bytes: count is a multiple of 8)
        out[j] = np.uint8(acc & np.uint64(0xFF))
        acc >>= np.uint64(8)
        nb -= 8
        j += 1
    return j


class Scratch:
    """Buffers the encoders write into, kept from call to call (fresh memory costs more to
    touch than to fill); what an encoder returns is a view of them, valid until its next
    call."""

    def __init__(self) -> None:
        self._bytes = np.zeros(0, np.uint8)
        self._words = np.zeros(0, np.uint32)

    def bytes(self, n: int) -> np.ndarray:
        if self._bytes.shape[0] < n:
            self._bytes = np.empty(max(n, 2 * self._bytes.shape[0]), np.uint8)
        return self._bytes

    def words(self, n: int) -> np.ndarray:
        if self._words.shape[0] < n:
            self._words = np.empty(max(n, 2 * self._words.shape[0]), np.uint32)
        return self._words


def delta(values: np.ndarray, bits: int, scratch: Scratch) -> np.ndarray | None:
    """DELTA_BINARY_PACKED bytes of integer ``values`` (a column of ``bits`` 32 or 64), or
    None when an INT32 column's deltas overflow 32 bits (the caller stores it PLAIN)."""
    v = np.ascontiguousarray(values)
    n = v.shape[0]
    blocks = -(-max(n - 1, 0) // BLOCK)
    out = scratch.bytes(40 + blocks * (14 + BLOCK * 8))
    used = _delta_into(v, bits, out)
    return None if used < 0 else out[:used]


_LITTLE = sys.byteorder == "little"


def _unaligned_store(bits: int) -> Any:
    """The typer of an intrinsic storing ``value``'s low ``bits`` as little-endian bytes at
    ``arr[index]`` (a uint8 array), whatever the address's alignment, with no bounds check."""
    word_type = types.uint64 if bits == 64 else types.uint32

    def typer(typingctx: Any, arr: Any, index: Any, value: Any) -> Any:  # pragma: no cover
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint8):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aty, ity, vty = signature.args
            ary = context.make_array(aty)(context, builder, args[0])
            ix = context.cast(builder, args[1], ity, types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aty, ary, [ix], wraparound=False)
            word = context.cast(builder, args[2], vty, word_type)
            builder.store(word, builder.bitcast(ptr, ir.IntType(bits).as_pointer()), align=1)
            return context.get_dummy_value()

        return types.void(arr, index, value), codegen

    return typer


_store_u64 = intrinsic(_unaligned_store(64))
"""Store ``value`` as 8 little-endian bytes at ``arr[index]`` (the caller leaves 8 bytes of
room)."""
_store_u32 = intrinsic(_unaligned_store(32))
"""Store ``value``'s low 32 bits as 4 little-endian bytes at ``arr[index]``."""


@numba.njit(cache=True, nogil=True)
def _bitpack_into(codes: np.ndarray, w: int, out: np.ndarray, words: np.ndarray) -> int:
    n = codes.shape[0]
    full = n - n % 8
    if w <= 8 and _LITTLE:  # eight values are w bytes: built in a register, stored at once
        mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
        for g in range(full // 8):
            acc = np.uint64(0)
            for k in range(8):
                acc |= (np.uint64(codes[8 * g + k]) & mask) << np.uint64(k * w)
            _store_u64(out, g * w, acc)  # type: ignore[call-arg]  # (past w bytes: zeros)
        j = full // 8 * w
    else:
        j = _pack(codes, 0, full, w, np.int64(0), out, 0, words)
    if full < n:  # the last group, padded with zeros
        tail = np.zeros(8, np.int64)
        for k in range(full, n):
            tail[k - full] = codes[k]
        j = _pack(tail, 0, 8, w, np.int64(0), out, j, words)
    return j


def bitpacked_run(codes: np.ndarray, width: int, scratch: Scratch) -> tuple[bytes, np.ndarray]:
    """One bit-packed run of the RLE/bit-packing hybrid holding ``codes`` (non-negative, below
    ``2**width``; ``width`` >= 1): its header and its bytes."""
    groups = -(-len(codes) // 8)
    out = scratch.bytes(groups * width + 8)
    used = _bitpack_into(np.ascontiguousarray(codes), width, out, scratch.words(2 * width + 2))
    return _uleb_bytes(groups << 1 | 1), out[:used]


def _uleb_bytes(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def levels(valid: np.ndarray | None, n: int, nulls: int) -> bytes:
    """Definition levels (bit width 1) of a data page v1, their 4-byte length first: ``valid``
    the validity bitmap's bytes (Arrow's: bit i for value i, from the lowest bit; offset 0),
    or None when ``nulls`` is 0 or ``n``."""
    if valid is None or nulls in (0, n):
        body = _uleb_bytes(n << 1) + (b"\x01" if nulls == 0 else b"\x00")
    else:
        groups = -(-n // 8)
        body = _uleb_bytes(groups << 1 | 1) + bytes(valid[:groups])
        if n % 8:  # the bits past the last value: zero
            body = body[:-1] + bytes([body[-1] & ((1 << (n % 8)) - 1)])
    return len(body).to_bytes(4, "little") + body


def width(count: int) -> int:
    """Bits a dictionary index takes for a dictionary of ``count`` values (at least 1)."""
    return max(1, int(count - 1).bit_length())


def plain_strings(values: list[str]) -> bytes:
    """PLAIN BYTE_ARRAY values (the dictionary page of a label column)."""
    out = bytearray()
    for s in values:
        b = s.encode()
        out += len(b).to_bytes(4, "little") + b
    return bytes(out)


def byte_stream_split(values: np.ndarray) -> np.ndarray:
    """BYTE_STREAM_SPLIT bytes of fixed-width ``values``."""
    v = np.ascontiguousarray(values)
    return np.ascontiguousarray(v.view(np.uint8).reshape(len(v), v.dtype.itemsize).T).ravel()


@numba.njit(cache=True, nogil=True)
def int_range(values):  # noqa: ANN001, ANN201
    """(minimum, maximum) of integer ``values`` (at least one), in one pass: the row group's
    statistics (NumPy's ``min`` and ``max``: two passes)."""
    lo = hi = values[0]
    for i in range(1, values.shape[0]):
        v = values[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@numba.njit(cache=True, nogil=True)
def float_range(values):  # noqa: ANN001, ANN201
    """(minimum, maximum, count) of the ``values`` that are not NaN, in one pass (the
    statistics leave NaN out; NumPy took a pass to find one, a copy without them, and two
    passes for the minimum and maximum)."""
    lo, hi = np.inf, -np.inf
    k = 0
    for i in range(values.shape[0]):
        v = values[i]
        if v == v:
            lo = min(lo, v)
            hi = max(hi, v)
            k += 1
    return lo, hi, k


DICTIONARY_SPAN = 1 << 16
"""Whole numbers a float column's dictionary (:func:`whole_numbers`) may span at most."""


@numba.njit(cache=True, nogil=True)
def _whole_range(values):  # noqa: ANN001, ANN201
    """(minimum, maximum, whether every value is a whole number: finite, neither NaN nor
    -0.0, whose sign a dictionary of whole numbers would lose)."""
    lo, hi = np.inf, -np.inf
    whole = True
    for i in range(values.shape[0]):
        x = values[i]
        lo = min(lo, x)
        hi = max(hi, x)
        whole &= (x == np.floor(x)) & ((x != 0.0) | ~np.signbit(x))
    return lo, hi, whole and np.isfinite(lo) and np.isfinite(hi)


@numba.njit(cache=True, nogil=True)
def _codes(values, lo, words, codes):  # noqa: ANN001, ANN201
    """Each value's rank among the distinct ones (whole numbers from ``lo``, at most as many
    as ``words`` holds) into ``codes``, and those distinct values, ascending, into ``words``:
    how many."""
    rank = np.zeros(words.shape[0], np.int32)
    for i in range(values.shape[0]):
        rank[np.int64(values[i] - lo)] = 1
    k = 0
    for j in range(words.shape[0]):
        if rank[j]:
            rank[j] = k
            words[k] = lo + j
            k += 1
    for i in range(values.shape[0]):
        codes[i] = rank[np.int64(values[i] - lo)]
    return k


def _dictionary(v: np.ndarray, lo: Any, hi: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    words = np.empty(int(hi - lo) + 1, dtype)
    codes = np.empty(v.shape[0], np.int32)
    return words[: _codes(v, lo, words, codes)], codes


def whole_numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A dictionary for float ``values`` (at least one, none null) that are all whole numbers
    within :data:`DICTIONARY_SPAN` of each other (the scores of a point scheme): the distinct
    values ascending and each value's index among them (int32); None otherwise."""
    v = np.ascontiguousarray(values, np.float64)
    lo, hi, whole = _whole_range(v)
    if not whole or hi - lo >= DICTIONARY_SPAN:
        return None
    return _dictionary(v, lo, hi, np.float64)


def small_integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A dictionary for integer ``values`` (at least one, none null) within
    :data:`DICTIONARY_SPAN` of each other (ages, dates, deciles): the distinct values ascending
    (int32, as an INT32 column stores them) and each value's index among them; None
    otherwise."""
    v = np.ascontiguousarray(values)
    lo, hi = int_range(v)
    if int(hi) - int(lo) >= DICTIONARY_SPAN:
        return None
    return _dictionary(v, int(lo), int(hi), np.int32)


@numba.njit(cache=True, nogil=True)
def _byte_arrays(offsets, data, out):  # noqa: ANN001, ANN201
    """Each string of ``offsets`` into ``data`` as its 4-byte length, then its bytes."""
    at = 0
    for i in range(offsets.shape[0] - 1):
        a, m = offsets[i], offsets[i + 1] - offsets[i]
        out[at] = m & 0xFF
        out[at + 1] = (m >> 8) & 0xFF
        out[at + 2] = (m >> 16) & 0xFF
        out[at + 3] = (m >> 24) & 0xFF
        for q in range(m):
            out[at + 4 + q] = data[a + q]
        at += 4 + m


def plain_byte_arrays(arr: Any) -> np.ndarray:
    """PLAIN BYTE_ARRAY values of a string array without nulls (Arrow's ``string``): each a
    4-byte length and its UTF-8 bytes."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    body = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    out = np.empty(4 * n + int(offsets[-1] - offsets[0]), np.uint8)
    size = np.diff(offsets)
    if n and (size == size[0]).all():  # all of one length (identity codes): two strided copies
        m = int(size[0])
        rows = out.reshape(n, 4 + m)
        rows[:, :4] = np.frombuffer(m.to_bytes(4, "little"), np.uint8)
        rows[:, 4:] = body[offsets[0] : offsets[-1]].reshape(n, m)
        return out
    _byte_arrays(offsets, body, out)
    return out
