"""The driver's endpoint: how kernel hosts reach kernels and topic receivers in the driver.

A driver is no Ray actor, so hosts cannot call it. Its runtime starts a small actor, the
*endpoint*, registered in the directory like a kernel host: what bodies on hosts send to a
kernel placed ``"driver"`` (``ctx.send_to``) or publish to a topic that the driver listens to
(a kernel placed ``"driver"``, a ``runtime.topic_receiver``) waits there, and one task of the
driver takes it, a batch per Ray call, and delivers it with the local router (the target's
backpressure and dead letters as for any delivery). The directory's topic table reaches the
driver the same way, so ``ctx.publish`` in a kernel placed ``"driver"`` reaches every host.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from ._cluster import SYNC_TIMEOUT
from ._peers import arrive
from ._wire import decode, make_message_classes_picklable, register_types

if TYPE_CHECKING:
    from ._runtime import ClusterRuntime

__all__ = ["DriverEndpoint", "EndpointClient"]

CAPACITY = 8192  # messages waiting for the driver before hosts' hops wait for room


class DriverEndpoint:
    """A driver's mailbox on the cluster (wrapped by ``ray.remote``)."""

    def __init__(self) -> None:
        make_message_classes_picklable()  # the topic table carries notebook classes
        self.entries: deque[tuple[Any, ...]] = deque()
        self.types: set[type] = set()
        self.table: tuple[Any, Any] | None = None
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._wake is None or self._room is None:
            self._wake, self._room = asyncio.Event(), asyncio.Event()
        return self._wake, self._room

    async def deliver_to(self, entries: list[tuple[Any, ...]], types: list[type]) -> list[str]:
        """Keep messages from hosts for the driver; waits while the driver is behind."""
        wake, room = self._events()
        while len(self.entries) >= CAPACITY:
            room.clear()
            await room.wait()
        self.entries.extend(entries)
        self.types.update(types)
        wake.set()
        return []

    async def publish_here(self, topic: str, data: bytes, types: list[type]) -> int:
        """A message another driver published, for this driver's subscribers."""
        await self.deliver_to([(None, None, topic, data)], types)
        return 1

    async def set_topics(self, table: Any, hosts: Any) -> None:
        """The directory's topic table, kept for the driver's next take."""
        self.table = (table, hosts)
        self._events()[0].set()

    async def take(self) -> tuple[Any, list[tuple[Any, ...]], list[type]]:
        """Wait for something for the driver: (topic table or None, messages, their types)."""
        wake, room = self._events()
        while not self.entries and self.table is None:
            wake.clear()
            await wake.wait()
        table, self.table = self.table, None
        entries = list(self.entries)
        self.entries.clear()
        types = list(self.types)
        self.types.clear()
        room.set()
        return table, entries, types

    async def watch(self) -> None:
        """Never returns: a host that sends here learns of a death from it."""
        await asyncio.Event().wait()


class EndpointClient:
    """The driver's side of its endpoint: started on first use, emptied by one task."""

    def __init__(self, runtime: ClusterRuntime) -> None:
        self.runtime = runtime
        self.name: str | None = None
        self.handle: Any = None
        self.task: asyncio.Task[None] | None = None

    def ensure(self) -> tuple[str, Any]:
        """The endpoint's name and handle; the first call starts it and joins the directory."""
        if self.name is None:
            import uuid

            import ray

            rt = self.runtime
            loop = rt._loop or asyncio.get_running_loop()
            handle = ray.remote(DriverEndpoint).options(num_cpus=0, max_concurrency=1000).remote()
            name = f"driver-{uuid.uuid4().hex[:12]}"
            ray.get(rt._cluster.directory.join.remote(name, handle), timeout=SYNC_TIMEOUT)
            self.name, self.handle = name, handle
            rt._peers.me = name
            self.task = loop.create_task(self._pump(handle))
        return self.name, self.handle

    async def _pump(self, handle: Any) -> None:
        import ray

        rt = self.runtime
        router = rt._routing
        while True:
            try:
                table, entries, types = await handle.take.remote()
            except ray.exceptions.RayActorError:
                return  # stopped with the runtime; hosts count what they still send
            if table is not None:
                rt._peers.set_topics(*table)
            register_types(*types)
            for target, sender, topic, data in entries:
                k = rt._kernels.get(target) if target is not None else None
                msg = decode(data, k.input_type if k is not None else None)
                await arrive(router, target, sender, topic, msg)

    def close(self) -> None:
        """Stop the endpoint (the runtime shuts down); the directory forgets it."""
        if self.name is None:
            return
        import ray

        if self.task is not None:
            self.task.cancel()
        directory = self.runtime._cluster._directory
        if directory is not None:
            try:
                ray.get(directory.leave.remote(self.name), timeout=SYNC_TIMEOUT)
            except ray.exceptions.RayActorError:
                pass  # the directory died already: nothing is left there to forget
        ray.kill(self.handle, no_restart=True)
        self.name = self.handle = self.task = None
