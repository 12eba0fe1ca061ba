"""CPU launchers of CUDA kernels (``_cudaform`` plans): one loop over threads, or thread loops.

``flat_launcher``: blocks in a ``prange`` loop, each block's threads in nested loops whose
innermost statement is the body itself (its coordinates are loop variables). ``block_launcher``:
blocks are the ``prange`` iterations; the body is cut at each ``cuda.syncthreads()`` into
regions, each run as a loop over the threads of the block (a *thread loop*);
``while``/``for range``/``if`` statements that contain a barrier become block-level
statements whose condition is evaluated by thread 0.
A variable that is read in a region but assigned in another (or in an earlier pass of the
same region) keeps one value per thread in an array ``_pdc_v_<name>``.
"""

from __future__ import annotations

import ast
import copy

import numpy as np

from ._cudaform import COORDS, CpuPlan, has_barrier, is_barrier, untranslatable

__all__ = ["block_launcher", "carried_names", "flat_launcher", "thread_function"]

_T = "    "


def _strip_barriers(stmts: list[ast.stmt]) -> list[ast.stmt]:
    class Strip(ast.NodeTransformer):
        def visit_Expr(self, node: ast.Expr) -> ast.stmt:
            return ast.Pass() if is_barrier(node) else node

    out = [Strip().visit(copy.deepcopy(s)) for s in stmts]  # the plan is reused: copy
    return [ast.fix_missing_locations(s) for s in out]


def thread_function(plan: CpuPlan, params: tuple[str, ...], name: str = "_pdc_thread") -> str:
    """The body as a function of one thread's coordinates (barriers removed)."""
    lines = [f"def {name}({', '.join((*COORDS, *params))}):"]
    lines += [f"{_T}{n} = _pdc_np.zeros({shape}, {dtype})" for n, shape, dtype in plan.shared]
    for stmt in _strip_barriers(plan.func.body):
        lines += [_T + line for line in ast.unparse(stmt).splitlines()]
    return "\n".join(lines) + "\n"


def _launch_head(params: tuple[str, ...]) -> list[str]:
    dims = ", ".join((*COORDS[9:], *COORDS[6:9]))  # grid dims, then block dims
    return [f"def launch({', '.join((dims, *params))}):"]


def _returns_in_loops(stmts: list[ast.stmt]) -> bool:
    for s in stmts:
        for loop in ast.walk(s):
            if isinstance(loop, ast.For | ast.While) and any(
                isinstance(n, ast.Return) for n in ast.walk(loop)
            ):
                return True
    return False


