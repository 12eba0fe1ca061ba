"""Host pipeline of 3 kernels: linked, against the same bodies relaying through runtime.send.

Three host kernels (head -> middle -> tail) each take one message at a time and pass on a new
one. *Linked*: head and middle send with ``ctx.send`` and ``runtime.link`` carries it into the
next inbox. *Relayed* (the baseline, how tutorial 08 used to do it): head and middle capture
the runtime in a closure and call ``runtime.send("next", ...)``. The host feeds the head with
``send_many`` in batches of 1,024 and drains the tail with ``receive_many``. Target: linked
>= 1.5x the relayed throughput.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Result, median, no_gc

from pydotcompute import KernelContext, RingKernelRuntime, message

MESSAGES = int(os.environ.get("PDC_BENCH_PIPELINE_MESSAGES", 1_000_000))
BATCH = 1024
ROUNDS = 5
QUEUE = 65536


@message
class Tick:
    n: int


Send = Callable[[Tick], Awaitable[Any]]


def stage(send_next: Callable[[KernelContext[Tick, Tick]], Send]) -> Any:
    """A body that turns each Tick into the next one and passes it on with ``send_next``."""

    async def body(ctx: KernelContext[Tick, Tick]) -> None:
        send = send_next(ctx)
        receive = ctx.receive
        while not ctx.should_terminate:
            m = await receive()
            await send(Tick(n=m.n + 1))

    return body


async def pipeline(linked: bool) -> float:
    async with RingKernelRuntime() as runtime:

        def to(next_id: str | None) -> Callable[[KernelContext[Tick, Tick]], Send]:
            if linked or next_id is None:
                return lambda ctx: ctx.send
            return lambda ctx: lambda m: runtime.send(next_id, m)

        ids = ("head", "middle", "tail")
        for kid, nxt in zip(ids, ("middle", "tail", None)):
            await runtime.launch(kid, func=stage(to(nxt)), queue_size=QUEUE)
        if linked:
            await runtime.link("head", "middle")
            await runtime.link("middle", "tail")
        for kid in ids:
            await runtime.activate(kid)
        batch = [Tick(n=i) for i in range(BATCH)]
        sent = got = 0
        with no_gc():
            t0 = time.perf_counter()
            while got < MESSAGES:
                if sent < MESSAGES and sent - got < QUEUE // 2:
                    sent += await runtime.send_many("head", batch)
                got += len(await runtime.receive_many("tail", timeout=30))
            elapsed = time.perf_counter() - t0
        assert not runtime.dead_letters()
    return got / elapsed


async def measure() -> list[Result]:
    a, b = [], []
    for _ in range(ROUNDS):
        a.append(await pipeline(linked=True))
        b.append(await pipeline(linked=False))
    ours, base = median(a) / 1e3, median(b) / 1e3
    return [
        Result(
            f"3-kernel host pipeline, {MESSAGES:,} msgs", ours, base, "k msg/s",
            "same bodies relaying with runtime.send", ">= 1.5x", ours >= 1.5 * base,
        )
    ]  # fmt: skip


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
