"""The compute layer inside ring kernels, and device telemetry in runtime snapshots."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from pydotcompute import (
    Array,
    KernelContext,
    RingKernelRuntime,
    UnifiedBuffer,
    kernel,
    message,
)
from tests.conftest import within

EXAMPLE = Path(__file__).parents[2] / "examples" / "compute_ring_kernel.py"


@message
class Batch:
    values: Array[np.float64, 8]


@message
class Totals:
    batches: int
    totals: Array[np.float64, 8]


@kernel
def accumulate(i, batch, state):
    state[i] += batch[i]


async def accumulator(ctx: KernelContext[Batch, Totals]) -> None:
    state = UnifiedBuffer((8,), np.float64, accelerator="cpu")
    batch = UnifiedBuffer((8,), np.float64, accelerator="cpu")
    seen = 0
    while not ctx.should_terminate:
        msg = await ctx.receive()
        batch.host[:] = msg.values
        accumulate(batch, state)
        seen += 1
        await ctx.send(Totals(batches=seen, totals=state.host_view()))


async def test_host_ring_kernel_keeps_a_buffer_and_runs_a_kernel_per_batch(
    runtime: RingKernelRuntime,
) -> None:
    await within(runtime.launch("acc", func=accumulator))
    await within(runtime.activate("acc"))
    for k in range(3):
        reply = await within(runtime.call("acc", Batch(values=np.full(8, k + 1.0))), 60)
    assert reply.batches == 3 and reply.totals.tolist() == [6.0] * 8
    assert accumulate.stats.launches >= 3


async def test_runtime_snapshot_includes_device_telemetry(runtime: RingKernelRuntime) -> None:
    snap = runtime.snapshot()
    assert snap.device["device"] == "cpu" and snap.device["memory_total"] > 0
    data = snap.as_dict()["device"]
    assert data["kind"] == "cpu" and isinstance(data["unavailable"], dict)


def test_snapshot_device_figures_need_neither_cupy_nor_numba() -> None:
    code = (
        "import asyncio, sys\n"
        "from pydotcompute import RingKernelRuntime\n"
        "async def main():\n"
        "    async with RingKernelRuntime() as rt:\n"
        "        return rt.snapshot().device\n"
        "device = asyncio.run(main())\n"
        "print(device['device'], [m for m in ('cupy', 'numba') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "cpu []"


async def test_the_example_runs() -> None:
    spec = importlib.util.spec_from_file_location("compute_ring_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # @message resolves annotations through the module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    replies = await within(module.main(batches=8), 120)
    assert [r.batches for r in replies] == list(range(1, 9))
    assert replies[-1].hottest == 17 and replies[-1].average > 2.0
