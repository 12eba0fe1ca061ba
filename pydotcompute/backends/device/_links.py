"""Device-to-device links: a ring in device memory between two persistent kernels.

When a device kernel's output is linked to exactly one other device kernel of the same device
(see :meth:`DeviceKernel.update_link`), the host allocates a *link ring* in the device's link
arena and hands it to both loops: the upstream loop writes its replies into the ring instead
of its outbox, and the downstream loop takes them as a second inbox. The ring has the same
single-writer protocol as the mailboxes (``pdc_link`` in the generated source): the upstream
writes the slots and ``tail``, the downstream writes ``head`` (and ``sleeping``); no message
of the link crosses to the host or touches Python.

The host switches a loop with a descriptor (the ring's arena offset and mask) and then a new
generation in the loop's control block; the loop switches between two messages and
acknowledges the generation. Closing a link (unlink, either side terminated, relaunched or
failed) switches the upstream back to its outbox first, then the downstream off, and only
then, when neither loop touches the ring any more, reads what is left in it: those messages
are delivered to the downstream through the host (into its inbox, or dead letters if it no
longer takes messages). Nothing in a link ring is lost silently.

Where the rings live:

* on the emulated device, in one shared-memory file per Python process (:class:`LinkArena`),
  mapped by every kernel process when it starts (its base is the ``link_base`` control word);
  a ring is named by its offset in it;
* on a GPU, in device global memory (``CudaLinkArena`` in :mod:`._cuda_launch`): a ring is
  named by its device address (``link_base`` stays 0), its words are ordered with device-scope
  acquire / release (both loops are on the GPU), and the host reads it with copies on a
  stream of its own, only once both loops let go of it. Its memory is pooled, never freed.

Sequential and parallel kernels both take links (a parallel block takes a batch from its
inbox or its linked input, the two in turn, and writes the batch's replies to its linked
output in the batch's order). Other links involving device kernels go through the host (see
:meth:`DeviceKernel.device_target`).
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import threading
from typing import Any

import numpy as np

from ._memory import LINE, LINK_HEADER_BYTES, LINK_WORD, WORD, ring_slots

__all__ = ["ARENA_BYTES", "DeviceLink", "LinkArena", "LinkRingLostError", "arena_of", "link_arena"]

log = logging.getLogger("pydotcompute")

ARENA_BYTES = 1 << 30  # address space of the link arena; memory is reserved per ring
LINK_ACK_S = 10.0  # how long closing a link waits for a running loop to let go of it


class LinkRingLostError(RuntimeError):
    """A GPU's link ring could not be read back: its CUDA context is gone (a sticky fault)."""


