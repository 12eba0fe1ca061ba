"""Numba CUDA kernels on the CPU: ``cuda.grid``, thread indices, shared memory, atomics.

A kernel written for ``@cuda.jit`` is translated, from its syntax tree, into a Numba CPU
launcher that runs every CUDA thread of the launch:

* **flat** (no ``cuda.shared.array``, no ``cuda.syncthreads()``): the body becomes a function
  of the thread's coordinates, called for every thread of every block (blocks in a
  ``prange`` loop).
  Threads are independent, so they may run in any order and on any core, as on a GPU.
* **block** (shared memory or barriers): blocks run in a ``prange`` loop; inside a block the
  body is cut at each ``cuda.syncthreads()`` into regions, and each region runs for every
  thread of the block before the next one starts (MCUDA's "thread loops"). A variable that
  lives across a barrier gets one slot per thread (typed by Numba from a first compilation);
  shared arrays are allocated once per block. A barrier inside ``while``/``for range``/``if``
  is supported when the condition is the same for every thread of the block, as CUDA itself
  requires.

``cuda.atomic.*`` become real CPU atomics (``_atomics``), ``cuda.local.array`` a small NumPy
array, device functions (``@cuda.jit(device=True)``) are compiled for the CPU. What has no CPU
meaning raises :class:`KernelCompileError` naming the construct.
"""

from __future__ import annotations

import ast
import types
from dataclasses import dataclass
from typing import Any

from ..errors import KernelCompileError

__all__ = [
    "COORDS",
    "SUPPORTED",
    "CpuPlan",
    "has_barrier",
    "is_barrier",
    "is_cuda_module",
    "plan_cpu",
    "untranslatable",
]

AXES = ("x", "y", "z")
COORDS = (
    *(f"_pdc_t{a}" for a in AXES),
    *(f"_pdc_b{a}" for a in AXES),
    *(f"_pdc_bd{a}" for a in AXES),
    *(f"_pdc_gd{a}" for a in AXES),
)
_INDEX = {"threadIdx": "_pdc_t", "blockIdx": "_pdc_b", "blockDim": "_pdc_bd", "gridDim": "_pdc_gd"}
_NOOPS = ("threadfence", "threadfence_block", "threadfence_system", "syncwarp")
SUPPORTED = (
    "cuda.grid(1|2|3), cuda.gridsize(1|2|3), cuda.threadIdx/blockIdx/blockDim/gridDim.x|y|z, "
    "cuda.warpsize, cuda.shared.array (static shape), cuda.syncthreads(), cuda.local.array, "
    "cuda.const.array_like, cuda.atomic.add/sub/max/min/exch/and_/or_/xor/cas, "
    "cuda.threadfence*(), cuda.syncwarp(), cuda.fma, cuda.selp"
)


def is_cuda_module(value: Any) -> bool:
    """True for the ``numba.cuda`` module (or one of its submodules) without importing it."""
    return isinstance(value, types.ModuleType) and (
        value.__name__ == "numba.cuda" or value.__name__.startswith("numba.cuda.")
    )


@dataclass(frozen=True)
class CpuPlan:
    """A CUDA kernel lowered for the CPU, before its launcher is generated."""

    func: ast.FunctionDef  # the body with cuda.* replaced; syncthreads as _pdc_sync() markers
    shared: tuple[tuple[str, str, str], ...]  # (name, shape, dtype) source of each shared array
    barriers: bool
    atomics: bool

    @property
    def block_mode(self) -> bool:
        """Whether blocks run their threads region by region (shared memory or barriers)."""
        return self.barriers or bool(self.shared)


def untranslatable(message: str) -> KernelCompileError:
    """An error for what the CPU translation cannot do (Numba's simulator may still run it)."""
    exc = KernelCompileError(message)
    exc.untranslatable = True  # type: ignore[attr-defined]
    return exc


def _fail(qualname: str, what: str, node: ast.AST | None = None) -> KernelCompileError:
    line = getattr(node, "lineno", None)
    where = f" (line {line} of the kernel)" if line is not None else ""
    return untranslatable(
        f"@kernel {qualname}: {what}{where} has no CPU translation. Supported on the CPU: "
        f"{SUPPORTED}. Run it on a GPU, or rewrite that part"
    )


def _path(node: ast.AST, roots: frozenset[str]) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in roots:
        return parts[::-1]
    return None


def _name(ident: str) -> ast.Name:
    return ast.Name(id=ident, ctx=ast.Load())


def _grid(n: int, scale: bool) -> ast.expr:
    parts = []
    for a in AXES[:n]:
        text = f"_pdc_gd{a} * _pdc_bd{a}" if scale else f"_pdc_b{a} * _pdc_bd{a} + _pdc_t{a}"
        parts.append(ast.parse(f"({text})", mode="eval").body)
    return parts[0] if n == 1 else ast.Tuple(elts=parts, ctx=ast.Load())


