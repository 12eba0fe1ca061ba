"""Round trip send -> echo kernel -> receive, against two asyncio.Queues ping-ponging.

20,000 sequential messages after 2,000 of warm-up, per round; ours and the floor alternate
for several rounds in one process, and the median of the rounds' percentiles is reported.
Target: p50 at most half the floor (the echo body runs inline in ``receive``, with no trip
through the event loop), p99 at most 1.5x the floor.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns

from _harness import Result, median, no_gc, pct, queue_floor

from pydotcompute import KernelContext, RingKernelRuntime, message

WARMUP = 2_000
MESSAGES = 20_000
ROUNDS = 5


@message
class Ping:
    seq: int


async def echo(ctx: KernelContext[Ping, Ping]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def ours(msgs: list[Ping]) -> list[float]:
    async with RingKernelRuntime() as runtime:
        await runtime.launch("echo", func=echo)
        await runtime.activate("echo")
        send, receive = runtime.send, runtime.receive
        lat: list[float] = []
        with no_gc():
            for m in msgs:
                t0 = perf_counter_ns()
                await send("echo", m)
                await receive("echo")
                lat.append(perf_counter_ns() - t0)
    return sorted(lat[WARMUP:])


async def measure() -> list[Result]:
    msgs = [Ping(seq=i) for i in range(WARMUP + MESSAGES)]
    ours_p50, ours_p99, floor_p50, floor_p99 = [], [], [], []
    for _ in range(ROUNDS):
        a = await ours(msgs)
        b = await queue_floor(msgs, WARMUP)
        ours_p50.append(pct(a, 50) / 1e3)
        ours_p99.append(pct(a, 99) / 1e3)
        floor_p50.append(pct(b, 50) / 1e3)
        floor_p99.append(pct(b, 99) / 1e3)
    p50, p99, f50, f99 = map(median, (ours_p50, ours_p99, floor_p50, floor_p99))
    base = "2 asyncio.Queue ping-pong"
    return [
        Result("round trip p50", p50, f50, "us", base, "<= 0.5x floor", p50 <= 0.5 * f50),
        Result("round trip p99", p99, f99, "us", base, "<= 1.5x floor", p99 <= 1.5 * f99),
    ]


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
