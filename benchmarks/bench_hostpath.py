"""The per-message path of host kernels, one message per call, against bare asyncio.

Each row is measured side by side with its baseline in the same process, in alternating
rounds; the median of the rounds is reported.

* **forwarding kernel, unbatched**: windows of 64 messages, each sent with ``runtime.send``
  through a kernel that forwards it (``ctx.receive`` -> ``ctx.send``), then the 64 taken with
  ``runtime.receive``; baseline: the same through two ``asyncio.Queue``s and a forwarding
  task (``await q1.put``, ``await q2.get``). 15 alternating rounds of 25,600 messages.
  Throughput; target >= 1.2x the baseline.
* **3-stage pipeline, one message at a time**: each message goes through three kernels (stage
  bodies forward with ``runtime.send`` to the next, the last replies with ``ctx.send``) and
  is received before the next is sent; baseline: three tasks and four Queues doing the same.
  Throughput; target >= 1.2x.
* **call vs send + receive**: p50 of ``runtime.call`` and of ``send`` + ``receive`` on the
  same kernel (it replies with ``msg.reply()``). Target: call <= 1.1x.
* **receive with a timeout**: p50 of the echo round trip with ``receive(..., timeout=5)`` vs
  without. Target <= 1.1x (a timeout that does not fire costs almost nothing).

The echo round trip against two Queues ping-ponging is ``bench_roundtrip.py``.
"""

from __future__ import annotations

import asyncio
import time
from time import perf_counter_ns
from typing import Any

from _harness import Result, median, no_gc, pct

from pydotcompute import KernelContext, RingKernelRuntime, message

WINDOW = 64
WINDOWS = 400  # 25,600 messages per round through the forwarding kernel
FWD_ROUNDS = 15  # short alternating rounds: on a shared machine the median needs many
PIPE_MESSAGES = 20_000
LAT_MESSAGES = 20_000
WARMUP = 2_000
ROUNDS = 5


@message
class Item:
    seq: int


async def forward(ctx: KernelContext[Item, Item]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def replier(ctx: KernelContext[Item, Item]) -> None:
    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send(m.reply())


# ---------------------------------------------------------------- forwarding kernel, unbatched
async def forward_ours(items: list[Item]) -> float:
    async with RingKernelRuntime() as runtime:
        await runtime.launch("fwd", func=forward)
        await runtime.activate("fwd")
        send, receive = runtime.send, runtime.receive
        window = items[:WINDOW]
        with no_gc():
            t0 = time.perf_counter()
            for _ in range(WINDOWS):
                for m in window:
                    await send("fwd", m)
                for _ in window:
                    await receive("fwd")
            elapsed = time.perf_counter() - t0
    return WINDOWS * WINDOW / elapsed


async def forward_queues(items: list[Item]) -> float:
    q1: asyncio.Queue[Any] = asyncio.Queue()
    q2: asyncio.Queue[Any] = asyncio.Queue()

    async def forwarder() -> None:
        while True:
            await q2.put(await q1.get())

    task = asyncio.create_task(forwarder())
    window = items[:WINDOW]
    put, get = q1.put, q2.get
    with no_gc():
        t0 = time.perf_counter()
        for _ in range(WINDOWS):
            for m in window:
                await put(m)
            for _ in window:
                await get()
        elapsed = time.perf_counter() - t0
    task.cancel()
    return WINDOWS * WINDOW / elapsed


# ---------------------------------------------------------------- 3-stage pipeline
async def pipeline_ours(items: list[Item]) -> float:
    async with RingKernelRuntime() as runtime:

        def stage(next_id: str | None) -> Any:
            async def body(ctx: KernelContext[Item, Item]) -> None:
                send = runtime.send
                while not ctx.should_terminate:
                    m = await ctx.receive()
                    if next_id is None:
                        await ctx.send(m)
                    else:
                        await send(next_id, m)

            return body

        for kid, nxt in (("s1", "s2"), ("s2", "s3"), ("s3", None)):
            await runtime.launch(kid, func=stage(nxt))
            await runtime.activate(kid)
        send, receive = runtime.send, runtime.receive
        with no_gc():
            t0 = time.perf_counter()
            for m in items[:PIPE_MESSAGES]:
                await send("s1", m)
                await receive("s3")
            elapsed = time.perf_counter() - t0
    return PIPE_MESSAGES / elapsed


async def pipeline_queues(items: list[Item]) -> float:
    qs: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(4)]

    async def stage(src: asyncio.Queue[Any], dst: asyncio.Queue[Any]) -> None:
        while True:
            await dst.put(await src.get())

    tasks = [asyncio.create_task(stage(qs[i], qs[i + 1])) for i in range(3)]
    put, get = qs[0].put, qs[3].get
    with no_gc():
        t0 = time.perf_counter()
        for m in items[:PIPE_MESSAGES]:
            await put(m)
            await get()
        elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    return PIPE_MESSAGES / elapsed


