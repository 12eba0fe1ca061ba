"""Reading a ``@kernel`` body: its source, parameters, the arrays it writes, its constants.

Two forms: the *element-index* form (``def saxpy(i, a, x, y, out)``, run for every ``i``) and
the *CUDA* form, a Numba CUDA kernel body (it uses ``numba.cuda``: ``cuda.grid(1)``, ...). An
element-index body's source is placed, unchanged, inside a generated launcher (``_codegen``),
where Numba inlines it; a CUDA body's syntax tree is translated for the CPU (``_cudaform``).
A body whose source cannot be read (made with ``exec``, in a string) is compiled by Numba
from its bytecode instead (``text`` is then empty). Which array
parameters the body writes is read from its syntax, conservatively: a parameter counts as
read-only only if every use is ``p[...]`` read, ``p.shape``/``p.size``/``p.ndim``/``p.dtype``
or ``len(p)``; anything else (a store, an alias, passing it to a function) counts as a write.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import textwrap
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import KernelCompileError
from ._cudaform import is_cuda_module

__all__ = ["BodySource", "read_body"]

_READ_ATTRS = frozenset({"shape", "size", "ndim", "dtype"})


@dataclass(frozen=True)
class BodySource:
    """What the code generator needs to know about a kernel body."""

    name: str
    qualname: str
    index: str
    params: tuple[str, ...]
    text: str
    writes: frozenset[str]
    namespace: dict[str, Any]
    constants: dict[str, str]
    form: str = "index"  # "index" or "cuda"
    func: Any = None
    tree: ast.FunctionDef | None = None
    cuda_roots: frozenset[str] = frozenset()
    fingerprint: str = ""

    @property
    def has_source(self) -> bool:
        """Whether the body's source text was read (else Numba compiles its bytecode)."""
        return bool(self.text)


def _fail(func: Any, what: str) -> KernelCompileError:
    name = getattr(func, "__qualname__", repr(func))
    return KernelCompileError(
        f"@kernel {name}: {what}. A kernel body is a plain function whose first parameter is "
        "the element index, e.g. 'def saxpy(i, a, x, y, out): out[i] = a * x[i] + y[i]', or "
        "a Numba CUDA kernel body (using cuda.grid(1), cuda.threadIdx.x, ...)"
    )


def _signature(func: Any, cuda_form: bool) -> tuple[str, ...]:
    if not isinstance(func, types.FunctionType):
        raise _fail(func, f"expected a Python function, got {type(func).__name__}")
    if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func):
        raise _fail(func, "an async function or a generator cannot be a kernel")
    names = []
    for p in inspect.signature(func).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise _fail(func, f"parameter {p.name!r} is {p.kind.description}")
        if p.default is not p.empty:
            raise _fail(func, f"parameter {p.name!r} has a default value")
        names.append(p.name)
    if not names and not cuda_form:
        raise _fail(func, "it takes no parameters (the first one is the element index)")
    return tuple(names)


def _function_def(func: Any) -> tuple[str, ast.FunctionDef] | None:
    """The body's source from its 'def' line and its syntax tree; ``None`` without source."""
    try:
        lines, _ = inspect.getsourcelines(func)
        text = textwrap.dedent("".join(lines))
        tree = ast.parse(text)
    except (OSError, TypeError, SyntaxError):
        return None  # made by exec, in a string, or its file changed: compile its bytecode
    node = tree.body[0]
    if isinstance(node, ast.FunctionDef) and node.name != func.__name__:
        return None  # the lines found are not this function's (e.g. an exec in a loop)
    if not isinstance(node, ast.FunctionDef):
        raise _fail(func, "it must be defined with 'def' (a lambda cannot be a kernel)")
    start = node.lineno - 1  # the 'def' line: decorators above it are dropped
    body_text = "".join(text.splitlines(keepends=True)[start:]).rstrip() + "\n"
    return body_text, node


