"""What an open dashboard costs a busy kernel: throughput with it against without it.

A forwarding kernel is kept busy (``send_many`` -> ``receive_many`` + ``send_many`` ->
``receive_many``, batches of 1,024) for a fixed time, next to 8 idle kernels, on one event
loop. "Ours" runs the same load with a ``Dashboard`` open on that runtime, updated by its own
task through the real update path (snapshot, table rows, plot streams, device panel,
controls); widget and Bokeh messages are serialized to JSON as a Jupyter kernel would, then
dropped (no browser). The baseline is the same load without a dashboard, in the same run.
Rounds alternate; the median of each is reported. Target: >= 90% of the baseline.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from _harness import Result, median
from bench_throughput import Sample, forward  # the same busy load as that benchmark

from pydotcompute import KernelContext, RingKernelRuntime

ROUND_S = 3.0
ROUNDS = 5
BATCH = 1024
IDLE_KERNELS = 8


async def idle(ctx: KernelContext[Sample, Sample]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


class Wire:
    """Counts what a kernel would send to the browser: messages and JSON bytes."""

    messages = 0
    size = 0


def _serializing_comm() -> None:
    """Make ipywidgets' comms serialize every message as ipykernel's session would."""
    import comm
    from comm.base_comm import BaseComm

    class SerializingComm(BaseComm):  # type: ignore[misc]
        def publish_msg(
            self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
            **keys: Any,
        ) -> None:  # fmt: skip
            payload = json.dumps(
                {"data": data, "metadata": metadata or {}, **keys},
                default=str, ensure_ascii=False, allow_nan=False,
            )  # fmt: skip
            Wire.messages += 1
            Wire.size += len(payload) + sum(len(bytes(b)) for b in buffers or ())

    comm.create_comm = SerializingComm


async def busy_round(interval: float | None) -> tuple[float, int]:
    """Messages per second through the busy kernel, and how many dashboard updates ran."""
    from pydotcompute_widgets import Dashboard

    batch = [Sample(value=float(i)) for i in range(BATCH)]
    async with RingKernelRuntime() as runtime:
        await runtime.launch("busy", func=forward, queue_size=65536)
        await runtime.activate("busy")
        for i in range(IDLE_KERNELS):
            await runtime.launch(f"idle{i}", func=idle)
            await runtime.activate(f"idle{i}")
        dashboard = None if interval is None else Dashboard(runtime, interval=interval)
        updates = 0
        if dashboard is not None:
            original = dashboard.update

            def counted(snapshot: Any = None) -> bool:
                nonlocal updates
                updates += 1
                return original(snapshot)

            dashboard.update = counted  # type: ignore[method-assign]
        moved = 0
        t0 = time.perf_counter()
        deadline = t0 + ROUND_S
        while time.perf_counter() < deadline:
            await runtime.send_many("busy", batch)
            moved += len(await runtime.receive_many("busy"))
        elapsed = time.perf_counter() - t0
        if dashboard is not None:
            dashboard.close()
    return moved / elapsed, updates


async def measure() -> list[Result]:
    _serializing_comm()
    results = []
    for interval in (0.5, 0.1):
        with_dash, without, updates = [], [], []
        Wire.messages = Wire.size = 0
        for _ in range(ROUNDS):
            rate, n = await busy_round(interval)
            with_dash.append(rate)
            updates.append(n)
            without.append((await busy_round(None))[0])
        ours, base = median(with_dash) / 1e6, median(without) / 1e6
        results.append(
            Result(
                f"busy kernel with dashboard open (interval {interval} s)", ours, base,
                "M msg/s", "same load, no dashboard", ">= 90% of no dashboard",
                ours >= 0.9 * base,
                details={
                    "updates_per_round": median([float(u) for u in updates]),
                    "wire_messages": Wire.messages,
                    "wire_bytes": Wire.size,
                },
            )
        )  # fmt: skip
    return results


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row(), r.details)
