"""The mailbox memory of a device ring kernel: one control block and two rings.

One allocation (pinned mapped host memory on CUDA, a 64-byte aligned numpy buffer on the
emulated device) holds, in order:

* the control block: 64-byte lines of ``uint64`` words. Line 0 is written by the host only
  (``command``); line 1 by the device only (``status``, ``error``, ``heartbeat`` and the
  counters); then one line per ring index: the inbox ``tail`` (host), the inbox ``head``
  (device), the outbox ``tail`` (device), the outbox ``head`` (host). Each word has exactly
  one writer, so no atomic read-modify-write ever crosses PCIe.
* the inbox ring: a power-of-two number of slots of the input message's fixed layout;
* the outbox ring: the same for the output layout;
* the state slot (sequential kernels): the kernel's ``State`` while the loop is parked. The
  loop loads it when it turns active and stores it back when it parks or exits, so the host
  can read and write it while the kernel is parked, and a relaunch can carry it over. The
  device finds it after the outbox ring, on the next 64-byte boundary.

Indices count messages since launch and never wrap (64 bits); a slot is ``index & mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CMD_ACTIVE",
    "CMD_PARK",
    "CMD_TERMINATE",
    "CONTROL_BYTES",
    "ERR_TRAP",
    "STATUS_ACTIVE",
    "STATUS_EXITED",
    "STATUS_FAILED",
    "STATUS_PARKED",
    "STATUS_STARTING",
    "WORD",
    "MailboxLayout",
    "control_c_source",
]

LINE = 64  # bytes: each writer's words sit on their own cache line
WORD: dict[str, int] = {}  # control word name -> index of its uint64 in the control block

# (line, [words]) in order; the comments are copied into the generated C struct.
_LINES: list[tuple[str, list[str]]] = [
    ("written by the host", ["command"]),
    (
        "written by the device",
        ["status", "error", "heartbeat", "processed", "idle_polls", "busy_ns", "full_waits"],
    ),
    ("inbox tail: written by the host (producer)", ["in_tail"]),
    ("inbox head: written by the device (consumer)", ["in_head"]),
    ("outbox tail: written by the device (producer)", ["out_tail"]),
    ("outbox head: written by the host (consumer)", ["out_head"]),
]
for _i, (_, _words) in enumerate(_LINES):
    for _j, _w in enumerate(_words):
        WORD[_w] = _i * (LINE // 8) + _j

CONTROL_BYTES = len(_LINES) * LINE

CMD_PARK, CMD_ACTIVE, CMD_TERMINATE = 0, 1, 2
STATUS_STARTING, STATUS_PARKED, STATUS_ACTIVE, STATUS_EXITED, STATUS_FAILED = 0, 1, 2, 3, 4
ERR_TRAP = 1  # the handler called __trap() (reported by the emulated device)

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
    consts = {
        "PDC_CMD_PARK": CMD_PARK,
        "PDC_CMD_ACTIVE": CMD_ACTIVE,
        "PDC_CMD_TERMINATE": CMD_TERMINATE,
        "PDC_STATUS_PARKED": STATUS_PARKED,
        "PDC_STATUS_ACTIVE": STATUS_ACTIVE,
        "PDC_STATUS_EXITED": STATUS_EXITED,
        "PDC_STATUS_FAILED": STATUS_FAILED,
        "PDC_ERR_TRAP": ERR_TRAP,
    }
    lines += [f"#define {k} {v}ull" for k, v in consts.items()]
    return "\n".join(lines)
