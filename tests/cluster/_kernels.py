"""Ring kernels and messages for the cluster tests (importable by kernel hosts)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from pydotcompute import KernelContext, message


@message
class Num:
    x: int


@message
class Tick:
    x: np.int64


@message
class Text:
    text: str


async def inc(ctx: KernelContext[Num, Num]) -> None:
    """Reply x + 1 to each Num."""
    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send(Num(x=m.x + 1))


async def double(ctx: KernelContext[Num, Num]) -> None:
    """Reply 2 x to each Num."""
    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send(Num(x=m.x * 2))


async def ticks(ctx: KernelContext[Tick, Tick]) -> None:
    """Echo fixed-layout ticks."""
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def fails_on_negative(ctx: KernelContext[Num, Num]) -> None:
    """Raise on a negative number."""
    while not ctx.should_terminate:
        m = await ctx.receive()
        if m.x < 0:
            raise ValueError(f"negative: {m.x}")
        await ctx.send(m)


async def stuck(ctx: KernelContext[Num, Num]) -> None:
    """Never take a message: whatever is sent stays in its inbox."""
    await asyncio.Event().wait()


def pid_of(placement: Any) -> int:
    """The process id in a telemetry's placement."""
    return int(placement["pid"])


@message
class Order:
    """Send ``x`` to ``target`` with ``ctx.send_to``, or publish it to ``topic``."""

    x: int
    target: str = ""
    topic: str = ""


async def router(ctx: KernelContext[Order, Num]) -> None:
    """Route each order from inside the body; reply what send_to / publish returned.

    A refusal (a wrong type, a full hop) is replied as -1 with the error kept in ``text``.
    """
    from pydotcompute import PyDotComputeError

    while not ctx.should_terminate:
        o = await ctx.receive()
        try:
            if o.target:
                got = int(await ctx.send_to(o.target, Num(x=o.x)))
            else:
                got = await ctx.publish(o.topic, Num(x=o.x))
        except PyDotComputeError:
            got = -1
        await ctx.send(Num(x=got))


async def pass_job(ctx: KernelContext[Any, Any]) -> None:
    """Pass each device-kernel ``Job`` on as a fresh one with ``n + 1`` (a host stage)."""
    from tests.backends.device_kernels import Job

    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send(Job(n=int(m.n) + 1, x=float(m.x), spin=0))
