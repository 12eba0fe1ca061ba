"""The outbox of a host ring kernel: FIFO replies, a full outbox makes the kernel wait.

Replies correlated with a pending ``call`` go straight to that caller; a reply sent while a
receiver waits is handed to it directly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ._waiters import expire, expire_later

__all__ = ["EMPTY", "Outbox"]

EMPTY: Any = object()  # returned by Outbox.pop_nowait when nothing is queued


class Outbox:
    """FIFO mailbox of a kernel's replies; a full outbox makes the kernel wait.

    Replies whose ``correlation_id`` matches a pending :meth:`expect` go straight to that
    caller, so other replies stay receivable in order.
    """

    __slots__ = (
        "_error",
        "_expect",
        "_getters",
        "_loop",
        "_putters",
        "_q",
        "capacity",
        "kernel_id",
        "sent",
    )

    def __init__(self, kernel_id: str, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        self.kernel_id = kernel_id
        self.capacity = capacity
        self._loop = loop
        self._q: deque[Any] = deque()
        self._getters: deque[asyncio.Future[Any]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._expect: dict[Any, asyncio.Future[Any]] = {}
        self._error: Callable[[], BaseException] | None = None
        self.sent = 0

    def __len__(self) -> int:
        return len(self._q)

    def put_nowait(self, msg: Any) -> bool:
        """Deliver or queue ``msg``; False when the outbox is full (the kernel must wait)."""
        if self._expect and self._deliver_expected(msg):
            self.sent += 1
            return True
        getters = self._getters
        while getters:
            g = getters.popleft()
            if not g.done():
                g.set_result(msg)
                self.sent += 1
                return True
        if len(self._q) >= self.capacity:
            return False
        self._q.append(msg)
        self.sent += 1
        return True

    def _deliver_expected(self, msg: Any) -> bool:
        cid = getattr(msg, "correlation_id", None)
        fut = self._expect.pop(cid, None) if cid is not None else None
        if fut is None or fut.done():
            return False
        fut.set_result(msg)
        return True

    async def put_wait(
        self, msg: Any, timeout: float | None, make_timeout: Callable[[], BaseException]
    ) -> None:
        """Wait for space, then queue ``msg``."""
        while not self.put_nowait(msg):
            fut: asyncio.Future[None] = self._loop.create_future()
            self._putters.append(fut)
            handle = None
            if timeout is not None:
                handle = self._loop.call_later(timeout, expire, fut, make_timeout)
            try:
                await fut
            finally:
                if handle is not None:
                    handle.cancel()
                if fut in self._putters:
                    self._putters.remove(fut)

    def put_many_nowait(self, msgs: list[Any]) -> int:
        """Deliver or queue as many of ``msgs`` as fit, in order; return how many were taken."""
        n = len(msgs)
        done = 0
        # Waiting receivers and pending calls are served one message at a time; once they are
        # all served the rest is queued in bulk.
        while done < n and (self._getters or self._expect):
            if not self.put_nowait(msgs[done]):
                return done
            done += 1
        take = min(self.capacity - len(self._q), n - done)
        if take > 0:
            self._q.extend(msgs[done : done + take] if done or take < n else msgs)
            self.sent += take
            done += take
        return done

    def pop_nowait(self) -> Any:
        """Take the oldest reply, or return :data:`EMPTY` when none is queued."""
        q = self._q
        if not q:
            return EMPTY
        msg = q.popleft()
        if self._putters:
            self._wake_putter()
        return msg

    def pop(self) -> Any:
        """Take the oldest reply; the outbox must not be empty."""
        msg = self._q.popleft()
        if self._putters:
            self._wake_putter()
        return msg

    def pop_many(self, max_count: int) -> list[Any]:
        """Take up to ``max_count`` replies, oldest first."""
        q = self._q
        if len(q) <= max_count:
            out = list(q)
            q.clear()
        else:
            out = [q.popleft() for _ in range(max_count)]
        while self._putters and len(q) < self.capacity:
            self._wake_putter()
        return out

    def _wake_putter(self) -> None:
        while self._putters:
            fut = self._putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

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
        return fut

    def abandon(self, fut: asyncio.Future[Any]) -> None:
        """A receiver was cancelled: keep a reply that was already handed to it."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self._q.appendleft(fut.result())

    def expect(self, correlation_id: Any) -> asyncio.Future[Any]:
        """Return a future resolved by the reply correlated with ``correlation_id``."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._expect[correlation_id] = fut
        return fut

    def forget(self, correlation_id: Any) -> None:
        """Stop waiting for a correlated reply (a later one is queued normally)."""
        self._expect.pop(correlation_id, None)

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
