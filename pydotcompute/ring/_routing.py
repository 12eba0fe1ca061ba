"""Routing between kernels: links, ``send_to``, topics, and ``call`` through links.

A kernel whose output is *linked* has a :class:`Route`: what its body sends goes straight into
the targets' inboxes through their public put API (``put_nowait``, then ``put_wait`` when a
``block`` inbox is full), so each target's backpressure applies to the sender. A message that
cannot be delivered (target terminated, failed, unknown) becomes a dead letter; drops are
turned into dead letters by the inbox's ``on_drop`` hook. Nothing here is backend-specific
except where a kernel's output leaves it: a host kernel's ``ctx.send`` calls its route; a
device kernel's replies are read from its outbox ring by a *forwarder* task on the host
(``_forwarder.py``) and handed to the same route. ``call`` through links is ``_calls.py``. A
one-target link between two device kernels of one device is served by the device backend in
device memory (``backends/device/_links.py``, started by the forwarder's ``update``).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from time import perf_counter_ns
from typing import Any

from ..errors import (
    InvalidArgumentError,
    KernelNotFoundError,
    MessageTypeError,
    PyDotComputeError,
    QueueFullError,
    SendTimeoutError,
)
from ._calls import PendingCalls
from ._dead_letters import DeadLetterQueue, DeadLetterReason
from ._forwarder import Forwarders
from ._inbox import _LAT_PHASE, DEFAULT_PRIORITY, Entry, Inbox, priority_of
from ._spec import RingKernelSpec, _registry
from ._state import KernelState
from ._topics import TopicReceiver

__all__ = ["Route", "Router"]

R = DeadLetterReason
_UNHEARD = ("ignore", "dead_letter")


def _name(t: type | None) -> str:
    return "any object" if t is None else t.__name__


class Route:
    """Where one kernel's output goes: its linked targets, in link order (fan-out)."""

    __slots__ = ("_calls", "_checks", "_kernels", "_router", "_single", "_to", "source", "targets")

    def __init__(
        self, router: Router, source: str, targets: tuple[str, ...], checks: dict[str, type]
    ) -> None:
        self._router = router
        self._kernels = router.kernels
        self.source = source
        self.targets = targets
        self._checks = checks  # target id -> input type, for sources without an output type
        self._single = targets[0] if len(targets) == 1 and not checks else None
        self._calls = router.calls  # the pending calls (one dict for the router's life)
        # The single target's kernel, looked up again when it stops accepting: a kernel
        # launched anew under that id is another object, and the old one is terminated.
        self._to: Any = None

    def __repr__(self) -> str:
        return f"<Route {self.source!r} -> {list(self.targets)}>"

    def offer(self, msg: Any) -> bool:
        """Deliver at once when nothing has to wait; False means nothing was delivered.

        The fast path of a one-target link: a ``reject`` inbox raises ``QueueFullError``
        here, in the sender's body.
        """
        k = self._to
        if k is None or not k.accepting:
            tid = self._single
            if tid is None:
                return False
            k = self._kernels.get(tid)
            if k is None or not k.accepting:
                return False
            self._to = k
        if self._calls:
            return False
        ib = k.inbox
        if type(ib) is Inbox and ib._size < ib.capacity:
            # A host inbox's put_nowait, common case inlined: more of a priority already queued.
            p = getattr(msg, "priority", DEFAULT_PRIORITY)
            bucket: deque[Entry] | None
            if p is DEFAULT_PRIORITY:
                bucket = ib._default
            else:
                bucket = ib._buckets.get(p) if type(p) is int else None
            if bucket:
                n = ib.received = ib.received + 1  # also the arrival sequence
                bucket.append((n, perf_counter_ns() if n & _LAT_PHASE == 1 else 0, msg))
                ib._size += 1
                return True
        return ib.put_nowait(msg) is not None

    async def send(self, msg: Any, timeout: float | None = None) -> None:
        """Deliver ``msg`` to every target, waiting where a ``block`` inbox is full.

        A target's ``QueueFullError`` (``reject``, or a ``block`` wait past ``timeout``) is
        raised once the other targets got the message.
        """
        router = self._router
        if router.calls:
            router.pending.track(msg, self.targets)
        checks = self._checks
        for tid in self.targets:
            t = checks.get(tid)
            if t is not None and not isinstance(msg, t):
                raise router.wrong_type(self.source, tid, t, msg)
        refused: list[QueueFullError] = []
        for tid in self.targets:
            try:
                await router.deliver(tid, msg, timeout, self.source)
            except QueueFullError as e:  # the other targets still get theirs
                refused.append(e)
        if refused:
            raise refused[0]

    async def send_many(self, msgs: list[Any], timeout: float | None = None) -> None:
        """Deliver ``msgs`` in order to every target (one bulk put when they all fit)."""
        tid = self._single
        if tid is not None and not self._router.calls:
            k = self._kernels.get(tid)
            if k is not None and k.accepting:
                prios = [priority_of(m) for m in msgs]
                all_default = min(prios, default=128) == 128 == max(prios, default=128)
                done = k.inbox.put_many_nowait(msgs, None if all_default else prios)
                msgs = msgs[done:]
        for m in msgs:
            if not self.offer(m):
                await self.send(m, timeout)

    async def forward(self, msg: Any) -> None:
        """Deliver a device kernel's reply: a ``reject`` refusal becomes a dead letter."""
        router = self._router
        if router.calls:
            router.pending.track(msg, self.targets)
        for tid in self.targets:
            try:
                await router.deliver(tid, msg, None, self.source)
            except QueueFullError:
                router.dead.add(msg, R.REJECTED, tid, self.source)


