"""``call`` through links that cross kernel hosts: the correlation travels with the messages.

The host of the called kernel (the *origin*) registers the request's id and sends the
request in; a message whose ``message_id`` or ``correlation_id`` belongs to a pending call
travels to the next host with a *tag* (the call's id, the origin's actor handle, its
deadline). Where a tagged message enters a kernel, that host follows it as the local
runtime does: a kernel linked to other hosts carries the tag on with its replies, a kernel
with local links follows them (``ring/_calls.py``), and a kernel without links (the tail)
answers the call: its reply goes straight back to the origin, one Ray call. A hop whose
host died, or a request that became a dead letter on its way, answers the call with an
error saying so; nothing waits past the call's timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..errors import KernelStateError, OperationTimeoutError, PyDotComputeError
from ._wire import Raised, encode

if TYPE_CHECKING:
    from ._host import KernelHost

__all__ = ["XCall", "XCalls"]

KEEP = 4096  # conversation ids a host remembers (the oldest are forgotten first)
RELAY_KEEP = 600.0  # seconds a relay remembers a call that has no timeout


class XCall:
    """A ``call`` whose conversation crosses hosts: who waits for the reply, and until when."""

    __slots__ = ("call_id", "deadline", "ids", "origin")

    def __init__(self, call_id: UUID, origin: Any, deadline: float | None) -> None:
        self.call_id = call_id
        self.origin = origin  # the origin host's actor handle; None on the origin itself
        self.deadline = deadline  # time.time() after which nobody waits for the reply
        self.ids: list[UUID] = []


class XCalls:
    """The cross-host calls one kernel host takes part in (as origin, relay or tail)."""

    def __init__(self, host: KernelHost) -> None:
        self.host = host
        self.by_id: OrderedDict[UUID, XCall] = OrderedDict()  # conversation ids -> call
        self.calls: dict[UUID, XCall] = {}  # call id -> the call, on this host
        self.waiting: dict[UUID, asyncio.Future[bytes]] = {}  # calls that started here
        self.by_peer: dict[str, set[UUID]] = {}  # host name -> calls that crossed to it
        self.watches: dict[str, asyncio.Task[None]] = {}
        self._me: Any = None

    @property
    def me(self) -> Any:
        """This host's own actor handle (the origin of the calls made here)."""
        if self._me is None:
            import ray

            self._me = ray.get_runtime_context().current_actor
        return self._me

    # ---------------------------------------------------------------- the origin
    async def call(self, kernel_id: str, msg: Any, timeout: float | None) -> bytes:
        """Send ``msg`` to ``kernel_id`` here and wait for the reply from the links' end."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else time.time() + timeout
        xc = XCall(msg.message_id, None, deadline)
        self.calls[xc.call_id] = xc
        fut: asyncio.Future[bytes] = loop.create_future()
        self.waiting[xc.call_id] = fut
        self.remember(msg.message_id, xc)
        try:
            async with asyncio.timeout(timeout):
                await self.host.rt.send(kernel_id, msg)
                return await fut
        except OperationTimeoutError:
            raise
        except TimeoutError:
            raise OperationTimeoutError(
                f"no reply through the links of ring kernel {kernel_id!r} (across kernel "
                f"hosts) to {type(msg).__name__} {msg.message_id} within {timeout} s"
            ) from None
        finally:
            self.waiting.pop(xc.call_id, None)
            self.end(xc)

    def reply(self, call_id: UUID, data: bytes | None, raised: Raised | None) -> None:
        """The answer to a call made here, sent by the host whose kernel ended the links."""
        fut = self.waiting.get(call_id)
        if fut is None or fut.done():
            return  # timed out already: the caller has its error
        if raised is not None:
            fut.set_exception(raised.error())
        else:
            assert data is not None
            fut.set_result(data)

    # ---------------------------------------------------------------- along the way
    def remember(self, mid: UUID, xc: XCall) -> None:
        """``mid`` belongs to ``xc``'s conversation (bounded: the oldest ids go first)."""
        self.by_id[mid] = xc
        xc.ids.append(mid)
        while len(self.by_id) > KEEP:
            self.by_id.popitem(last=False)

    def of(self, msg: Any) -> XCall | None:
        """The pending call ``msg`` continues, if any (its correlation id, or itself)."""
        by_id = self.by_id
        cid = getattr(msg, "correlation_id", None)
        xc = by_id.get(cid) if cid is not None else None
        return xc if xc is not None else by_id.get(getattr(msg, "message_id", None))  # type: ignore[arg-type]

    def tag(self, xc: XCall) -> tuple[UUID, Any, float | None]:
        """The tag a message of ``xc`` travels with to another host."""
        return xc.call_id, xc.origin if xc.origin is not None else self.me, xc.deadline

    def entering(self, tag: tuple[UUID, Any, float | None]) -> XCall:
        """The call a tagged message from another host continues (made on first sight)."""
        call_id, origin, deadline = tag
        xc = self.calls.get(call_id)
        if xc is None:
            xc = self.calls[call_id] = XCall(call_id, origin, deadline)
            if origin is self.me or origin == self.me:
                xc.origin = None  # the conversation came back to the origin's host
            keep = RELAY_KEEP if deadline is None else max(0.0, deadline - time.time())
            asyncio.get_running_loop().call_later(keep, self.end, xc)
        return xc

    def enter(self, kernel_id: str, msg: Any, xc: XCall) -> None:
        """``msg`` of call ``xc`` is about to enter ``kernel_id`` here: follow it."""
        rt = self.host.rt
        k = rt._get(kernel_id)
        if k is None or not k.accepting:
            return  # it becomes a dead letter; the caller answers the call with why
        if self.host.remote_links.get(kernel_id):
            self.remember(msg.message_id, xc)  # its replies carry the call to other hosts
        elif k.route is not None:  # local links: the local runtime follows them
            if (via := self.host.crossing(kernel_id)) is not None:
                self.answer(xc, None, self.host.crossing_error(kernel_id, via))
                return
            pending = rt._routing.pending
            call = pending.start(msg, asyncio.get_running_loop())

            def done(f: asyncio.Future[Any]) -> None:
                self._settled(xc, f)
                pending.end(call)

            call.future.add_done_callback(done)
            self._expire(xc, call.future)
        else:  # the tail: its reply to ``msg`` answers the call
            ob = k.outbox
            key = ob.expect_reply_to(msg)
            try:
                fut = ob.reply_future(key)
            except PyDotComputeError as exc:
                ob.forget(key)
                self.answer(xc, None, exc)
                return

            def replied(f: asyncio.Future[Any]) -> None:
                ob.forget(key)
                self._settled(xc, f)

            fut.add_done_callback(replied)
            self._expire(xc, fut)

    def _expire(self, xc: XCall, fut: asyncio.Future[Any]) -> None:
        keep = RELAY_KEEP if xc.deadline is None else max(0.0, xc.deadline - time.time())
        asyncio.get_running_loop().call_later(keep, fut.cancel)

    def _settled(self, xc: XCall, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.answer(xc, fut.result(), None)
        elif isinstance(exc, PyDotComputeError):
            self.answer(xc, None, exc)
        else:
            self.answer(xc, None, KernelStateError(f"{type(exc).__name__}: {exc}"))

    def answer(self, xc: XCall, reply: Any, exc: PyDotComputeError | None) -> None:
        """Answer ``xc`` with ``reply`` (a message) or ``exc``, at its origin."""
        data = None
        if exc is None:
            try:
                data = encode(reply)
            except PyDotComputeError as e:
                exc = e
        raised = None if exc is None else Raised.of(exc)
        if xc.origin is None:
            self.reply(xc.call_id, data, raised)
        else:
            xc.origin.call_reply.remote(xc.call_id, data, raised)

    def undelivered(self, xc: XCall, kernel_id: str, reason: str) -> None:
        """A message of ``xc`` became a dead letter on its way: the call ends with why."""
        self.answer(
            xc,
            None,
            KernelStateError(
                f"call: a message of its conversation could not enter ring kernel "
                f"{kernel_id!r} on kernel host {self.host.name!r} ({reason}); it was kept "
                "as a dead letter there, and no reply will come"
            ),
        )

    def end(self, xc: XCall) -> None:
        """Forget ``xc`` here."""
        self.calls.pop(xc.call_id, None)
        for mid in xc.ids:
            if self.by_id.get(mid) is xc:
                del self.by_id[mid]
        for ids in self.by_peer.values():
            ids.discard(xc.call_id)

    # ---------------------------------------------------------------- hosts that die
    def hopped(self, xc: XCall, name: str, handle: Any) -> None:
        """A message of ``xc`` left for host ``name``: if it dies, the call ends with why."""
        self.by_peer.setdefault(name, set()).add(xc.call_id)
        task = self.watches.get(name)
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            self.watches[name] = loop.create_task(self._watch(name, handle))

    async def _watch(self, name: str, handle: Any) -> None:
        import ray

        try:
            await handle.watch.remote()
        except ray.exceptions.RayActorError as exc:
            self.host_died(name, exc)

    def host_died(self, name: str, exc: BaseException) -> None:
        """Host ``name`` died: the calls whose conversation went there end with the cause."""
        for call_id in self.by_peer.pop(name, set()):
            xc = self.calls.get(call_id)
            if xc is not None:
                self.answer(
                    xc,
                    None,
                    KernelStateError(
                        f"call: its conversation went on to kernel host {name!r}, which died "
                        f"({type(exc).__name__}); no reply will come"
                    ),
                )

    def close(self) -> None:
        """Stop watching other hosts (this host shuts down)."""
        for task in self.watches.values():
            task.cancel()
        self.watches.clear()
