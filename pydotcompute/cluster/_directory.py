"""The directory: a named Ray actor mapping kernel ids to hosts, and topics to subscribers.

Every runtime on the same :class:`~pydotcompute.cluster.RayCluster` name shares it, so a
second driver (another notebook, a service) reaches kernels the first one launched; each
runtime and each kernel host caches what it looked up. Topic subscriptions live here too:
every change is pushed to every kernel host it knows, so a body's ``ctx.publish`` reaches
subscribers on other hosts without asking the directory per message.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Directory"]

Subscriber = tuple[str, str, Any]  # (kernel id, host name, input type)


class Directory:
    """Kernel id -> host, host name -> actor handle, topic -> subscribers (``ray.remote``)."""

    def __init__(self) -> None:
        from ._wire import make_message_classes_picklable

        make_message_classes_picklable()  # the topic table carries notebook classes
        self.entries: dict[str, tuple[str, Any, Any]] = {}
        self.hosts: dict[str, Any] = {}
        self.subs: dict[str, dict[str, str]] = {}  # topic -> kernel id -> host name

    async def put(
        self, kernel_id: str, host: str, input_type: Any, output_type: Any, handle: Any = None
    ) -> None:
        """Record that ``kernel_id`` runs on ``host``; tell that host the topic table."""
        self.entries[kernel_id] = (host, input_type, output_type)
        for subs in self.subs.values():  # relaunched elsewhere: its subscriptions moved too
            if kernel_id in subs:
                subs[kernel_id] = host
        if handle is not None:
            self.hosts[host] = handle
            await self._push([handle])

    async def join(self, host: str, handle: Any) -> None:
        """Register a process that takes messages without a kernel yet (a driver's endpoint)."""
        self.hosts[host] = handle
        await self._push([handle])

    async def leave(self, host: str) -> None:
        """Forget a host and everything placed or subscribed there (a driver that ended)."""
        self.hosts.pop(host, None)
        for kid in [k for k, e in self.entries.items() if e[0] == host]:
            del self.entries[kid]
        for topic, subs in list(self.subs.items()):
            for kid in [k for k, h in subs.items() if h == host]:
                del subs[kid]
            if not subs:
                del self.subs[topic]
        await self._push(list(self.hosts.values()))

    def remove(self, kernel_id: str) -> None:
        """Forget ``kernel_id`` (its subscriptions go with it)."""
        self.entries.pop(kernel_id, None)
        for subs in self.subs.values():
            subs.pop(kernel_id, None)

    def get(self, kernel_id: str) -> tuple[str, Any, Any] | None:
        """Where ``kernel_id`` runs (host name, input type, output type), or ``None``."""
        return self.entries.get(kernel_id)

    def where(self, kernel_id: str) -> tuple[str, Any, Any] | None:
        """Where ``kernel_id`` runs (host name, host handle, input type), or ``None``."""
        entry = self.entries.get(kernel_id)
        if entry is None:
            return None
        return entry[0], self.hosts.get(entry[0]), entry[1]

    def ids(self) -> list[str]:
        """Every kernel id in the directory."""
        return list(self.entries)

    # ---------------------------------------------------------------- topics
    async def subscribe(self, topic: str, kernel_id: str, host: str) -> None:
        """Record a subscription, then push the topic table to every known host."""
        self.subs.setdefault(topic, {})[kernel_id] = host
        await self._push(list(self.hosts.values()))

    async def unsubscribe(self, topic: str, kernel_id: str) -> None:
        """Remove a subscription, then push the topic table to every known host."""
        subs = self.subs.get(topic, {})
        subs.pop(kernel_id, None)
        if not subs:
            self.subs.pop(topic, None)
        await self._push(list(self.hosts.values()))

    def table(self) -> dict[str, list[Subscriber]]:
        """Topic -> its subscribers (kernel id, host name, input type)."""
        return {
            topic: [(kid, host, self.entries.get(kid, (host, None))[1]) for kid, host in s.items()]
            for topic, s in self.subs.items()
            if s
        }

    def everything(self) -> tuple[dict[str, list[Subscriber]], dict[str, Any]]:
        """The topic table and the handles of every known host (what a push carries)."""
        return self.table(), dict(self.hosts)

    def subscribers(self, topic: str) -> tuple[list[Subscriber], dict[str, Any]]:
        """A topic's subscribers and the handles of their hosts."""
        subs = self.table().get(topic, [])
        return subs, {h: self.hosts[h] for _, h, _ in subs if h in self.hosts}

    async def _push(self, handles: list[Any]) -> None:
        table, hosts = self.table(), dict(self.hosts)
        # A dead host's push fails: it learns the table again when a kernel launches there.
        await asyncio.gather(
            *(h.set_topics.remote(table, hosts) for h in handles), return_exceptions=True
        )