class Router:
    """The routing table of one runtime: links, topic subscriptions and pending calls."""

    def __init__(self, kernels: dict[str, Any], dead: DeadLetterQueue, unheard_topics: str) -> None:
        if unheard_topics not in _UNHEARD:
            raise InvalidArgumentError(
                f"unheard_topics={unheard_topics!r}: expected 'ignore' (a publish with no "
                "subscriber is dropped, publish() returns 0) or 'dead_letter' (it is kept "
                "as a dead letter)"
            )
        self.kernels = kernels
        self.dead = dead
        self.unheard_dead = unheard_topics == "dead_letter"
        self.links: dict[str, tuple[str, ...]] = {}
        self.routes: dict[str, Route] = {}
        self.topics: dict[str, list[str | TopicReceiver]] = {}
        self.pending = PendingCalls(kernels)
        self.calls = self.pending.by_id  # empty while no call is pending
        self._forwarders = Forwarders(kernels)

    # ---------------------------------------------------------------- what kernels take
    def _types(self, kernel_id: str, role: str) -> tuple[type | None, type | None]:
        k = self.kernels.get(kernel_id)
        opts = k.options if k is not None else None
        if opts is None and kernel_id in _registry:
            opts = _registry[kernel_id].options
        if opts is None:
            known = ", ".join(sorted(set(self.kernels) | set(_registry))) or "none"
            raise KernelNotFoundError(
                f"no ring kernel {kernel_id!r} to {role} (known: {known}); register it with "
                "@ring_kernel or launch it first"
            )
        return opts.input_type, opts.output_type

    def wrong_type(self, source: str, target: str, t: type, msg: Any) -> MessageTypeError:
        """The error of a routed message the target does not take."""
        return MessageTypeError(
            f"ring kernel {source!r} sent a {type(msg).__name__} to {target!r}, which takes "
            f"{t.__name__} messages; send a {t.__name__}"
        )

    def _check_link(
        self, source: str, target: str, out_t: type | None
    ) -> tuple[type | None, type | None]:
        """Refuse a link whose types cannot match; return (input type, per-message check)."""
        if source == target:
            raise InvalidArgumentError(
                f"cannot link ring kernel {source!r} to itself; loop inside its body instead"
            )
        in_t, _ = self._types(target, "link to")
        if in_t is None or (out_t is not None and issubclass(out_t, in_t)):
            return in_t, None
        if out_t is not None:
            raise MessageTypeError(
                f"cannot link {source!r} -> {target!r}: {source!r} sends {_name(out_t)} "
                f"messages but {target!r} takes {_name(in_t)}; link it to a kernel that "
                f"takes {_name(out_t)}, or convert in a kernel between them"
            )
        return in_t, in_t  # an untyped source: each message is checked on its way

    # ---------------------------------------------------------------- links
    def link(self, source: str, targets: Iterable[str]) -> None:
        """Add links ``source -> target`` (checked first: a refused link changes nothing)."""
        _, out_t = self._types(source, "link from")
        new = [t for t in targets if t not in self.links.get(source, ())]
        for t in new:
            self._check_link(source, t, out_t)
        if new:
            self.links[source] = (*self.links.get(source, ()), *new)
            self._rebuild(source)

    def unlink(self, source: str, target: str | None) -> None:
        """Remove one link of ``source`` (all of them when ``target`` is None)."""
        have = self.links.get(source, ())
        if target is not None and target not in have:
            raise InvalidArgumentError(
                f"ring kernel {source!r} is not linked to {target!r} (its links: "
                f"{list(have) or 'none'}); nothing was unlinked"
            )
        if target is None and not have:
            raise InvalidArgumentError(f"ring kernel {source!r} has no links; nothing was unlinked")
        rest = () if target is None else tuple(t for t in have if t != target)
        if rest:
            self.links[source] = rest
        else:
            self.links.pop(source, None)
        self._rebuild(source)

    def _rebuild(self, source: str) -> None:
        targets = self.links.get(source, ())
        route = None
        if targets:
            _, out_t = self._types(source, "link from")
            checks = {}
            for t in targets:
                _, check = self._check_link(source, t, out_t)
                if check is not None:
                    checks[t] = check
            route = Route(self, source, targets, checks)
            self.routes[source] = route
        else:
            self.routes.pop(source, None)
        k = self.kernels.get(source)
        if k is not None:
            k.route = route
            self._forwarders.update(k)

    def check_launch(self, spec: RingKernelSpec) -> None:
        """Refuse to launch a kernel whose types no longer fit its links (or declared ones)."""
        kid = spec.kernel_id
        opts = spec.options
        for t in (*self.links.get(kid, ()), *opts.outputs_to):
            self._check_target(kid, opts.output_type, t)
        for src, targets in self.links.items():
            if kid in targets and src != kid:
                _, out_t = self._types(src, "link from")
                in_t = opts.input_type
                if in_t is not None and out_t is not None and not issubclass(out_t, in_t):
                    raise MessageTypeError(
                        f"cannot launch {kid!r}: it takes {_name(in_t)} messages but "
                        f"{src!r} is linked to it and sends {_name(out_t)}; unlink "
                        f"{src!r} first or launch a body that takes {_name(out_t)}"
                    )

    def _check_target(self, source: str, out_t: type | None, target: str) -> None:
        in_t, _ = self._types(target, f"link {source!r} (outputs_to) to")
        if in_t is not None and out_t is not None and not issubclass(out_t, in_t):
            raise MessageTypeError(
                f"cannot link {source!r} -> {target!r}: {source!r} sends {_name(out_t)} "
                f"messages but {target!r} takes {_name(in_t)}; link it to a kernel that "
                f"takes {_name(out_t)}, or convert in a kernel between them"
            )

    def attach(self, kernel: Any) -> None:
        """Wire a freshly launched kernel: dead letters, declared links and topics, route."""
        kid = kernel.kernel_id
        kernel.router = self
        kernel.inbox.on_drop = self.dead.hook(kid)
        opts = kernel.options
        if opts.outputs_to:
            self.link(kid, opts.outputs_to)
        for topic in opts.subscribes_to:
            self.subscribe(kid, topic)
        if kid in self.links:
            self._rebuild(kid)
        self._upstreams(kid)

    def _upstreams(self, kid: str) -> None:
        """Device kernels linked to ``kid`` look again whether a device link can serve it."""
        for src, targets in self.links.items():
            k = self.kernels.get(src)
            if kid in targets and k is not None:
                self._forwarders.update(k)

    async def settled(self) -> None:
        """Wait for the device links that link, unlink, launch or relaunch switched."""
        await self._forwarders.settled()

    def resume(self, kernel: Any) -> None:
        """After a relaunch: a linked device kernel's forwarder runs again if it had ended."""
        self._forwarders.update(kernel)
        self._upstreams(kernel.kernel_id)

    # ---------------------------------------------------------------- delivery
    async def deliver(
        self,
        target: str,
        msg: Any,
        timeout: float | None,
        sender: str | None,
        topic: str | None = None,
    ) -> bool:
        """Put ``msg`` into ``target``'s inbox under its backpressure; False if not queued.

        A ``reject`` inbox raises ``QueueFullError`` and a ``block`` one may raise
        ``SendTimeoutError`` (in the sender); a target that does not take messages turns
        ``msg`` into a dead letter.
        """
        k = self.kernels.get(target)
        if k is None or not k.accepting:
            self._undeliverable(target, k, msg, sender, topic)
            return False
        inbox = k.inbox
        r = inbox.put_nowait(msg)
        if r is not None:
            return bool(r)
        try:
            return bool(await inbox.put_wait(msg, timeout))
        except SendTimeoutError:
            raise
        except PyDotComputeError:
            if k.accepting:
                raise
            self._undeliverable(target, k, msg, sender, topic)  # ended while we waited
            return False

    def _undeliverable(
        self, target: str, k: Any, msg: Any, sender: str | None, topic: str | None
    ) -> None:
        if k is None:
            reason = R.NOT_LAUNCHED if target in _registry else R.UNKNOWN_KERNEL
        elif k.state is KernelState.FAILED:
            reason = R.FAILED
        else:
            reason = R.TERMINATED
        self.dead.add(msg, reason, target, sender, topic)

    async def send_to(self, sender: str, target: str, msg: Any, timeout: float | None) -> bool:
        """Route one message from ``sender``'s body to any kernel by id."""
        k = self.kernels.get(target)
        t = k.input_type if k is not None else None
        if t is not None and not isinstance(msg, t):
            raise self.wrong_type(sender, target, t, msg)
        if self.calls:
            self.pending.track(msg, (target,))
        return await self.deliver(target, msg, timeout, sender)

    # ---------------------------------------------------------------- topics
    def subscribe(self, subscriber: str | TopicReceiver, topic: str) -> None:
        """Add a subscriber (a kernel id or a host receiver) to ``topic``."""
        _check_topic(topic)
        if isinstance(subscriber, str):
            self._types(subscriber, "subscribe")
        subs = self.topics.setdefault(topic, [])
        if subscriber not in subs:
            subs.append(subscriber)

    def unsubscribe(self, subscriber: str | TopicReceiver, topic: str) -> None:
        """Remove a subscriber from ``topic``."""
        subs = self.topics.get(topic, [])
        if subscriber not in subs:
            who = subscriber if isinstance(subscriber, str) else "this receiver"
            raise InvalidArgumentError(
                f"{who!r} is not subscribed to topic {topic!r}; nothing was unsubscribed"
            )
        subs.remove(subscriber)
        if not subs:
            del self.topics[topic]

    def close(self) -> None:
        """Close every host topic receiver (the runtime shut down): waiting receives end."""
        for subs in list(self.topics.values()):
            for s in list(subs):
                if isinstance(s, TopicReceiver):
                    s.close()

    def subscriptions(self, kernel_id: str) -> tuple[str, ...]:
        """The topics a kernel is subscribed to."""
        return tuple(t for t, subs in self.topics.items() if kernel_id in subs)

    async def publish(self, topic: str, msg: Any, timeout: float | None, sender: str | None) -> int:
        """Give every subscriber of ``topic`` its own copy; return how many queued one.

        Each subscriber's backpressure applies; a ``reject`` subscriber's refusal is raised
        after the others got theirs.
        """
        _check_topic(topic)
        subs = self.topics.get(topic)
        if not subs:
            if self.unheard_dead:
                self.dead.add(msg, R.NO_SUBSCRIBER, None, sender, topic)
            return 0
        for s in subs:
            if isinstance(s, str):
                k = self.kernels.get(s)
                t = k.input_type if k is not None else None
                if t is not None and not isinstance(msg, t):
                    raise MessageTypeError(
                        f"topic {topic!r}: subscriber {s!r} takes {t.__name__} messages, got "
                        f"a {type(msg).__name__}; publish a {t.__name__} or unsubscribe it"
                    )
        if len(subs) > 1:
            getattr(msg, "message_id", None)  # every copy keeps the same id
        if self.calls:
            self.pending.track(msg, [s for s in subs if isinstance(s, str)])
        queued = 0
        refused: list[QueueFullError] = []
        for i, s in enumerate(list(subs)):
            m = msg if i == 0 else copy.copy(msg)
            try:
                if isinstance(s, str):
                    ok = await self.deliver(s, m, timeout, sender, topic)
                else:
                    ok = await s._put(m, timeout)
            except QueueFullError as e:
                refused.append(e)
                continue
            queued += ok
        if refused:
            raise refused[0]
        return queued


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise InvalidArgumentError(f"topic={topic!r} must be a non-empty str")
