"""The host side of a device kernel's outbox: the consumer of the outbox ring.

Replies stay in the device ring until a receiver takes them, so a full outbox makes the
device wait and no reply is overwritten. While a receiver or a ``call`` waits, the kernel
(``_kernel.py``) spins on the outbox tail for a short window, then parks until the emulated
device signals progress (a GPU cannot: a pump polls instead); nothing polls otherwise.
Replies read while looking for a ``call``'s correlated reply are kept in a host queue, in
order, ahead of the ring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import numpy as np

from ...messages._ids import correlation_bytes, id_bytes
from ...ring._inbox import LAT_EVERY
from ...ring._outbox import EMPTY
from ...ring._receivers import Receivers
from ...telemetry import KernelMetrics
from ._memory import WORD
from ._native import NativeEndpoint, PythonEndpoint
from ._records import RecordCodec

__all__ = ["DeviceOutbox"]

_TAIL, _HEAD, _SLEEPING = WORD["out_tail"], WORD["out_head"], WORD["sleeping"]
# Replies at ring positions that are multiples of LAT_EVERY are timed (see _inbox.py): the same
# 1-in-LAT_EVERY sample as host inboxes.
SAMPLE_MASK = LAT_EVERY - 1


class DeviceOutbox(Receivers):
    """Consumer side of the device outbox ring, with the runtime's receive surface."""

    def __init__(
        self,
        kernel_id: str,
        capacity: int,
        loop: asyncio.AbstractEventLoop,
        codec: RecordCodec,
        metrics: KernelMetrics,
        kick: Callable[[], None],
        spin: Callable[[], bool],
    ) -> None:
        self._init_receivers(loop)
        self.kernel_id = kernel_id
        self.capacity = capacity
        self.codec = codec
        self._metrics = metrics
        self._kick = kick
        self._spin = spin
        self._ctl: Any = None
        self._endpoint: NativeEndpoint | PythonEndpoint | None = None
        self._records: np.ndarray | None = None
        self._slots: Any = None
        self._mask = 0
        self._head = 0
        self._stamps: list[int] | None = None
        self._stamp_mask = 0
        self._sent_before = 0  # replies of earlier launches (relaunch keeps the count)

    def _waiting(self) -> None:
        self._kick()  # a receiver waits: the pump polls the ring until it is served

    def expect(self, correlation_id: Any) -> None:
        """Keep the reply correlated with ``correlation_id`` aside for a ``call``.

        Registering does not start waiting: a ``call`` registers before it sends, and the
        send (or the activation that lets a staged message in) starts the wait. The caller
        takes the reply with :meth:`arrived`, or waits with :meth:`reply_future`.
        """
        self._expect[correlation_id] = None

    def expect_reply_to(self, request: Any) -> Any:
        """Expect the reply to ``request``; the key is its id's 16 bytes.

        Replies come out of the ring with their correlation id as the 16 bytes the device
        wrote, so matching by bytes builds no :class:`uuid.UUID` (and hashes none) per call.
        """
        key = id_bytes(request.__dict__)
        self._expect[key] = None
        return key

    def _deliver_expected(self, msg: Any) -> bool:
        """Hand ``msg`` to the ``call`` expecting it (matched by the bytes of its ids)."""
        d = msg.__dict__
        cid = correlation_bytes(d)
        if cid is not None and self._hand_to_call(cid, msg):
            return True
        # A reply that carries the request's own id (passed on along a link).
        mid = d.get("message_id")
        if mid is None:
            return False
        return self._hand_to_call(mid if type(mid) is bytes else id_bytes(d), msg)

    def attach(
        self,
        endpoint: NativeEndpoint | PythonEndpoint,
        records: np.ndarray,
        stamps: list[int],
    ) -> None:
        """Use a new ring (at launch or relaunch)."""
        self.detach()
        self._endpoint = endpoint
        ctl = self._ctl = endpoint.ctl
        self._records = records
        self._slots = memoryview(records.view(np.uint8))  # type: ignore[arg-type]
        self._mask = len(records) - 1
        self._head = ctl[_HEAD]
        self._stamps = stamps
        self._stamp_mask = len(stamps) - 1

    def __len__(self) -> int:
        return len(self._q) + self.in_ring()

    def in_ring(self) -> int:
        """Replies in the ring not yet taken by the host."""
        return 0 if self._ctl is None else self._ctl[_TAIL] - self._head

    @property
    def sent(self) -> int:
        """Replies the device has written since the first launch."""
        return self._sent_before + (0 if self._ctl is None else self._ctl[_TAIL])

    @property
    def has_waiters(self) -> bool:
        """Whether a receiver or a ``call`` waits for a reply.

        A call whose reply came while it was still sending (kept aside for it, taken in the
        same step) does not wait.
        """
        if self._getters:
            return True
        for slot in self._expect.values():  # noqa: SIM110 (any() of a generator costs more)
            if type(slot) is not tuple:
                return True
        return False

    # ---------------------------------------------------------------- ring reads
    def _advance(self, n: int) -> None:
        head = self._head
        timed = (head + SAMPLE_MASK) & ~SAMPLE_MASK
        if timed < head + n:
            # A timed position among the n taken: one latency sample (a batch gives one).
            stamps = self._stamps
            assert stamps is not None
            sent_ns = stamps[timed & self._stamp_mask]
            if sent_ns:
                self._metrics.record_latency_ns(perf_counter_ns() - sent_ns)
        self._head = head + n
        ctl = self._ctl
        ctl[_HEAD] = self._head  # the device may reuse the slots now (see _native.py)
        if ctl[_SLEEPING] == 2 and self._endpoint is not None:
            # It sleeps until the host makes room: wake it now, not at the next wait.
            self._endpoint.publish(_HEAD, self._head)

    def _read_one(self) -> Any:
        if self._ctl is None or self._ctl[_TAIL] == self._head:
            return EMPTY
        msg = self.codec.unpack_from(self._slots, (self._head & self._mask) * self.codec.itemsize)
        self._advance(1)
        return msg

    def _read_records(self, max_count: int) -> np.ndarray:
        n = min(max_count, self.in_ring())
        records = self._records
        if n <= 0 or records is None:
            return np.empty(0, self.codec.dtype)
        start = self._head & self._mask
        first = min(n, self._mask + 1 - start)
        if first == n:
            out = records[start : start + n].copy()
        else:
            out = np.concatenate((records[start:], records[: n - first]))
        self._advance(n)
        return out

    # ---------------------------------------------------------------- receive surface
    def pop_nowait(self) -> Any:
        """Take the oldest reply, or return :data:`EMPTY` when none is there."""
        if self._q:
            return self._q.popleft()
        while True:
            msg = self._read_one()
            if msg is EMPTY and self._spin():
                msg = self._read_one()  # the reply came within the spin window
            if msg is EMPTY or not self._expect or not self._deliver_expected(msg):
                return msg

    def pop_many(self, max_count: int) -> list[Any]:
        """Take up to ``max_count`` replies, oldest first (one copy out of the ring)."""
        out: list[Any] = []
        while self._q and len(out) < max_count:
            out.append(self._q.popleft())
        want = max_count - len(out)
        if want > 0 and self.in_ring():
            msgs = self.codec.from_array(self._read_records(want))
            if self._expect:
                msgs = [m for m in msgs if not self._deliver_expected(m)]
            out.extend(msgs)
        return out

    def pop_array(self, max_count: int) -> np.ndarray:
        """Take up to ``max_count`` replies as a structured array of the output layout.

        Replies already on the host (the one a waiting receiver was handed) are converted;
        the rest are copied out of the ring at once.
        """
        if self._expect:
            return self.codec.to_array(self.pop_many(max_count))
        if not self._q:
            return self._read_records(max_count)
        held = [self._q.popleft() for _ in range(min(max_count, len(self._q)))]
        first = self.codec.to_array(held)
        if len(held) == max_count or self._q:
            return first
        return np.concatenate((first, self._read_records(max_count - len(held))))

    def unget(self, msg: Any) -> None:
        """Put a reply back in front (it is taken again first)."""
        self._q.appendleft(msg)

    def service(self) -> bool:
        """Hand replies to waiting receivers and calls (run by the pump); True on progress."""
        progressed = False
        getters = self._getters
        while getters and getters[0].done():
            getters.popleft()
        while self._expect or getters:
            if getters and self._q:
                g = getters.popleft()
                if not g.done():
                    g.set_result(self._q.popleft())
                    progressed = True
                continue
            msg = self._read_one()
            if msg is EMPTY:
                break
            progressed = True
            if self._expect and self._deliver_expected(msg):
                continue
            while getters and getters[0].done():
                getters.popleft()
            if getters:
                getters.popleft().set_result(msg)
            else:
                self._q.append(msg)
        return progressed

    def detach(self) -> None:
        """Move every reply still in the ring to the host queue and let go of the ring."""
        if self._ctl is None:
            return
        if self.in_ring():
            self._q.extend(self.codec.from_array(self._read_records(self.in_ring())))
        self._sent_before += self._ctl[_TAIL]
        self._ctl = self._records = self._slots = self._endpoint = None
