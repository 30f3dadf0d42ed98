"""The generator of ``ledger_packed_std.py``: the chain kernels of a packed layout with its fields
at constant places (see :func:`kernel_source`). Run :func:`write_standard_kernel` after changing
the records schema or the packed layout, then format the file with ``ruff format``;
tests/test_ledger_v2.py fails until then."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from credsim.store.ledger_packed import CHUNK, PackedEncoder, PackedLayout


def _row_words(
    enc: PackedEncoder, value: Callable[[int], str], word: str = "words[{}]", indent: str = "    "
) -> list[str]:
    """Each of the row's words (``word`` with its index) as one expression of ``value(c)``,
    field ``c``'s value as a uint64 (field 0: the null mask)."""
    at, shift, mask, spill = enc._place
    words: list[list[str]] = [[] for _ in range(enc._words)]
    for c in range(at.shape[0]):
        v = f"({value(c)} & np.uint64(0x{int(mask[c]):X}))"
        k = int(at[c])
        words[k].append(f"({v} << np.uint64({int(shift[c])}))" if int(shift[c]) else v)
        if spill[c]:
            words[k + 1].append(f"({v} >> np.uint64({64 - int(shift[c])}))")
    return [
        f"{indent}{word.format(w)} = " + (" | ".join(parts) if parts else "np.uint64(0)")
        for w, parts in enumerate(words)
    ]


_CHUNK_CHAINED = [
    "        chain(rows.ctypes.data, rows.shape[1] * 8, m, head.ctypes.data, digests.ctypes.data)",
    "        for r in range(m):",
    "            for q in range(w):",
    "                out[s + r, q] = digests[r, q]",
    "        head[:] = digests[m - 1]",
]
"""A chunk's rows chained with the SHA extensions, their tags copied out (the kernels' loop)."""


def _engine_rows(layout: PackedLayout) -> tuple[list[str], list[str], list[str]]:
    """The engine columns the kernel takes (``a<k>``), their label columns (mapped by
    ``m<k>``) and the lines writing row ``i`` compact at ``buf[o:]``: each field read and
    stored at once, where the row has got to (``p``), unless null (its bit in ``nm``, stored
    last, at the row's start), so that few values live at a time (all read first, then
    stored, they spilled to the stack: 29 against 19 ns a row); empty when a field has no
    engine column."""
    from credsim.store.ledger_engine import FIELDS

    fields = layout.fields
    names = [name for name, _, _, _ in fields[1:]]
    if any(name not in FIELDS for name in names) or fields[0][3] != 4:
        return [], [], []
    args = [name for name in names if FIELDS[name][1] != "id"]
    codes = [name for name in args if FIELDS[name][1] == "code"]
    lines = ["nm = np.uint32(0)", f"p = o + {fields[0][3]}"]
    for c, name in enumerate(names, start=1):
        kind, width = FIELDS[name][1], fields[c][3]
        mask = f"np.uint64(0x{(1 << 8 * width) - 1:X})"
        k = args.index(name) if kind != "id" else -1
        read = f"at(a{k}, i)"

        def put(value: str, indent: str = "", mask: str = mask, width: int = width) -> list[str]:
            return [f"{indent}store_u64(buf, p, {value} & {mask})", f"{indent}p += {width}"]

        if kind == "id":
            lines += put("np.uint64(first + i)")
        elif kind == "int":
            lines += put(f"np.uint64(np.int64({read}))")
        elif kind in ("double", "bool"):
            lines += put(f"np.uint64({read})")
        else:
            lines += [f"x = {read}", "if x == -1:", f"    nm |= np.uint32({1 << (c - 1)})"]
            if kind == "nullable":
                lines += ["else:", *put("np.uint64(np.int64(x))", "    ")]
            else:
                lines += [
                    "else:",
                    f"    v = mapped(m{codes.index(name)}, x)",
                    "    if v < 0:",
                    "        unknown += 1",
                    "    else:",
                    *put("np.uint64(v)", "        "),
                ]
    return args, codes, [*lines, "store_u32(buf, o, nm)"]


def _engine_compact_kernel(layout: PackedLayout) -> list[str]:
    """``pack_engine_compact``: the compact rows of ``credsim-ledger-v7`` built from the
    engine's columns a chunk at a time, then compressed into the chain's state (as
    :func:`~credsim.store.ledger_packed._compact_chain_kernel` does field by field); empty
    when a field has no engine column. Built and compressed in the same loop, a row took 74
    against 67 ns: the processor did not build the next row while the compression's long
    dependency ran (twenty-fifth speed session)."""
    args, codes, rows = _engine_rows(layout)
    if not rows:
        return []
    params = ", ".join(
        [*(f"a{k}" for k in range(len(args))), *(f"m{k}" for k in range(len(codes)))]
    )
    return [
        f"ENGINE_ARGS = {args!r}",
        '"""The engine columns ``pack_engine_compact`` takes, by records field, in order."""',
        f"ENGINE_CODES = {codes!r}",
        '"""Its label columns, whose vocabulary codes by engine code follow the columns."""',
        "STRIDE = " + str(layout.stride),
        '"""The bytes of the longest compact row\'s blocks (credsim-ledger-v7)."""',
        "",
        "",
        "@numba.njit(cache=True, nogil=True)",
        f"def pack_engine_compact(first, {params}, state, out):  # type: ignore[no-untyped-def]",
        '    """The chain of compact rows (credsim-ledger-v7) built from the engine\'s columns',
        "    (column ``a<k>``, or one value for every row: ledger_engine.at; label codes",
        "    mapped by ``m<k>``, or taken as they are: ledger_engine.mapped), CHUNK at a time",
        "    into a buffer",
        "    that stays in the cache, then compressed into ``state`` in turn; the first",
        "    ``out.shape[1]`` bytes of each digest into ``out``. Returns the labels outside",
        '    the vocabularies met (nothing to keep when not 0)."""',
        "    n = out.shape[0]",
        "    buf = np.zeros(CHUNK * STRIDE + 8, np.uint8)",
        "    ends = np.empty(CHUNK, np.int64)",
        "    unknown = 0",
        "    for s in range(0, n, CHUNK):",
        "        m = min(CHUNK, n - s)",
        "        for r in range(m):",
        "            i = s + r",
        "            o = r * STRIDE",
        *("            " + line for line in rows),
        "            end = o + 64 * max(1, (p - o + 63) // 64)",
        "            while p < end:",
        "                store_u64(buf, p, np.uint64(0))",
        "                p += 8",
        "            ends[r] = end",
        "        for r in range(m):",
        "            for b in range(r * STRIDE, ends[r], 64):",
        "                sha_block(state, buf, b)",
        "            put_digest(state, out, s + r)",
        "    return unknown",
        "",
    ]


