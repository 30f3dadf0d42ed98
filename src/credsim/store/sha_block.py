"""SHA-256's compression function on one 64-byte block, as a Numba intrinsic: the chain of
``credsim-ledger-v7`` (:mod:`credsim.store.ledger_chain`), where each record's digest is the
compression function applied to its row's blocks from the previous digest.

:func:`sha_block` ``(state, block, offset)`` compresses ``block[offset:offset + 64]`` into
``state``, eight uint32 in the lane order of the CPU's SHA extensions (F, E, B, A, H, G, D, C:
:data:`LANES`). Where the CPU has them (x86-64 with ``sha`` and Numba compiling for this host)
it is 32 ``sha256rnds2`` and 24 message instructions, 41 to 43 ns a block in a chain on the test
machine; elsewhere the same function in plain 32-bit arithmetic (FIPS 180-4, 6.2.2, about 0.2 us
a block), which the kernels compile to instead. Being emitted into the kernel that builds the
rows, it needs no call and no copy: a record of today's schema is built from the engine's
columns and chained in about 60 ns, where v6's rows took 19 ns to build and 64 to chain, two
blocks a record (twenty-fifth speed session).

:func:`compress_py` is the same function in Python (the reference the tests hold both to,
itself checked against :mod:`hashlib`); :func:`state_of` and :func:`digest_of` convert between
a digest's 32 bytes and a state; :func:`chain_rows` chains rows of whole blocks; :func:`check`
compares the compiled function with :mod:`hashlib` once per process.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from credsim.store.sha_ni import _IV, _K, _supported, compress_ir

LANES = (3, 2, 7, 6, 1, 0, 5, 4)
"""Where the digest's words A..H are in a state array (the SHA extensions' ABEF/CDGH lanes)."""


# --------------------------------------------------------------------------------------------
# The reference


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF


def compress_py(words: Sequence[int], block: bytes) -> list[int]:
    """SHA-256's compression function (FIPS 180-4, 6.2.2, steps 1 to 4): the hash words
    ``words`` (A..H) after one 64-byte ``block``."""
    if len(block) != 64 or len(words) != 8:
        raise ValueError("one 64-byte block and 8 words")
    w = [int.from_bytes(block[4 * t : 4 * t + 4], "big") for t in range(16)]
    for t in range(16, 64):
        s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xFFFFFFFF)
    a, b, c, d, e, f, g, h = words
    for t in range(64):
        t1 = h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + _K[t] + w[t]
        t2 = (_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & 0xFFFFFFFF, c, b, a, (t1 + t2) & 0xFFFFFFFF
    return [(x + y) & 0xFFFFFFFF for x, y in zip(words, (a, b, c, d, e, f, g, h), strict=True)]


def chain_py(digest: bytes, blocks: bytes) -> bytes:
    """The digest after compressing ``blocks`` (a multiple of 64 bytes) from ``digest``."""
    words = [int.from_bytes(digest[4 * j : 4 * j + 4], "big") for j in range(8)]
    for at in range(0, len(blocks), 64):
        words = compress_py(words, blocks[at : at + 64])
    return b"".join(x.to_bytes(4, "big") for x in words)


def state_of(digest: bytes) -> np.ndarray:
    """A digest's 32 bytes as a state (uint32[8] in :data:`LANES` order)."""
    words = np.frombuffer(digest, ">u4").astype(np.uint32)
    state = np.empty(8, np.uint32)
    state[list(LANES)] = words
    return state


def digest_of(state: np.ndarray) -> bytes:
    """A state's digest: its words A..H, big-endian."""
    return np.asarray(state, np.uint32)[list(LANES)].astype(">u4").tobytes()


# --------------------------------------------------------------------------------------------
# The intrinsic


def _native() -> bool:
    """Whether the kernels compile to the SHA extensions: the CPU has them and Numba compiles
    for this host (not for a named CPU, as ``NUMBA_CPU_NAME=generic`` asks for portable
    caches)."""
    return getattr(numba.config, "CPU_NAME", None) is None and _supported()