class LinkArena:
    """The emulated device's link memory: one shared-memory file mapped by every kernel."""

    def __init__(self, size: int = ARENA_BYTES) -> None:
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("pydotcompute-link-arena", os.MFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            import tempfile

            self.fd, path = tempfile.mkstemp(prefix="pdc-link-arena-")
            os.unlink(path)
        os.ftruncate(self.fd, size)  # sparse: nothing is reserved until a ring is
        self.size = size
        self._map = mmap.mmap(self.fd, size)
        self.memory: Any = np.frombuffer(self._map, np.uint8)
        self._lock = threading.Lock()
        self._next = LINE  # offset 0 means "no ring" to a loop
        self._free: dict[int, list[int]] = {}  # size -> free offsets

    def allocate(self, size: int) -> int:
        """Reserve ``size`` bytes (zeroed, 64-byte aligned); return their offset."""
        size = (size + LINE - 1) // LINE * LINE
        with self._lock:
            free = self._free.get(size)
            if free:
                offset = free.pop()
            else:
                if self._next + size > self.size:
                    raise MemoryError(
                        f"the device link arena ({self.size:,} bytes) has no room for a "
                        f"{size:,}-byte link ring; unlink kernels or use smaller inboxes"
                    )
                offset = self._next
                self._next += size
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(self.fd, offset, size)  # fails here, not as SIGBUS later
        self.memory[offset : offset + size] = 0
        return offset

    def free(self, offset: int, size: int) -> None:
        """Give back a ring reserved by :meth:`allocate`."""
        size = (size + LINE - 1) // LINE * LINE
        with self._lock:
            self._free.setdefault(size, []).append(offset)

    def read(self, offset: int, size: int) -> np.ndarray:
        """A copy of ``size`` bytes of a ring (its header, then its slots)."""
        return np.array(self.memory[offset : offset + size])


@functools.cache
def link_arena() -> LinkArena:
    """The emulated device's link arena (one per process, created on first use)."""
    return LinkArena()


def arena_of(kernel: Any) -> Any:
    """The link arena of ``kernel``'s device: the emulated one, or its GPU's."""
    if kernel.device == "emulated":
        return link_arena()
    return kernel._launcher.link_arena()


class DeviceLink:
    """One link ring between an upstream and a downstream device kernel."""

    def __init__(self, up: Any, down: Any) -> None:
        self.up = up
        self.down = down
        self.codec = up.outbox.codec  # the same layout as the downstream's input (checked)
        self.slots = ring_slots(down.inbox.capacity)
        self.size = LINK_HEADER_BYTES + self.slots * self.codec.itemsize
        self.arena = arena_of(up)
        self.offset = self.arena.allocate(self.size)
        memory = getattr(self.arena, "memory", None)  # mapped here: the emulated device
        self._header: Any = None
        if memory is not None:
            header = memory[self.offset : self.offset + LINK_HEADER_BYTES]
            self._header = header.view(np.uint64)
        self.opened = False  # both loops switched to it (or were told and are busy)
        self.closed = False

    def __repr__(self) -> str:
        return f"<DeviceLink {self.up.kernel_id!r} -> {self.down.kernel_id!r}>"

    async def open(self) -> None:
        """Hand the ring to the downstream loop, then to the upstream one; wait until both
        switched, so that what the upstream takes from then on goes through the ring.

        A loop busy in a long handler switches at its next message boundary: after
        ``LINK_ACK_S`` the wait ends with an event in the kernel's log, the switch pending.
        """
        down = _switch(self.down, "in", self.offset, self.slots - 1)
        up = _switch(self.up, "out", self.offset, self.slots - 1)
        for k, side, gen in ((self.down, "in", down), (self.up, "out", up)):
            if not await _acked(k, side, gen):
                k.metrics.event(
                    f"device link {self!r}: the loop did not switch within {LINK_ACK_S} s; "
                    "it switches at its next message boundary"
                )
        self.opened = not self.closed

    async def close(self) -> list[Any]:
        """Take the ring back from both loops; return the messages still in it, in order."""
        self.closed = True
        # A loop that does not let go raises here: the ring is then never reused.
        await _let_go(self.up, "out")  # from here on the tail is final
        await _let_go(self.down, "in")  # ... and the head
        try:
            raw = self.arena.read(self.offset, self.size)
        except LinkRingLostError as exc:  # a GPU whose context is gone
            log.warning("%r: %s; what it held is lost with the CUDA context", self, exc)
            for k in (self.up, self.down):
                k.metrics.event(f"device link ring lost with the CUDA context ({exc})")
            return []
        words = raw[:LINK_HEADER_BYTES].view(np.uint64)
        head, tail = int(words[LINK_WORD["head"]]), int(words[LINK_WORD["tail"]])
        mask = self.slots - 1
        left = [
            self.codec.unpack_from(raw, LINK_HEADER_BYTES + (i & mask) * self.codec.itemsize)
            for i in range(head, tail)
        ]
        self.arena.free(self.offset, self.size)
        return left

    def depth(self) -> int:
        """Messages in the ring now (written by the upstream, not yet taken downstream)."""
        words = self._header
        if words is None:  # a GPU's ring: read its header back
            if self.closed:
                return 0
            try:
                words = self.arena.read(self.offset, LINK_HEADER_BYTES).view(np.uint64)
            except LinkRingLostError:  # the kernels' fault says why
                return 0
        return int(words[LINK_WORD["tail"]]) - int(words[LINK_WORD["head"]])


def _switch(k: Any, side: str, ring: int, mask: int) -> int:
    """Write a link descriptor and its new generation into ``k``'s control block."""
    ctl, ep = k._ctl, k._endpoint
    if ctl is None or ep is None:
        return 0
    ep.publish(WORD[f"link_{side}_ring"], ring)
    ep.publish(WORD[f"link_{side}_mask"], mask)
    gen = int(ctl[WORD[f"link_{side}_gen"]]) + 1
    ep.publish(WORD[f"link_{side}_gen"], gen)  # wakes a sleeping loop
    return gen


async def _acked(k: Any, side: str, gen: int) -> bool:
    """Wait until ``k``'s loop acknowledged generation ``gen`` of a link side (or ended)."""
    ctl, launcher = k._ctl, k._launcher
    if gen == 0 or ctl is None or launcher is None:
        return True
    word = WORD[f"link_{side}_ack"]

    def done() -> bool:
        return int(ctl[word]) >= gen or not launcher.running()

    return bool(await k._waits.until(done, LINK_ACK_S))


async def _let_go(k: Any, side: str) -> None:
    """Switch ``k``'s loop off its link ring and wait until it says so (or has ended)."""
    from ...errors import OperationTimeoutError

    if not await _acked(k, side, _switch(k, side, 0, 0)):
        raise OperationTimeoutError(
            f"ring kernel {k.kernel_id!r} did not let go of its device link within "
            f"{LINK_ACK_S} s (a handler that never returns?); terminate it to free the link"
        )
