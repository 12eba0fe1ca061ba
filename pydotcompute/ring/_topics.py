"""``TopicReceiver``: the host's own subscription to a topic, for a notebook cell to watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import KernelStateError, ReceiveTimeoutError
from ._context import check_max_count
from ._inbox import Inbox
from ._options import Backpressure

__all__ = ["TopicReceiver"]


class TopicReceiver:
    """A host-side subscriber of one topic: its own bounded inbox of published messages.

    Made by :meth:`RingKernelRuntime.topic_receiver`. Await :meth:`receive`, take what is
    there with :meth:`receive_many`, or iterate (``async for msg in rx.iter(timeout=2)``
    ends after 2 s without a message). :meth:`close` (or leaving ``with rx:``) unsubscribes.
    What its backpressure drops becomes a dead letter.
    """

    def __init__(
        self,
        topic: str,
        capacity: int,
        backpressure: Backpressure,
        loop: asyncio.AbstractEventLoop,
        unsubscribe: Callable[[TopicReceiver], None],
    ) -> None:
        self.topic = topic
        self.inbox = Inbox(f"<topic receiver {topic!r}>", capacity, backpressure, loop)
        self.inbox.set_open(True)
        self._unsubscribe = unsubscribe
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.inbox)} queued"
        return f"<TopicReceiver {self.topic!r} {state}>"

    def __len__(self) -> int:
        return len(self.inbox)

    def __enter__(self) -> TopicReceiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def dropped(self) -> int:
        """Messages this receiver's backpressure dropped (each is also a dead letter)."""
        return self.inbox.dropped

    async def _put(self, msg: Any, timeout: float | None) -> bool:
        r = self.inbox.put_nowait(msg)
        if r is None:
            return await self.inbox.put_wait(msg, timeout)
        return r

    async def receive(self, *, timeout: float | None = None) -> Any:
        """Take the next published message (highest priority first), waiting for one.

        Raises
        ------
        ReceiveTimeoutError
            Nothing was published within ``timeout`` seconds.
        KernelStateError
            The receiver is closed and empty.
        """
        inbox = self.inbox
        if len(inbox):
            return inbox.pop()[2]
        if self.closed:
            raise self._closed_error()
        topic = self.topic

        def make() -> BaseException:
            return ReceiveTimeoutError(f"nothing published to topic {topic!r} within {timeout} s")

        fut = inbox.wait(timeout, make)
        try:
            return (await fut)[2]
        except asyncio.CancelledError:
            inbox.abandon(fut)
            raise

    async def receive_many(
        self, max_count: int | None = None, *, timeout: float | None = None
    ) -> list[Any]:
        """Take up to ``max_count`` messages (all queued ones if ``None``), waiting for one."""
        if max_count is not None:
            check_max_count(max_count)
        first = await self.receive(timeout=timeout)
        if max_count == 1 or not len(self.inbox):
            return [first]
        rest, _ = self.inbox.pop_many(len(self.inbox) if max_count is None else max_count - 1)
        return [first, *rest]

    async def iter(self, *, timeout: float | None = None) -> AsyncIterator[Any]:
        """Yield published messages until none arrives within ``timeout`` s or it is closed."""
        while not (self.closed and not len(self.inbox)):
            try:
                yield await self.receive(timeout=timeout)
            except ReceiveTimeoutError:
                return
            except KernelStateError:
                return

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.iter()

    def close(self) -> None:
        """Unsubscribe; what is queued stays receivable, a waiting receive ends."""
        if self.closed:
            return
        self.closed = True
        self._unsubscribe(self)
        self.inbox.wake_getters(self._closed_error)

    def _closed_error(self) -> KernelStateError:
        return KernelStateError(
            f"the receiver of topic {self.topic!r} is closed; make a new one with "
            f"runtime.topic_receiver({self.topic!r})"
        )
