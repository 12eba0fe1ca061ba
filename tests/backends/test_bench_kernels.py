"""Every device kernel the benchmarks use compiles with NVRTC 12 and 13 (no GPU needed).

The persistent kernels are found in the benchmarks' source (each ``declare(...)`` call), so a
benchmark kernel added later is compiled here too; the launch-per-message baseline's own
kernel (``bench_device.one_shot_source``) is compiled with the options CuPy gets.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest

from pydotcompute import get_kernel_spec
from pydotcompute.backends.device._codegen import generate
from pydotcompute.backends.device._compile import build_cuda
from pydotcompute.backends.device._nvrtc import Nvrtc

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The benchmarks' kernel module, imported as the benchmarks import it."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("_device_kernels")


def _value(node: ast.expr) -> Any:
    """A literal argument; an f-string id (kernels declared in a loop) with 0 for its fields."""
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "0" for part in node.values
        )
    return ast.literal_eval(node)


def declared_kernels() -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Every ``declare(...)`` call in benchmarks/*.py (literal arguments or f-string ids)."""
    found = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "declare"
            ):
                args = tuple(_value(a) for a in node.args)
                kwargs = {k.arg: _value(k.value) for k in node.keywords if k.arg}
                found.append((path.name, args, kwargs))
    return found


def test_the_benchmarks_declare_sequential_and_parallel_kernels() -> None:
    kernels = declared_kernels()
    ids = {args[0] for _, args, _ in kernels}
    assert {"bench_rt", "bench_tp", "bench_once"} <= ids
    assert {kw.get("mode") for _, _, kw in kernels} >= {None, "parallel"}


@pytest.mark.parametrize(
    ("where", "args", "kwargs"),
    declared_kernels(),
    ids=[f"{w}:{a[0]}" for w, a, _ in declared_kernels()],
)
def test_every_benchmark_ring_kernel_compiles(
    bench: Any, nvrtc: Nvrtc, where: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    bench.declare(*args, **kwargs)
    spec = get_kernel_spec(args[0])
    build = build_cuda(generate(args[0], spec.device), spec.device, "90", nvrtc)
    assert build.path.read_bytes()[:4] == b"\x7fELF"


def test_the_launch_per_message_baseline_compiles(bench: Any, nvrtc: Nvrtc) -> None:
    bench_device = importlib.import_module("bench_device")
    source = bench_device.one_shot_source()
    cubin, log = nvrtc.compile(
        source, "once.cu", ["--gpu-architecture=sm_90", *bench_device.ONE_SHOT_OPTIONS]
    )
    assert cubin is not None, log
    assert b"pdc_once" in cubin
