"""Links, topics and dead letters of the cluster runtime: across kernel hosts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import KernelStateError, MessageTypeError, PyDotComputeError
from ..ring._dead_letters import DeadLetter, DeadLetterReason
from ..ring._routing import _check_topic
from ..ring._topics import TopicReceiver
from ._cluster import SYNC_TIMEOUT, RayCluster, _ray
from ._endpoint import EndpointClient
from ._failures import HostFailures
from ._peers import Peers
from ._remote import RemoteKernel
from ._wire import Raised, decode, encode

__all__ = ["LinkVerbs"]


class LinkVerbs(HostFailures):
    """Links, topics and dead letters of :class:`~pydotcompute.cluster.ClusterRuntime`."""

    _cluster: RayCluster
    _remote: dict[str, RemoteKernel]
    _endpoint: EndpointClient
    _peers: Peers
    _xlinks: dict[str, tuple[str, ...]]

    if TYPE_CHECKING:  # provided by ClusterRuntime

        def _rk(self, kernel_id: Any) -> RemoteKernel | None: ...

        def _alive(self, rk: RemoteKernel) -> None: ...

        async def _ask(self, rk: RemoteKernel, ref: Any) -> Any: ...

        def _typed(self, rk: RemoteKernel, msg: Any) -> bytes: ...

    async def link(self, source: str, target: str | Iterable[str]) -> None:
        """Link ``source``'s output to targets; across hosts, batches travel per Ray call."""
        targets = (target,) if isinstance(target, str) else tuple(target)
        rk = self._rk(source)
        remote = [t for t in targets if isinstance(t, str) and self._rk(t) is not None]
        if rk is None and not remote:
            return await super().link(source, targets)
        self._bind_loop()
        if rk is None or len(remote) != len(targets):
            raise KernelStateError(
                f"link({source!r}, {targets!r}): a kernel placed in the driver and one on a "
                "kernel host cannot be linked; place both on hosts (or both with "
                "placement='driver')"
            )
        self._alive(rk)
        everyone = (*self._xlinks.get(source, ()), *targets)
        together = {getattr(self._rk(t), "host", None) is rk.host for t in everyone}
        if len(together) > 1:
            raise KernelStateError(
                f"link({source!r}, {targets!r}): one kernel's links are all on its own host "
                "or all on other hosts (a body's output goes either into its local route or "
                "to its host's pump); place the targets together, or link through a kernel "
                "between them"
            )
        for t in targets:
            await self._link_remote(rk, t)
        self._xlinks[source] = tuple(dict.fromkeys((*self._xlinks.get(source, ()), *targets)))

    async def _link_remote(self, rk: RemoteKernel, target: str) -> None:
        trk = self._rk(target)
        assert trk is not None
        other = None if trk.host is rk.host else trk.host.handle
        await self._ask(rk, rk.host.handle.link.remote(rk.kernel_id, target, other, trk.host.name))

    async def unlink(self, source: str, target: str | None = None) -> None:
        """Remove the link ``source -> target`` (every link of ``source`` without target)."""
        rk = self._rk(source)
        if rk is None:
            return await super().unlink(source, target)
        self._bind_loop()
        await self._ask(rk, rk.host.handle.unlink.remote(source, target))
        left = tuple(t for t in self._xlinks.get(source, ()) if target not in (None, t))
        self._xlinks[source] = left
        return None

    def links(self) -> dict[str, tuple[str, ...]]:
        """The links of this runtime, in this process and between hosts."""
        return {**super().links(), **{s: t for s, t in self._xlinks.items() if t}}

    async def subscribe(self, kernel_id: str, topic: str) -> None:
        """Subscribe a kernel (here or on a host) to a topic, for publishers on every host.

        A kernel on a host is subscribed there and in the directory, which tells every host:
        once this returns, ``publish`` and ``ctx.publish`` from anywhere reach it.
        """
        rk = self._rk(kernel_id)
        if rk is None:
            await super().subscribe(kernel_id, topic)
            # Publishers on hosts reach it through this driver's endpoint.
            name, _ = self._endpoint.ensure()
            await self._cluster.directory.subscribe.remote(topic, kernel_id, name)
            return None
        self._bind_loop()
        _check_topic(topic)
        self._alive(rk)
        await self._ask(rk, rk.host.handle.subscribe.remote(kernel_id, topic))
        await self._cluster.directory.subscribe.remote(topic, kernel_id, rk.host.name)
        await self._refresh_topics()
        return None

    async def _refresh_topics(self) -> None:
        """This process's copy of the topic table, now (its endpoint's push may still travel).

        Kernels placed here then publish to a subscription made by this runtime as soon as
        its verb returned, as on the hosts.
        """
        if self._endpoint.name is not None:
            self._peers.set_topics(*(await self._cluster.directory.everything.remote()))

    async def unsubscribe(self, kernel_id: str, topic: str) -> None:
        """Remove a kernel's subscription to a topic (on its host and in the directory)."""
        rk = self._rk(kernel_id)
        if rk is None:
            await super().unsubscribe(kernel_id, topic)
            if self._endpoint.name is not None:
                await self._cluster.directory.unsubscribe.remote(topic, kernel_id)
            return None
        self._bind_loop()
        self._alive(rk)
        await self._ask(rk, rk.host.handle.unsubscribe.remote(kernel_id, topic))
        await self._cluster.directory.unsubscribe.remote(topic, kernel_id)
        await self._refresh_topics()
        return None

    def topics(self) -> dict[str, tuple[str, ...]]:
        """Topics with subscribers: in this process, and on every host (the directory's)."""
        out = super().topics()
        if self._closed:
            return out
        table = _ray().get(self._cluster.directory.table.remote(), timeout=SYNC_TIMEOUT)
        me = self._endpoint.name
        for topic, subs in table.items():
            there = tuple(kid for kid, host, _ in subs if host != me)  # mine are listed above
            if there:
                out[topic] = (*out.get(topic, ()), *there)
        return out

    def topic_receiver(
        self, topic: str, *, capacity: int = 1024, backpressure: str = "drop_oldest"
    ) -> TopicReceiver:
        """Subscribe this process to a topic: it hears publishes from every host too.

        As :meth:`RingKernelRuntime.topic_receiver`; bodies on kernel hosts reach it through
        this driver's endpoint (one Ray call per batch). ``receiver.close()`` unsubscribes.
        """
        rx = super().topic_receiver(topic, capacity=capacity, backpressure=backpressure)
        name, _ = self._endpoint.ensure()
        receiver_id = f"<receiver@{name}>"
        directory = self._cluster.directory
        _ray().get(directory.subscribe.remote(topic, receiver_id, name), timeout=SYNC_TIMEOUT)
        unsubscribe_here = rx._unsubscribe

        def unsubscribe(r: TopicReceiver) -> None:
            unsubscribe_here(r)
            subs = self._routing.topics.get(topic, ())
            if not any(isinstance(s, TopicReceiver) for s in subs) and not self._closed:
                directory.unsubscribe.remote(topic, receiver_id)  # the last one here left

        rx._unsubscribe = unsubscribe
        return rx

    async def publish(self, topic: str, msg: Any, *, timeout: float | None = None) -> int:
        """Give every subscriber of ``topic`` a copy: one Ray call per host with subscribers.

        Returns how many subscribers queued it, here and on the hosts. A subscriber of
        another type is refused before anything is delivered; a ``reject`` subscriber's
        ``QueueFullError`` is raised after the others got theirs, as in one process.
        """
        self._bind_loop()
        _check_topic(topic)
        subs, hosts = await self._cluster.directory.subscribers.remote(topic)
        if not subs:
            return await super().publish(topic, msg, timeout=timeout)
        for kid, _, t in subs:
            if t is not None and not isinstance(msg, t):
                raise MessageTypeError(
                    f"topic {topic!r}: subscriber {kid!r} takes {t.__name__} messages, got "
                    f"a {type(msg).__name__}; publish a {t.__name__} or unsubscribe it"
                )
        here = topic in self._routing.topics
        n = await super().publish(topic, msg, timeout=timeout) if here else 0
        names = [h for h in hosts if h != self._endpoint.name]  # this process: done above
        if not names:
            return n
        data = encode(msg)
        ray = _ray()
        got = await asyncio.gather(
            *(hosts[h].publish_here.remote(topic, data, [type(msg)]) for h in names),
            return_exceptions=True,
        )
        refused: PyDotComputeError | None = None
        for name, res in zip(names, got, strict=True):
            if isinstance(res, ray.exceptions.RayActorError):
                # Its host died: each copy for a subscriber there is a counted dead letter.
                for kid, h, _ in subs:
                    if h == name:
                        self._dead.add(msg, DeadLetterReason.FAILED, kid, None, topic)
                continue
            if isinstance(res, BaseException):
                raise res
            if type(res) is Raised:
                refused = refused or res.error()
                continue
            n += int(res)
            for kid, h, _ in subs:
                if h == name and kid in self._remote:
                    self._remote[kid].sent += 1
        if refused is not None:
            raise refused
        return n

    def dead_letters(self, kernel_id: str | None = None) -> list[DeadLetter]:
        """Dead letters of this process and of every live host, oldest first.

        Messages lost with a dead host are letters with reason ``failed`` and
        ``message=None`` (their content died with the host); they are counted in the
        kernel's telemetry (``dead_letters``, ``extra["lost"]``).
        """
        ray = _ray()
        letters = list(super().dead_letters(kernel_id))
        refs = [h.handle.dead_letters.remote(kernel_id) for h in self._cluster.hosts.values()]
        for ref in refs:
            try:
                got = ray.get(ref, timeout=SYNC_TIMEOUT)
            except ray.exceptions.RayActorError:
                continue  # a dead host's letters died with it; counted as lost above
            for data, reason, kid, sender, topic, when in got:
                rk = self._remote.get(kid) if kid is not None else None
                msg = None if data is None else decode(data, rk.input_type if rk else None)
                letters.append(DeadLetter(msg, DeadLetterReason(reason), kid, sender, topic, when))
        return sorted(letters, key=lambda d: d.time)
