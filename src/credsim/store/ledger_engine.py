"""Sealing records straight from the engine's columns (a streamed run's batches).

The packed rows (:mod:`credsim.store.ledger_packed`) are defined on the records *table*: its
Arrow columns, nulls and label strings. The generic path turns each batch's Arrow columns into
a matrix of int64 values, one row per column, and builds the rows from it: 46 MB written and
read back per batch of 2^18 records, 31 ns a record besides the chain's 64 (twenty-third speed
session). The engine's own columns (:data:`credsim.engine.records.COLUMNS`) say the same
thing: how :func:`credsim.engine.output.records_arrow` turns each into the table's column is
:data:`FIELDS` here, and the generated kernel ``pack_engine_compact``
(:mod:`credsim.store.ledger_packed_std`) builds each compact row of ``credsim-ledger-v7``
from them, a chunk at a time, then compresses them into the chain (:mod:`credsim.store.sha_block`):
60 ns a record in all, where building v6's rows took 19 ns and chaining them 64. The kernel is
compiled for the run's columns: one left at its default for every record is passed as that
value (:func:`at`), label codes that are the vocabulary's without their table (:func:`mapped`).

Same rows, same chain: ``tests/test_ledger_engine.py`` seals random engine columns (nulls,
columns left at their default, labels outside the manifest's) both ways and compares every
tag, the head and the manifest's ``ledger``. Where the kernel cannot run (a layout other than
the standard one, an encoding before v7, a column of another type) or a label is outside the
vocabularies (refused, with the generic path's message), the generic path seals the batch.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from credsim.engine.records import COLUMNS
from credsim.store import sha_block

FIELDS: dict[str, tuple[str, str]] = {
    # records table field -> (engine column, how the table holds it):
    #   id: the record's index; int: the value; nullable: null where -1; code: null where -1,
    #   else the label's code in the vocabulary; double: the IEEE-754 bits; bool: 0 or 1
    "record_id": ("", "id"),
    "day": ("day", "int"),
    "behaviour_day": ("behaviour_day", "nullable"),
    "entity_id": ("entity", "int"),
    "actor_id": ("actor", "nullable"),
    "item": ("item", "code"),
    "behaviour": ("behaviour", "code"),
    "channel": ("channel", "code"),
    "source_agency": ("agency", "code"),
    "points": ("points", "double"),
    "applied": ("applied", "double"),
    "status": ("status", "code"),
    "truthful": ("truthful", "bool"),
    "basis": ("basis", "code"),
    "error": ("error", "code"),
    "cause_record": ("cause", "nullable"),
    "review_day": ("review_day", "nullable"),
    "appeal_day": ("appeal_day", "nullable"),
    "appealed": ("appealed", "bool"),
    "import_row": ("import_row", "nullable"),
    "excused": ("excused", "bool"),
}
"""How :func:`~credsim.engine.output.records_arrow` makes each column of the records table
from the engine's columns."""


class EngineRecords:
    """A batch of records as the engine's columns (:meth:`credsim.engine.records.Table.view`:
    None for a column every record holds at its default), the first with id ``first``, and
    each label column's names (``labels[field]``: the engine's code ``k`` is
    ``labels[field][k]``)."""

    def __init__(
        self,
        cols: Mapping[str, np.ndarray | None],
        first: int,
        labels: Mapping[str, Sequence[str]],
    ) -> None:
        self.cols, self.first, self.labels = cols, int(first), labels


def usable(encoder: Any, records: EngineRecords) -> bool:
    """Whether ``pack_engine_compact`` can chain these records with this encoder: its layout is
    the standard one (:mod:`~credsim.store.ledger_packed_std`) with compact rows (runs sealed
    with an earlier encoding, as the tests seal them, take the generic path), and every
    column has the engine's type."""
    from credsim.store import ledger_packed_std as std

    layout = getattr(encoder, "layout", None)
    if layout is None or not getattr(encoder, "_standard", False) or sys.byteorder != "little":
        return False
    if not layout.compact:
        return False
    for field in std.ENGINE_ARGS:
        name = FIELDS[field][0]
        col = records.cols.get(name)
        if col is not None and col.dtype != np.dtype(COLUMNS[name][0]):
            return False
        if FIELDS[field][1] == "code" and field not in records.labels:
            return False
    return True


