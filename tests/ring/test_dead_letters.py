"""Dead letters: drops, terminate discards, unknown and failed targets; bounded; counted."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pydotcompute import (
    DeadLetterReason,
    InvalidArgumentError,
    KernelContext,
    RingKernelRuntime,
    message,
    ring_kernel,
)
from tests.conftest import until, within


@message
class Job:
    n: int


async def echo(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def test_drop_oldest_evicts_into_dead_letters(runtime: RingKernelRuntime) -> None:
    await within(runtime.launch("k", func=echo, queue_size=2, backpressure="drop_oldest"))
    before = time.time()
    for n in range(4):
        await within(runtime.send("k", Job(n=n)))
    letters = runtime.dead_letters()
    assert [(d.message.n, d.reason, d.kernel_id) for d in letters] == [
        (0, DeadLetterReason.DROP_OLDEST, "k"),
        (1, DeadLetterReason.DROP_OLDEST, "k"),
    ]
    assert all(before <= d.time <= time.time() for d in letters)


async def test_drop_newest_refusals_are_dead_letters(runtime: RingKernelRuntime) -> None:
    await within(runtime.launch("k", func=echo, queue_size=1, backpressure="drop_newest"))
    assert await within(runtime.send("k", Job(n=0))) is True
    assert await within(runtime.send("k", Job(n=1))) is False
    [letter] = runtime.dead_letters("k")
    assert (letter.message.n, letter.reason) == (1, DeadLetterReason.DROP_NEWEST)


async def test_terminate_discards_into_dead_letters(runtime: RingKernelRuntime) -> None:
    await within(runtime.launch("k", func=echo))
    for n in range(3):
        await within(runtime.send("k", Job(n=n)))
    result = await within(runtime.terminate("k"))
    assert result.discarded == 3
    letters = runtime.dead_letters()
    assert [d.message.n for d in letters] == [0, 1, 2]
    assert {d.reason for d in letters} == {DeadLetterReason.DISCARDED}


async def test_send_to_unknown_or_unlaunched_kernels(runtime: RingKernelRuntime) -> None:
    @ring_kernel(kernel_id="later")
    async def later(ctx: Any) -> None:
        await ctx.receive()

    async def sender(ctx: KernelContext[Job, Any]) -> None:
        while not ctx.should_terminate:
            j = await ctx.receive()
            await ctx.send(await ctx.send_to("nope" if j.n else "later", j))

    await within(runtime.launch("s", func=sender))
    await within(runtime.activate("s"))
    await within(runtime.send("s", Job(n=1)))
    await within(runtime.send("s", Job(n=0)))
    assert [await within(runtime.receive("s")) for _ in range(2)] == [False, False]
    assert [(d.reason, d.kernel_id, d.sender) for d in runtime.dead_letters()] == [
        (DeadLetterReason.UNKNOWN_KERNEL, "nope", "s"),
        (DeadLetterReason.NOT_LAUNCHED, "later", "s"),
    ]


async def test_send_to_a_failed_kernel(runtime: RingKernelRuntime) -> None:
    async def boom(ctx: Any) -> None:
        await ctx.receive()
        raise ValueError("boom")

    async def sender(ctx: KernelContext[Job, Any]) -> None:
        while not ctx.should_terminate:
            await ctx.send(await ctx.send_to("b", await ctx.receive()))

    for kid, func in (("b", boom), ("s", sender)):
        await within(runtime.launch(kid, func=func))
        await within(runtime.activate(kid))
    await within(runtime.send("b", Job(n=0)))
    await within(until(lambda: runtime.telemetry("b").errors == 1))
    await within(runtime.send("s", Job(n=1)))
    assert await within(runtime.receive("s")) is False
    assert runtime.dead_letters()[0].reason is DeadLetterReason.FAILED


async def test_queue_is_bounded_and_counts_keep_growing() -> None:
    async with RingKernelRuntime(dead_letter_capacity=2) as rt:
        await within(rt.launch("k", func=echo, queue_size=1, backpressure="drop_newest"))
        for n in range(5):
            await within(rt.send("k", Job(n=n)))
        assert [d.message.n for d in rt.dead_letters()] == [3, 4]
        assert rt.telemetry("k").dead_letters == 4
        snap = rt.snapshot()
        assert snap.dead_letters == 4 and snap.as_dict()["dead_letters"] == 4
        assert snap.as_dict()["kernels"]["k"]["dead_letters"] == 4
    with pytest.raises(InvalidArgumentError, match="dead_letter_capacity=0 must be an int >= 1"):
        RingKernelRuntime(dead_letter_capacity=0)
