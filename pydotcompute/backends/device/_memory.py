"""The mailbox memory of a device ring kernel: one control block and two rings.

One allocation (pinned mapped host memory on CUDA, a shared-memory mapping on the emulated
device) holds, in order:

* the control block: 64-byte lines of ``uint64`` words, each word with exactly one writer, so
  no atomic read-modify-write ever crosses PCIe or a process boundary:

  - line 0, written by the host: ``doorbell`` (the inbox tail shifted left by two bits, with the
    command in the low two bits: the one word the device polls), ``wake_seq`` (bumped to wake a
    sleeping emulated device; it sleeps on this word) and ``host_wait`` (non-zero while the host
    parks until the emulated device signals progress);
  - line 1, written by the device: ``status``, ``error``, ``heartbeat``, the counters, and
    ``sleeping`` (the emulated device sleeps in the OS until ``wake_seq`` changes);
  - one line per ring index: the inbox ``head`` (device), the outbox ``tail`` (device) and the
    outbox ``head`` (host);
  - two lines for device-to-device links (see :mod:`._links`): the host writes the
    descriptors of the kernel's linked output and linked input (the arena offset of a link
    ring and its mask) and then their generation; the device acknowledges a generation once
    it has switched, at a message boundary, and ``link_base`` holds the address of the
    device's link arena as the kernel sees it;
  - a fault line, written only by the emulated device's host process when a handler faults:
    the signal, its code and address, the message in flight and code offsets in the kernel's
    library (for the handler's line);

* the inbox ring: a power-of-two number of slots of the input message's fixed layout;
* the outbox ring: the same for the output layout;
* the state slot (sequential kernels): the kernel's ``State`` while the loop is parked. The
  loop loads it when it turns active and stores it back when it parks or exits, so the host
  can read and write it while the kernel is parked, and a relaunch can carry it over. The
  device finds it after the outbox ring, on the next 64-byte boundary.

Indices count messages since launch and never wrap (64 bits, 62 for the inbox tail in the
doorbell); a slot is ``index & mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CMD_ACTIVE",
    "CMD_BITS",
    "CMD_MASK",
    "CMD_PARK",
    "CMD_TERMINATE",
    "CONTROL_BYTES",
    "LINK_HEADER_BYTES",
    "LINK_WORD",
    "ERR_EXCEPTION",
    "ERR_SIGNAL",
    "ERR_TRAP",
    "FAULT_FRAMES",
    "STATUS_ACTIVE",
    "STATUS_EXITED",
    "STATUS_FAILED",
    "STATUS_PARKED",
    "STATUS_STARTING",
    "WORD",
    "doorbell_command",
    "ring_terminate",
    "MailboxLayout",
    "control_c_source",
]

LINE = 64  # bytes: each writer's words sit on their own cache line
WORD: dict[str, int] = {}  # control word name -> index of its uint64 in the control block
FAULT_FRAMES = 4  # code offsets recorded for a fault

# (line, [words]) in order; the comments are copied into the generated C struct.
_LINES: list[tuple[str, list[str]]] = [
    ("written by the host: the doorbell the device polls", ["doorbell", "wake_seq", "host_wait"]),
    (
        "written by the device",
        [
            "status",
            "error",
            "heartbeat",
            "processed",
            "idle_polls",
            "busy_ns",
            "full_waits",
            "sleeping",
        ],
    ),
    ("inbox head: written by the device (consumer)", ["in_head"]),
    ("outbox tail: written by the device (producer)", ["out_tail"]),
    ("outbox head: written by the host (consumer)", ["out_head"]),
    (
        "device links: written by the host (descriptors, then their generation)",
        [
            "link_out_gen",
            "link_out_ring",
            "link_out_mask",
            "link_in_gen",
            "link_in_ring",
            "link_in_mask",
        ],
    ),
    (
        "device links: written by the device (the arena base before the loop starts, acks)",
        ["link_base", "link_out_ack", "link_in_ack"],
    ),
    (
        "written by the emulated device's host process when a handler faults",
        [
            "fault_signal",
            "fault_code",
            "fault_addr",
            "fault_message",
            *(f"fault_frame{i}" for i in range(FAULT_FRAMES)),
        ],
    ),
]
for _i, (_, _words) in enumerate(_LINES):
    for _j, _w in enumerate(_words):
        WORD[_w] = _i * (LINE // 8) + _j

CONTROL_BYTES = len(_LINES) * LINE

# A device link ring (in the device's link arena): two header lines, then the slots.
LINK_HEADER_BYTES = 2 * LINE
LINK_WORD = {"tail": 0, "up_sleeping": 1, "head": LINE // 8, "sleeping": LINE // 8 + 1}

CMD_PARK, CMD_ACTIVE, CMD_TERMINATE = 0, 1, 2
CMD_BITS = 2  # the doorbell holds the inbox tail << CMD_BITS | command
CMD_MASK = (1 << CMD_BITS) - 1
STATUS_STARTING, STATUS_PARKED, STATUS_ACTIVE, STATUS_EXITED, STATUS_FAILED = 0, 1, 2, 3, 4
ERR_TRAP = 1  # the handler called __trap() (reported by the emulated device)
ERR_EXCEPTION = 2  # a C++ exception left the handler (emulated device)
ERR_SIGNAL = 3  # the handler raised a signal: SIGSEGV, SIGFPE, SIGABRT... (emulated device)
NO_MESSAGE = (1 << 64) - 1  # fault_message when no message was in flight


def doorbell_command(memory: Any) -> int:
    """The command the host last rang into the doorbell of ``memory`` (a uint8 array)."""
    i = WORD["doorbell"]
    return int(memory[: 8 * (i + 1)].view(np.uint64)[i]) & CMD_MASK


def ring_terminate(memory: Any) -> None:
    """Ring the terminate command into the doorbell of ``memory``, keeping its inbox tail.

    Only for a host that stops a loop on its way out (interpreter exit), when no inbox is
    left to publish the doorbell: the host is the doorbell's only writer either way.
    """
    i = WORD["doorbell"]
    words = memory[: 8 * (i + 1)].view(np.uint64)
    words[i] = (int(words[i]) & ~CMD_MASK) | CMD_TERMINATE


STATUS_NAMES = {
    STATUS_STARTING: "starting",
    STATUS_PARKED: "parked",
    STATUS_ACTIVE: "active",
    STATUS_EXITED: "exited",
    STATUS_FAILED: "failed",
}


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def ring_slots(capacity: int) -> int:
    """The power-of-two slot count of a ring that holds ``capacity`` messages."""
    return 1 << max(0, capacity - 1).bit_length()


@dataclass(frozen=True)
class MailboxLayout:
    """Offsets and sizes of one kernel's mailbox memory."""

    in_itemsize: int
    out_itemsize: int
    in_slots: int
    out_slots: int
    state_itemsize: int = 0

    @classmethod
    def for_capacities(
        cls,
        in_itemsize: int,
        out_itemsize: int,
        in_capacity: int,
        out_capacity: int,
        state_itemsize: int = 0,
    ) -> MailboxLayout:
        """The layout of rings holding ``in_capacity`` / ``out_capacity`` messages."""
        return cls(
            in_itemsize,
            out_itemsize,
            ring_slots(in_capacity),
            ring_slots(out_capacity),
            state_itemsize,
        )

    @property
    def in_offset(self) -> int:
        """Byte offset of the inbox slots."""
        return CONTROL_BYTES

    @property
    def out_offset(self) -> int:
        """Byte offset of the outbox slots."""
        return _round_up(self.in_offset + self.in_slots * self.in_itemsize, LINE)

    @property
    def state_offset(self) -> int:
        """Byte offset of the state slot (the generated loop computes the same)."""
        return _round_up(self.out_offset + self.out_slots * self.out_itemsize, LINE)

    @property
    def size(self) -> int:
        """Total bytes of the allocation."""
        return _round_up(self.state_offset + max(1, self.state_itemsize), LINE)


