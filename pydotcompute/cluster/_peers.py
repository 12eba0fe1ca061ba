"""``ctx.send_to`` and ``ctx.publish`` across kernel hosts: the router of a kernel host.

A kernel host's runtime routes with a :class:`ClusterRouter`: a kernel id that is not in
this process is looked up in the directory (and cached), and the message goes to that
kernel's host over a :class:`Hop`, one Ray call per batch; a topic's subscribers on other
hosts (the directory pushes the topic table to every host) get theirs the same way. The
local paths (a target in this process, a topic with only local subscribers) are the plain
:class:`~pydotcompute.ring._routing.Router`'s, untouched.

A message sent to another host is handed to the hop, and ``send_to`` returns ``True``: it
is queued there or becomes a dead letter there, with its reason (the target's ``reject``
policy refusing it is reason ``rejected``). Nothing waits for the far inbox except through
the hop's bounded queue: when the far host cannot keep up (a ``block`` inbox that stays
full), the queue fills and senders wait for room.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import QueueFullError, SendTimeoutError
from ..ring._dead_letters import DeadLetterQueue, DeadLetterReason
from ..ring._routing import Router, _check_topic
from ._wire import encode

if TYPE_CHECKING:
    from ._xcalls import XCalls

__all__ = ["HOP_CAPACITY", "ClusterRouter", "Hop", "Out", "Peers", "arrive"]

HOP_CAPACITY = 8192  # messages waiting for one hop before senders wait for room
HOP_BATCH = 4096  # the most messages one Ray call carries


class Out(NamedTuple):
    """One message on its way to another host: to a kernel, or to a topic's subscribers."""

    target: str | None
    sender: str | None
    topic: str | None
    data: bytes
    msg: Any


class Hop:
    """Messages from this process to one other kernel host, many per Ray call.

    While one batch is in flight the next gathers, so a busy hop sends large batches and an
    idle one sends each message at once. Order is kept per hop.
    """

    def __init__(self, peers: Peers, name: str, handle: Any) -> None:
        self.peers = peers
        self.name = name
        self.handle = handle
        self.queue: deque[Out] = deque()
        self.room: deque[asyncio.Future[None]] = deque()
        self.task: asyncio.Task[None] | None = None

    async def put(self, out: Out, timeout: float | None) -> None:
        """Queue ``out`` for this hop, waiting (up to ``timeout``) while the hop is full."""
        while len(self.queue) >= HOP_CAPACITY:
            fut = asyncio.get_running_loop().create_future()
            self.room.append(fut)
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except TimeoutError:
                raise SendTimeoutError(
                    f"the hop to kernel host {self.name!r} stayed full ({HOP_CAPACITY} messages) "
                    f"for {timeout} s: the kernels there do not keep up (a 'block' inbox that "
                    "stays full); send less, or raise their queue_size"
                ) from None
        self.queue.append(out)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        import ray

        q = self.queue
        while q:
            batch = [q.popleft() for _ in range(min(len(q), HOP_BATCH))]
            while self.room and len(q) < HOP_CAPACITY:
                fut = self.room.popleft()
                if not fut.done():
                    fut.set_result(None)
            entries = [(o.target, o.sender, o.topic, o.data) for o in batch]
            types = list({type(o.msg) for o in batch})
            try:
                unknown = await self.handle.deliver_to.remote(entries, types)
            except ray.exceptions.RayError as exc:
                # The far host died with the batch on its way: never lost silently.
                for o in batch:
                    self.peers.dead.add(o.msg, DeadLetterReason.FAILED, o.target, o.sender, o.topic)
                if isinstance(exc, ray.exceptions.RayTaskError):
                    raise  # the far host failed the call itself: a bug there, not a death
                self.peers.host_gone(self.name, exc)
                continue
            for kid in unknown:  # moved or forgotten: look it up again next time
                self.peers.where.pop(kid, None)


