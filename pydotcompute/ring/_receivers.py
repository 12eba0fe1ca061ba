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

_EMPTY: Any = object()  # "no reply yet" (the same object as the outbox's EMPTY)


class Receivers:
    """Waiting receivers of an outbox and the host-side queue of replies not yet taken."""

    __slots__ = ("_error", "_expect", "_getters", "_loop", "_q")

    def _init_receivers(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._q: deque[Any] = deque()
        self._getters: deque[asyncio.Future[Any]] = deque()
        # correlation id -> None (expected), (reply,) (came, not yet taken) or a Future
        self._expect: dict[Any, Any] = {}
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

    def expect_reply_to(self, request: Any) -> Any:
        """Expect the reply to ``request`` (a ``call``); return the key to take it by."""
        key = request.message_id
        self.expect(key)
        return key

    def expect(self, correlation_id: Any) -> None:
        """Keep the reply correlated with ``correlation_id`` aside for a ``call``.

        Take it with :meth:`arrived`, or wait for it with :meth:`reply_future`; a reply that
        comes while nobody waits is kept (no future is made unless the caller has to wait).
        """
        self._expect[correlation_id] = None
        self._waiting()

    def arrived(self, correlation_id: Any) -> Any:
        """The expected reply if it came already (no longer expected then), else ``EMPTY``."""
        slot = self._expect.get(correlation_id)
        if type(slot) is tuple:
            del self._expect[correlation_id]
            return slot[0]
        return _EMPTY

    def reply_future(self, correlation_id: Any) -> asyncio.Future[Any]:
        """A future resolved by the expected reply (after :meth:`arrived` found none).

        Raises the outbox's error at once when it is closed (the kernel failed or ended).
        """
        if self._error is not None:
            raise self._error()
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._expect[correlation_id] = fut
        return fut

    def forget(self, correlation_id: Any) -> None:
        """Stop waiting for a correlated reply (a later one is queued normally)."""
        self._expect.pop(correlation_id, None)

    def _deliver_expected(self, msg: Any) -> bool:
        """Hand ``msg`` to the ``call`` expecting it, if any (or keep it aside for it)."""
        if not self._expect:
            return False
        cid = getattr(msg, "correlation_id", None)
        if cid is not None and self._hand_to_call(cid, msg):
            return True
        # An echo: the body sent the request object itself back (keyed by its message_id).
        return self._hand_to_call(getattr(msg, "message_id", None), msg)

    def _hand_to_call(self, key: Any, msg: Any) -> bool:
        """Resolve the expectation ``key`` with ``msg``; False if nobody expects it."""
        expect = self._expect
        slot = expect.get(key, _EMPTY)
        if slot is None:
            expect[key] = (msg,)  # nobody waits yet: the caller takes it with arrived()
            return True
        if slot is _EMPTY or type(slot) is tuple or slot.done():
            return False
        del expect[key]
        slot.set_result(msg)
        return True

    def fail(self, make_error: Callable[[], BaseException]) -> None:
        """Close for receivers: waiting ones get ``make_error()``; later ones once empty."""
        self._error = make_error
        while self._getters:
            g = self._getters.popleft()
            if not g.done():
                g.set_exception(make_error())
        for cid, slot in list(self._expect.items()):
            if isinstance(slot, asyncio.Future):
                if not slot.done():
                    slot.set_exception(make_error())
                del self._expect[cid]
            elif slot is None:
                del self._expect[cid]  # its caller finds the error in reply_future()

    def reopen(self) -> None:
        """Accept receivers again (after a restart or relaunch)."""
        self._error = None

    @property
    def error(self) -> Callable[[], BaseException] | None:
        """Factory of the error receivers get once the outbox is closed and empty."""
        return self._error