@intrinsic
def at(typingctx: Any, a: Any, i: Any) -> Any:  # pragma: no cover - compiled
    """Value ``i`` of an engine column in a kernel: ``a[i]`` of an array (no check: ``i`` is
    in range), or ``a`` itself for a scalar (a column every record holds at its default), the
    kernel then compiled for it, its branches on the value gone."""
    if isinstance(a, types.Array):

        def load(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary = context.make_array(a)(context, builder, args[0])
            ix = context.cast(builder, args[1], i, types.intp)
            ptr = cgutils.get_item_pointer(context, builder, a, ary, [ix], wraparound=False)
            return builder.load(ptr)

        return a.dtype(a, i), load
    if isinstance(a, (types.Integer, types.Float, types.Boolean)):
        return a(a, i), lambda context, builder, sig, args: args[0]
    return None


@intrinsic
def mapped(typingctx: Any, m: Any, x: Any) -> Any:  # pragma: no cover - compiled
    """The vocabulary code of engine code ``x`` (not -1) in a kernel: ``m[x]``, ``m`` ending
    in -1, which any ``x`` outside it maps to (a label outside the vocabulary); or ``x`` itself
    when ``m`` is None (the engine's codes are the vocabulary's: no table to read)."""
    if isinstance(m, types.NoneType):
        return types.int64(m, x), lambda context, builder, sig, args: context.cast(
            builder, args[1], x, types.int64
        )
    if not (isinstance(m, types.Array) and m.dtype == types.int64):
        return None

    def load(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(m)(context, builder, args[0])
        last = builder.sub(
            cgutils.unpack_tuple(builder, ary.shape)[0], context.get_constant(types.intp, 1)
        )
        ix = context.cast(builder, args[1], x, types.intp)
        ix = builder.select(builder.icmp_unsigned("<", ix, last), ix, last)
        return builder.load(
            cgutils.get_item_pointer(context, builder, m, ary, [ix], wraparound=False)
        )

    return types.int64(m, x), load


def chain(
    encoder: Any, records: EngineRecords, lo: int, n: int, prev: bytes, out: np.ndarray
) -> bytes | None:
    """The chain over records ``lo`` .. ``lo + n`` of the batch after ``prev`` (each digest's
    first ``out.shape[1]`` bytes into ``out``); returns the last digest, or None when a label
    is outside its vocabulary (nothing is kept: the generic path refuses the batch). Call
    only when :func:`usable`."""
    from credsim.store import ledger_packed_std as std

    args: list[Any] = []
    for field in std.ENGINE_ARGS:
        name, kind = FIELDS[field]
        col = records.cols.get(name)
        if col is None:  # every record at the default: one value (a kernel compiled for it)
            dtype, fill = COLUMNS[name]
            col = np.array(fill, dtype)
        else:
            col = col[lo : lo + n]
        col = col.view(np.uint64) if kind == "double" else col
        args.append(col[()] if col.ndim == 0 else col)
    for field in std.ENGINE_CODES:  # each engine code's in the vocabulary, then -1 for others
        index = encoder._index[field]
        codes = [index.get(w, -1) for w in records.labels[field]]
        identity = codes == list(range(len(codes)))
        args.append(None if identity else np.array([*codes, -1], np.int64))
    state = sha_block.state_of(prev)
    kernel: Any = std.pack_engine_compact  # (a Numba dispatcher)
    unknown = kernel(records.first + lo, *args, state, out)
    return None if unknown else sha_block.digest_of(state)