def kernel_source(layout: PackedLayout) -> str:
    """The source of a module with the chain kernels for this one layout, each row's words
    written as one expression of constant shifts and masks (the generic kernels look them up
    field by field: about 1.5 to 2 times the cost of the chain's SHA-256 against 1.1 to 1.2):

    * ``pack_chain``: :func:`~credsim.store.ledger_packed._pack_chain_kernel` (OpenSSL);
    * ``pack_rows_chain``: :func:`~credsim.store.ledger_packed._pack_rows_chain_kernel` (the
      CPU's SHA extensions, :mod:`credsim.store.sha_ni`).

    ``ledger_packed_std.py`` is this for today's records schema (:func:`standard_layout`),
    written by :func:`write_standard_kernel` and then formatted; a test checks that its
    ``SPEC`` is the standard layout's and that it chains as the generic kernel does."""
    enc = PackedEncoder(layout)
    spec = ",\n".join(f"    {c!r}" for c in layout.spec())
    return "\n".join(
        [
            '"""Generated by credsim.store.ledger_packed_gen.write_standard_kernel (do not',
            "edit): the chain kernels for the packed layout of today's records schema, its",
            "fields at constant places, with OpenSSL or the CPU's SHA extensions",
            '(tests/test_ledger_v2.py checks them against the layout and the generic kernels)."""',
            "",
            "import numba",
            "import numpy as np",
            "",
            "from credsim.store.ledger_engine import at, mapped",
            "from credsim.store.pqencode import _store_u32 as store_u32",
            "from credsim.store.pqencode import _store_u64 as store_u64",
            "from credsim.store.sha_block import put_digest, sha_block",
            "",
            "SPEC = [",
            spec + ",",
            "]",
            f"SIZE = {layout.size}",
            f"CHUNK = {CHUNK}",
            "",
            "",
            '@numba.njit(cache=True, nogil=True, inline="always")',
            "def put_row(words, vals, i):  # type: ignore[no-untyped-def]",
            '    """Row ``i`` as its words (_put_row)."""',
            *_row_words(enc, lambda c: f"vals[{c}, i]"),
            "",
            "",
            "@numba.njit(cache=True, nogil=True)",
            "def pack_chain(vals, prev, out, split, init, update, final):"
            "  # type: ignore[no-untyped-def]",
            '    """out[i] = SHA256(row_i[:split] || out[i-1] || row_i[split:]), out[-1] = prev',
            '    (_pack_chain_kernel)."""',
            "    n = out.shape[0]",
            f"    words = np.zeros({enc._words}, np.uint64)",
            "    r = words.ctypes.data",
            "    ctx = np.empty(256, np.uint8)  # SHA256_CTX is 112 bytes",
            "    c = ctx.ctypes.data",
            "    p = prev.ctypes.data",
            "    for i in range(n):",
            "        put_row(words, vals, i)",
            "        init(c)",
            "        update(c, r, split)",
            "        update(c, p, 32)",
            f"        update(c, r + split, {layout.size} - split)",
            "        final(out[i].ctypes.data, c)",
            "        p = out[i].ctypes.data",
            "",
            "",
            "@numba.njit(cache=True, nogil=True)",
            "def pack_rows_chain(vals, prev, out, head, width, chain):"
            "  # type: ignore[no-untyped-def]",
            '    """The chain with the SHA extensions (_pack_rows_chain_kernel)."""',
            "    n = out.shape[0]",
            "    w = out.shape[1]",
            "    rows = np.zeros((CHUNK, (width + 7) // 8), np.uint64)",
            "    digests = np.empty((CHUNK, 32), np.uint8)",
            "    head[:] = prev",
            "    for s in range(0, n, CHUNK):",
            "        m = min(CHUNK, n - s)",
            "        for r in range(m):",
            "            put_row(rows[r], vals, s + r)",
            *_CHUNK_CHAINED,
            "",
            "",
            *_engine_compact_kernel(layout),
        ]
    )


def standard_layout() -> PackedLayout:
    """The packed layout of today's records schema with vocabularies of up to 65,535 values (every
    run's, unless a label column holds more)."""
    from credsim.store.schema import RECORDS_CONTENT

    strings = [f.name for f in RECORDS_CONTENT if pa.types.is_string(f.type)]
    return PackedLayout.of_schema(RECORDS_CONTENT, {name: [] for name in strings})


def write_standard_kernel() -> None:
    """Regenerate ``ledger_packed_std.py`` (then format it with ``ruff format``)."""
    from pathlib import Path

    Path(__file__).with_name("ledger_packed_std.py").write_text(kernel_source(standard_layout()))
