"""The host side of a device kernel's inbox: a priority staging area feeding the ring.

A send goes straight into the device ring when the kernel is active, nothing is staged and
the ring window has room; otherwise it is staged on the host, ordered by priority (FIFO
within a priority), and fed into the ring in that order as the device frees slots. So
priority orders every message not yet in the ring (all of them while the kernel is parked),
and the ring itself is FIFO. The ring window (a quarter of ``queue_size``, at least 1)
leaves room for priority to act while the device is behind.

The kernel's backpressure policy applies at the sender when staged + in-ring messages reach
``capacity``. ``drop_oldest`` evicts the oldest *staged* message: a message already in the
device ring cannot be taken back, so when none is staged the new message is dropped.

The inbox is the only writer of the doorbell, the control word the device polls: the ring's
tail shifted left by ``CMD_BITS``, with the kernel's command in the low bits. Each publish
goes through the host endpoint (``_native.py``), which wakes a sleeping emulated device.
"""

from __future__ import annotations

import asyncio
from bisect import insort
from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import numpy as np

from ...errors import LayoutError, SendTimeoutError
from ...ring._inbox import priority_of, reject_error
from ...ring._options import Backpressure
from ._memory import CMD_BITS, CMD_PARK, WORD
from ._native import NativeEndpoint, PythonEndpoint
from ._outbox import SAMPLE_MASK
from ._records import RecordCodec

__all__ = ["DeviceInbox", "ring_window"]

_BELL, _HEAD, _PROCESSED = WORD["doorbell"], WORD["in_head"], WORD["processed"]
Entry = tuple[int, int, Any]  # (arrival sequence, enqueue time in ns, message)


