"""``cuda.atomic.*`` on the CPU: real atomic read-modify-writes (LLVM ``atomicrmw``/``cmpxchg``).

A CUDA kernel translated for the CPU (``_cudaform``) runs its threads on several cores at
once, so ``cuda.atomic.add(hist, k, 1)`` must be atomic there too. Each operation returns the
old value, as on a GPU. Numba is imported by this module: import it only when compiling.
"""

from __future__ import annotations

import importlib
from typing import Any

from numba.extending import intrinsic

# Untyped for mypy: Numba's own annotations are partial.
cgutils: Any = importlib.import_module("numba.core.cgutils")
types: Any = importlib.import_module("numba.core.types")

__all__ = ["ATOMICS"]


def _pointer(context: Any, builder: Any, sig: Any, args: Any) -> Any:
    aryty, idxty, _valty = sig.args
    ary = context.make_array(aryty)(context, builder, args[0])
    if isinstance(idxty, types.BaseTuple):
        parts = cgutils.unpack_tuple(builder, args[1], len(idxty))
        inds = [context.cast(builder, v, t, types.intp) for v, t in zip(parts, idxty)]
    else:
        inds = [context.cast(builder, args[1], idxty, types.intp)]
    return cgutils.get_item_pointer(context, builder, aryty, ary, inds, wraparound=True)


def _rmw(name: str, signed: str | None, unsigned: str | None, floating: str | None) -> Any:
    def typer(typingctx: Any, arr: Any, idx: Any, val: Any) -> Any:
        if not isinstance(arr, types.Array) or not isinstance(arr.dtype, types.Number):
            return None
        dtype = arr.dtype
        if isinstance(dtype, types.Float):
            op = floating
        elif isinstance(dtype, types.Integer):
            op = signed if dtype.signed else unsigned
        else:
            op = None
        if op is None:
            return None  # Numba reports "no implementation" with the types

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr = _pointer(context, builder, sig, args)
            value = context.cast(builder, args[2], sig.args[2], dtype)
            return builder.atomic_rmw(op, ptr, value, "seq_cst")

        return dtype(arr, idx, val), codegen

    typer.__name__ = f"atomic_{name}"
    return intrinsic(typer)


def _cas() -> Any:
    def typer(typingctx: Any, arr: Any, idx: Any, old: Any, val: Any) -> Any:
        if not isinstance(arr, types.Array) or not isinstance(arr.dtype, types.Integer):
            return None
        dtype = arr.dtype

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr = _pointer(context, builder, sig.replace(args=sig.args[:3]), args[:3])
            expected = context.cast(builder, args[2], sig.args[2], dtype)
            value = context.cast(builder, args[3], sig.args[3], dtype)
            pair = builder.cmpxchg(ptr, expected, value, "seq_cst", "seq_cst")
            return builder.extract_value(pair, 0)

        return dtype(arr, idx, old, val), codegen

    typer.__name__ = "atomic_cas"
    return intrinsic(typer)


ATOMICS: dict[str, Any] = {
    "add": _rmw("add", "add", "add", "fadd"),
    "sub": _rmw("sub", "sub", "sub", "fsub"),
    "max": _rmw("max", "max", "umax", "fmax"),
    "min": _rmw("min", "min", "umin", "fmin"),
    "exch": _rmw("exch", "xchg", "xchg", "xchg"),
    "and_": _rmw("and", "and", "and", None),
    "or_": _rmw("or", "or", "or", None),
    "xor": _rmw("xor", "xor", "xor", None),
    "cas": _cas(),
}
