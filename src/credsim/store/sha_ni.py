"""The ledger's chain with the CPU's SHA extensions, compiled here by LLVM (through llvmlite, which
Numba brings), where the CPU has them (x86-64 with ``sha``); elsewhere the callers use OpenSSL.

A link hashes the row and the previous digest (:mod:`credsim.store.ledger_chain`):
``sha256(prev || row)`` in ``credsim-ledger-v2`` and ``-v3``, ``sha256(row[:64] || prev ||
row[64:])`` in ``-v4`` (:func:`message`; ``split`` is where the previous digest goes).
OpenSSL's SHA-256 uses the same instructions, but one call per record (context set-up, copying
the message into the context, the padding, the final block) costs 110 to 125 ns for today's
81-byte row (two compression blocks). Compiled for one row size, the whole loop is one body:
the row's bytes are loaded straight into the message words and OR-ed with the padding (a
constant), the previous digest's words are carried in registers from the record before, and
the part of each block that does not wait on the chain (loading and expanding the row's words)
overlaps with the part that does: 82 to 86 ns a record in a v3 chain, where both blocks wait
on the digest before. In v4 the first block is the row's first 64 bytes, hashed from the
initial state while the record before is still being hashed, and only the second block waits:
64 ns a record, as fast as independent links (62 to 66 ns, ``credsim verify``), on one core of
the 2-core test machine.

:func:`chain` and :func:`links` take rows of at least :func:`width` bytes each, zero after the
row's ``size`` bytes (the last 16-byte loads read up to there); :func:`available` says whether
the compiled code is in use. Each compiled function is checked against :mod:`hashlib` before
it is trusted.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import platform
import threading
from typing import Any

import numpy as np

_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip
_IV = (
    0x6A09E667,
    0xBB67AE85,
    0x3C6EF372,
    0xA54FF53A,
    0x510E527F,
    0x9B05688C,
    0x1F83D9AB,
    0x5BE0CD19,
)


def _blocks(size: int, split: int = 0) -> int:
    """Compression blocks of a link's tail: the previous digest, the row after ``split``, at
    least 9 of padding."""
    return -(-(32 + size - split + 9) // 64)


def width(size: int, split: int = 0) -> int:
    """Bytes a row must have (zero after ``size``) for :func:`chain` and :func:`links`."""
    return split + 64 * _blocks(size, split) - 32


def compress_ir(b: Any, x0: Any, x1: Any, msg: list[Any]) -> tuple[Any, Any]:
    """SHA-256's compression of one block with the SHA extensions, emitted by the llvmlite
    builder ``b``: the state as two vectors of 4 words in the instructions' (F, E, B, A) and
    (H, G, D, C) lanes, the block as 4 vectors of 4 big-endian words (extended in place);
    returns the state after it (the state before added)."""
    import llvmlite.ir as ir

    i32 = ir.IntType(32)
    v4 = ir.VectorType(i32, 4)
    mod = b.module

    def fn(name: str, n: int) -> Any:
        found = mod.globals.get(name)
        return found if found is not None else ir.Function(mod, ir.FunctionType(v4, [v4] * n), name)

    rnds2, msg1 = fn("llvm.x86.sha256rnds2", 3), fn("llvm.x86.sha256msg1", 2)
    msg2 = fn("llvm.x86.sha256msg2", 2)

    def const4(ws: Any) -> Any:
        return ir.Constant(v4, [ir.Constant(i32, int(w)) for w in ws])

    def shuf(x: Any, y: Any, idx: list[int]) -> Any:
        return b.shuffle_vector(x, y, const4(idx))

    s0, s1, w = x0, x1, msg
    for g in range(16):
        if g >= 4:
            t = b.call(msg1, [w[g - 4], w[g - 3]])
            t = b.add(t, shuf(w[g - 2], w[g - 1], [1, 2, 3, 4]))
            w.append(b.call(msg2, [t, w[g - 1]]))
        kw = b.add(w[g], const4(_K[4 * g : 4 * g + 4]))
        x1 = b.call(rnds2, [x1, x0, kw])
        x0 = b.call(rnds2, [x0, x1, shuf(kw, kw, [2, 3, 0, 0])])
    return b.add(x0, s0), b.add(x1, s1)


def _build(size: int, split: int = 0) -> str:
    """LLVM IR of ``chain(rows, stride, n, prev, out)`` and ``links(rows, stride, n, prevs,
    out)`` for rows of ``size`` bytes, the previous digest after the row's first ``split``
    bytes (a multiple of 64: those blocks are hashed from the initial state, whatever the
    chain holds)."""
    import llvmlite.ir as ir

    heads = split // 64
    c = _blocks(size, split)
    pad = bytearray(64 * c)  # SHA-256's padding: 0x80 after the message, its length in bits
    pad[32 + size - split] = 0x80
    pad[-8:] = (8 * (32 + size)).to_bytes(8, "big")

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    v4 = ir.VectorType(i32, 4)
    mod = ir.Module(name=f"credsim_sha_{size}_{split}")
    bswap = ir.Function(mod, ir.FunctionType(v4, [v4]), "llvm.bswap.v4i32")
    ptr = i8.as_pointer()
    sig = ir.FunctionType(ir.VoidType(), [ptr, i64, i64, ptr, ptr])

    def const4(ws: Any) -> Any:
        return ir.Constant(v4, [ir.Constant(i32, int(w)) for w in ws])

    for name in ("chain", "links"):
        f = ir.Function(mod, sig, name)
        rows, stride, n, prev, out = f.args
        entry, loop, done = (f.append_basic_block(s) for s in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)

        def shuf(x: Any, y: Any, idx: list[int], b: Any = b) -> Any:
            return b.shuffle_vector(x, y, const4(idx))

        def load(p: Any, off: Any, b: Any = b) -> Any:
            q = b.gep(p, [off if isinstance(off, ir.Value) else ir.Constant(i64, off)])
            return b.load(b.bitcast(q, v4.as_pointer()), align=1)

        def compress(x0: Any, x1: Any, msg: list[Any], b: Any = b) -> tuple[Any, Any]:
            """One block (4 message vectors) on the state as (ABEF, CDGH) lanes."""
            return compress_ir(b, x0, x1, list(msg))

        a_, b_, c_, d_, e_, f_, g_, h_ = _IV
        iv = (const4([f_, e_, b_, a_]), const4([h_, g_, d_, c_]))

        def digest_words(at: Any, b: Any = b, prev: Any = prev) -> tuple[Any, Any]:
            """A digest's 8 words (A..D, E..H) from its 32 bytes at ``prev + at``."""
            return (
                b.call(bswap, [load(prev, at)]),
                b.call(bswap, [load(prev, b.add(at, ir.Constant(i64, 16)))]),
            )

        first = digest_words(ir.Constant(i64, 0)) if name == "chain" else None
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), entry)
        if first is not None:  # the previous digest's words, carried from the record before
            p0, p1 = b.phi(v4), b.phi(v4)
            p0.add_incoming(first[0], entry)
            p1.add_incoming(first[1], entry)
            pw = (p0, p1)
        else:  # each row's own previous digest
            pw = digest_words(b.mul(i, ir.Constant(i64, 32)))
        row = b.gep(rows, [b.mul(i, stride)])
        x0, x1 = iv
        for blk in range(heads):  # the row's first blocks: they do not wait on the chain
            head = [b.call(bswap, [load(row, 64 * blk + 16 * q)]) for q in range(4)]
            x0, x1 = compress(x0, x1, head)
        for blk in range(c):  # the previous digest, the rest of the row, the padding
            msg = []
            for q in range(4):
                o = 64 * blk + 16 * q
                if o < 32:
                    msg.append(pw[o // 16])
                    continue
                words = [int.from_bytes(pad[o + 4 * j : o + 4 * j + 4], "big") for j in range(4)]
                v = b.call(bswap, [load(row, split + o - 32)])
                msg.append(b.or_(v, const4(words)) if any(words) else v)
            x0, x1 = compress(x0, x1, msg)
        d0, d1 = shuf(x0, x1, [3, 2, 7, 6]), shuf(x0, x1, [1, 0, 5, 4])  # A..D, E..H
        dst = b.bitcast(b.gep(out, [b.mul(i, ir.Constant(i64, 32))]), v4.as_pointer())
        b.store(b.call(bswap, [d0]), dst, align=1)
        b.store(b.call(bswap, [d1]), b.gep(dst, [ir.Constant(i32, 1)]), align=1)
        nxt = b.add(i, ir.Constant(i64, 1))
        i.add_incoming(nxt, loop)
        if first is not None:
            p0.add_incoming(d0, loop)
            p1.add_incoming(d1, loop)
        b.cbranch(b.icmp_unsigned("<", nxt, n), loop, done)
        b.position_at_end(done)
        b.ret_void()
    return str(mod)


_Fn = Any
_LOCK = threading.Lock()
_ENGINES: list[Any] = []  # kept alive: the compiled code lives in them


def _supported() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        import llvmlite.binding as llb

        features = llb.get_host_cpu_features()
    except Exception:  # no llvmlite, or it cannot tell
        return False
    return bool(features.get("sha")) and bool(features.get("ssse3"))


@functools.cache
def _compiled(size: int, split: int = 0) -> tuple[_Fn, _Fn] | None:
    """The checked (chain, links) functions for rows of ``size`` bytes, the previous digest
    after their first ``split``, or None."""
    if not _supported() or split % 64 or not 0 <= split <= size:
        return None
    try:
        import llvmlite.binding as llb

        with _LOCK:
            llb.initialize_native_target()
            llb.initialize_native_asmprinter()
            module = llb.parse_assembly(_build(size, split))
            module.verify()
            target = llb.Target.from_default_triple()
            machine = target.create_target_machine(
                cpu=llb.get_host_cpu_name(), features=llb.get_host_cpu_features().flatten(), opt=3
            )
            engine = llb.create_mcjit_compiler(module, machine)
            engine.finalize_object()
            _ENGINES.append(engine)
            proto = ctypes.CFUNCTYPE(
                None,
                ctypes.c_void_p,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_void_p,
                ctypes.c_void_p,
            )
            fns = (
                proto(engine.get_function_address("chain")),
                proto(engine.get_function_address("links")),
            )
    except Exception:  # any failure to compile: OpenSSL instead
        return None
    return fns if _self_test(size, split, fns) else None


def message(row: bytes, prev: bytes, split: int = 0) -> bytes:
    """What a link hashes: ``row[:split] || prev || row[split:]`` (``split`` 0: ``prev ||
    row``)."""
    return row[:split] + prev + row[split:]


def _self_test(size: int, split: int, fns: tuple[_Fn, _Fn]) -> bool:
    rng = np.random.default_rng(size)
    n = 5
    rows = np.zeros((n, width(size, split)), np.uint8)
    rows[:, :size] = rng.integers(0, 256, (n, size), dtype=np.uint8)
    prev = rng.integers(0, 256, 32, dtype=np.uint8)
    want = np.empty((n, 32), np.uint8)
    p = prev.tobytes()
    for j in range(n):
        p = hashlib.sha256(message(rows[j, :size].tobytes(), p, split)).digest()
        want[j] = np.frombuffer(p, np.uint8)
    got = np.empty((n, 32), np.uint8)
    fns[0](rows.ctypes.data, rows.shape[1], n, prev.ctypes.data, got.ctypes.data)
    prevs = np.ascontiguousarray(np.vstack([prev, want[:-1]]))
    got2 = np.empty((n, 32), np.uint8)
    fns[1](rows.ctypes.data, rows.shape[1], n, prevs.ctypes.data, got2.ctypes.data)
    return bool(np.array_equal(got, want) and np.array_equal(got2, want))


ENABLED = True
"""Switch the compiled code off (tests compare it with OpenSSL's path)."""


def available(size: int, split: int = 0) -> bool:
    """Whether :func:`chain` and :func:`links` run for rows of ``size`` bytes (the previous
    digest after their first ``split``)."""
    return ENABLED and _compiled(size, split) is not None


def chain_function(size: int, split: int = 0) -> _Fn | None:
    """The compiled ``chain(rows, stride, n, prev, out)`` for rows of ``size`` bytes, the
    previous digest after their first ``split`` (a ctypes function: Numba kernels call it on
    the rows they have just built, a few hundred at a time), or None."""
    fns = _compiled(size, split) if ENABLED else None
    return None if fns is None else fns[0]


def _check(rows: np.ndarray, size: int, out: np.ndarray, split: int) -> tuple[_Fn, _Fn]:
    fns = _compiled(size, split)
    if fns is None:
        raise RuntimeError("the SHA extensions are not available here")
    need = width(size, split)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] < need:
        raise ValueError(f"rows must be uint8 of at least {need} bytes")
    if not rows.flags.c_contiguous or not out.flags.c_contiguous or out.shape != (len(rows), 32):
        raise ValueError("rows and out must be C-contiguous, out (n, 32)")
    return fns


def chain(rows: np.ndarray, size: int, prev: np.ndarray, out: np.ndarray, split: int = 0) -> None:
    """``out[i] = sha256(message(rows[i, :size], out[i-1], split))``, ``out[-1] = prev`` (32
    uint8)."""
    fns = _check(rows, size, out, split)
    if len(rows):
        prev = np.ascontiguousarray(prev, np.uint8)
        fns[0](rows.ctypes.data, rows.shape[1], len(rows), prev.ctypes.data, out.ctypes.data)


def links(rows: np.ndarray, size: int, prevs: np.ndarray, out: np.ndarray, split: int = 0) -> None:
    """``out[i] = sha256(message(rows[i, :size], prevs[i], split))``, each alone."""
    fns = _check(rows, size, out, split)
    if len(rows):
        prevs = np.ascontiguousarray(prevs, np.uint8)
        fns[1](rows.ctypes.data, rows.shape[1], len(rows), prevs.ctypes.data, out.ctypes.data)