def _written(node: ast.FunctionDef, arrays: set[str]) -> set[str]:
    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    owners = {name: {name} for name in arrays}  # a name -> the parameters it may view
    while True:
        written: set[str] = set()
        grew = False
        for n in ast.walk(node):
            if not isinstance(n, ast.Name) or n.id not in owners:
                continue
            if not isinstance(n.ctx, ast.Load):
                if n.id in arrays:
                    written |= owners[n.id]  # a parameter rebound or deleted: be conservative
                continue
            use, cur = _use_of(n, parents)
            if use == "read":
                continue
            if use == "alias":
                for target in _targets(cur):
                    before = len(owners.get(target, ()))
                    owners.setdefault(target, set()).update(owners[n.id])
                    grew |= len(owners[target]) != before
                continue
            written |= owners[n.id]
        if not grew:
            return written & arrays


def _use_of(n: ast.Name, parents: dict[int, ast.AST]) -> tuple[str, ast.AST]:
    """How a load of an array name is used: 'read', 'write' or 'alias' (bound to a name)."""
    cur: ast.AST = n
    parent = parents.get(id(cur))
    while isinstance(parent, ast.Subscript) and parent.value is cur:
        if not isinstance(parent.ctx, ast.Load):
            return "write", cur
        cur = parent
        parent = parents.get(id(cur))
    if cur is n:
        if isinstance(parent, ast.Attribute) and parent.attr in _READ_ATTRS:
            return "read", cur
        is_call = isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
        if is_call and parent.func.id == "len":  # type: ignore[union-attr]
            return "read", cur
    if isinstance(parent, ast.Assign | ast.AnnAssign | ast.NamedExpr) and parent.value is cur:
        return "alias", parent
    if isinstance(parent, ast.For) and parent.iter is cur:
        return "alias", parent
    if isinstance(parent, ast.Call | ast.Tuple | ast.List | ast.Starred | ast.keyword):
        return "write", cur  # passed on or packed: whoever gets it may write
    return "read", cur


def _targets(assign: ast.AST) -> list[str]:
    if isinstance(assign, ast.Assign):
        nodes: list[ast.expr] = list(assign.targets)
    elif isinstance(assign, ast.AnnAssign | ast.NamedExpr | ast.For):
        nodes = [assign.target]
    else:
        return []
    return [t.id for t in nodes if isinstance(t, ast.Name)]


def _constant(value: Any) -> str | None:
    if isinstance(value, bool | int | float | complex | str | bytes | np.generic):
        return repr(value)
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    return None


def _fingerprint(code: types.CodeType) -> str:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.append(_fingerprint(const) if isinstance(const, types.CodeType) else repr(const))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _cuda_roots(func: Any, namespace: dict[str, Any]) -> frozenset[str]:
    """Names through which the body uses ``numba.cuda`` (non-empty: the CUDA form)."""
    code = func.__code__
    used = set(code.co_names) | set(code.co_freevars)
    return frozenset(n for n in used if is_cuda_module(namespace.get(n)))


def read_body(func: Any) -> BodySource:
    """Read ``func`` as a kernel body, or raise :class:`KernelCompileError` saying why not."""
    if not isinstance(func, types.FunctionType):
        raise _fail(func, f"expected a Python function, got {type(func).__name__}")
    namespace = dict(func.__globals__)
    code = func.__code__
    if code.co_freevars:
        for name, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                namespace[name] = cell.cell_contents
            except ValueError:
                raise _fail(func, f"it uses {name!r} before it is assigned") from None
    roots = _cuda_roots(func, namespace)
    names = _signature(func, bool(roots))
    params = names if roots else names[1:]
    found = _function_def(func)
    if found is None:
        text, node = "", None
        writes = set(params)  # no syntax to read: every array may be written
    else:
        text, node = found
        writes = _written(node, set(params))
    referenced = set(code.co_names) | set(code.co_freevars)
    constants = {}
    for name in sorted(referenced):
        if name in namespace:
            shown = _constant(namespace[name])
            constants[name] = shown if shown is not None else type(namespace[name]).__name__
        elif not hasattr(builtins, name):
            constants[name] = "?"
    return BodySource(
        name=func.__name__,
        qualname=f"{func.__module__}.{func.__qualname__}",
        index="" if roots else names[0],
        params=params,
        text=text,
        writes=frozenset(writes),
        namespace=namespace,
        constants=constants,
        form="cuda" if roots else "index",
        func=func,
        tree=node,
        cuda_roots=roots,
        fingerprint=_fingerprint(code),
    )
