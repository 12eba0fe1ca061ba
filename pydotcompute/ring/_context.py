"""``KernelContext``: what a host ring kernel's body uses to take and send messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import (
    InvalidArgumentError,
    MessageTypeError,
    OperationTimeoutError,
    ReceiveTimeoutError,
)
from ..telemetry import LAT_MASK
from ._checks import check_timeout
from ._driver import park, timeout_waker
from ._inbox import _NO_BUCKET

if TYPE_CHECKING:
    from ..backends.host import HostKernel
    from ._driver import BodyDriver

__all__ = ["KernelContext", "TerminationRequested"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")


def check_max_count(max_count: object) -> None:
    """Refuse a ``max_count`` that is not a positive int."""
    if type(max_count) is not int or max_count < 1:
        raise InvalidArgumentError(
            f"max_count={max_count!r} must be an int >= 1 (the most messages to take at once)"
        )


class TerminationRequested(BaseException):
    """Raised inside a kernel body by ``receive``/``wait_active`` once it is terminated.

    Like :class:`asyncio.CancelledError` it derives from ``BaseException``, so a body's
    ``except Exception`` does not catch it; letting it propagate ends the body cleanly. The
    usual loop ``while not ctx.should_terminate: ...`` never needs to handle it.
    """


class KernelContext(Generic[InT, OutT]):
    """The context a ring kernel body runs with: its mailboxes and lifecycle flags.

    Annotating the body's parameter as ``KernelContext[Request, Response]`` also declares the
    kernel's input and output types when ``@ring_kernel`` does not give them.

    Attributes
    ----------
    should_terminate:
        True once the kernel is being terminated (with ``drain``, once the body took the last
        queued message). Read it, do not set it; it is a plain attribute so that the body's
        ``while not ctx.should_terminate`` costs one attribute read per message.
    """

    __slots__ = (
        "_driver",
        "_inbox",
        "_kernel",
        "_last",
        "_metrics",
        "_outbox",
        "_output_type",
        "_pending",
        "_pending_n",
        "_stopping",
        "kernel_id",
        "should_terminate",
    )

    def __init__(self, kernel: HostKernel) -> None:
        self._kernel = kernel
        self.kernel_id: str = kernel.kernel_id
        self._inbox = kernel.inbox
        self._outbox = kernel.outbox
        self._metrics = kernel.metrics
        self._output_type = kernel.options.output_type
        # Enqueue time of the message(s) being handled: > 0 if timed, -1 if not, 0 if none.
        self._pending = 0
        self._pending_n = 0
        self._last: Any = None  # the message being handled, for stamping replies
        self._stopping = False
        self.should_terminate = False
        self._driver: BodyDriver | None = None  # set by the kernel that runs the body

    def __repr__(self) -> str:
        return f"<KernelContext {self.kernel_id!r} state={self._kernel.state.value}>"

    def _drained(self) -> None:
        """A receive emptied the inbox: when terminating with ``drain``, the body may stop."""
        if self._stopping and not self._inbox._size:
            self.should_terminate = True

    @property
    def is_active(self) -> bool:
        """True while the kernel is active (taking messages)."""
        return self._inbox.open and not self._stopping

    async def receive(self, *, timeout: float | None = None) -> InT:
        """Take the next message (highest priority first), waiting while none is there.

        While the kernel is deactivated this waits; messages keep queueing.

        Raises
        ------
        TerminationRequested
            The kernel is being terminated (ends the body cleanly).
        ReceiveTimeoutError
            No message arrived within ``timeout`` seconds.
        InvalidArgumentError
            ``timeout`` is not ``None`` or a number of seconds >= 0.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "ctx.receive")
        pending = self._pending
        if pending:  # the previous message is done (inlined KernelMetrics.completed)
            m = self._metrics
            if pending > 0:  # a timed one (see LAT_EVERY)
                i = m.lat_n
                m.lat[i & LAT_MASK] = perf_counter_ns() - pending
                m.lat_n = i + 1
            m.processed += self._pending_n
            self._pending = 0
        inbox = self._inbox
        if inbox._size and inbox.open:
            # Inbox.pop, inlined: the highest priority level's oldest entry.
            bucket = inbox._top
            entry = bucket.popleft()
            inbox._size -= 1
            if not bucket:
                levels = inbox._levels
                del levels[0]
                inbox._top = inbox._buckets[-levels[0]] if levels else _NO_BUCKET
                if inbox._putters:
                    inbox._admit_putters()
                if self._stopping:
                    self._drained()
            elif inbox._putters:
                inbox._admit_putters()
        else:
            if self._stopping:
                raise TerminationRequested(self.kernel_id)
            d = self._driver
            if d is not None and d.sched.current is d:
                # Park: the next message marks this body runnable, and it is run inline.
                inbox.parked = d
                if timeout is not None:
                    d.timer = d.loop.call_later(
                        timeout, timeout_waker, d, self._receive_timeout(timeout)
                    )
                entry = await park()
            else:
                entry = await self._wait_entry(timeout)
            if self._stopping:
                self._drained()
        _, ts, msg = entry
        self._pending = ts or -1  # -1: in hand, not timed
        self._pending_n = 1
        self._last = msg
        return msg

    async def receive_many(
        self, max_count: int = 1024, *, timeout: float | None = None
    ) -> list[InT]:
        """Take up to ``max_count`` queued messages at once, waiting for at least one.

        Replies sent for a batch are not stamped with a correlation id (there is no single
        request); use ``msg.reply(...)`` to correlate individual replies.
        """
        check_max_count(max_count)
        if timeout is not None:
            timeout = check_timeout(timeout, "ctx.receive_many")
        if self._pending:
            self._metrics.completed(self._pending, self._pending_n)
            self._pending = 0
        inbox = self._inbox
        if inbox._size and inbox.open:
            msgs, oldest = inbox.pop_many(max_count)
        else:
            if self._stopping:
                raise TerminationRequested(self.kernel_id)
            d = self._driver
            if d is not None and d.sched.current is d:
                inbox.parked = d
                if timeout is not None:
                    d.timer = d.loop.call_later(
                        timeout, timeout_waker, d, self._receive_timeout(timeout)
                    )
                _, oldest, first = await park()
            else:
                _, oldest, first = await self._wait_entry(timeout)
            msgs = [first]
            if inbox._size and inbox.open and max_count > 1:
                more, more_oldest = inbox.pop_many(max_count - 1)
                msgs += more
                if more_oldest and (not oldest or more_oldest < oldest):
                    oldest = more_oldest
        if self._stopping:
            self._drained()
        self._pending = oldest or -1
        self._pending_n = len(msgs)
        self._last = None
        return msgs

    async def _wait_entry(self, timeout: float | None) -> Any:
        """Wait for an entry from another task than the body's (``create_task(ctx.receive())``)."""
        inbox = self._inbox
        fut = inbox.wait(timeout, self._receive_timeout(timeout))
        try:
            return await fut
        except asyncio.CancelledError:
            inbox.abandon(fut)
            raise

    async def send(self, msg: OutT, *, timeout: float | None = None) -> None:
        """Send a reply to the kernel's outbox; waits while the outbox is full.

        A message without a ``correlation_id`` gets the id of the message being handled, so
        ``runtime.call`` finds its reply.

        Raises
        ------
        MessageTypeError
            ``msg`` is not of the kernel's ``output_type``.
        OperationTimeoutError
            The outbox stayed full for ``timeout`` seconds.
        """
        out_type = self._output_type
        if out_type is not None and type(msg) is not out_type and not isinstance(msg, out_type):
            raise self._type_error(msg)
        pending = self._pending
        if pending:  # the message being handled is done (inlined KernelMetrics.completed)
            m = self._metrics
            if pending > 0:  # a timed one (see LAT_EVERY)
                i = m.lat_n
                m.lat[i & LAT_MASK] = perf_counter_ns() - pending
                m.lat_n = i + 1
            m.processed += self._pending_n
            self._pending = 0
        last = self._last
        if last is not None and msg is not last:
            d = getattr(msg, "__dict__", None)
            if (
                d is not None
                and d.get("correlation_id") is None
                and ("correlation_id" in d or hasattr(type(msg), "__pdc_message__"))
            ):  # a message's constructor leaves a correlation id of None unstored
                d["correlation_id"] = last  # resolved to last.message_id when read
        route = self._kernel.route
        if route is not None:  # linked: straight into the targets' inboxes
            if not route.offer(msg):
                await route.send(msg, timeout)
            return
        ob = self._outbox
        q = ob._q
        if not ob._expect and not ob._getters and len(q) < ob.capacity:
            q.append(msg)  # Outbox.put_nowait's common case, inlined: no call waits, no receiver
            ob.sent += 1
            return
        if not ob.put_nowait(msg):
            if timeout is not None:
                timeout = check_timeout(timeout, "ctx.send")
            await self._outbox.put_wait(msg, timeout, self._send_timeout(timeout))

    async def send_many(self, msgs: Iterable[OutT], *, timeout: float | None = None) -> None:
        """Send several replies in order; waits while the outbox is full."""
        if timeout is not None:
            timeout = check_timeout(timeout, "ctx.send_many")
        items = msgs if isinstance(msgs, list) else list(msgs)
        out_type = self._output_type
        if out_type is not None and set(map(type, items)) - {out_type}:
            for m in items:
                if not isinstance(m, out_type):
                    raise self._type_error(m)
        if self._pending:
            self._metrics.completed(self._pending, self._pending_n)
            self._pending = 0
        route = self._kernel.route
        if route is not None:  # linked: straight into the targets' inboxes
            await route.send_many(items, timeout)
            return
        outbox = self._outbox
        done = outbox.put_many_nowait(items)
        for m in items[done:]:
            if not outbox.put_nowait(m):
                await outbox.put_wait(m, timeout, self._send_timeout(timeout))

    async def send_to(self, kernel_id: str, msg: Any, *, timeout: float | None = None) -> bool:
        """Send a message to any kernel's inbox by id (its backpressure applies).

        Returns ``True`` once queued, ``False`` when it was not: dropped by the target's
        ``drop_newest`` policy, or the target is terminated, failed or unknown; such a
        message is kept as a dead letter (``runtime.dead_letters()``). A fresh message is
        correlated with the one being handled, as by :meth:`send`.

        Raises
        ------
        MessageTypeError
            The target takes another message type.
        QueueFullError
            The target's inbox is full and its backpressure is ``reject``;
            ``SendTimeoutError`` when ``block`` waited ``timeout`` seconds.
        """
        self._stamp(msg)
        return bool(await self._kernel.router.send_to(self.kernel_id, kernel_id, msg, timeout))

    async def publish(self, topic: str, msg: Any, *, timeout: float | None = None) -> int:
        """Publish a message to a topic: every subscriber gets its own copy.

        Returns how many subscribers queued it. Each subscriber's backpressure applies; a
        ``reject`` subscriber's ``QueueFullError`` is raised after the others got theirs.
        """
        self._stamp(msg)
        return await self._kernel.router.publish(topic, msg, timeout, self.kernel_id)

    def _stamp(self, msg: Any) -> None:
        """Correlate a fresh message with the one being handled (as ``send`` does)."""
        last = self._last
        if last is not None and msg is not last:
            d = getattr(msg, "__dict__", None)
            if (
                d is not None
                and d.get("correlation_id") is None
                and ("correlation_id" in d or hasattr(type(msg), "__pdc_message__"))
            ):
                d["correlation_id"] = last

    async def wait_active(self, *, timeout: float | None = None) -> None:
        """Wait until the kernel is activated.

        Raises
        ------
        TerminationRequested
            The kernel was terminated while waiting.
        OperationTimeoutError
            It was not activated within ``timeout`` seconds.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "ctx.wait_active")
        await self._kernel.wait_active(self, timeout)

    def _type_error(self, msg: Any) -> MessageTypeError:
        assert self._output_type is not None
        return MessageTypeError(
            f"ring kernel {self.kernel_id!r} sent a {type(msg).__name__}, but its "
            f"output_type is {self._output_type.__name__}; send a "
            f"{self._output_type.__name__} or change output_type"
        )

    def _receive_timeout(self, timeout: float | None) -> Any:
        if timeout is None:
            return None
        kernel_id = self.kernel_id

        def make() -> BaseException:
            return ReceiveTimeoutError(
                f"ring kernel {kernel_id!r} received no message within {timeout} s"
            )

        return make

    def _send_timeout(self, timeout: float | None) -> Any:
        kernel_id = self.kernel_id

        def make() -> BaseException:
            return OperationTimeoutError(
                f"outbox of ring kernel {kernel_id!r} stayed full for {timeout} s; the host "
                "is not receiving its replies"
            )

        return make
