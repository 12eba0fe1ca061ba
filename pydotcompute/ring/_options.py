"""Options of a ring kernel: queue sizes, message types, backpressure and restart policy."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

from ..errors import KernelRegistrationError

__all__ = ["Backpressure", "KernelOptions", "RestartPolicy"]


class Backpressure(enum.StrEnum):
    """What a send into a full inbox does.

    ``block`` waits for space (``SendTimeoutError`` at the timeout); ``reject`` raises
    ``QueueFullError`` at once; ``drop_oldest`` evicts the oldest queued message (by
    arrival, whatever its priority) and counts it dropped; ``drop_newest`` discards the new
    message and counts it dropped.
    """

    BLOCK = "block"
    REJECT = "reject"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class RestartPolicy(enum.StrEnum):
    """When a kernel's body is restarted (Erlang-style).

    ``never`` (temporary): a failure leaves the kernel ``FAILED``. ``on_failure``
    (transient): restart when the body raises. ``always`` (permanent): restart also when the
    body returns on its own. Restarts keep the inbox; more than ``max_restarts`` within
    ``within`` seconds leaves the kernel ``FAILED``.
    """

    NEVER = "never"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"


def _enum(cls: type[enum.Enum], value: Any, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise KernelRegistrationError(f"{name}={value!r} is not one of {choices}") from None


def _names(value: Any, name: str, what: str) -> tuple[str, ...]:
    """A str or a sequence of non-empty str as a tuple without repeats."""
    items = (value,) if isinstance(value, str) else value
    try:
        names = tuple(items)
    except TypeError:
        names = (items,)
    for n in names:
        if not isinstance(n, str) or not n:
            raise KernelRegistrationError(
                f"{name}={value!r}: each {what} must be a non-empty str; pass a {what} or a "
                f"list of them"
            )
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class KernelOptions:
    """Options of one ring kernel, validated at construction.

    ``queue_size`` sets both mailboxes unless ``input_queue_size`` / ``output_queue_size``
    are given. ``input_type`` / ``output_type`` (classes, or ``None`` for anything) are
    checked on every send. ``outputs_to`` (kernel ids) links the kernel's output to those
    kernels when it is launched; ``subscribes_to`` (topics) subscribes it to those topics.
    """

    queue_size: int = 1024
    input_queue_size: int | None = None
    output_queue_size: int | None = None
    input_type: type | None = None
    output_type: type | None = None
    backpressure: Backpressure = Backpressure.BLOCK
    restart: RestartPolicy = RestartPolicy.NEVER
    max_restarts: int = 3
    within: float = 5.0
    outputs_to: tuple[str, ...] = ()
    subscribes_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "outputs_to", _names(self.outputs_to, "outputs_to", "kernel id"))
        set_(self, "subscribes_to", _names(self.subscribes_to, "subscribes_to", "topic"))
        set_(self, "backpressure", _enum(Backpressure, self.backpressure, "backpressure"))
        set_(self, "restart", _enum(RestartPolicy, self.restart, "restart"))
        for name in ("queue_size", "input_queue_size", "output_queue_size", "max_restarts"):
            value = getattr(self, name)
            if value is None and name != "queue_size" and name != "max_restarts":
                continue
            minimum = 0 if name == "max_restarts" else 1
            if type(value) is not int or value < minimum:
                raise KernelRegistrationError(f"{name}={value!r} must be an int >= {minimum}")
        if (
            not isinstance(self.within, (int, float))
            or not math.isfinite(self.within)
            or (self.within <= 0)
        ):
            raise KernelRegistrationError(f"within={self.within!r} must be a positive number")
        for name in ("input_type", "output_type"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, type):
                raise KernelRegistrationError(
                    f"{name}={value!r} must be a class (a @message type) or None"
                )

    @property
    def inbox_capacity(self) -> int:
        """Capacity of the inbox."""
        return self.input_queue_size or self.queue_size

    @property
    def outbox_capacity(self) -> int:
        """Capacity of the outbox."""
        return self.output_queue_size or self.queue_size

    def replace(self, **changes: Any) -> KernelOptions:
        """Return a copy with ``changes``; an unknown option raises a clear error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise KernelRegistrationError(
                f"unknown ring kernel option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes)
