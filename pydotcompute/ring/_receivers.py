"""The receiving side of an outbox, shared by host and device kernels.

Replies are handed to waiting ``receive`` futures in order, or straight to the ``call`` waiting
for their correlation id; once the kernel fails or ends, the outbox is closed with an error that
every receiver sees after the queued replies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ._waiters import expire_later

__all__ = ["Receivers"]


class Receivers:
    """Waiting receivers of an outbox and the host-side queue of replies not yet taken."""

    __slots__ = ("_error", "_expect", "_getters", "_loop", "_q")

    def _init_receivers(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._q: deque[Any] = deque()
        self._getters: deque[asyncio.Future[Any]] = deque()
        self._expect: dict[Any, asyncio.Future[Any]] = {}
        self._error: Callable[[], BaseException] | None = None

    def _waiting(self) -> None:
        """Called when a receiver starts waiting (a device outbox starts polling)."""

    def wait(
        self, timeout: float | None, make_timeout: Callable[[], BaseException] | None
    ) -> asyncio.Future[Any]:
        """Register a receiver: the returned future gets the next reply.

        Raises the outbox's error at once when it is closed (the queue must be empty). The
        caller awaits the future and calls :meth:`abandon` if it is cancelled while waiting.
        """
        if self._error is not None:
            raise self._error()
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._getters.append(fut)
        if timeout is not None and make_timeout is not None:
            expire_later(self._loop, fut, timeout, make_timeout)
        self._waiting()
        return fut

    def abandon(self, fut: asyncio.Future[Any]) -> None:
        """A receiver was cancelled: keep a reply that was already handed to it."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self._q.appendleft(fut.result())

    def expect(self, correlation_id: Any) -> asyncio.Future[Any]:
        """Return a future resolved by the reply correlated with ``correlation_id``."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._expect[correlation_id] = fut
        self._waiting()
        return fut

    def forget(self, correlation_id: Any) -> None:
        """Stop waiting for a correlated reply (a later one is queued normally)."""
        self._expect.pop(correlation_id, None)

    def _deliver_expected(self, msg: Any) -> bool:
        """Hand ``msg`` to the ``call`` waiting for it, if any."""
        cid = getattr(msg, "correlation_id", None)
        fut = self._expect.pop(cid, None) if cid is not None else None
        if fut is None:
            # An echo: the body sent the request object itself back.
            fut = self._expect.pop(getattr(msg, "message_id", None), None)
        if fut is None or fut.done():
            return False
        fut.set_result(msg)
        return True

    def fail(self, make_error: Callable[[], BaseException]) -> None:
        """Close for receivers: waiting ones get ``make_error()``; later ones once empty."""
        self._error = make_error
        while self._getters:
            g = self._getters.popleft()
            if not g.done():
                g.set_exception(make_error())
        for fut in self._expect.values():
            if not fut.done():
                fut.set_exception(make_error())
        self._expect.clear()

    def reopen(self) -> None:
        """Accept receivers again (after a restart or relaunch)."""
        self._error = None

    @property
    def error(self) -> Callable[[], BaseException] | None:
        """Factory of the error receivers get once the outbox is closed and empty."""
        return self._error
