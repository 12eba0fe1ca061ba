"""The dead-letter queue: messages that could not be delivered, with why and to whom.

A message is never lost silently (an architecture rule). When one cannot reach its kernel (a
drop policy evicted or refused it, ``terminate`` discarded it, it was routed to a kernel that
is terminated, failed or unknown, or published to a topic nobody listens to when the runtime
was asked to keep those) it is counted and kept here, in a bounded queue that forgets the
oldest letters first. The counts are totals since the runtime started, also for letters the
queue has already forgotten.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["DeadLetter", "DeadLetterQueue", "DeadLetterReason"]


class DeadLetterReason(enum.StrEnum):
    """Why a message became a dead letter.

    ``drop_oldest`` / ``drop_newest``: a full inbox with that policy evicted it or refused it.
    ``discarded``: it was still queued when its kernel was terminated (or its body ended).
    ``terminated`` / ``failed``: it was routed (link, ``send_to``, topic) to a kernel that is
    terminated or failed. ``not_launched``: routed to a kernel that is registered but not
    launched. ``unknown_kernel``: routed to an id nothing is registered or launched under.
    ``rejected``: a device kernel's linked output met a full ``reject`` inbox (a device loop
    has no body to raise in). ``no_subscriber``: published to a topic without subscribers
    (only with ``RingKernelRuntime(unheard_topics="dead_letter")``).
    """

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    DISCARDED = "discarded"
    TERMINATED = "terminated"
    FAILED = "failed"
    NOT_LAUNCHED = "not_launched"
    UNKNOWN_KERNEL = "unknown_kernel"
    REJECTED = "rejected"
    NO_SUBSCRIBER = "no_subscriber"


@dataclass(frozen=True)
class DeadLetter:
    """One message that could not be delivered.

    Attributes
    ----------
    message:
        The message itself.
    reason:
        Why it was not delivered (a :class:`DeadLetterReason`).
    kernel_id:
        The kernel it was meant for (``None`` for a host topic receiver, or a topic with no
        subscriber).
    sender:
        The kernel that sent it over a link, ``send_to`` or ``publish`` (``None`` for the host
        or when unknown, as for drops).
    topic:
        The topic it was published to, if any.
    time:
        When it became a dead letter (``time.time()``).
    """

    message: Any
    reason: DeadLetterReason
    kernel_id: str | None
    sender: str | None = None
    topic: str | None = None
    time: float = 0.0


class DeadLetterQueue:
    """Bounded queue of dead letters plus their counts (total and per intended kernel)."""

    __slots__ = ("_letters", "by_kernel", "total")

    def __init__(self, capacity: int) -> None:
        if type(capacity) is not int or capacity < 1:
            raise InvalidArgumentError(
                f"dead_letter_capacity={capacity!r} must be an int >= 1 (how many dead "
                "letters the runtime keeps)"
            )
        self._letters: deque[DeadLetter] = deque(maxlen=capacity)
        self.total = 0
        self.by_kernel: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._letters)

    @property
    def capacity(self) -> int:
        """How many letters are kept (the oldest are forgotten first)."""
        return self._letters.maxlen or 0

    def add(
        self,
        msg: Any,
        reason: DeadLetterReason,
        kernel_id: str | None,
        sender: str | None = None,
        topic: str | None = None,
    ) -> None:
        """Count ``msg`` and keep it with its reason, intended kernel and the time."""
        self._letters.append(DeadLetter(msg, reason, kernel_id, sender, topic, time.time()))
        self.total += 1
        if kernel_id is not None:
            self.by_kernel[kernel_id] = self.by_kernel.get(kernel_id, 0) + 1

    def hook(self, kernel_id: str | None, topic: str | None = None) -> Callable[[Any, str], None]:
        """The ``on_drop`` callback of an inbox: ``(message, reason)`` -> a dead letter."""
        add = self.add

        def on_drop(msg: Any, reason: str) -> None:
            add(msg, DeadLetterReason(reason), kernel_id, None, topic)

        return on_drop

    def letters(self, kernel_id: str | None = None) -> list[DeadLetter]:
        """The kept letters, oldest first (only those meant for ``kernel_id`` if given)."""
        if kernel_id is None:
            return list(self._letters)
        return [d for d in self._letters if d.kernel_id == kernel_id]

    def clear(self) -> None:
        """Forget the kept letters (the counts stay)."""
        self._letters.clear()
