"""The kernel host: a Ray actor process that runs ring kernels in a local runtime.

One host per GPU (device kernels) or per process (host and emulated kernels). The driver's
:class:`~pydotcompute.cluster.ClusterRuntime` calls these methods through Ray; each one runs
the same verb on the host's own :class:`~pydotcompute.RingKernelRuntime`, on the actor's
event loop. Messages arrive as bytes (or a structured array) and are decoded, so validated,
here; errors of the runtime go back as :class:`~pydotcompute.cluster._wire.Raised` records.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from typing import Any

from ..errors import PyDotComputeError
from ..ring._routing import Router
from ..ring._spec import RingKernelSpec
from ..runtime import RingKernelRuntime
from ._host_links import HostLinks, _guard
from ._peers import ClusterRouter, Peers
from ._wire import (
    Raised,
    Restarted,
    decode,
    decode_many,
    encode,
    make_message_classes_picklable,
    register_types,
)
from ._xcalls import XCalls

__all__ = ["KernelHost"]


class KernelHost(HostLinks):
    """A process hosting ring kernels in its own runtime (wrapped by ``ray.remote``)."""

    def __init__(self, name: str, device: str = "auto", cluster: str = "default") -> None:
        make_message_classes_picklable()  # answers carry messages of notebook classes
        self.name = name
        self.rt = RingKernelRuntime(device)
        # Bodies' send_to and publish reach kernels on other hosts too (through the
        # directory); the local paths stay the plain router's.
        self.peers = Peers(cluster, name, self.rt._dead)
        self.rt._routing = ClusterRouter(self.rt._kernels, self.rt._dead, self.peers)
        self.xcalls = XCalls(self)
        self.peers.xcalls = self.xcalls
        self.types: dict[str, tuple[type | None, type | None]] = {}
        # Links to kernels on other hosts: source -> target -> (its host's handle, name),
        # carried by one pump per source (what it sends goes to every target: fan-out).
        self.remote_links: dict[str, dict[str, tuple[Any, str]]] = {}
        self.pumps: dict[str, asyncio.Task[None]] = {}
        import ray

        # Ray restarted this host after its process died: kernels the driver still thinks
        # are here died with that process, and the answer about them must say so. (Ray's
        # property reads its own deprecated ``actor_id`` and warns about it: not ours to fix.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)

    def _gone(self, kernel_id: str) -> Restarted | None:
        if self.restarted and kernel_id not in self.rt.kernels:
            return Restarted(os.getpid())
        return None

    # ---------------------------------------------------------------- where and liveness
    async def where(self) -> dict[str, Any]:
        """Where this host runs: node id and address, process id, GPUs Ray gave it."""
        import ray

        ctx = ray.get_runtime_context()
        return {
            "host": self.name,
            "node_id": ctx.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    async def watch(self) -> None:
        """Never returns: the driver keeps one call pending and learns of a death from it."""
        await asyncio.Event().wait()

    # ---------------------------------------------------------------- lifecycle
    async def launch(self, kernel_id: str, spec: RingKernelSpec, options: dict[str, Any]) -> Any:
        """Launch ``spec`` under ``kernel_id`` in this host's runtime."""
        register_types(spec.options.input_type, spec.options.output_type)
        res = await _guard(self.rt.launch(kernel_id, spec, **options))
        if not isinstance(res, Raised):
            opts = self.rt.options(kernel_id)
            self.types[kernel_id] = (opts.input_type, opts.output_type)
            if self.remote_links.get(kernel_id):  # a link survives terminate and launch
                self._pump(kernel_id)
        return res

    async def activate(self, kernel_id: str) -> Any:
        """Activate a kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.activate(kernel_id))

    async def deactivate(self, kernel_id: str) -> Any:
        """Deactivate a kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.deactivate(kernel_id))

    async def terminate(self, kernel_id: str, timeout: float | None, drain: bool) -> Any:
        """Terminate a kernel here (its pump carries what is left, then stops)."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.terminate(kernel_id, timeout=timeout, drain=drain))

    async def relaunch(
        self, kernel_id: str, spec: RingKernelSpec | None, timeout: float | None
    ) -> Any:
        """Replace a kernel's body here in place (hot redeploy)."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.relaunch(kernel_id, spec, timeout=timeout))

    async def options(self, kernel_id: str) -> Any:
        """The options a kernel here runs with."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            return self.rt.options(kernel_id)
        except PyDotComputeError as exc:
            return Raised.of(exc)

    async def forget(self, kernel_id: str) -> Any:
        """Forget an ended kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            self.rt.forget(kernel_id)
        except PyDotComputeError as exc:
            return Raised.of(exc)
        self.types.pop(kernel_id, None)
        return None

    async def shutdown(self, timeout: float | None) -> Any:
        """Terminate every kernel here."""
        for task in self.pumps.values():
            task.cancel()
        self.pumps.clear()
        self.xcalls.close()
        return await _guard(self.rt.shutdown(timeout=timeout))

    # ---------------------------------------------------------------- messages
    def _in(self, kernel_id: str) -> type | None:
        return self.types.get(kernel_id, (None, None))[0]

    def _out(self, kernel_id: str) -> type | None:
        return self.types.get(kernel_id, (None, None))[1]

    async def send(self, kernel_id: str, data: bytes, timeout: float | None) -> Any:
        """Decode one message and send it to a kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            msg = decode(data, self._in(kernel_id))
        except PyDotComputeError as exc:
            return Raised.of(exc)
        return await _guard(self.rt.send(kernel_id, msg, timeout=timeout))

    async def send_many(self, kernel_id: str, batch: Any, timeout: float | None) -> Any:
        """Decode a batch (bytes, or one structured array) and send it to a kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            msgs = decode_many(batch, self._in(kernel_id))
        except PyDotComputeError as exc:
            return Raised.of(exc)
        return await _guard(self.rt.send_many(kernel_id, msgs, timeout=timeout))

    def _progress(self, kernel_id: str) -> tuple[int, int]:
        """(messages the kernel has processed, replies in its outbox), sent with each answer.

        The driver keeps the last of these to count what a dead host took with it.
        """
        k = self.rt._get(kernel_id)
        metrics = getattr(k, "metrics", None)
        return (getattr(metrics, "processed", 0), len(k.outbox)) if k is not None else (0, 0)

    async def receive(self, kernel_id: str, timeout: float | None) -> Any:
        """The next reply of a kernel here, as bytes, with the kernel's progress."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        got = await _guard(self.rt.receive(kernel_id, timeout=timeout))
        return got if isinstance(got, Raised) else (encode(got), self._progress(kernel_id))

    async def receive_many(
        self, kernel_id: str, max_count: int | None, timeout: float | None, as_array: bool
    ) -> Any:
        """Replies of a kernel here: a structured array, or a list of bytes."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        got = await _guard(
            self.rt.receive_many(kernel_id, max_count, timeout=timeout, as_array=as_array)
        )
        if isinstance(got, Raised):
            return got
        return (got if as_array else [encode(m) for m in got]), self._progress(kernel_id)

    async def call(self, kernel_id: str, data: bytes, timeout: float | None) -> Any:
        """Decode a request, ``call`` a kernel here and return the reply as bytes.

        A kernel linked to kernels on other hosts is answered by the end of its links:
        the call's correlation travels with the messages (``_xcalls.py``).
        """
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            msg = decode(data, self._in(kernel_id))
        except PyDotComputeError as exc:
            return Raised.of(exc)
        if self.remote_links.get(kernel_id):
            got = await _guard(self.xcalls.call(kernel_id, msg, timeout))
            return got if isinstance(got, Raised) else (got, self._progress(kernel_id))
        if (via := self.crossing(kernel_id)) is not None:
            return Raised.of(self.crossing_error(kernel_id, via))
        got = await _guard(self.rt.call(kernel_id, msg, timeout=timeout))
        return got if isinstance(got, Raised) else (encode(got), self._progress(kernel_id))

    async def publish_here(self, topic: str, data: bytes, types: list[type]) -> int:
        """A message the driver published, for this host's subscribers (each its own copy)."""
        register_types(*types)
        return await _guard(Router.publish(self.rt._routing, topic, decode(data, None), None, None))

    async def subscribe(self, kernel_id: str, topic: str) -> Any:
        """Subscribe a kernel here to a topic (the driver records it in the directory)."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.subscribe(kernel_id, topic))

    async def unsubscribe(self, kernel_id: str, topic: str) -> Any:
        """Remove a kernel's subscription here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.unsubscribe(kernel_id, topic))

    # ---------------------------------------------------------------- state and telemetry
    async def state(self, kernel_id: str) -> Any:
        """The state of a kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            return self.rt.state(kernel_id)
        except PyDotComputeError as exc:
            return Raised.of(exc)

    async def telemetry(self, kernel_id: str) -> Any:
        """The telemetry of a kernel here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        try:
            return self.rt.telemetry(kernel_id), self._progress(kernel_id)
        except PyDotComputeError as exc:
            return Raised.of(exc)

    async def snapshot(self) -> dict[str, Any]:
        """Telemetry of every kernel here, and this host's dead-letter count."""
        snap = self.rt.snapshot()
        return {"kernels": snap.kernels, "dead_letters": snap.dead_letters}

    async def dead_letters(self, kernel_id: str | None) -> list[tuple[Any, ...]]:
        """This host's dead letters, each message as its bytes (the codec, not a pickle)."""
        return [
            (
                None if d.message is None else encode(d.message),
                d.reason.value,
                d.kernel_id,
                d.sender,
                d.topic,
                d.time,
            )
            for d in self.rt.dead_letters(kernel_id)
        ]

    async def read_state(self, kernel_id: str) -> Any:
        """A device kernel's state here (a numpy record)."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.read_state(kernel_id))

    async def write_state(self, kernel_id: str, value: Any) -> Any:
        """Set a parked device kernel's state here."""
        if (gone := self._gone(kernel_id)) is not None:
            return gone
        return await _guard(self.rt.write_state(kernel_id, value))
