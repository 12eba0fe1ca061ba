"""The outbox of a host ring kernel: FIFO replies, a full outbox makes the kernel wait.

Replies correlated with a pending ``call`` go straight to that caller; a reply sent while a
receiver waits is handed to it directly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ._receivers import _EMPTY, Receivers
from ._waiters import expire

__all__ = ["EMPTY", "Outbox"]

EMPTY: Any = _EMPTY  # returned by Outbox.pop_nowait when nothing is queued


class Outbox(Receivers):
    """FIFO mailbox of a kernel's replies; a full outbox makes the kernel wait.

    Replies whose ``correlation_id`` matches a pending :meth:`expect` go straight to that
    caller, so other replies stay receivable in order.
    """

    __slots__ = ("_putters", "_requests", "capacity", "kernel_id", "sent")

    def __init__(self, kernel_id: str, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        self._init_receivers(loop)
        self.kernel_id = kernel_id
        self.capacity = capacity
        self._putters: deque[asyncio.Future[None]] = deque()
        self._requests: dict[int, Any] = {}  # id(request) -> request, for pending calls
        self.sent = 0

    def __len__(self) -> int:
        return len(self._q)

    # ---------------------------------------------------------------- calls
    # A reply stamped by ctx.send (or made with request.reply()) holds the request itself as
    # its correlation id until somebody reads it: pending calls are keyed by the request's
    # identity, so neither side has to generate the request's message_id.

    def expect_reply_to(self, request: Any) -> Any:
        """Expect the reply to ``request`` (a ``call``); return the key to take it by."""
        key = id(request)  # unique while the call holds the request
        self._requests[key] = request
        self._expect[key] = None
        return key

    def forget(self, correlation_id: Any) -> None:
        """Stop waiting for a correlated reply (a later one is queued normally)."""
        self._expect.pop(correlation_id, None)
        self._requests.pop(correlation_id, None)

    def _deliver_expected(self, msg: Any) -> bool:
        """Hand ``msg`` to the ``call`` expecting it, if any (or keep it aside for it)."""
        if self._requests.get(id(msg)) is msg:  # an echo: the request itself came back
            return self._hand_to_call(id(msg), msg)
        d = getattr(msg, "__dict__", None)
        raw = d.get("correlation_id") if d is not None else getattr(msg, "correlation_id", None)
        if raw is None:
            return False
        key: int | None = id(raw)
        if self._requests.get(key) is not raw:  # type: ignore[arg-type]
            key = self._key_of(msg)  # an explicit correlation id (a UUID)
            if key is None:
                return False
        elif self._expect.get(key, 0) is None:
            self._expect[key] = (msg,)  # the common case: the caller takes it with arrived()
            return True
        return self._hand_to_call(key, msg)

    def _key_of(self, msg: Any) -> int | None:
        """The pending call whose request's ``message_id`` is ``msg``'s correlation id."""
        cid = getattr(msg, "correlation_id", None)
        if cid is None:
            return None
        for key, request in self._requests.items():
            if getattr(request, "message_id", None) == cid:
                return key
        return None

    # ---------------------------------------------------------------- replies
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
