"""The seed documents' examples are the public contract: each runs as written.

Fragments in the seeds leave some names to the reader (``process``, ``data_stream``, a
``Response`` type); the harness supplies those and nothing else. Top-level ``await`` runs as
it does in a notebook cell.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

SEEDS = Path(__file__).parent / "seeds"
SHARED_SEEDS = Path(__file__).parents[2] / "shared" / "seeds"


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (SEEDS / name).read_text(), re.S)


def run_block(source: str, ns: dict[str, Any]) -> None:
    """Run a block like a notebook cell: top-level await allowed, bounded in time."""
    code = compile(
        source, "<seed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    result = eval(code, ns)
    if asyncio.iscoroutine(result):

        async def bounded() -> None:
            async with asyncio.timeout(10):
                await result

        asyncio.run(bounded())


def test_seed_copies_match_the_shared_seeds() -> None:
    if not SHARED_SEEDS.is_dir():
        pytest.skip(f"{SHARED_SEEDS} is not beside this checkout")
    for path in SHARED_SEEDS.glob("*.md"):
        assert (SEEDS / path.name).read_text() == path.read_text(), path.name


def test_every_python_block_is_covered() -> None:
    assert len(python_blocks("overview.md")) == 2
    assert len(python_blocks("dotcompute-comparison.md")) == 7


def test_overview_streaming_fragment() -> None:
    ns: dict[str, Any] = {"__name__": "seed_overview_stream"}

    class DataStream:
        def __iter__(self) -> Any:
            return iter([ns["DataPoint"](value=v) for v in (1.0, 2.0, 3.0)])

    ns["process"] = lambda data: data
    ns["data_stream"] = DataStream()
    run_block(python_blocks("overview.md")[0], ns)
    assert ns["result"].value == 3.0


def test_overview_quick_example_prints_the_sum(capsys: pytest.CaptureFixture[str]) -> None:
    run_block(python_blocks("overview.md")[1], {"__name__": "seed_overview_quick"})
    assert capsys.readouterr().out == "Sum: 15.0\n"


def test_comparison_examples_in_order() -> None:
    from pydotcompute import KernelContext, RingKernelRuntime, message, ring_kernel

    ns: dict[str, Any] = {"__name__": "seed_comparison"}
    run_block(
        "from dataclasses import dataclass, field\nfrom uuid import UUID, uuid4\n", ns
    )  # the doc's dataclass examples assume these imports
    ns.update(
        KernelContext=KernelContext,
        RingKernelRuntime=RingKernelRuntime,
        message=message,
        ring_kernel=ring_kernel,
    )

    @message
    class Response:
        text: str

    ns["Response"] = Response
    ns["process"] = lambda request: Response(text=request.data.upper())
    blocks = python_blocks("dotcompute-comparison.md")
    run_block(blocks[2], ns)  # Message Types: Request
    run_block(blocks[0], ns)  # Actor Definition
    run_block(blocks[1], ns)  # Runtime Usage
    assert ns["response"].text == "HELLO"
    run_block(blocks[4], ns)  # Duck Typing
    assert ns["MyMessage"](data="x").priority == 128
    python_part = blocks[3].split("# vs C#")[0]  # the block's second half is C#
    run_block(python_part, ns)
    run_block(blocks[5], ns)  # asyncio Integration: launches "worker"


def test_comparison_unified_buffer_example() -> None:
    ns: dict[str, Any] = {"__name__": "seed_buffer"}
    run_block(python_blocks("dotcompute-comparison.md")[6], ns)
    buf = ns["buf"]
    assert buf.shape == (1000,) and buf.dtype == ns["np"].float32
    assert buf.host_view().std() > 0
