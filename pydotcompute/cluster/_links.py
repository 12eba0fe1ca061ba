"""Links, topics and dead letters of the cluster runtime: across kernel hosts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import KernelStateError
from ..ring._dead_letters import DeadLetter, DeadLetterReason
from ._cluster import SYNC_TIMEOUT, RayCluster, _ray
from ._failures import HostFailures
from ._remote import RemoteKernel
from ._wire import decode, encode

__all__ = ["LinkVerbs"]


class LinkVerbs(HostFailures):
    """Links, topics and dead letters of :class:`~pydotcompute.cluster.ClusterRuntime`."""

    _cluster: RayCluster
    _remote: dict[str, RemoteKernel]
    _xlinks: dict[str, tuple[str, ...]]
    _rtopics: dict[str, list[str]]

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
        for t in targets:
            await self._link_remote(rk, t)
        self._xlinks[source] = tuple(dict.fromkeys((*self._xlinks.get(source, ()), *targets)))

    async def _link_remote(self, rk: RemoteKernel, target: str) -> None:
        trk = self._rk(target)
        assert trk is not None
        other = None if trk.host is rk.host else trk.host.handle
        await self._ask(rk, rk.host.handle.link.remote(rk.kernel_id, target, other))

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
        """Subscribe a kernel (here or on a host) to a topic."""
        if self._rk(kernel_id) is None:
            return await super().subscribe(kernel_id, topic)
        self._bind_loop()
        subs = self._rtopics.setdefault(topic, [])
        if kernel_id not in subs:
            subs.append(kernel_id)
        return None

    async def unsubscribe(self, kernel_id: str, topic: str) -> None:
        """Remove a kernel's subscription to a topic."""
        if self._rk(kernel_id) is None:
            return await super().unsubscribe(kernel_id, topic)
        self._bind_loop()
        subs = self._rtopics.get(topic, [])
        if kernel_id in subs:
            subs.remove(kernel_id)
        return None

    def topics(self) -> dict[str, tuple[str, ...]]:
        """Topics with subscribers, here and on hosts."""
        out = super().topics()
        for topic, subs in self._rtopics.items():
            if subs:
                out[topic] = (*out.get(topic, ()), *subs)
        return out

    async def publish(self, topic: str, msg: Any, *, timeout: float | None = None) -> int:
        """Give every subscriber of ``topic`` a copy: one Ray call per host with subscribers."""
        subs = self._rtopics.get(topic)
        if not subs:
            return await super().publish(topic, msg, timeout=timeout)
        n = await super().publish(topic, msg, timeout=timeout) if topic in super().topics() else 0
        by_host: dict[str, tuple[RemoteKernel, list[str]]] = {}
        for kid in subs:
            rk = self._remote[kid]
            self._typed(rk, msg)
            by_host.setdefault(rk.host.name, (rk, []))[1].append(kid)
        data = encode(msg)
        for rk, kids in by_host.values():
            got = int(await self._ask(rk, rk.host.handle.publish_local.remote(kids, data)))
            n += got
            for kid in kids:
                self._remote[kid].sent += 1
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