class _Lower(ast.NodeTransformer):
    """Replace ``cuda.*`` with CPU code; record what the body uses."""

    def __init__(self, roots: frozenset[str], qualname: str) -> None:
        self.roots, self.qualname = roots, qualname
        self.barriers = self.atomics = False

    def _bad(self, node: ast.AST, path: list[str]) -> KernelCompileError:
        return _fail(self.qualname, f"'cuda.{'.'.join(path)}'", node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        path = _path(node, self.roots)
        if path is None:
            return self.generic_visit(node)
        if len(path) == 2 and path[0] in _INDEX and path[1] in AXES:
            return ast.copy_location(_name(_INDEX[path[0]] + path[1]), node)
        if path == ["warpsize"]:
            return ast.copy_location(ast.Constant(32), node)
        raise self._bad(node, path)

    def visit_Call(self, node: ast.Call) -> Any:
        path = _path(node.func, self.roots)
        if path is None:
            return self.generic_visit(node)
        # Arguments first (they may use cuda.* too); not node.func, which is the cuda.* name.
        node.args = [self.visit(a) for a in node.args]
        for k in node.keywords:
            k.value = self.visit(k.value)
        args = node.args
        if path in (["grid"], ["gridsize"]):
            rank = args[0].value if len(args) == 1 and isinstance(args[0], ast.Constant) else None
            if not isinstance(rank, int) or rank not in (1, 2, 3):
                raise _fail(self.qualname, f"'cuda.{path[0]}' with a non-constant dimension", node)
            return ast.copy_location(_grid(rank, path == ["gridsize"]), node)
        if path == ["syncthreads"]:
            self.barriers = True
            return ast.copy_location(ast.Call(_name("_pdc_sync"), [], []), node)
        if len(path) == 1 and path[0] in _NOOPS:
            return ast.copy_location(ast.Constant(None), node)
        if path == ["local", "array"]:
            return ast.copy_location(
                ast.Call(ast.parse("_pdc_np.empty", mode="eval").body, args, node.keywords),
                node,
            )
        if path == ["const", "array_like"] and len(args) == 1:
            return args[0]
        if len(path) == 2 and path[0] == "atomic":
            self.atomics = True
            return ast.copy_location(ast.Call(_name(f"_pdc_atomic_{path[1]}"), args, []), node)
        if path == ["fma"] and len(args) == 3:
            text = "({} * {} + {})".format(*(ast.unparse(a) for a in args))
            return ast.copy_location(ast.parse(text, mode="eval").body, node)
        if path == ["selp"] and len(args) == 3:
            return ast.copy_location(ast.IfExp(args[0], args[1], args[2]), node)
        if path == ["shared", "array"]:
            raise _fail(
                self.qualname,
                "a cuda.shared.array that is not assigned to a name at the top of the kernel",
                node,
            )
        raise self._bad(node, path)


def _shared(stmt: ast.stmt, roots: frozenset[str]) -> tuple[str, ast.Call] | None:
    if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)):
        return None
    if _path(stmt.value.func, roots) != ["shared", "array"]:
        return None
    if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
        return None
    return stmt.targets[0].id, stmt.value


def plan_cpu(tree: ast.FunctionDef, roots: frozenset[str], qualname: str) -> CpuPlan:
    """Lower a CUDA kernel's syntax tree for the CPU, or say what cannot be lowered."""
    func = ast.parse(ast.unparse(tree)).body[0]
    assert isinstance(func, ast.FunctionDef)
    func.decorator_list = []
    lower = _Lower(roots, qualname)
    shared = []
    body = []
    for stmt in func.body:
        found = _shared(stmt, roots)
        if found is None:
            body.append(stmt)
            continue
        name, call = found
        call.args = [lower.visit(a) for a in call.args]  # the shape and dtype may use cuda.*
        for k in call.keywords:
            k.value = lower.visit(k.value)
        args: dict[str | None, ast.expr] = {
            **dict(zip(("shape", "dtype"), call.args)),
            **{k.arg: k.value for k in call.keywords},
        }
        if set(args) != {"shape", "dtype"}:
            raise _fail(qualname, f"cuda.shared.array for {name!r} without shape and dtype", call)
        if isinstance(args["shape"], ast.Constant) and args["shape"].value == 0:
            raise _fail(qualname, f"dynamic shared memory ({name!r} has shape 0)", call)
        shared.append((name, ast.unparse(args["shape"]), ast.unparse(args["dtype"])))
    func.body = [lower.visit(s) for s in body] or [ast.Pass()]
    ast.fix_missing_locations(func)
    for node in ast.walk(func):
        if isinstance(node, ast.Return) and node.value is not None:
            raise KernelCompileError(
                f"@kernel {qualname}: a CUDA kernel returns nothing, but line {node.lineno} "
                "returns a value; write results into an output array"
            )
        if isinstance(node, ast.Yield | ast.YieldFrom | ast.Await):
            raise _fail(qualname, "a generator or async construct", node)
    return CpuPlan(func, tuple(shared), lower.barriers, lower.atomics)


def is_barrier(stmt: ast.stmt) -> bool:
    """True for a lowered ``cuda.syncthreads()`` statement."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "_pdc_sync"
    )


def has_barrier(node: ast.AST) -> bool:
    """True when ``node`` contains a lowered ``cuda.syncthreads()``."""
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_pdc_sync"
        for n in ast.walk(node)
    )
