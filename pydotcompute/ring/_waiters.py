"""Futures that fail at a deadline: the timeouts of mailbox waits, with no polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["expire", "expire_later"]


def expire(fut: asyncio.Future[Any], make_error: Callable[[], BaseException]) -> None:
    """Fail ``fut`` with ``make_error()`` unless it is already done."""
    if not fut.done():
        fut.set_exception(make_error())


def expire_later(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[Any],
    timeout: float,
    make_error: Callable[[], BaseException],
) -> None:
    """Fail ``fut`` with ``make_error()`` after ``timeout`` s unless it is done by then."""
    handle = loop.call_later(timeout, expire, fut, make_error)
    fut.add_done_callback(lambda _: handle.cancel())
