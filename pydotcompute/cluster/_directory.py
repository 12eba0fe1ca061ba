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
PUSH_WAIT = 10.0  # seconds the directory waits for hosts to take a new topic table


class Directory:
    """Kernel id -> host, host name -> actor handle, topic -> subscribers (``ray.remote``)."""

    def __init__(self) -> None:
        from ._wire import make_message_classes_picklable

        make_message_classes_picklable()  # the topic table carries notebook classes
        self.entries: dict[str, tuple[str, Any, Any]] = {}
        self.hosts: dict[str, Any] = {}
        self.subs: dict[str, dict[str, str]] = {}  # topic -> kernel id -> host name
        # A change and its push to the hosts are one step: a reader of the table (a driver's
        # publish or topics()) sees a change only once every host was told of it.
        self._lock: asyncio.Lock | None = None

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def put(
        self, kernel_id: str, host: str, input_type: Any, output_type: Any, handle: Any = None
    ) -> None:
        """Record that ``kernel_id`` runs on ``host``; tell that host the topic table."""
        async with self._locked():
            self.entries[kernel_id] = (host, input_type, output_type)
            moved = False
            for subs in self.subs.values():  # relaunched elsewhere: its subscriptions moved
                if subs.get(kernel_id, host) != host:
                    subs[kernel_id] = host
                    moved = True
            if handle is not None:
                self.hosts[host] = handle
            if moved:
                await self._push(list(self.hosts.values()))
            elif handle is not None:
                await self._push([handle])

    async def join(self, host: str, handle: Any) -> None:
        """Register a process that takes messages without a kernel yet (a driver's endpoint)."""
        async with self._locked():
            self.hosts[host] = handle
            await self._push([handle])

    async def leave(self, host: str) -> None:
        """Forget a host and everything placed or subscribed there (a driver that ended)."""
        async with self._locked():
            self.hosts.pop(host, None)
            for kid in [k for k, e in self.entries.items() if e[0] == host]:
                del self.entries[kid]
            for topic, subs in list(self.subs.items()):
                for kid in [k for k, h in subs.items() if h == host]:
                    del subs[kid]
                if not subs:
                    del self.subs[topic]
            await self._push(list(self.hosts.values()))

    async def remove(self, kernel_id: str) -> None:
        """Forget ``kernel_id``; its subscriptions go with it (and every host is told)."""
        async with self._locked():
            self.entries.pop(kernel_id, None)
            changed = False
            for topic, subs in list(self.subs.items()):
                if subs.pop(kernel_id, None) is not None:
                    changed = True
                    if not subs:
                        del self.subs[topic]
            if changed:
                await self._push(list(self.hosts.values()))

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
        async with self._locked():
            self.subs.setdefault(topic, {})[kernel_id] = host
            await self._push(list(self.hosts.values()))

    async def unsubscribe(self, topic: str, kernel_id: str) -> None:
        """Remove a subscription, then push the topic table to every known host."""
        async with self._locked():
            subs = self.subs.get(topic, {})
            subs.pop(kernel_id, None)
            if not subs:
                self.subs.pop(topic, None)
            await self._push(list(self.hosts.values()))

    async def table(self) -> dict[str, list[Subscriber]]:
        """Topic -> its subscribers (kernel id, host name, input type), as every host knows it."""
        async with self._locked():
            return self._table()

    def _table(self) -> dict[str, list[Subscriber]]:
        return {
            topic: [(kid, host, self.entries.get(kid, (host, None))[1]) for kid, host in s.items()]
            for topic, s in self.subs.items()
            if s
        }

    async def everything(self) -> tuple[dict[str, list[Subscriber]], dict[str, Any]]:
        """The topic table and the handles of every known host (what a push carries)."""
        async with self._locked():
            return self._table(), dict(self.hosts)

    async def subscribers(self, topic: str) -> tuple[list[Subscriber], dict[str, Any]]:
        """A topic's subscribers and the handles of their hosts."""
        async with self._locked():
            subs = self._table().get(topic, [])
            return subs, {h: self.hosts[h] for _, h, _ in subs if h in self.hosts}

    async def _push(self, handles: list[Any]) -> None:
        table, hosts = self._table(), dict(self.hosts)
        pushes = [asyncio.ensure_future(h.set_topics.remote(table, hosts)) for h in handles]
        if not pushes:
            return
        for fut in pushes:  # a failed push is expected of a dead host: its error is read here
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        # A dead host's push fails, and one being restarted by Ray may take long: neither
        # holds the directory up for more than PUSH_WAIT s. Such a host learns the table
        # again when a kernel is launched on it.
        await asyncio.wait(pushes, timeout=PUSH_WAIT)
