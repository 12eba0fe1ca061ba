"""The lifecycle of a ring kernel, shared by host and device kernels."""

from __future__ import annotations

import enum

from ..errors import KernelStateError

__all__ = ["KernelState"]


class KernelState(enum.StrEnum):
    """Lifecycle state of a ring kernel.

    ``CREATED -> LAUNCHED -> ACTIVE <-> DEACTIVATED -> TERMINATING -> TERMINATED``, plus
    ``FAILED`` when the body raises (or a device kernel reports an error).
    """

    CREATED = "CREATED"
    LAUNCHED = "LAUNCHED"
    ACTIVE = "ACTIVE"
    DEACTIVATED = "DEACTIVATED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAILED = "FAILED"


S = KernelState

#: verb -> states it may be called in
ALLOWED: dict[str, frozenset[KernelState]] = {
    "launch": frozenset({S.CREATED, S.TERMINATED}),
    "activate": frozenset({S.LAUNCHED, S.DEACTIVATED}),
    "deactivate": frozenset({S.ACTIVE}),
    "terminate": frozenset({S.LAUNCHED, S.ACTIVE, S.DEACTIVATED, S.FAILED}),
    "relaunch": frozenset({S.LAUNCHED, S.ACTIVE, S.DEACTIVATED, S.FAILED}),
}

#: states in which sends are queued
ACCEPTING = frozenset({S.LAUNCHED, S.ACTIVE, S.DEACTIVATED})

_HINTS = {
    S.CREATED: "launch it first",
    S.LAUNCHED: "activate it to start processing, or terminate it",
    S.ACTIVE: "deactivate or terminate it",
    S.DEACTIVATED: "activate it to resume, or terminate it",
    S.TERMINATING: "wait for terminate() to finish",
    S.TERMINATED: "launch it again to start a new instance",
    S.FAILED: "terminate it, or relaunch it to keep its queued messages",
}


def check(kernel_id: str, state: KernelState, verb: str) -> None:
    """Raise :class:`KernelStateError` if ``verb`` is not allowed in ``state``."""
    if state not in ALLOWED[verb]:
        allowed = sorted(v for v, states in ALLOWED.items() if state in states)
        raise KernelStateError(
            f"cannot {verb} ring kernel {kernel_id!r}: it is {state.value}; "
            f"allowed now: {', '.join(allowed) or 'nothing'} ({_HINTS[state]})"
        )


#: states in which a kernel is alive (its body or device loop may run)
LIVE = frozenset({S.LAUNCHED, S.ACTIVE, S.DEACTIVATED, S.TERMINATING, S.FAILED})