# ---------------------------------------------------------------- call, timeouts
async def latencies(items: list[Item]) -> dict[str, float]:
    """p50 in microseconds of send+receive, call, and send+receive(timeout=5)."""
    out: dict[str, float] = {}
    async with RingKernelRuntime() as runtime:
        await runtime.launch("r", func=replier)
        await runtime.activate("r")
        send, receive, call = runtime.send, runtime.receive, runtime.call
        msgs = items[: WARMUP + LAT_MESSAGES]

        async def send_receive() -> list[float]:
            lat = []
            for m in msgs:
                t0 = perf_counter_ns()
                await send("r", m)
                await receive("r")
                lat.append(perf_counter_ns() - t0)
            return lat

        async def calls() -> list[float]:
            lat = []
            for m in msgs:
                t0 = perf_counter_ns()
                await call("r", m)
                lat.append(perf_counter_ns() - t0)
            return lat

        async def with_timeout() -> list[float]:
            lat = []
            for m in msgs:
                t0 = perf_counter_ns()
                await send("r", m)
                await receive("r", timeout=5)
                lat.append(perf_counter_ns() - t0)
            return lat

        for name, fn in (
            ("send_receive", send_receive),
            ("call", calls),
            ("timeout", with_timeout),
        ):
            with no_gc():
                lat = sorted((await fn())[WARMUP:])
            out[name] = pct(lat, 50) / 1e3
    return out


async def measure() -> list[Result]:
    items = [Item(seq=i) for i in range(WARMUP + max(LAT_MESSAGES, PIPE_MESSAGES))]
    fwd_a, fwd_b, pipe_a, pipe_b = [], [], [], []
    lat: dict[str, list[float]] = {"send_receive": [], "call": [], "timeout": []}
    for _ in range(FWD_ROUNDS):
        fwd_a.append(await forward_ours(items))
        fwd_b.append(await forward_queues(items))
    for _ in range(ROUNDS):
        pipe_a.append(await pipeline_ours(items))
        pipe_b.append(await pipeline_queues(items))
        for k, v in (await latencies(items)).items():
            lat[k].append(v)
    fa, fb, pa, pb = (median(x) / 1e6 for x in (fwd_a, fwd_b, pipe_a, pipe_b))
    sr, ca, to = (median(lat[k]) for k in ("send_receive", "call", "timeout"))
    return [
        Result(
            "forwarding kernel, unbatched send/receive", fa, fb, "M msg/s",
            "2 Queues + a forwarding task", ">= 1.2x baseline", fa >= 1.2 * fb,
        ),
        Result(
            "3-stage pipeline, one message at a time", pa, pb, "M msg/s",
            "3 tasks and Queues", ">= 1.2x baseline", pa >= 1.2 * pb,
        ),
        Result(
            "call p50", ca, sr, "us", "send + receive p50, same kernel", "<= 1.1x",
            ca <= 1.1 * sr,
        ),
        Result(
            "round trip p50 with receive(timeout=5)", to, sr, "us", "without a timeout",
            "<= 1.1x", to <= 1.1 * sr,
        ),
    ]  # fmt: skip


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
