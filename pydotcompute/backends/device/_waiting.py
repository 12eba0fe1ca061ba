"""How the host waits for a device kernel: spin briefly, then park (emulated) or poll (GPU).

Nothing here runs while nobody waits. A waiter is a receiver or a ``call`` (on the outbox), a
blocked sender or staged messages to feed (on the inbox), or a lifecycle step waiting for the
device (``until``).

1. **Spin.** When the device has work in flight and a reply is awaited, the native host
   endpoint spins on the outbox tail with the GIL released for ``$PYDOTCOMPUTE_DEVICE_SPIN_US``
   (default 50 us). A reply within the window resolves the receiver's future before it is
   awaited: ``await runtime.call(...)`` completes without suspending to the event loop.
2. **Park (emulated device)**, once the caller has had its turn (a ``call`` registers for its
   reply before it sends, and the reply usually comes within the spin after the send). The
   host stores a new generation in ``host_wait`` (with a full fence), re-checks the rings, and
   returns to the event loop, which watches the kernel's
   notify pipe. At its next progress (a batch, a status change) the device sees ``host_wait``
   and writes one byte, once per generation. The pipe reaches end of file when the kernel's
   process ends, so a fault is noticed at once.
3. **Pump (GPU).** A GPU cannot signal the host: a task polls, yielding with
   ``asyncio.sleep(0)`` for 1 ms after the last progress, then every millisecond.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from ...ring._outbox import EMPTY
from ._inbox import DeviceInbox
from ._memory import WORD
from ._native import NativeEndpoint, PythonEndpoint
from ._outbox import DeviceOutbox

__all__ = ["DeviceWaits"]

SPIN_S = 1e-3  # the pump yields with sleep(0) this long after the last progress
TICK_S = 1e-3  # then polls at this period
_HOST_WAIT, _OUT_TAIL = WORD["host_wait"], WORD["out_tail"]


class DeviceWaits:
    """The waiting side of one device kernel's mailboxes."""

    def __init__(
        self,
        kernel_id: str,
        loop: asyncio.AbstractEventLoop,
        inbox: DeviceInbox,
        outbox: DeviceOutbox,
        check_health: Callable[[], None],
    ) -> None:
        self.kernel_id = kernel_id
        self._loop = loop
        self._inbox = inbox
        self._outbox = outbox
        self._check_health = check_health
        self._launcher: Any = None
        self._endpoint: NativeEndpoint | PythonEndpoint | None = None
        self._fd = -1  # the emulated device's notify pipe
        self._parked = False
        self._gen = 0
        self._watchers: list[asyncio.Future[None]] = []
        self._pump: asyncio.Task[None] | None = None
        self._kicking = False
        self._park_soon = False
        self.ended = False  # the notify pipe reached end of file: the process has ended

    def attach(self, launcher: Any, endpoint: NativeEndpoint | PythonEndpoint) -> None:
        """Wait on a newly started launcher (watching its notify pipe, if it has one)."""
        self._launcher = launcher
        self._endpoint = endpoint
        self._parked = False
        self.ended = False
        fd = getattr(launcher, "notify_fd", -1)
        if fd >= 0:
            self._fd = fd
            self._loop.add_reader(fd, self._on_notify)

    def detach(self) -> None:
        """Stop watching the launcher (before it is released)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1
        self._launcher = None
        self._endpoint = None
        self._parked = False
        self._wake_watchers()

    # ---------------------------------------------------------------- progress
    def service(self) -> bool:
        """Feed staged messages, admit blocked senders, serve receivers; True on progress."""
        ib = self._inbox
        progressed = False
        if ib.open and ib.staged:
            progressed = ib.feed() > 0
        if ib.has_waiters:
            progressed = ib.admit() or progressed
        if self._outbox.has_waiters:
            progressed = self._outbox.service() or progressed
        return progressed

    def needed(self) -> bool:
        """Whether anybody waits for the device."""
        return self._others_wait() or self._outbox.has_waiters

    def _others_wait(self) -> bool:
        """Whether staged messages, blocked senders or a lifecycle step wait for the device."""
        ib = self._inbox
        return bool((ib.open and ib._staged) or ib._putters or ib._room or self._watchers)

    def after_write(self) -> None:
        """A message went into the ring: a ``call`` waiting for its reply spins for it."""
        ob = self._outbox
        expect = ob._expect
        if not expect:
            return
        ep = self._endpoint
        if ob._getters or ob._q or ep is None:
            self.kick()
            return
        head = ob._head
        if ep.spin(_OUT_TAIL, head) != head:
            msg = ob._read_one()
            if msg is not EMPTY:
                cid = msg.__dict__.get("correlation_id")
                if type(cid) is bytes and expect.get(cid, EMPTY) is None:
                    # The common call: its own reply, within the spin. Keep it for the call
                    # (it takes it with arrived(); Receivers._hand_to_call's first case, here
                    # without its second lookup) and stop if nobody else waits.
                    expect[cid] = (msg,)
                    if len(expect) == 1 and not self._others_wait():
                        return
                elif not ob._deliver_expected(msg):
                    ob._q.append(msg)  # not a call's reply: the next receiver takes it
        self.kick(spun=True)

    def spin(self) -> bool:
        """Spin for a reply while the device has work in flight; True if one arrived."""
        ep = self._endpoint
        if ep is None:
            return False
        head = self._outbox._head
        if not ep.spin_ns or not self._inbox.in_flight():
            # Nothing unfinished; but the last reply may have landed since the caller looked.
            return bool(ep.ctl[_OUT_TAIL] != head)
        return ep.spin(_OUT_TAIL, head) != head  # returns at the first reply

    def kick(self, *, spun: bool = False) -> None:
        """Somebody waits: serve what is there, spin if worth it, then park or pump.

        ``spun``: the caller has just spun for a reply (do not spin again).
        """
        if self._launcher is None or self._kicking:
            return
        self._kicking = True
        try:
            self.service()
            if not self.needed():
                return
            if not spun and self._outbox.has_waiters and self.spin():
                self.service()
                if not self.needed():
                    return
            if self._fd >= 0:
                # Park once the caller has had its turn: a call registers for its reply
                # before it sends, and its reply usually comes within the spin after the send.
                if not self._park_soon:
                    self._park_soon = True
                    self._loop.call_soon(self._park_later)
            elif self._pump is None or self._pump.done():
                self._pump = self._loop.create_task(
                    self._pump_loop(), name=f"ring kernel {self.kernel_id} pump"
                )
        finally:
            self._kicking = False

    # ---------------------------------------------------------------- emulated: park
    def _park_later(self) -> None:
        self._park_soon = False
        if self._launcher is not None and self._fd >= 0 and self.needed():
            self._park()

    def _park(self) -> None:
        """Ask the device for a signal at its next progress, then re-check the rings."""
        assert self._endpoint is not None
        if not self._parked:
            self._gen += 1
            self._endpoint.publish(_HOST_WAIT, self._gen)
            self._parked = True
        self.service()  # progress published before host_wait was set is seen here
        if not self.needed():
            self._unpark()

    def _unpark(self) -> None:
        if self._parked and self._endpoint is not None:
            self._endpoint.publish(_HOST_WAIT, 0)
        self._parked = False

    def _on_notify(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            data = b"\0"  # woken without a byte (another reader took it): re-check anyway
        if not data:
            # End of file: the kernel's process has ended, cleanly or not.
            self._loop.remove_reader(self._fd)
            self._fd = -1
            self.ended = True
            if self._launcher is not None:
                self._launcher.reap()
            self._parked = False
            self._wake_watchers()
            self._check_health()
            return
        self._unpark()
        self._wake_watchers()
        if self._launcher is not None and self.needed():
            self.kick()

    def _wake_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    # ---------------------------------------------------------------- lifecycle waits
    async def until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``done()`` is true (True), the loop ends, or ``timeout`` passes (False)."""
        start = time.perf_counter()
        last = start
        while not done():
            launcher = self._launcher
            if launcher is None or not launcher.running():
                return bool(done())
            now = time.perf_counter()
            left = None if timeout is None else timeout - (now - start)
            if left is not None and left <= 0:
                return False
            if self._fd < 0:
                await asyncio.sleep(0 if now - last < SPIN_S else TICK_S)
                continue
            fut: asyncio.Future[None] = self._loop.create_future()
            self._watchers.append(fut)
            self._park()
            if done():
                break
            try:
                async with asyncio.timeout(left):
                    await fut
            except TimeoutError:
                return bool(done())
            finally:
                if fut in self._watchers:
                    self._watchers.remove(fut)
        return True

    # ---------------------------------------------------------------- GPU: the pump
    async def _pump_loop(self) -> None:
        last = time.perf_counter()
        polls = 0
        while self._launcher is not None:
            progressed = self.service()
            if not self.needed():
                return
            now = time.perf_counter()
            polls += 1
            if progressed:
                last = now
            elif polls % 64 == 0 or now - last >= SPIN_S:
                self._check_health()
            await asyncio.sleep(0 if now - last < SPIN_S else TICK_S)
