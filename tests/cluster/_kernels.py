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
