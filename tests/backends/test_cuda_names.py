"""Every CuPy name the CUDA path uses exists in the real CuPy (it imports without a GPU).

Names are collected from the source (the package and the benchmarks), so a call such as
``cupy.cuda.runtime.hostGetDevicePointer`` (which CuPy never had) fails here, not on the
first GPU. The fake CuPy of the launcher tests is checked against the real one the same way.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.backends import fake_cupy

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("cupy") is None,
    reason="CuPy is not installed (the dev extra installs cupy-cuda12x)",
)

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "pydotcompute").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


@dataclass(frozen=True)
class Use:
    chain: str  # "cupy.cuda.runtime.streamQuery"
    where: str  # "pydotcompute/backends/device/_cuda_launch.py:123"


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _resolve(dotted: str, aliases: dict[str, str]) -> str | None:
    """The CuPy chain ``dotted`` names, through the longest alias that prefixes it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in aliases:
            return ".".join([aliases[head], *parts[n:]])
    return None


def _is_cupy_source(value: ast.AST, aliases: dict[str, str]) -> str | None:
    if isinstance(value, ast.Call) and _dotted(value.func) in ("require_cupy", "_require_cupy"):
        return "cupy"
    dotted = _dotted(value)
    return None if dotted is None else _resolve(dotted, aliases)


def _bind(tree: ast.AST, aliases: dict[str, str]) -> None:
    """Add the aliases this scope binds: imports of CuPy and assignments of CuPy objects."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "cupy" or a.name.startswith("cupy."):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "cupy"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cupy":
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = _dotted(node.targets[0])
            source = _is_cupy_source(node.value, aliases)
            if target and source:
                aliases[target] = source


def collect(text: str, name: str) -> list[Use]:
    """The CuPy chains a module's source uses, each function with its own aliases."""
    tree = ast.parse(text)
    module_aliases = {"cupy": "cupy", "cp": "cupy"}  # the conventional names, parameters too
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            _bind(node, module_aliases)
    # self.<attr> aliases hold across a class's methods.
    class_aliases: dict[str, str] = dict(module_aliases)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for _ in range(2):  # twice: an alias may be made from another one
                _bind(node, class_aliases)
    self_aliases = {k: v for k, v in class_aliases.items() if k.startswith("self.")}
    uses: list[Use] = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in [tree, *scopes]:
        aliases = {**module_aliases, **self_aliases}
        if scope is not tree:
            _bind(scope, aliases)
        body = scope.body if scope is not tree else [
            n for n in tree.body
            if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]  # fmt: skip
        for stmt in body:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Attribute):
                    dotted = _dotted(node)
                    chain = dotted and _resolve(dotted, aliases)
                    if chain and chain != "cupy":
                        uses.append(Use(chain, f"{name}:{node.lineno}"))
    return uses


def exists(chain: str) -> bool:
    """Whether the real CuPy has ``chain`` (importing submodules on the way)."""
    parts = chain.split(".")
    obj: Any = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def all_uses() -> list[Use]:
    uses = []
    for path in SOURCES:
        uses += collect(path.read_text(), str(path.relative_to(ROOT)))
    return uses


def test_every_cupy_name_the_source_uses_exists() -> None:
    uses = all_uses()
    chains = {u.chain for u in uses}
    for needed in (
        "cupy.cuda.runtime.pointerGetAttributes",
        "cupy.cuda.runtime.streamQuery",
        "cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor",
        "cupy.cuda.PinnedMemory",
        "cupy.RawModule",
        "cupy.cuda.runtime.malloc",
        "cupy.cuda.runtime.memcpyAsync",
        "cupy.cuda.runtime.streamSynchronize",
    ):
        assert needed in chains, f"the collector missed {needed}"
    missing = sorted({f"{u.chain} ({u.where})" for u in uses if not exists(u.chain)})
    assert missing == [], f"names the real CuPy does not have: {missing}"


def test_the_collector_catches_a_name_cupy_does_not_have() -> None:
    source = (
        "def f(size):\n"
        "    cp = require_cupy('x')\n"
        "    rt = cp.cuda.runtime\n"
        "    return rt.hostGetDevicePointer(cp.cuda.PinnedMemory(size).ptr, 0)\n"
    )
    uses = collect(source, "x.py")
    bad = [u for u in uses if not exists(u.chain)]
    assert [u.chain for u in bad] == ["cupy.cuda.runtime.hostGetDevicePointer"]
    assert bad[0].where == "x.py:4"


def _public(obj: Any) -> set[str]:
    return {n for n in vars(obj) if not n.startswith("_")}


def test_the_fake_cupy_uses_only_real_names() -> None:
    import cupy
    from cupy.cuda import function

    fake, _ = fake_cupy.make_fake_cupy()
    assert {n for n in vars(fake.cuda)} <= set(dir(cupy.cuda))
    assert {n for n in vars(fake) if n != "cuda"} <= set(dir(cupy))
    assert _public(fake_cupy._Runtime) <= set(dir(cupy.cuda.runtime))
    assert _public(fake_cupy._Driver) <= set(dir(cupy.cuda.driver))
    # The fake's named constants have the real values.
    for name in (
        "hostAllocMapped",
        "cudaDevAttrMultiProcessorCount",
        "memcpyHostToDevice",
        "memcpyDeviceToHost",
    ):
        assert getattr(fake.cuda.runtime, name) == getattr(cupy.cuda.runtime, name)
    assert fake.cuda.runtime.cudaDevAttrMaxSharedMemoryPerBlock == (
        cupy.cuda.runtime.cudaDevAttrMaxSharedMemoryPerBlock
    )
    assert cupy.cuda.runtime.CUDARuntimeError(700).status == 700
    kernel = fake_cupy.RawKernel(1, 2, 3)
    assert _public(kernel) <= set(dir(cupy.RawKernel))
    assert _public(kernel.kernel) <= set(dir(function.Function))
    assert _public(fake_cupy.PointerAttributes(1)) <= set(dir(cupy.cuda.runtime.PointerAttributes))
    stream = fake_cupy.Stream()
    assert {"ptr"} <= set(dir(cupy.cuda.Stream.null))  # an instance exists without a GPU
    assert "id" in dir(cupy.cuda.Device)
    del stream
