"""The inbox of a host ring kernel: priority order, backpressure, and an activation gate.

Built for the hot path: a message for a body parked in ``receive`` is queued and the body
marked runnable, to be run inline by the next caller that would wait (see :mod:`._driver`);
a message for any other waiting receiver is handed to it directly (no re-check, no extra
wake-up); a receive with messages queued returns without suspending; and nothing polls.
"""

from __future__ import annotations

import asyncio
from bisect import insort
from collections import deque
from collections.abc import Callable
from itertools import cycle, islice
from operator import itemgetter
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from ..errors import QueueFullError, SendTimeoutError
from ._options import Backpressure
from ._waiters import expire, expire_later

if TYPE_CHECKING:
    from ._driver import BodyDriver

__all__ = ["DEFAULT_PRIORITY", "LAT_EVERY", "Entry", "Inbox", "priority_of", "reject_error"]

Entry = tuple[int, int, Any]  # (arrival number, enqueue time in ns or 0, message)
DEFAULT_PRIORITY = 128
# Latency is sampled: the 1st message an inbox queues and every LAT_EVERY-th after it carry
# their enqueue time (one clock read each); the others carry 0 and are counted, not timed
# (so the body reads the clock when done only for those). A batch (send_many) reads the clock
# once for its timed entries. See KernelMetrics.
LAT_EVERY = 8
_LAT_PHASE = LAT_EVERY - 1  # received & _LAT_PHASE == 1 -> timed
_UNTIMED = (0,) * (LAT_EVERY - 1)
_NO_BUCKET: deque[Entry] = deque()  # Inbox._top while nothing is queued (never filled)
_message_of = itemgetter(2)


def reject_error(kernel_id: str, capacity: int) -> QueueFullError:
    """The error of a send into a full inbox whose backpressure is ``reject``."""
    return QueueFullError(
        f"inbox of ring kernel {kernel_id!r} is full ({capacity} messages) and its backpressure "
        "is 'reject'; receive faster, raise queue_size, or use backpressure='block'"
    )


def priority_of(msg: Any) -> int:
    """Priority of a message (128 for objects that are not messages)."""
    p = getattr(msg, "priority", DEFAULT_PRIORITY)
    if type(p) is not int or p < 0 or p > 255:
        return DEFAULT_PRIORITY
    return p


