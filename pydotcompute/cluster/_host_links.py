"""Messages between kernel hosts: links (the pumps), arrivals from other hosts, call replies.

A mixin of :class:`~pydotcompute.cluster._host.KernelHost`: what another host (or a
driver's endpoint) calls on this one to hand over messages, and the pumps that carry a
source's output to kernels on other hosts, a batch per Ray call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import KernelStateError, PyDotComputeError, QueueFullError
from ..ring._dead_letters import DeadLetterReason
from ..runtime import RingKernelRuntime
from ._peers import Peers, arrive
from ._wire import Raised, decode, decode_many, encode_many, register_types
from ._xcalls import XCalls

__all__ = ["HostLinks"]


async def _guard(aw: Any) -> Any:
    """Await ``aw``; a ``PyDotComputeError`` comes back as a record to raise in the driver."""
    try:
        return await aw
    except PyDotComputeError as exc:
        return Raised.of(exc)


class HostLinks:
    """Links and arrivals of a kernel host (a base of ``KernelHost``)."""

    name: str
    rt: RingKernelRuntime
    peers: Peers
    xcalls: XCalls
    remote_links: dict[str, dict[str, tuple[Any, str]]]
    pumps: dict[str, asyncio.Task[None]]

    if TYPE_CHECKING:  # provided by KernelHost

        def _in(self, kernel_id: str) -> type | None: ...

        def _out(self, kernel_id: str) -> type | None: ...

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
        for target, sender, topic, data in entries:
            msg = decode(data, self._in(target) if target is not None else None)
            if target is not None and target not in self.rt.kernels:
                unknown.append(target)
            await arrive(router, target, sender, topic, msg)
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
                    if isinstance(exc, ray.exceptions.RayTaskError):
                        raise  # the far host failed the call itself: a bug there, not a death
                    self.peers.host_gone(name, exc)


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
