"""``call`` through links: follow a request's conversation from kernel to kernel.

While a ``call`` to a linked kernel is pending, every message a route delivers is looked up:
one correlated with an id of the call's conversation (or the request itself, passed on) joins
it, and when it reaches a kernel with no link of its own (a tail), the call waits on that
kernel's outbox for the reply to it. Nothing is looked up while no call is pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["Call", "PendingCalls"]


class Call:
    """A ``call`` through links: the ids of its conversation and the replies it waits for."""

    __slots__ = ("expects", "future", "ids")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.ids: list[Any] = []
        self.expects: list[tuple[Any, Any]] = []

    def settle(self, fut: asyncio.Future[Any]) -> None:
        """Answer the call with the first reply (or error) a tail's outbox gave."""
        if self.future.done() or fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(fut.result())


class PendingCalls:
    """The calls through links of one runtime, by every message id of their conversations."""

    __slots__ = ("_kernels", "by_id")

    def __init__(self, kernels: dict[str, Any]) -> None:
        self._kernels = kernels
        self.by_id: dict[Any, Call] = {}  # empty while no call is pending (the hot-path test)

    def start(self, msg: Any, loop: asyncio.AbstractEventLoop) -> Call:
        """Register a ``call`` whose reply comes from the end of the head's links."""
        call = Call(loop.create_future())
        mid = msg.message_id
        self.by_id[mid] = call
        call.ids.append(mid)
        return call

    def end(self, call: Call) -> None:
        """Forget a finished ``call``: its ids and the replies it waited for."""
        for i in call.ids:
            if self.by_id.get(i) is call:
                del self.by_id[i]
        for outbox, i in call.expects:
            outbox.forget(i)
        if not call.future.done():
            call.future.cancel()

    def track(self, msg: Any, targets: Iterable[str]) -> None:
        """Carry a call's correlation along a link: ``msg`` continues a pending call.

        A kernel with no link of its own (the tail) answers the call with its reply to
        ``msg`` (or with ``msg`` itself, echoed).
        """
        by_id = self.by_id
        cid = getattr(msg, "correlation_id", None)
        call = by_id.get(cid) if cid is not None else None
        if call is None:
            call = by_id.get(getattr(msg, "message_id", None))
            if call is None:
                return
        mid = msg.message_id
        if mid not in by_id:
            by_id[mid] = call
            call.ids.append(mid)
        for tid in targets:
            k = self._kernels.get(tid)
            if k is not None and k.route is None:
                key = k.outbox.expect_reply_to(msg)
                fut = k.outbox.reply_future(key)
                call.expects.append((k.outbox, key))
                fut.add_done_callback(call.settle)
