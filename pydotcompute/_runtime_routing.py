"""The runtime's verbs for links, topics, dead letters and device kernel state.

A mixin of :class:`~pydotcompute.RingKernelRuntime`: the routing itself lives in
``ring/_routing.py``; these are the public verbs over it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError, KernelStateError, OperationTimeoutError
from .ring._checks import check_kernel_id, check_timeout
from .ring._dead_letters import DeadLetter, DeadLetterQueue
from .ring._options import Backpressure
from .ring._routing import Router
from .ring._topics import TopicReceiver
from .telemetry import KernelTelemetry

__all__ = ["RoutingVerbs"]


class RoutingVerbs:
    """Links, topics, dead letters and device state: verbs of ``RingKernelRuntime``."""

    _routing: Router
    _dead: DeadLetterQueue
    _loop: asyncio.AbstractEventLoop | None

    if TYPE_CHECKING:  # provided by RingKernelRuntime

        def _bind_loop(self) -> asyncio.AbstractEventLoop: ...

        def _kernel(self, kernel_id: str, verb: str) -> Any: ...

        async def send(self, kernel_id: str, msg: Any, *, timeout: float | None = None) -> bool: ...

    def _routed(self, t: KernelTelemetry) -> KernelTelemetry:
        """Add what the routing table knows: dead letters, links and subscriptions."""
        kid = t.kernel_id
        return dataclasses.replace(
            t,
            dead_letters=self._dead.by_kernel.get(kid, 0),
            outputs_to=self._routing.links.get(kid, ()),
            subscribes_to=self._routing.subscriptions(kid),
        )

    async def _call_linked(self, kernel_id: str, msg: Any, timeout: float | None) -> Any:
        """``call`` a kernel whose output is linked: the reply comes from the links' end."""
        call = self._routing.pending.start(msg, self._bind_loop())
        tail = self._device_tail(kernel_id)
        if tail is not None:
            # The request's id is carried along device links (no host hop): the reply comes
            # from the chain's tail, whose outbox starts waiting now (the send goes elsewhere).
            self._routing.pending.track(msg, (tail.kernel_id,))
            tail.outbox._waiting()
        try:
            async with asyncio.timeout(timeout):
                await self.send(kernel_id, msg)
                return await call.future
        except OperationTimeoutError:
            raise
        except TimeoutError:
            raise OperationTimeoutError(
                f"no reply through the links of ring kernel {kernel_id!r} to "
                f"{type(msg).__name__} {msg.message_id} within {timeout} s"
            ) from None
        finally:
            self._routing.pending.end(call)

    def _device_tail(self, kernel_id: str) -> Any:
        """The last kernel of the device-to-device links from ``kernel_id`` when it has no
        link of its own (it answers a ``call`` to the head), else ``None``."""
        k = self._kernel(kernel_id, "call")
        seen = {kernel_id}
        while getattr(k, "link_out", None) is not None:
            k = k.link_out.down
            if k.kernel_id in seen:
                return None
            seen.add(k.kernel_id)
        return k if len(seen) > 1 and k.route is None else None

    # ---------------------------------------------------------------- links and topics
    async def link(self, source: str, target: str | Iterable[str]) -> None:
        """Link ``source``'s output to ``target``'s input (one id, or several: fan-out).

        What ``source`` sends then goes straight into the target's inbox instead of its own
        outbox; several sources may link to one target (fan-in). The target's input type is
        checked against ``source``'s output type once, here; the target's backpressure
        applies to ``source`` (``block`` slows it, ``reject`` raises in its body, drops
        become dead letters). A kernel may be linked before it is launched (registered ids
        are known); messages for a target that is not running become dead letters.

        Raises
        ------
        KernelNotFoundError
            Either id is neither registered nor launched.
        MessageTypeError
            ``source`` sends messages of a type the target does not take.
        """
        self._bind_loop()
        check_kernel_id(source, "link")
        targets = (target,) if isinstance(target, str) else tuple(target)
        for t in targets:
            check_kernel_id(t, "link")
        self._routing.link(source, targets)
        await self._routing.settled()  # a device-to-device link is switched on

    async def unlink(self, source: str, target: str | None = None) -> None:
        """Remove the link ``source -> target`` (every link of ``source`` without target).

        What ``source`` sends afterwards goes to its outbox again. Messages already in the
        target's inbox stay there.
        """
        self._bind_loop()
        check_kernel_id(source, "unlink")
        if target is not None:
            check_kernel_id(target, "unlink")
        self._routing.unlink(source, target)
        await self._routing.settled()  # a device link is switched off and emptied

    def links(self) -> dict[str, tuple[str, ...]]:
        """The links of this runtime: source kernel id -> target kernel ids."""
        return dict(self._routing.links)

    async def subscribe(self, kernel_id: str, topic: str) -> None:
        """Subscribe a kernel to a topic: each :meth:`publish` puts a copy in its inbox."""
        self._bind_loop()
        check_kernel_id(kernel_id, "subscribe")
        self._routing.subscribe(kernel_id, topic)

    async def unsubscribe(self, kernel_id: str, topic: str) -> None:
        """Remove a kernel's subscription to a topic."""
        self._bind_loop()
        check_kernel_id(kernel_id, "unsubscribe")
        self._routing.unsubscribe(kernel_id, topic)

    def topics(self) -> dict[str, tuple[str, ...]]:
        """Topics with subscribers: topic -> kernel ids (``"<host>"`` for a receiver)."""
        return {
            t: tuple(s if isinstance(s, str) else "<host>" for s in subs)
            for t, subs in self._routing.topics.items()
        }

    async def publish(self, topic: str, msg: Any, *, timeout: float | None = None) -> int:
        """Give every subscriber of ``topic`` its own (shallow) copy of ``msg``.

        Returns how many subscribers queued it (0 without subscribers: with
        ``unheard_topics="dead_letter"`` it is also kept as a dead letter). Each subscriber's
        backpressure applies; a subscriber that is not running gets a dead letter instead.

        Raises
        ------
        MessageTypeError
            A subscribed kernel takes another type (nothing was delivered).
        QueueFullError
            A ``reject`` subscriber was full (raised after the others got their copy).
        """
        self._bind_loop()
        if timeout is not None:
            timeout = check_timeout(timeout, "publish")
        return await self._routing.publish(topic, msg, timeout, None)

    def topic_receiver(
        self, topic: str, *, capacity: int = 1024, backpressure: str = "drop_oldest"
    ) -> TopicReceiver:
        """Subscribe the host to a topic: a receiver a notebook cell can await or iterate.

        ``capacity`` bounds its queue; with the default ``drop_oldest`` a receiver nobody
        reads never slows the publishers (what it drops becomes a dead letter).
        ``receiver.close()`` unsubscribes.
        """
        try:
            loop = self._loop or asyncio.get_running_loop()
        except RuntimeError:
            raise KernelStateError(
                "topic_receiver() needs the runtime's event loop: call it from async code "
                "(a notebook cell, or after the first await on this runtime)"
            ) from None
        if type(capacity) is not int or capacity < 1:
            raise InvalidArgumentError(
                f"topic_receiver({topic!r}, capacity={capacity!r}): capacity is the number of "
                "messages the receiver may hold, an int >= 1; pass e.g. capacity=1024"
            )
        try:
            policy = Backpressure(backpressure)
        except ValueError:
            raise InvalidArgumentError(
                f"topic_receiver({topic!r}, backpressure={backpressure!r}): not a policy; use "
                f"one of {', '.join(repr(b.value) for b in Backpressure)}"
            ) from None
        routing = self._routing
        rx = TopicReceiver(topic, capacity, policy, loop, lambda r: routing.unsubscribe(r, topic))
        rx.inbox.on_drop = self._dead.hook(None, topic)
        routing.subscribe(rx, topic)
        return rx

    def dead_letters(self, kernel_id: str | None = None) -> list[DeadLetter]:
        """Messages that could not be delivered, oldest first, with reason and time.

        Only the last ``dead_letter_capacity`` are kept; ``kernel_id`` keeps those meant for
        one kernel. ``snapshot().dead_letters`` and each kernel's telemetry count them all.
        """
        return self._dead.letters(kernel_id)

    # ---------------------------------------------------------------- device kernel state
    async def read_state(self, kernel_id: str) -> Any:
        """A device kernel's ``State`` as a numpy record (a copy of its fixed layout).

        An active kernel is parked for the copy and resumed (its lifecycle state does not
        change); a terminated one gives the state its loop had when it exited.

        Raises
        ------
        KernelStateError
            The kernel is a host kernel, or a device kernel without state (no
            ``state_type``, or parallel mode).
        """
        return await self._device_kernel(kernel_id, "read_state").read_state()

    async def write_state(self, kernel_id: str, value: Any) -> None:
        """Set a parked (LAUNCHED or DEACTIVATED) device kernel's ``State``.

        ``value`` is a ``State`` message or a numpy record of its fixed layout; the loop
        starts from it when activated. ``relaunch`` keeps the state when the new source
        declares the same ``State`` layout.

        Raises
        ------
        KernelStateError
            The kernel is active (deactivate it first), a host kernel, or has no state.
        MessageTypeError
            ``value`` is neither a ``State`` nor a record of its layout.
        """
        await self._device_kernel(kernel_id, "write_state").write_state(value)

    def _device_kernel(self, kernel_id: str, verb: str) -> Any:
        k = self._kernel(kernel_id, verb)
        if k.backend != "device":
            raise KernelStateError(
                f"{verb}: ring kernel {kernel_id!r} is a host kernel, whose state lives in "
                "its body's variables; read_state/write_state apply to device ring kernels"
            )
        return k
