"""One-way batch throughput: send_many -> kernel -> receive_many, against asyncio.Queue.

Messages flow one way through a forwarding kernel (``receive_many`` then ``send_many``) in
batches of 1,024; the baseline moves the same messages through one ``asyncio.Queue`` with
``put_nowait`` / ``get_nowait``. Target: >= 2 million messages/s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _harness import Result, median, no_gc

from pydotcompute import KernelContext, RingKernelRuntime, message

MESSAGES = 1_000_000
BATCH = 1024
ROUNDS = 5


@message
class Sample:
    value: float


async def forward(ctx: KernelContext[Sample, Sample]) -> None:
    while not ctx.should_terminate:
        await ctx.send_many(await ctx.receive_many(4096))


async def ours(batch: list[Sample]) -> float:
    async with RingKernelRuntime() as runtime:
        await runtime.launch("fwd", func=forward, queue_size=65536)
        await runtime.activate("fwd")
        sent = got = 0
        with no_gc():
            t0 = time.perf_counter()
            while got < MESSAGES:
                if sent < MESSAGES:
                    sent += await runtime.send_many("fwd", batch)
                got += len(await runtime.receive_many("fwd"))
            elapsed = time.perf_counter() - t0
    return MESSAGES / elapsed


async def baseline(batch: list[Sample]) -> float:
    q: asyncio.Queue[Any] = asyncio.Queue()
    put, get = q.put_nowait, q.get_nowait
    with no_gc():
        t0 = time.perf_counter()
        for _ in range(MESSAGES // BATCH):
            for m in batch:
                put(m)
            for _ in range(BATCH):
                get()
        elapsed = time.perf_counter() - t0
    return (MESSAGES // BATCH) * BATCH / elapsed


async def measure() -> list[Result]:
    batch = [Sample(value=float(i)) for i in range(BATCH)]
    a, b = [], []
    for _ in range(ROUNDS):
        a.append(await ours(batch))
        b.append(await baseline(batch))
    rate, base = median(a) / 1e6, median(b) / 1e6
    return [
        Result(
            "send_many/receive_many throughput", rate, base, "M msg/s",
            "asyncio.Queue put_nowait/get_nowait", ">= 2 M msg/s", rate >= 2.0,
        )
    ]  # fmt: skip


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
