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
from collections.abc import Awaitable
from typing import Any

from ..errors import KernelStateError, PyDotComputeError, QueueFullError
from ..ring._dead_letters import DeadLetterReason
from ..ring._routing import Router
from ..ring._spec import RingKernelSpec
from ..runtime import RingKernelRuntime
from ._peers import ClusterRouter, Peers, arrive
from ._wire import (
    Raised,
    Restarted,
    decode,
    decode_many,
    encode,
    encode_many,
    make_message_classes_picklable,
    register_types,
)
from ._xcalls import XCalls

__all__ = ["KernelHost"]


async def _guard(aw: Awaitable[Any]) -> Any:
    """Await ``aw``; a ``PyDotComputeError`` comes back as a record to raise in the driver."""
    try:
        return await aw
    except PyDotComputeError as exc:
        return Raised.of(exc)


class KernelHost:
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

    async def deliver(
        self,
        kernel_id: str,
        batch: Any,
        sender: str,
        batch_type: type | None = None,
        tags: list[tuple[int, Any]] | None = None,
    ) -> int:
        """A batch over a link from another host: what cannot be queued becomes dead letters.

        ``batch_type`` is the sender's output type: it gives an array batch its messages back
        when the target is not (or no longer) here to say its own type. ``tags`` marks the
        messages that continue a cross-host ``call`` (index in the batch, the call's tag).
        """
        t = self._in(kernel_id) or batch_type
        register_types(batch_type)
        msgs = decode_many(batch, t)
        if isinstance(msgs, list) and not msgs:
            return 0
        calls: list[tuple[int, Any]] = []
        if tags:
            msgs = _as_list(msgs, t)
            for i, tag in tags:
                xc = self.xcalls.entering(tag)
                self.xcalls.enter(kernel_id, msgs[i], xc)
                calls.append((i, xc))
        try:
            return int(await self.rt.send_many(kernel_id, msgs))
        except PyDotComputeError as exc:
            msgs = _as_list(msgs, t)
            queued = getattr(exc, "queued", 0)
            reason = _reason(self.rt, kernel_id, exc)
            for m in msgs[queued:]:
                self.rt._dead.add(m, reason, kernel_id, sender)
            for i, xc in calls:
                if i >= queued:
                    self.xcalls.undelivered(xc, kernel_id, reason.value)
            return queued

    async def deliver_to(self, entries: list[tuple[Any, ...]], types: list[type]) -> list[str]:
        """Messages from bodies on another host (``send_to``, ``publish``), in order.

        Each target's backpressure applies (``block`` waits here, so the sending hop waits);
        what cannot be queued becomes a dead letter here with its reason. Returns the target
        ids that do not run here (the sender looks them up again).
        """
        register_types(*types)
        router = self.rt._routing
        unknown: list[str] = []
        for target, sender, topic, data, tag in entries:
            msg = decode(data, self._in(target) if target is not None else None)
            xc = None
            if target is not None:
                if target not in self.rt.kernels:
                    unknown.append(target)
                if tag is not None:
                    xc = self.xcalls.entering(tag)
                    self.xcalls.enter(target, msg, xc)
            ok = await arrive(router, target, sender, topic, msg)
            if not ok and xc is not None and target is not None:
                self.xcalls.undelivered(xc, target, _reason(self.rt, target).value)
        return unknown

    async def set_topics(
        self, table: dict[str, list[tuple[str, str, Any]]], hosts: dict[str, Any]
    ) -> None:
        """The directory's topic table, pushed on every change (what bodies publish to)."""
        for subs in table.values():
            register_types(*(t for _, _, t in subs))
        self.peers.set_topics(table, hosts)

    async def call_reply(self, call_id: Any, data: bytes | None, raised: Raised | None) -> None:
        """The answer to a cross-host call made here, from the host at the links' end."""
        self.xcalls.reply(call_id, data, raised)

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

    # ---------------------------------------------------------------- links
    async def link(self, source: str, target: str, target_host: Any, host_name: str = "?") -> Any:
        """Link ``source`` here to ``target``: in this runtime, or over Ray to its host.

        One source's links are all in this process or all to other hosts: a body's output
        goes either into its local route or into its outbox, which the pump drains.
        """
        local = self.rt.links().get(source, ())
        remote = self.remote_links.get(source, {})
        if (target_host is None and remote) or (target_host is not None and local):
            return Raised.of(
                KernelStateError(
                    f"link({source!r}, {target!r}): {source!r} is linked to "
                    f"{sorted(remote or local)} on {'other hosts' if remote else 'its own host'}"
                    f", and one kernel's links are all on its own host or all on other hosts; "
                    "place the targets together, or link through a kernel between them"
                )
            )
        if target_host is None:
            return await _guard(self.rt.link(source, target))
        self.remote_links.setdefault(source, {})[target] = (target_host, host_name)
        if source in self.rt.kernels:
            self._pump(source)
        return None

    def crossing(self, kernel_id: str) -> str | None:
        """The kernel, reached over links in this process, whose links leave this host."""
        links = self.rt.links()
        seen = {kernel_id}
        todo = list(links.get(kernel_id, ()))
        while todo:
            kid = todo.pop()
            if kid in seen:
                continue
            seen.add(kid)
            if self.remote_links.get(kid):
                return kid
            todo.extend(links.get(kid, ()))
        return None

    def crossing_error(self, kernel_id: str, via: str) -> KernelStateError:
        """Why ``call`` does not follow links that leave this host after in-process ones."""
        return KernelStateError(
            f"call({kernel_id!r}): its links in this host lead to {via!r}, whose links go to "
            "other hosts; call follows links in one host, or links that leave the host from "
            f"the called kernel on; call {via!r} itself, or place {via!r}'s targets on this host"
        )

    def _pump(self, source: str) -> None:
        task = self.pumps.get(source)
        if task is None or task.done():
            self.pumps[source] = asyncio.get_running_loop().create_task(self._forward(source))

    async def unlink(self, source: str, target: str | None) -> Any:
        """Remove links of ``source`` (to ``target`` only, if given)."""
        remote = self.remote_links.get(source, {})
        gone = [t for t in remote if target in (None, t)]
        for t in gone:
            del remote[t]
        if not remote:
            self.remote_links.pop(source, None)
            # Cancelled while waiting, it puts back what it took; a batch already on its way
            # still arrives (the Ray call goes on).
            task = self.pumps.pop(source, None)
            if task is not None:
                task.cancel()
        local = self.rt.links().get(source, ())
        if (target is None and local) or target in local or not gone:
            # in this runtime, or neither here nor across hosts: its own error says so
            return await _guard(self.rt.unlink(source, target))
        return None

    async def _forward(self, source: str) -> None:
        """Carry ``source``'s output to its targets' hosts, many messages per Ray call.

        While one batch is in flight the next one gathers in the outbox, so a busy link
        sends large batches and an idle one sends each message at once. Every target gets
        every batch (fan-out); messages that continue a pending cross-host ``call`` travel
        with its tag.
        """
        import ray

        from ..messages import fixed_layout

        out_t = self._out(source)
        layout = fixed_layout(out_t) if out_t is not None else None
        xcalls = self.xcalls
        while True:
            try:
                got = await self.rt.receive_many(source, as_array=layout is not None)
            except PyDotComputeError:
                return  # the source ended or failed: its own state and verbs say so
            targets = list(self.remote_links.get(source, {}).items())
            calls = []
            if xcalls.by_id:
                for i, m in enumerate(_as_list(got, out_t)):
                    xc = xcalls.of(m)
                    if xc is not None:
                        calls.append((i, xc))
            tags = [(i, xcalls.tag(xc)) for i, xc in calls] or None
            batch = got if layout is not None else encode_many(got, out_t)
            sent = []
            for target, (handle, name) in targets:
                for _, xc in calls:
                    xcalls.hopped(xc, name, handle)
                ref = handle.deliver.remote(target, batch, source, out_t, tags)
                sent.append((target, name, ref))
            for target, name, ref in sent:
                try:
                    await ref
                except ray.exceptions.RayError as exc:
                    # The target's host died with the batch on its way: never lost silently.
                    for m in _as_list(got, out_t):
                        self.rt._dead.add(m, DeadLetterReason.FAILED, target, source)
                    self.peers.host_gone(name, exc)

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


def _reason(
    rt: RingKernelRuntime, kernel_id: str, exc: BaseException | None = None
) -> DeadLetterReason:
    """Why a delivery from another host failed: a full 'reject' inbox, or the target's state."""
    try:
        state = rt.state(kernel_id).value
    except PyDotComputeError:
        return DeadLetterReason.UNKNOWN_KERNEL
    if isinstance(exc, QueueFullError) and state in ("ACTIVE", "LAUNCHED", "DEACTIVATED"):
        return DeadLetterReason.REJECTED
    if state == "FAILED":
        return DeadLetterReason.FAILED
    if state == "CREATED":
        return DeadLetterReason.NOT_LAUNCHED
    return DeadLetterReason.TERMINATED


def _as_list(msgs: Any, t: type | None) -> list[Any]:
    """A batch as a list of messages (a structured array through its type's layout)."""
    if isinstance(msgs, list):
        return msgs
    from ..messages import fixed_layout

    layout = fixed_layout(t) if t is not None else None
    return list(layout.from_array(msgs)) if layout is not None else list(msgs)
