"""The compute layer inside ring kernels, and device telemetry in runtime snapshots."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import cuda

from pydotcompute import (
    Array,
    KernelContext,
    OperationTimeoutError,
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


@message
class Tick:
    n: int


@kernel
def wait_for_flag(flag, done):
    # One thread spins until the host sets flag[0]: a launch that lasts as long as the test wants.
    while cuda.atomic.add(flag, 0, 0) == 0:
        pass
    done[0] = 1


async def echo(ctx: KernelContext[Tick, Tick]) -> None:
    while not ctx.should_terminate:
        msg = await ctx.receive()
        await ctx.send(Tick(n=msg.n))


async def test_a_long_launch_in_one_ring_kernel_leaves_others_answering(
    runtime: RingKernelRuntime,
) -> None:
    flag = np.zeros(1, np.int64)
    done = np.zeros(1, np.int64)

    async def launcher(ctx: KernelContext[Tick, Tick]) -> None:
        while not ctx.should_terminate:
            msg = await ctx.receive()
            # The first launch compiles too: both happen off the event loop.
            await wait_for_flag[1, 1].launch_async(flag, done)
            await ctx.send(Tick(n=msg.n))

    for name, body in (("launcher", launcher), ("echo", echo)):
        await within(runtime.launch(name, func=body))
        await within(runtime.activate(name))
    await within(runtime.send("launcher", Tick(n=-1)))
    for k in range(20):
        reply = await within(runtime.call("echo", Tick(n=k)), 60)
        assert reply.n == k
    assert done[0] == 0  # the kernel is still spinning: it waits for the flag
    flag[0] = 1
    finished = await within(runtime.receive("launcher"), 60)
    assert finished.n == -1 and done[0] == 1


async def test_launch_async_returns_results_and_times_out_clearly() -> None:
    x = np.arange(8, dtype=np.float64)
    state = np.zeros(8)
    assert await within(accumulate.launch_async(x, state), 60) is None
    assert state.tolist() == x.tolist()
    flag = np.zeros(1, np.int64)
    done = np.zeros(1, np.int64)
    with pytest.raises(OperationTimeoutError, match=r"did not finish within 0\.2 s; the kernel"):
        await wait_for_flag[1, 1].launch_async(flag, done, timeout=0.2)
    assert done[0] == 0
    flag[0] = 1  # let the worker thread finish


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