def _pointers(context: Any, b: Any, sig: Any, args: Any) -> tuple[Any, Any]:
    """The state's first word and the block's first byte as pointers."""
    sty, bty, oty = sig.args
    st = context.make_array(sty)(context, b, args[0])
    bl = context.make_array(bty)(context, b, args[1])
    zero = context.get_constant(types.intp, 0)
    sp = cgutils.get_item_pointer(context, b, sty, st, [zero], wraparound=False)
    ix = context.cast(b, args[2], oty, types.intp)
    return sp, cgutils.get_item_pointer(context, b, bty, bl, [ix], wraparound=False)


def _fn(b: Any, ret: Any, params: list[Any], name: str) -> Any:
    return cgutils.get_or_insert_function(b.module, ir.FunctionType(ret, params), name)


def _emit_ni(b: Any, sp: Any, bp: Any) -> None:
    """The block with the SHA extensions (:func:`~credsim.store.sha_ni.compress_ir`)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    v4 = ir.VectorType(i32, 4)
    bswap = _fn(b, v4, [v4], "llvm.bswap.v4i32")
    vp = b.bitcast(sp, v4.as_pointer())
    x0 = b.load(vp, align=4)
    x1 = b.load(b.gep(vp, [ir.Constant(i32, 1)]), align=4)
    w = []
    for q in range(4):
        p = b.bitcast(b.gep(bp, [ir.Constant(i64, 16 * q)]), v4.as_pointer())
        w.append(b.call(bswap, [b.load(p, align=1)]))
    x0, x1 = compress_ir(b, x0, x1, w)
    b.store(x0, vp, align=4)
    b.store(x1, b.gep(vp, [ir.Constant(i32, 1)]), align=4)


def _emit_portable(b: Any, sp: Any, bp: Any) -> None:
    """The block in plain 32-bit arithmetic (FIPS 180-4, 6.2.2), the state in :data:`LANES`."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    bswap = _fn(b, i32, [i32], "llvm.bswap.i32")

    def c(x: int) -> Any:
        return ir.Constant(i32, x)

    def rotr(x: Any, n: int) -> Any:
        return b.or_(b.lshr(x, c(n)), b.shl(x, c(32 - n)))

    slots = [b.gep(sp, [ir.Constant(i64, LANES[j])]) for j in range(8)]
    start = [b.load(p, align=4) for p in slots]
    w = []
    for t in range(16):
        p = b.bitcast(b.gep(bp, [ir.Constant(i64, 4 * t)]), i32.as_pointer())
        w.append(b.call(bswap, [b.load(p, align=1)]))
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = b.xor(b.xor(rotr(x, 7), rotr(x, 18)), b.lshr(x, c(3)))
        s1 = b.xor(b.xor(rotr(y, 17), rotr(y, 19)), b.lshr(y, c(10)))
        w.append(b.add(b.add(w[t - 16], s0), b.add(w[t - 7], s1)))
    a, bb, cc, d, e, f, g, h = start
    for t in range(64):
        big1 = b.xor(b.xor(rotr(e, 6), rotr(e, 11)), rotr(e, 25))
        ch = b.xor(b.and_(e, f), b.and_(b.not_(e), g))
        t1 = b.add(b.add(b.add(h, big1), b.add(ch, c(_K[t]))), w[t])
        big0 = b.xor(b.xor(rotr(a, 2), rotr(a, 13)), rotr(a, 22))
        maj = b.xor(b.xor(b.and_(a, bb), b.and_(a, cc)), b.and_(bb, cc))
        h, g, f, e, d, cc, bb, a = g, f, e, b.add(d, t1), cc, bb, a, b.add(t1, b.add(big0, maj))
    for p, x, y in zip(slots, start, (a, bb, cc, d, e, f, g, h), strict=True):
        b.store(b.add(x, y), p, align=4)


def _typed(state: Any, block: Any, offset: Any) -> Any:
    """The signature, or None when the arguments are not (uint32[:], uint8[:], integer)."""
    ok = (
        isinstance(state, types.Array)
        and state.dtype == types.uint32
        and isinstance(block, types.Array)
        and block.dtype == types.uint8
        and isinstance(offset, types.Integer)
    )
    return types.void(state, block, offset) if ok else None


def _intrinsic(pick: Any) -> Any:
    """The typer of an intrinsic whose code ``pick()`` emits."""

    def typer(typingctx: Any, state: Any, block: Any, offset: Any) -> Any:
        sig = _typed(state, block, offset)
        if sig is None:
            return None

        def codegen(context: Any, b: Any, signature: Any, args: Any) -> Any:
            sp, bp = _pointers(context, b, signature, args)
            pick()(b, sp, bp)
            return context.get_dummy_value()

        return sig, codegen

    return typer