def protocol_constants() -> dict[str, int]:
    """The protocol's constants, as the C sources name them."""
    return {
        "PDC_CMD_PARK": CMD_PARK,
        "PDC_CMD_ACTIVE": CMD_ACTIVE,
        "PDC_CMD_TERMINATE": CMD_TERMINATE,
        "PDC_CMD_BITS": CMD_BITS,
        "PDC_CMD_MASK": CMD_MASK,
        "PDC_STATUS_PARKED": STATUS_PARKED,
        "PDC_STATUS_ACTIVE": STATUS_ACTIVE,
        "PDC_STATUS_EXITED": STATUS_EXITED,
        "PDC_STATUS_FAILED": STATUS_FAILED,
        "PDC_ERR_TRAP": ERR_TRAP,
        "PDC_ERR_EXCEPTION": ERR_EXCEPTION,
        "PDC_ERR_SIGNAL": ERR_SIGNAL,
    }


def control_c_source() -> str:
    """The C definition of the control block and its protocol constants."""
    lines = ["struct pdc_control {"]
    for i, (comment, words) in enumerate(_LINES):
        lines.append(f"    // line {i}: {comment}")
        for w in words:
            lines.append(f"    unsigned long long {w};")
        pad = LINE // 8 - len(words)
        if pad:
            lines.append(f"    unsigned long long _pad{i}[{pad}];")
    lines.append("};")
    lines.append(
        f"static_assert(sizeof(pdc_control) == {CONTROL_BYTES}, "
        '"control block size must match pydotcompute/backends/device/_memory.py");'
    )
    for name, index in WORD.items():
        lines.append(
            f"static_assert(offsetof(pdc_control, {name}) == {index * 8}, "
            f'"offset of pdc_control::{name}");'
        )
    lines += [f"#define {k} {v}ull" for k, v in protocol_constants().items()]
    return "\n".join(lines)


def link_c_source() -> str:
    """The C definition of a device link ring's header (the slots follow it)."""
    return f"""\
// A device link ring: written by the upstream kernel (tail, slots), read by the downstream
// kernel (head, sleeping); the host only allocates it and reads it after both let go.
struct pdc_link {{
    // line 0: written by the upstream kernel
    unsigned long long tail;
    unsigned long long up_sleeping;  // 1 while it sleeps until head changes (ring full)
    unsigned long long _pad0[6];
    // line 1: written by the downstream kernel
    unsigned long long head;
    unsigned long long sleeping;  // 1 while it sleeps until tail changes (emulated device)
    unsigned long long _pad1[6];
}};
static_assert(sizeof(pdc_link) == {LINK_HEADER_BYTES}, "link header size");"""


def word_c_defines() -> str:
    """``#define PDC_WORD_<name> <index>`` for the native host code (no struct there)."""
    lines = [f"#define PDC_WORD_{name} {index}" for name, index in WORD.items()]
    lines += [f"#define {k} {v}ull" for k, v in protocol_constants().items()]
    return "\n".join(lines)
