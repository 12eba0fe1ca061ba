"""Messages and bodies of bench_cluster.py, in a module kernel hosts and Ray workers import.

Both sides then pickle ``Ping`` by reference, as an installed application would; a class
defined in ``__main__`` would travel by value with every plain Ray call.
"""

from __future__ import annotations

from typing import Any

from pydotcompute import KernelContext, message


@message
class Ping:
    seq: int


async def echo(ctx: KernelContext[Ping, Ping]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def sink(ctx: KernelContext[Ping, Ping]) -> None:
    while not ctx.should_terminate:
        await ctx.receive()


async def relay(ctx: KernelContext[Ping, Ping]) -> None:
    """Send each message on with ``ctx.send_to`` to the kernel ``far`` (on another host)."""
    while not ctx.should_terminate:
        await ctx.send_to("far", await ctx.receive())


class PlainEcho:
    """The baseline: a plain Ray async actor."""

    async def echo(self, msg: Any) -> Any:
        return msg

    async def push(self, msg: Any) -> None:
        self.last = msg