def _choose() -> Any:
    return _emit_ni if _native() else _emit_portable


@intrinsic
def sha_block(typingctx: Any, state: Any, block: Any, offset: Any) -> Any:  # pragma: no cover
    """Compress ``block[offset:offset + 64]`` into ``state`` (uint32[8], :data:`LANES`), no
    bounds check: with the SHA extensions where :func:`_native`, else portably."""
    return _intrinsic(_choose)(typingctx, state, block, offset)


@intrinsic
def sha_block_portable(
    typingctx: Any, state: Any, block: Any, offset: Any
) -> Any:  # pragma: no cover
    """:func:`sha_block` in plain 32-bit arithmetic, whatever the CPU (the tests compare)."""
    return _intrinsic(lambda: _emit_portable)(typingctx, state, block, offset)


# --------------------------------------------------------------------------------------------
# Kernels


@numba.njit(cache=True, nogil=True, inline="always")
def put_digest(state: np.ndarray, out: np.ndarray, i: int) -> None:
    """The first ``out.shape[1]`` bytes of the state's digest into ``out[i]``."""
    for q in range(out.shape[1]):
        word = state[(3, 2, 7, 6, 1, 0, 5, 4)[q >> 2]]
        out[i, q] = np.uint8((word >> np.uint32(24 - 8 * (q & 3))) & np.uint32(0xFF))


@numba.njit(cache=True, nogil=True)
def _chain_rows(flat, stride, counts, state, out):  # type: ignore[no-untyped-def]
    """Row ``i`` is ``counts[i]`` blocks at ``flat[i * stride:]``: compressed in turn into
    ``state``, the digest's first bytes into ``out[i]``."""
    for i in range(counts.shape[0]):
        for k in range(counts[i]):
            sha_block(state, flat, i * stride + 64 * k)
        put_digest(state, out, i)


@numba.njit(cache=True, nogil=True)
def _chain_rows_portable(flat, stride, counts, state, out):  # type: ignore[no-untyped-def]
    """:func:`_chain_rows` with :func:`sha_block_portable`."""
    for i in range(counts.shape[0]):
        for k in range(counts[i]):
            sha_block_portable(state, flat, i * stride + 64 * k)
        put_digest(state, out, i)


def chain_rows(
    rows: np.ndarray, counts: np.ndarray, prev: bytes, out: np.ndarray, portable: bool = False
) -> bytes:
    """Each row ``rows[i]`` (uint8, zero after its bytes) is ``counts[i]`` 64-byte blocks,
    compressed in turn from the digest before (``prev`` for the first); the first
    ``out.shape[1]`` bytes of each record's digest into ``out``. Returns the last digest."""
    n = len(counts)
    if n == 0:
        return prev
    rows = np.ascontiguousarray(rows, np.uint8)
    if rows.shape[0] != n or rows.shape[1] % 64 or int(np.max(counts)) * 64 > rows.shape[1]:
        raise ValueError("rows of whole blocks, as many as their counts say")
    state = state_of(prev)
    kernel = _chain_rows_portable if portable else _chain_rows
    kernel(rows.reshape(-1), rows.shape[1], np.ascontiguousarray(counts, np.uint8), state, out)
    return digest_of(state)


@functools.cache
def check() -> None:
    """Compare the compression the kernels compile to (:func:`sha_block`) with :mod:`hashlib`
    (SHA-256 of a padded message from its initial words), once; RuntimeError when they differ.
    (The portable form is compared in the tests, on every machine.)"""
    msg = bytes(range(200)) * 3
    padded = msg + b"\x80" + bytes((55 - len(msg)) % 64) + (8 * len(msg)).to_bytes(8, "big")
    rows = np.frombuffer(padded, np.uint8).reshape(1, -1)
    iv = b"".join(x.to_bytes(4, "big") for x in _IV)
    want = hashlib.sha256(msg).digest()
    out = np.empty((1, 32), np.uint8)
    got = chain_rows(rows, np.array([rows.shape[1] // 64], np.uint8), iv, out)
    if got != want or out[0].tobytes() != want:
        raise RuntimeError("SHA-256's compression compiled here disagrees with hashlib")
