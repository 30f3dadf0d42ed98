"""Ask the CPU to fetch an array element into its caches ahead of use, from Numba kernels.

The per-record kernels read and write per-entity state (a score, the last record, a rate
multiplier, an alias table's entry) at entities that follow no order: at a million persons and
more that state is far larger than the caches, and each record waits for memory (about 100 ns
on the 2-core test machine) before the next can go on. A kernel that knows the entity a few
records ahead calls :func:`prefetch` on it first; by the time it gets there the line is in
cache, and the waits of several records overlap. ``apply_points`` went from 107 to 52 ns a
record at 3 million persons this way (measured alone, caches cold as in a run).

It emits LLVM's ``llvm.prefetch`` (x86-64: ``prefetchw``, or ``prefetcht0`` to read), a hint
only: it never faults, not even for an index outside the array, and never changes a result.
Where the CPU has no such instruction it compiles to nothing.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

AHEAD = 8
"""How many records (or draws) ahead the kernels ask for what they will need: 4 to 32 gave the
same gain in ``apply_points``."""

_I8P = ir.IntType(8).as_pointer()
_I32 = ir.IntType(32)


def _make(rw: int, doc: str) -> Any:
    def hint(typingctx: Any, arr: Any, index: Any) -> Any:  # pragma: no cover - numba
        if not isinstance(arr, types.Array):
            return None
        its = _types(index)
        if its is None or len(its) != arr.ndim:
            return None
        sig = types.void(arr, index)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aty, ity = signature.args
            ary = context.make_array(aty)(context, builder, args[0])
            if isinstance(ity, types.Integer):
                ix = [args[1]]
            else:
                ix = [builder.extract_value(args[1], k) for k in range(len(its))]
            ix = [context.cast(builder, v, t, types.intp) for v, t in zip(ix, its, strict=True)]
            # the address only: no bounds check, no wraparound (a hint never faults)
            ptr = cgutils.get_item_pointer(context, builder, aty, ary, ix, wraparound=False)
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32]),
                "llvm.prefetch.p0i8",
            )
            # rw (0: to be read, 1: to be written), locality 3 (keep in all levels), data cache
            consts = [ir.Constant(_I32, v) for v in (rw, 3, 1)]
            builder.call(fn, [builder.bitcast(ptr, _I8P), *consts])
            return context.get_dummy_value()

        return sig, codegen

    hint.__doc__ = doc
    hint.__name__ = hint.__qualname__ = "prefetch" if rw else "prefetch_read"
    return intrinsic(hint)


prefetch = _make(
    1,
    """``prefetch(arr, i)``: bring ``arr[i]`` into the caches, to be written; ``i`` an integer
    (1-D ``arr``) or a tuple of one integer per dimension.""",
)
prefetch_read = _make(0, """As :func:`prefetch`, for an element that is only read.""")


def _types(index: Any) -> list[Any] | None:
    """The integer types of an index (an integer or a tuple of them), else None."""
    if isinstance(index, types.Integer):
        return [index]
    its = list(getattr(index, "types", ()))
    ok = isinstance(index, types.BaseTuple) and its
    return its if ok and all(isinstance(t, types.Integer) for t in its) else None
