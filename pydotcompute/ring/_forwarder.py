"""The host side of a device kernel's linked output: a task that moves replies into its route.

A device loop writes its replies to its outbox ring; while its output is linked, a forwarder
task waits on that outbox like a ``receive`` does (so the kernel's pump polls the ring) and
hands each reply to the route, under the target's backpressure: a ``block`` target makes the
forwarder wait, the replies stay in the ring and the device loop waits in turn.

A link between two device kernels of one device is served in device memory instead
(``backends/device/_links.py``): the kernel's ``update_link`` switches its loop to a link ring
and the forwarder then only relays what the outbox held before the switch. ``settled()``
waits for those switches (``runtime.link`` / ``unlink`` return once they are done).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import PyDotComputeError

__all__ = ["Forwarders"]


class _Forwarder:
    __slots__ = ("task", "waiting")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.waiting = False  # waiting for a reply: cancelling it loses nothing


class Forwarders:
    """The forwarder tasks of the linked device kernels of one runtime."""

    __slots__ = ("_kernels", "_switching", "_tasks")

    def __init__(self, kernels: dict[str, Any]) -> None:
        self._kernels = kernels
        self._tasks: dict[str, _Forwarder] = {}
        self._switching: set[asyncio.Task[None]] = set()  # device links being switched

    async def settled(self) -> None:
        """Wait until every device link switch started so far is done (raising its error)."""
        while self._switching:
            await asyncio.gather(*list(self._switching))

    def update(self, k: Any) -> None:
        """Start the forwarder of a linked device kernel, or stop it once unlinked."""
        if k.backend != "device":
            return
        switch = k.update_link(k.route, self._kernels)  # a device link, where it can be one
        if switch is not None:
            self._switching.add(switch)
            switch.add_done_callback(self._switching.discard)
        fwd = self._tasks.get(k.kernel_id)
        if k.route is None:
            if fwd is not None and fwd.waiting and fwd.task is not None:
                fwd.task.cancel()
            return
        if fwd is not None and fwd.task is not None and not fwd.task.done():
            return
        fwd = self._tasks[k.kernel_id] = _Forwarder()
        fwd.task = asyncio.get_running_loop().create_task(
            self._forward(k, fwd), name=f"ring kernel {k.kernel_id} link forwarder"
        )

    def _current(self, k: Any) -> bool:
        """Whether ``k`` is still the kernel running under its id (not a terminated one)."""
        return self._kernels.get(k.kernel_id) is k

    async def _forward(self, k: Any, fwd: _Forwarder) -> None:
        ob = k.outbox
        while k.route is not None and self._current(k):
            if len(ob):
                batch = ob.pop_many(len(ob))
            else:
                try:
                    fut = ob.wait(None, None)
                except PyDotComputeError:
                    return  # the kernel ended: nothing more will come
                fwd.waiting = True
                try:
                    batch = [await fut]
                except PyDotComputeError:
                    return
                except asyncio.CancelledError:
                    ob.abandon(fut)
                    raise
                finally:
                    fwd.waiting = False
            for i, m in enumerate(batch):
                route = k.route
                if route is None:  # unlinked meanwhile: the rest stays receivable
                    for rest in reversed(batch[i:]):
                        ob.unget(rest)
                    return
                await route.forward(m)