class Inbox:
    """Priority mailbox: higher priority first, FIFO within a priority, bounded.

    Messages are only handed out while the gate is open (the kernel is active); while it is
    closed they queue and nothing is lost.
    """

    __slots__ = (
        "_buckets",
        "_default",
        "_getters",
        "_levels",
        "_loop",
        "_putters",
        "_size",
        "_top",
        "capacity",
        "dropped",
        "kernel_id",
        "on_drop",
        "open",
        "parked",
        "policy",
        "received",
        "rejected",
    )

    def __init__(
        self, kernel_id: str, capacity: int, policy: Backpressure, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.kernel_id = kernel_id
        self.capacity = capacity
        self.policy = policy
        self._loop = loop
        self._buckets: dict[int, deque[Entry]] = {}
        # The default priority's bucket, also found without a dict lookup (``p is 128``: small
        # ints are shared objects, and any other value equal to 128 is taken as 128 anyway).
        self._default: deque[Entry] = deque()
        self._buckets[DEFAULT_PRIORITY] = self._default
        self._levels: list[int] = []  # negated priorities of non-empty buckets, ascending
        # The highest non-empty bucket (_levels[0]'s), or an empty deque when there is none.
        self._top: deque[Entry] = _NO_BUCKET
        self._size = 0
        self._getters: deque[asyncio.Future[Entry]] = deque()
        self._putters: deque[tuple[asyncio.Future[bool], Any]] = deque()
        self.open = False
        self.parked: BodyDriver | None = None  # the body, when parked in receive
        self.received = 0
        self.dropped = 0
        self.rejected = 0
        # Called with (message, "drop_oldest" | "drop_newest" | "discarded") for every message
        # the inbox lets go of undelivered: the runtime turns them into dead letters.
        self.on_drop: Callable[[Any, str], None] | None = None

    def __len__(self) -> int:
        return self._size

    # ---------------------------------------------------------------- producer side
    def put_nowait(self, msg: Any) -> bool | None:
        """Queue ``msg``: True if queued, False if dropped (``drop_newest``), None if full
        under ``block`` (the caller waits with :meth:`put_wait`). ``reject`` raises."""
        if self._size >= self.capacity:
            return self._full(msg)
        p = getattr(msg, "priority", DEFAULT_PRIORITY)
        bucket: deque[Entry] | None
        if p is DEFAULT_PRIORITY:
            bucket = self._default
        else:
            bucket = self._buckets.get(p) if type(p) is int else None
        if bucket:
            # The common case: more of a priority already queued. (A queued message means no
            # receiver waits while the gate is open: there is nobody to hand it to.)
            n = self.received = self.received + 1  # also the arrival sequence
            bucket.append((n, perf_counter_ns() if n & _LAT_PHASE == 1 else 0, msg))
            self._size += 1
            return True
        # A new priority level (or an odd one), or a waiting receiver: the general path.
        self._enqueue(msg, priority_of(msg), -1)
        return True

    def _enqueue(self, msg: Any, p: int, ts: int) -> None:
        """Queue one message; ``ts`` is its batch's enqueue time, or -1 (sampled here)."""
        n = self.received = self.received + 1
        if ts < 0:
            ts = perf_counter_ns() if n & _LAT_PHASE == 1 else 0
        getters = self._getters
        if getters and self.open:
            # A waiting receiver means the inbox is empty: hand the message over.
            while getters:
                g = getters.popleft()
                if not g.done():
                    g.set_result((0, ts, msg))
                    return
        bucket = self._buckets.get(p)
        if bucket is None:
            bucket = self._buckets[p] = deque()
        if not bucket:
            insort(self._levels, -p)
            self._top = self._buckets[-self._levels[0]]
        bucket.append((n, ts, msg))
        self._size += 1
        d = self.parked
        if d is not None and not d.runnable and self.open:
            d.sched.mark(d)  # the parked body runs inline soon and takes it

    def _full(self, msg: Any) -> bool | None:
        policy = self.policy
        if policy is Backpressure.BLOCK:
            return None
        if policy is Backpressure.REJECT:
            self.rejected += 1
            raise reject_error(self.kernel_id, self.capacity)
        if policy is Backpressure.DROP_NEWEST:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop(msg, "drop_newest")
            return False
        self._evict_oldest()
        self._enqueue(msg, priority_of(msg), -1)
        return True

    def _evict_oldest(self) -> None:
        """Drop the message that arrived first, whatever its priority."""
        buckets = self._buckets
        oldest_p = min((-q for q in self._levels), key=lambda p: buckets[p][0][0])
        bucket = self._buckets[oldest_p]
        entry = bucket.popleft()
        self._size -= 1
        self.dropped += 1
        if not bucket:
            self._remove_level(oldest_p)
        if self.on_drop is not None:
            self.on_drop(entry[2], "drop_oldest")

    async def put_wait(self, msg: Any, timeout: float | None) -> bool:
        """Wait for space and queue ``msg`` (``block`` policy)."""
        if not self._putters and self._size < self.capacity:
            # Space was made since the caller looked (a body ran inline meanwhile).
            r = self.put_nowait(msg)
            if r is not None:
                return r
        fut: asyncio.Future[bool] = self._loop.create_future()
        item = (fut, msg)
        self._putters.append(item)
        handle = None
        if timeout is not None:
            handle = self._loop.call_later(timeout, expire, fut, self._send_timeout(timeout))
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            if not fut.done() or fut.cancelled():
                try:
                    self._putters.remove(item)
                except ValueError:
                    pass

    def _send_timeout(self, timeout: float) -> Callable[[], BaseException]:
        def make() -> BaseException:
            return SendTimeoutError(
                f"inbox of ring kernel {self.kernel_id!r} stayed full ({self.capacity} "
                f"messages) for {timeout} s; receive faster, raise queue_size, or pass a "
                "longer timeout"
            )

        return make

    def put_many_nowait(self, msgs: list[Any], priorities: list[int] | None) -> int:
        """Queue as many of ``msgs`` as fit now; return how many were taken (queued or dropped).

        ``priorities`` holds one priority per message, or is ``None`` when all are 128.
        """
        n = len(msgs)
        done = 0
        if n and self._getters and self.open:
            # A waiting receiver means the inbox is empty: hand it the first message; once
            # woken it takes the rest in bulk.
            p = DEFAULT_PRIORITY if priorities is None else priorities[0]
            self._enqueue(msgs[0], p, -1)
            done = 1
        return self._put_many(msgs, priorities, done)

    def _put_many(self, msgs: list[Any], priorities: list[int] | None, done: int) -> int:
        n = len(msgs)
        rest = n - done
        if rest and rest <= self.capacity - self._size and not (self._getters and self.open):
            ts = perf_counter_ns()
            batch = msgs[done:] if done else msgs
            if priorities is None:
                self._extend(DEFAULT_PRIORITY, batch, ts)
            else:
                prios = priorities[done:] if done else priorities
                if min(prios) == max(prios):
                    self._extend(prios[0], batch, ts)
                else:
                    for msg, p in zip(batch, prios):
                        self._enqueue(msg, p, -1)
            return n
        for i in range(done, n):
            p = DEFAULT_PRIORITY if priorities is None else priorities[i]
            if self._size >= self.capacity:
                if self._full_many(msgs[i], p) is None:
                    return i
            else:
                self._enqueue(msgs[i], p, -1)
        return n

    def _full_many(self, msg: Any, p: int) -> bool | None:
        if self.policy is Backpressure.DROP_OLDEST:
            self._evict_oldest()
            self._enqueue(msg, p, -1)
            return True
        return self._full(msg)

    def _extend(self, p: int, msgs: list[Any], ts: int) -> None:
        bucket = self._buckets.get(p)
        if bucket is None:
            bucket = self._buckets[p] = deque()
        if not bucket:
            insort(self._levels, -p)
            self._top = self._buckets[-self._levels[0]]
        n = len(msgs)
        first = self.received + 1
        # The batch's time for the entries whose arrival number is timed (1, 9, 17, ...).
        stamps = islice(cycle((ts, *_UNTIMED)), (first - 1) & _LAT_PHASE, None)
        bucket.extend(zip(range(first, first + n), stamps, msgs))
        self._size += n
        self.received += n
        d = self.parked
        if d is not None and not d.runnable and self.open:
            d.sched.mark(d)

    # ---------------------------------------------------------------- consumer side
    def pop(self) -> Entry:
        """Take the next entry (highest priority, oldest first); the inbox must not be empty."""
        bucket = self._top
        entry = bucket.popleft()
        self._size -= 1
        if not bucket:
            levels = self._levels
            del levels[0]
            self._top = self._buckets[-levels[0]] if levels else _NO_BUCKET
        if self._putters:
            self._admit_putters()
        return entry

    def pop_many(self, max_count: int) -> tuple[list[Any], int]:
        """Take up to ``max_count`` messages in priority order.

        Returns the messages and the enqueue time of the oldest timed one (0 if none is).
        """
        out: list[Entry] = []
        oldest = 0
        while self._size and len(out) < max_count:
            p = -self._levels[0]
            bucket = self._buckets[p]
            want = max_count - len(out)
            head_ts = bucket[0][1]  # each bucket is FIFO: its head is its oldest
            if not head_ts:  # untimed: the first timed one taken, if any
                head_ts = next((e[1] for e in islice(bucket, want) if e[1]), 0)
            if head_ts and (not oldest or head_ts < oldest):
                oldest = head_ts
            if len(bucket) <= want:
                out.extend(bucket)
                self._size -= len(bucket)
                bucket.clear()
                self._remove_level(p)
            else:
                out.extend([bucket.popleft() for _ in range(want)])
                self._size -= want
        if self._putters:
            self._admit_putters()
        return list(map(_message_of, out)), oldest

    def _remove_level(self, p: int) -> None:
        """Bucket ``p`` became empty (it is kept for the next message of that priority)."""
        levels = self._levels
        levels.remove(-p)
        self._top = self._buckets[-levels[0]] if levels else _NO_BUCKET

    def _admit_putters(self) -> None:
        putters = self._putters
        while putters and self._size < self.capacity:
            fut, msg = putters.popleft()
            if not fut.done():
                self._enqueue(msg, priority_of(msg), -1)
                fut.set_result(True)

    def wait(
        self, timeout: float | None, make_timeout: Callable[[], BaseException] | None
    ) -> asyncio.Future[Entry]:
        """Register a receiver: the returned future gets the next entry handed over.

        The caller awaits the future itself (one coroutine frame less on the hot path) and
        calls :meth:`abandon` if it is cancelled while waiting.
        """
        fut: asyncio.Future[Entry] = self._loop.create_future()
        self._getters.append(fut)
        if timeout is not None and make_timeout is not None:
            expire_later(self._loop, fut, timeout, make_timeout)
        return fut

    def abandon(self, fut: asyncio.Future[Entry]) -> None:
        """A receiver was cancelled: keep a message that was already handed to it."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.requeue_front(fut.result())

    def requeue_front(self, entry: Entry) -> None:
        """Put back an entry handed to a receiver that never took it (it was cancelled)."""
        _, ts, msg = entry
        p = priority_of(msg)
        bucket = self._buckets.get(p)
        if bucket is None:
            bucket = self._buckets[p] = deque()
        if not bucket:
            insort(self._levels, -p)
            self._top = self._buckets[-self._levels[0]]
        bucket.appendleft((0, ts, msg))
        self._size += 1

    def set_open(self, open_: bool) -> None:
        """Open or close the gate; opening hands queued messages to waiting receivers."""
        self.open = open_
        if open_:
            d = self.parked
            if d is not None and self._size and not d.runnable:
                d.sched.mark(d)
            getters = self._getters
            while getters and self._size:
                g = getters.popleft()
                if not g.done():
                    g.set_result(self.pop())

    def wake_getters(self, make_error: Callable[[], BaseException]) -> None:
        """Raise ``make_error()`` in every waiting receiver."""
        d = self.parked
        if d is not None:
            d.throw(make_error())
        while self._getters:
            g = self._getters.popleft()
            if not g.done():
                g.set_exception(make_error())

    def close(self, make_error: Callable[[], BaseException]) -> int:
        """Refuse waiting senders with ``make_error()`` and discard what is queued.

        Returns the number of queued messages discarded.
        """
        while self._putters:
            fut, _ = self._putters.popleft()
            if not fut.done():
                fut.set_exception(make_error())
        discarded = self._size
        if self.on_drop is not None:
            for neg in self._levels:
                for entry in self._buckets[-neg]:
                    self.on_drop(entry[2], "discarded")
        for bucket in self._buckets.values():
            bucket.clear()
        self._levels.clear()
        self._top = _NO_BUCKET
        self._size = 0
        return discarded