def ring_window(capacity: int) -> int:
    """How many of ``capacity`` queued messages may sit in the device ring at once."""
    return max(1, capacity // 4)


class DeviceInbox:
    """Priority staging plus the device inbox ring; the producer side of the ring."""

    def __init__(
        self,
        kernel_id: str,
        capacity: int,
        policy: Backpressure,
        loop: asyncio.AbstractEventLoop,
        codec: RecordCodec,
        kick: Callable[[], None],
        after_write: Callable[[], None],
        calls: dict[Any, Any],
    ) -> None:
        self.kernel_id = kernel_id
        self.capacity = capacity
        self.window = ring_window(capacity)
        self.policy = policy
        self.codec = codec
        self._loop = loop
        self._kick = kick
        self._after_write = after_write
        self._calls = calls  # the outbox's calls waiting for replies (after_write spins for them)
        self._publish: Callable[[int, int], None] | None = None
        self._buckets: dict[int, deque[Entry]] = {}
        self._levels: list[int] = []  # negated priorities of non-empty buckets, ascending
        self._staged = 0
        self._seq = 0
        self._putters: deque[tuple[asyncio.Future[bool], Any]] = deque()
        self._room: deque[asyncio.Future[None]] = deque()
        self.open = False  # messages are fed to the ring only while the kernel is active
        self.received = 0
        self.dropped = 0
        self.rejected = 0
        # Called with (message, "drop_oldest" | "drop_newest" | "discarded") for every message
        # the inbox lets go of undelivered: the runtime turns them into dead letters.
        self.on_drop: Callable[[Any, str], None] | None = None
        self._tail = 0
        self._command = CMD_PARK
        self._endpoint: NativeEndpoint | PythonEndpoint | None = None
        self._ctl: Any = None
        self._slots: Any = None
        self._records: np.ndarray | None = None
        self._mask = 0
        self._stamps: list[int] | None = None  # send times at timed ring positions (ns)
        self._stamp_mask = 0

    def attach(
        self,
        endpoint: NativeEndpoint | PythonEndpoint,
        records: np.ndarray,
        stamps: list[int],
    ) -> None:
        """Use a new ring (at launch or relaunch): control words and slot records."""
        self._endpoint = endpoint
        self._publish = endpoint.publish
        self._ctl = endpoint.ctl
        self._records = records
        self._slots = memoryview(records.view(np.uint8))  # type: ignore[arg-type]
        self._mask = len(records) - 1
        self._tail = self._ctl[_BELL] >> CMD_BITS
        self._stamps = stamps
        self._stamp_mask = len(stamps) - 1
        self._command = CMD_PARK
        self._ring(self._tail)

    @property
    def commanded(self) -> int:
        """The command last rung into the doorbell (park, active, terminate)."""
        return self._command

    def command(self, cmd: int) -> None:
        """Tell the device a new command (park, active, terminate) through the doorbell."""
        self._command = cmd
        if self._endpoint is not None:
            self._ring(self._tail)

    def _ring(self, tail: int) -> None:
        assert self._publish is not None
        self._publish(_BELL, tail << CMD_BITS | self._command)

    def __len__(self) -> int:
        return self._staged + self.in_ring()

    @property
    def staged(self) -> int:
        """Messages waiting on the host (not yet in the device ring)."""
        return self._staged

    def in_ring(self) -> int:
        """Messages in the device ring not yet taken by the device."""
        return 0 if self._ctl is None else self._tail - self._ctl[_HEAD]

    def in_flight(self) -> int:
        """Messages in the ring the device has not finished (taken ones included)."""
        return 0 if self._ctl is None else self._tail - self._ctl[_PROCESSED]

    @property
    def has_waiters(self) -> bool:
        """Whether senders are waiting for room."""
        return bool(self._putters or self._room)

    # ---------------------------------------------------------------- ring writes
    def _ring_room(self) -> int:
        return self.window - self.in_ring() if self._ctl is not None else 0

    def _write(self, msg: Any, ts: int) -> None:
        """Write ``msg`` into the next slot; ``ts``: when it was queued (0: now)."""
        t = self._tail
        self.codec.pack_into(self._slots, (t & self._mask) * self.codec.itemsize, msg)
        if not t & SAMPLE_MASK:  # a timed position (the outbox times the reply at the same one)
            self._stamps[t & self._stamp_mask] = ts or perf_counter_ns()  # type: ignore[index]
        self._tail = t + 1
        self._ring(t + 1)  # published after the slot (a full fence in the native endpoint)

    def _write_array(self, arr: np.ndarray, ts: int) -> None:
        n = len(arr)
        t = self._tail
        start = t & self._mask
        first = min(n, self._mask + 1 - start)
        records = self._records
        assert records is not None and self._stamps is not None
        records[start : start + first] = arr[:first]
        if first < n:
            records[: n - first] = arr[first:]
        stamps = self._stamps
        s0 = t & self._stamp_mask
        s1 = min(n, len(stamps) - s0)
        stamps[s0 : s0 + s1] = [ts] * s1
        stamps[: n - s1] = [ts] * (n - s1)
        self._tail = t + n
        self._ring(t + n)

    # ---------------------------------------------------------------- producer side
    def put_nowait(self, msg: Any) -> bool | None:
        """Queue ``msg``: True if queued, False if dropped, None if full under ``block``."""
        ctl = self._ctl
        in_ring = 0 if ctl is None else self._tail - ctl[_HEAD]
        if self._staged + in_ring >= self.capacity:
            return self._full(msg)
        self.received += 1
        if self.open and not self._staged and ctl is not None and in_ring < self.window:
            self._write(msg, 0)
            if self._calls:
                self._after_write()
        else:
            self._stage(msg, priority_of(msg), perf_counter_ns())
        return True

    def _stage(self, msg: Any, p: int, ts: int) -> None:
        bucket = self._buckets.get(p)
        if bucket is None:
            bucket = self._buckets[p] = deque()
            insort(self._levels, -p)
        self._seq += 1
        bucket.append((self._seq, ts, msg))
        self._staged += 1
        if self.open:
            self._kick()

    def _full(self, msg: Any) -> bool | None:
        policy = self.policy
        if policy is Backpressure.BLOCK:
            return None
        if policy is Backpressure.REJECT:
            self.rejected += 1
            raise reject_error(self.kernel_id, self.capacity)
        self.dropped += 1
        if policy is Backpressure.DROP_NEWEST or not self._staged:
            # drop_oldest with nothing staged: the ring's messages are committed
            if self.on_drop is not None:
                self.on_drop(msg, str(policy))
            return False
        oldest = min(self._buckets, key=lambda p: self._buckets[p][0][0])
        bucket = self._buckets[oldest]
        evicted = bucket.popleft()[2]
        self._staged -= 1
        if not bucket:
            self._remove_level(oldest)
        if self.on_drop is not None:
            self.on_drop(evicted, "drop_oldest")
        self.received += 1
        self._stage(msg, priority_of(msg), perf_counter_ns())
        return True

    async def put_wait(self, msg: Any, timeout: float | None) -> bool:
        """Wait for room and queue ``msg`` (``block`` policy)."""
        fut: asyncio.Future[bool] = self._loop.create_future()
        item = (fut, msg)
        self._putters.append(item)
        self._kick()
        try:
            return await self._bounded(fut, timeout)
        finally:
            if not fut.done() or fut.cancelled():
                try:
                    self._putters.remove(item)
                except ValueError:
                    pass

    async def _bounded(self, fut: asyncio.Future[Any], timeout: float | None) -> Any:
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            fut.cancel()
            raise SendTimeoutError(
                f"inbox of ring kernel {self.kernel_id!r} stayed full ({self.capacity} "
                f"messages) for {timeout} s; receive faster, raise queue_size, or pass a "
                "longer timeout"
            ) from None

    def put_many_nowait(self, msgs: list[Any], priorities: list[int] | None) -> int:
        """Queue as many of ``msgs`` as fit now; return how many were taken."""
        tail = self._tail
        try:
            return self._put_many_nowait(msgs, priorities)
        finally:
            if self._calls and self._tail != tail:
                self._after_write()  # a call waits for the reply to one of them

    def _put_many_nowait(self, msgs: list[Any], priorities: list[int] | None) -> int:
        n = len(msgs)
        taken = 0
        if self.open and not self._staged:
            direct = min(n, self._ring_room(), self.capacity - len(self))
            if direct > 1:
                self._write_array(self.codec.to_array(msgs[:direct]), perf_counter_ns())
                self.received += direct
                taken = direct
        for i in range(taken, n):
            msg = msgs[i]
            if self._staged + self.in_ring() >= self.capacity:
                if self._full(msg) is None:
                    return i
            else:
                self.received += 1
                ts = perf_counter_ns()
                if self.open and not self._staged and self._ring_room() > 0:
                    self._write(msg, ts)
                else:
                    p = priority_of(msg) if priorities is None else priorities[i]
                    self._stage(msg, p, ts)
        return n

    async def put_array(self, arr: np.ndarray, timeout: float | None) -> int:
        """Queue the records of a structured array, in one copy per ring chunk.

        Returns how many records were queued (fewer when a drop policy discarded some).
        """
        dtype = self.codec.dtype
        if arr.dtype != dtype:
            if arr.dtype.names != dtype.names:
                raise LayoutError(
                    f"send_many to ring kernel {self.kernel_id!r}: the array's dtype "
                    f"{arr.dtype} does not have the fields of "
                    f"{self.codec.message_type.__name__} {dtype.names}; build it with "
                    "fixed_layout(MessageType).dtype"
                )
            arr = arr.astype(dtype)
        arr = arr.reshape(-1)
        n, done, before = len(arr), 0, self.received
        while done < n:
            free = self.capacity - len(self)
            if self.open and not self._staged:
                k = min(free, self._ring_room(), n - done)
                if k > 0:
                    self._write_array(arr[done : done + k], perf_counter_ns())
                    self.received += k
                    done += k
                    if self._calls:
                        self._after_write()  # a call waits for the reply to one of them
                    continue
                if self.policy is Backpressure.BLOCK:
                    # The ring window is full: wait for the device rather than stage
                    # records as objects, so the batch keeps its one-copy path.
                    await self.wait_room(timeout)
                    continue
            if free > 0:
                k = min(free, n - done)
                done += self.put_many_nowait(self.codec.from_array(arr[done : done + k]), None)
                continue
            if self.policy is Backpressure.BLOCK:
                await self.wait_room(timeout)
                continue
            done += self.put_many_nowait(self.codec.from_array(arr[done:]), None)
        return self.received - before

    async def wait_room(self, timeout: float | None) -> None:
        """Wait until the inbox has room (``block`` policy)."""
        fut: asyncio.Future[None] = self._loop.create_future()
        self._room.append(fut)
        self._kick()
        try:
            await self._bounded(fut, timeout)
        finally:
            if fut in self._room:
                self._room.remove(fut)

    # ---------------------------------------------------------------- pump side
    def feed(self) -> int:
        """Move staged messages into the ring, highest priority first; return how many."""
        if not self.open or not self._staged:
            return 0
        room = self._ring_room()
        moved = 0
        while moved < room and self._staged:
            p = -self._levels[0]
            bucket = self._buckets[p]
            _, ts, msg = bucket.popleft()
            self._staged -= 1
            if not bucket:
                self._remove_level(p)
            self._write(msg, ts)
            moved += 1
        return moved

    def admit(self) -> bool:
        """Let waiting senders in while there is room; True if any got in."""
        progressed = False
        while self._putters and len(self) < self.capacity:
            fut, msg = self._putters.popleft()
            if not fut.done():
                self.put_nowait(msg)
                fut.set_result(True)
                progressed = True
        while self._room and self._has_room():
            fut2 = self._room.popleft()
            if not fut2.done():
                fut2.set_result(None)
                progressed = True
        return progressed

    def _has_room(self) -> bool:
        if len(self) >= self.capacity:
            return False
        return self._ring_room() > 0 or not self.open or self._staged > 0

    def _remove_level(self, p: int) -> None:
        self._levels.remove(-p)
        del self._buckets[p]

    def take_staged(self) -> list[Any]:
        """Remove and return the staged messages, in the order they would be fed."""
        out: list[Any] = []
        for neg in self._levels:
            out.extend(m for _, _, m in self._buckets[-neg])
        self._buckets.clear()
        self._levels.clear()
        self._staged = 0
        return out

    def restage(self, msgs: list[Any]) -> None:
        """Stage ``msgs`` ahead of what is staged (messages taken back from an old ring)."""
        staged = self.take_staged()
        ts = perf_counter_ns()
        for m in [*msgs, *staged]:
            self._stage(m, priority_of(m), ts)

    def take_back(self) -> list[Any]:
        """Messages still in the ring (not taken by the stopped device), oldest first."""
        if self._ctl is None:
            return []
        head = self._ctl[_HEAD]
        out = [
            self.codec.unpack_from(self._slots, (i & self._mask) * self.codec.itemsize)
            for i in range(head, self._tail)
        ]
        self._tail = head
        self._ring(head)
        return out

    def refuse_waiters(self, make_error: Callable[[], BaseException]) -> None:
        """Fail every sender waiting for room with ``make_error()``."""
        for fut, _ in self._putters:
            if not fut.done():
                fut.set_exception(make_error())
        for fut2 in self._room:
            if not fut2.done():
                fut2.set_exception(make_error())
        self._putters.clear()
        self._room.clear()

    def detach(self) -> None:
        """Let go of the ring (its messages must have been taken back or discarded)."""
        self._ctl = self._records = self._slots = self._endpoint = self._publish = None

    def close(self, make_error: Callable[[], BaseException]) -> int:
        """Refuse waiting senders and discard what is queued; return how many."""
        self.refuse_waiters(make_error)
        discarded = len(self)
        left = self.take_back() + self.take_staged()
        if self.on_drop is not None:
            for msg in left:
                self.on_drop(msg, "discarded")
        self.detach()
        return discarded