class Peers:
    """What one process knows of the kernel hosts: where kernels run, topics, hops."""

    def __init__(self, cluster: str, me: str | None, dead: DeadLetterQueue) -> None:
        self.cluster = cluster
        self.me = me
        self.dead = dead
        self.where: dict[str, tuple[str, Any, Any]] = {}  # kernel id -> (host, handle, in type)
        self.topics: dict[str, list[tuple[str, str, Any]]] = {}  # pushed by the directory
        self.hosts: dict[str, Any] = {}
        self.hops: dict[str, Hop] = {}
        self.xcalls: XCalls | None = None
        self._directory: Any = None

    @property
    def directory(self) -> Any:
        """The cluster's directory actor."""
        if self._directory is None:
            import ray

            self._directory = ray.get_actor(f"pydotcompute.directory.{self.cluster}")
        return self._directory

    async def lookup(self, kernel_id: str) -> tuple[str, Any, Any] | None:
        """Where ``kernel_id`` runs (host name, handle, input type), cached; ``None``: nowhere."""
        got = self.where.get(kernel_id)
        if got is None:
            try:
                directory = self.directory
            except ValueError:  # no directory yet: no kernel runs on a host
                return None
            got = await directory.where.remote(kernel_id)
            if got is None or got[1] is None:
                return None
            self.where[kernel_id] = got
        return got

    def set_topics(
        self, table: dict[str, list[tuple[str, str, Any]]], hosts: dict[str, Any]
    ) -> None:
        """The directory's topic table (what ``publish`` needs, pushed on every change)."""
        self.topics = table
        self.hosts.update(hosts)

    def remote_subscribers(self, topic: str) -> list[tuple[str, str, Any]]:
        """The subscribers of ``topic`` on other hosts than this one."""
        subs = self.topics.get(topic)
        return [s for s in subs if s[1] != self.me] if subs else []

    def hop(self, name: str, handle: Any = None) -> Hop:
        """The hop to the host ``name`` (made on first use)."""
        hop = self.hops.get(name)
        if hop is None:
            hop = self.hops[name] = Hop(self, name, handle or self.hosts[name])
        return hop

    def host_gone(self, name: str, exc: BaseException) -> None:
        """A host died: forget where its kernels were; calls that went there end with why."""
        for kid in [k for k, w in self.where.items() if w[0] == name]:
            del self.where[kid]
        self.hops.pop(name, None)
        if self.xcalls is not None:
            self.xcalls.host_died(name, exc)


class ClusterRouter(Router):
    """A :class:`Router` whose ``send_to`` and ``publish`` also reach other kernel hosts."""

    def __init__(
        self, kernels: dict[str, Any], dead: DeadLetterQueue, peers: Peers, unheard: str = "ignore"
    ) -> None:
        super().__init__(kernels, dead, unheard)
        self.peers = peers

    async def send_to(self, sender: str, target: str, msg: Any, timeout: float | None) -> bool:
        """Route one message by id: here as the plain router does, else to its host."""
        if target in self.kernels or not isinstance(target, str):
            return await super().send_to(sender, target, msg, timeout)
        where = await self.peers.lookup(target)
        if where is None or where[0] == self.peers.me:
            return await super().send_to(sender, target, msg, timeout)  # a dead letter here
        name, handle, in_t = where
        if in_t is not None and not isinstance(msg, in_t):
            raise self.wrong_type(sender, target, in_t, msg)
        await self.peers.hop(name, handle).put(Out(target, sender, None, encode(msg), msg), timeout)
        return True

    async def publish(self, topic: str, msg: Any, timeout: float | None, sender: str | None) -> int:
        """Publish here as the plain router does, and to subscribers on other hosts.

        Copies for other hosts count as queued once handed to their hop; one their host
        cannot queue becomes a dead letter there. A subscriber of another type is refused
        before anything is delivered.
        """
        _check_topic(topic)
        remote = self.peers.remote_subscribers(topic)
        if not remote:
            return await super().publish(topic, msg, timeout, sender)
        for kid, _, t in remote:
            if t is not None and not isinstance(msg, t):
                raise self.wrong_type(sender or "<host>", kid, t, msg)
        n = await super().publish(topic, msg, timeout, sender) if self.topics.get(topic) else 0
        data = encode(msg)
        for name in dict.fromkeys(host for _, host, _ in remote):
            await self.peers.hop(name).put(Out(None, sender, topic, data, msg), timeout)
        return n + len(remote)


async def arrive(
    router: Router, target: str | None, sender: str | None, topic: str | None, msg: Any
) -> bool:
    """Deliver a message that came from another host, here: to ``target``, or to ``topic``.

    The target's backpressure applies (``block`` waits, so the sending hop waits); what
    cannot be queued becomes a dead letter here with its reason, a ``reject`` refusal
    included (reason ``rejected``). A topic's copies go to this process's subscribers only,
    never on to other hosts. Returns whether it was queued (for a topic: by anyone).
    """
    dead = router.dead
    if target is None:
        subs = router.topics.get(topic or "")
        if not subs:  # its subscribers left (or died with a restarted host)
            dead.add(msg, DeadLetterReason.NO_SUBSCRIBER, None, sender, topic)
            return False
        try:
            return bool(await Router.publish(router, topic or "", msg, None, sender))
        except QueueFullError:  # a 'reject' subscriber: counted and kept with the reason
            for sub in subs:
                k = router.kernels.get(sub) if isinstance(sub, str) else None
                if k is None:
                    continue
                ib = k.inbox
                if ib.policy == "reject" and len(ib) >= ib.capacity:
                    dead.add(msg, DeadLetterReason.REJECTED, k.kernel_id, sender, topic)
            return True
    try:
        return await router.deliver(target, msg, None, sender)
    except QueueFullError:  # the target's 'reject' policy
        dead.add(msg, DeadLetterReason.REJECTED, target, sender)
        return False