def _without_returns(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """The same statements with each ``return`` (outside loops) turned into if/else nesting.

    What follows an ``if`` that may return moves into both of its branches, and a ``return``
    drops what follows it, so the body can run inline in a thread loop.
    """
    out: list[ast.stmt] = []
    for k, s in enumerate(stmts):
        if isinstance(s, ast.Return):
            return out
        if isinstance(s, ast.If) and any(isinstance(n, ast.Return) for n in ast.walk(s)):
            rest = stmts[k + 1 :]
            body = _without_returns([*s.body, *copy.deepcopy(rest)]) or [ast.Pass()]
            orelse = _without_returns([*s.orelse, *copy.deepcopy(rest)])
            out.append(ast.If(s.test, body, orelse))
            return out
        out.append(s)
    return out


def _inlinable(plan: CpuPlan, params: tuple[str, ...]) -> list[ast.stmt] | None:
    """The body as statements to paste into a thread loop, or ``None`` when it cannot be."""
    body = _strip_barriers(plan.func.body)
    if _returns_in_loops(body) or _stores(body) & set(params):
        return None  # a return inside a loop, or a parameter rebound (it would leak)
    return [ast.fix_missing_locations(s) for s in _without_returns(body)] or [ast.Pass()]


def flat_launcher(plan: CpuPlan, params: tuple[str, ...], parallel: bool) -> str:
    """A launcher running every thread of every block: blocks in ``prange``, threads nested.

    The body is pasted into the innermost loop (its ``return`` statements turned into if/else
    nesting), so Numba compiles one loop nest: no call per thread, no reference counting of
    the array arguments, no division per thread. A body that returns from inside a loop or
    rebinds a parameter is called instead, as a function Numba inlines (``inline="always"``).
    """
    lines: list[str] = []
    inline = _inlinable(plan, params)
    if inline is None:
        lines += [thread_function(plan, params), "", "_pdc_thread = _pdc_inline(_pdc_thread)"]
        lines += ["", ""]
        call = ", ".join((*COORDS, *params))
        body = [f"_pdc_thread({call})"]
    else:
        body = [line for s in inline for line in ast.unparse(s).splitlines()]
    loop = "prange" if parallel else "range"
    lines += _launch_head(params)
    lines += [
        f"{_T}for _pdc_blk in {loop}(_pdc_gdx * _pdc_gdy * _pdc_gdz):",
        *_coords(2, thread=False),
        f"{_T * 2}for _pdc_tz in range(_pdc_bdz):",
        f"{_T * 3}for _pdc_ty in range(_pdc_bdy):",
        f"{_T * 4}for _pdc_tx in range(_pdc_bdx):",
        *(_T * 5 + line for line in body),
    ]
    return "\n".join(lines) + "\n"


def _coords(depth: int, block: bool = True, thread: bool = True) -> list[str]:
    pad = _T * depth
    out = []
    if block:
        out += [
            f"{pad}_pdc_bx = _pdc_blk % _pdc_gdx",
            f"{pad}_pdc_by = (_pdc_blk // _pdc_gdx) % _pdc_gdy",
            f"{pad}_pdc_bz = _pdc_blk // (_pdc_gdx * _pdc_gdy)",
        ]
    if thread:
        out += [
            f"{pad}_pdc_tx = _pdc_t % _pdc_bdx",
            f"{pad}_pdc_ty = (_pdc_t // _pdc_bdx) % _pdc_bdy",
            f"{pad}_pdc_tz = _pdc_t // (_pdc_bdx * _pdc_bdy)",
        ]
    return out


# ------------------------------------------------------------------ liveness across barriers
def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stores(nodes: list[ast.stmt]) -> set[str]:
    return {
        n.id
        for s in nodes
        for n in ast.walk(s)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _live_in(stmts: list[ast.stmt], defined: set[str]) -> set[str]:
    """Names read in ``stmts`` before this pass assigns them (conservative)."""
    live: set[str] = set()
    defined = set(defined)
    for s in stmts:
        if isinstance(s, ast.Assign):
            live |= _loads(s.value) - defined
            for t in s.targets:
                live |= _loads(t) - defined
            defined |= _stores([s])
        elif isinstance(s, ast.AugAssign):
            live |= (_loads(s) | _stores([s])) - defined
            defined |= _stores([s])
        elif isinstance(s, ast.For):
            live |= _loads(s.iter) - defined
            live |= _live_in(s.body, defined | _stores([ast.Expr(s.target)]))
            live |= _live_in(s.orelse, defined)
        elif isinstance(s, ast.While):
            live |= _loads(s.test) - defined
            live |= _live_in(s.body, defined) | _live_in(s.orelse, defined)
        elif isinstance(s, ast.If):
            live |= _loads(s.test) - defined
            live |= _live_in(s.body, defined) | _live_in(s.orelse, defined)
            defined |= _stores(s.body) & _stores(s.orelse)
        else:
            live |= _loads(s) - defined
    return live


def _units(stmts: list[ast.stmt]) -> list[list[ast.stmt]]:
    """The thread regions and uniform conditions of a body, each as a list of statements."""
    units: list[list[ast.stmt]] = []
    segment: list[ast.stmt] = []
    for s in stmts:
        if is_barrier(s) or has_barrier(s):
            if segment:
                units.append(segment)
            segment = []
            if isinstance(s, ast.While | ast.If):
                units.append([ast.Expr(s.test)])
                units += _units(s.body) + _units(s.orelse)
            elif isinstance(s, ast.For):
                units.append([ast.Expr(s.iter)])
                units += _units([ast.Assign([s.target], ast.Constant(0)), *s.body])
        else:
            segment.append(s)
    if segment:
        units.append(segment)
    return units


def carried_names(plan: CpuPlan, params: tuple[str, ...]) -> set[str]:
    """Variables that must keep one value per thread across barriers."""
    units = _units(plan.func.body)
    assigned = set().union(*(_stores(u) for u in units)) if units else set()
    shared = {name for name, _shape, _dtype in plan.shared}
    live = set().union(*(_live_in(u, set()) for u in units)) if units else set()
    return (live & assigned) - shared


# ------------------------------------------------------------------ block launcher
class _PerThread(ast.NodeTransformer):
    """Give carried variables one slot per thread; turn ``return`` into leaving the block."""

    def __init__(self, carried: set[str], qualname: str) -> None:
        self.carried, self.qualname = carried, qualname
        self.loops = 0

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id not in self.carried:
            return node
        slot = ast.Subscript(_ld(f"_pdc_v_{node.id}"), _ld("_pdc_t"), node.ctx)
        return ast.copy_location(slot, node)

    def _loop(self, node: ast.For | ast.While) -> ast.AST:
        self.loops += 1
        try:
            return self.generic_visit(node)
        finally:
            self.loops -= 1

    def visit_For(self, node: ast.For) -> ast.AST:
        if isinstance(node.target, ast.Name) and node.target.id in self.carried:
            name = node.target.id
            node.target = ast.Name(f"_pdc_it_{name}", ast.Store())
            node.body.insert(0, ast.parse(f"{name} = _pdc_it_{name}").body[0])
        return self._loop(node)

    def visit_While(self, node: ast.While) -> ast.AST:
        return self._loop(node)

    def visit_Return(self, node: ast.Return) -> list[ast.stmt]:
        if self.loops:
            raise untranslatable(
                f"@kernel {self.qualname}: line {node.lineno} returns from inside a loop in a "
                "kernel that uses cuda.syncthreads(); the CPU runs such kernels region by "
                "region and supports 'return' only outside loops (use a flag, or 'break')"
            )
        return [ast.parse("_pdc_exit[_pdc_t] = True").body[0], ast.Continue()]

    def _jump(self, node: ast.stmt) -> ast.stmt:
        if not self.loops:
            raise untranslatable(
                f"@kernel {self.qualname}: line {node.lineno} leaves a loop that contains "
                "cuda.syncthreads(); every thread of a block must take the same path through "
                "a barrier loop (on a GPU too): put the condition in the loop's test"
            )
        return node

    def visit_Break(self, node: ast.Break) -> ast.stmt:
        return self._jump(node)

    def visit_Continue(self, node: ast.Continue) -> ast.stmt:
        return self._jump(node)


def _np_name(dtype: np.dtype) -> str:
    return "bool_" if dtype.kind == "b" else dtype.name


def _ld(name: str) -> ast.Name:
    return ast.Name(name, ast.Load())


class _Emitter:
    def __init__(self, carried: set[str], qualname: str) -> None:
        self.carried, self.qualname = carried, qualname
        self.lines: list[str] = []
        self.loops = 0

    def _put(self, depth: int, text: str) -> None:
        self.lines += [_T * depth + line for line in text.splitlines()]

    def _uniform(self, expr: ast.expr, depth: int) -> str:
        self._put(depth, "_pdc_t = 0")
        self.lines += _coords(depth, block=False)
        node = _PerThread(self.carried, self.qualname).visit(ast.Expression(copy.deepcopy(expr)))
        return ast.unparse(ast.fix_missing_locations(node).body)

    def region(self, stmts: list[ast.stmt], depth: int) -> None:
        self._put(depth, "for _pdc_t in range(_pdc_nt):")
        self._put(depth + 1, "if _pdc_exit[_pdc_t]:\n    continue")
        self.lines += _coords(depth + 1, block=False)
        for s in stmts:
            done = _PerThread(self.carried, self.qualname).visit(copy.deepcopy(s))
            for part in done if isinstance(done, list) else [done]:
                self._put(depth + 1, ast.unparse(ast.fix_missing_locations(part)))

    def emit(self, stmts: list[ast.stmt], depth: int) -> None:
        segment: list[ast.stmt] = []
        for s in stmts:
            if not (is_barrier(s) or has_barrier(s)):
                segment.append(s)
                continue
            if segment:
                self.region(segment, depth)
            segment = []
            if is_barrier(s):
                continue
            self._structured(s, depth)
        if segment:
            self.region(segment, depth)

    def _structured(self, s: ast.stmt, depth: int) -> None:
        if isinstance(s, ast.While) and not s.orelse:
            self._put(depth, f"while {self._uniform(s.test, depth)}:")
            self.emit(s.body, depth + 1)
            self._put(depth + 1, "_pdc_t = 0")  # the test is evaluated again by thread 0
            self.lines += _coords(depth + 1, block=False)
        elif isinstance(s, ast.If):
            self._put(depth, f"if {self._uniform(s.test, depth)}:")
            self.emit(s.body, depth + 1)
            if s.orelse:
                self._put(depth, "else:")
                self.emit(s.orelse, depth + 1)
        elif (
            isinstance(s, ast.For)
            and not s.orelse
            and isinstance(s.target, ast.Name)
            and isinstance(s.iter, ast.Call)
            and isinstance(s.iter.func, ast.Name)
            and s.iter.func.id == "range"
        ):
            counter = f"_pdc_u{len(self.lines)}"
            self._put(depth, f"for {counter} in {self._uniform(s.iter, depth)}:")
            first = ast.Assign([ast.Name(s.target.id, ast.Store())], _ld(counter))
            self.emit([ast.fix_missing_locations(first), *s.body], depth + 1)
        else:
            raise untranslatable(
                f"@kernel {self.qualname}: line {s.lineno} puts cuda.syncthreads() inside a "
                f"'{type(s).__name__.lower()}' statement; on the CPU a barrier may sit at the "
                "top level of the kernel or inside 'while', 'for ... in range(...)' or 'if' "
                "(without 'else' on loops)"
            )


def block_launcher(
    plan: CpuPlan, params: tuple[str, ...], dtypes: dict[str, np.dtype], qualname: str
) -> str:
    """A launcher running blocks in a ``prange`` loop and each block's threads region by region."""
    carried = set(dtypes)
    lines = _launch_head(params)
    lines += [
        f"{_T}_pdc_nt = _pdc_bdx * _pdc_bdy * _pdc_bdz",
        f"{_T}for _pdc_blk in prange(_pdc_gdx * _pdc_gdy * _pdc_gdz):",
        *_coords(2, thread=False),
    ]
    lines += [f"{_T * 2}{n} = _pdc_np.zeros({shape}, {dtype})" for n, shape, dtype in plan.shared]
    for name in sorted(carried):
        lines.append(
            f"{_T * 2}_pdc_v_{name} = _pdc_np.empty(_pdc_nt, _pdc_np.{_np_name(dtypes[name])})"
        )
    lines.append(f"{_T * 2}_pdc_exit = _pdc_np.zeros(_pdc_nt, _pdc_np.bool_)")
    emitter = _Emitter(carried, qualname)
    emitter.emit(plan.func.body, 2)
    lines += emitter.lines
    return "\n".join(lines) + "\n"
