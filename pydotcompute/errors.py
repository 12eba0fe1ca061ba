"""The exception family of PyDotCompute.

Every error the library raises derives from :class:`PyDotComputeError`. Where a builtin
exception fits, the class also inherits it, so ``except TimeoutError`` or ``except
ValueError`` keep working. Each message says what failed, the offending value, what was
expected, and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailableError",
    "DeviceNotFoundError",
    "KernelArgumentError",
    "KernelCompileError",
    "KernelFailedError",
    "KernelNotFoundError",
    "KernelRegistrationError",
    "KernelStateError",
    "LayoutError",
    "MessageDecodeError",
    "MessageDefinitionError",
    "MessageEncodeError",
    "MessageTypeError",
    "MessageValidationError",
    "OperationTimeoutError",
    "PyDotComputeError",
    "QueueFullError",
    "ReceiveTimeoutError",
    "SendTimeoutError",
]


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PyDotComputeError(Exception):
    """Base class of every error raised by PyDotCompute."""


class MessageDefinitionError(PyDotComputeError, TypeError):
    """A class given to ``@message`` cannot become a message type."""


class MessageValidationError(PyDotComputeError, ValueError):
    """A message field got a value that cannot be coerced to its declared type.

    Attributes
    ----------
    message_type:
        Name of the message class.
    field:
        Dotted path of the field inside the message (``values[2]`` for list items).
    value:
        The offending value.
    expected:
        Readable form of the declared type.
    """

    def __init__(self, message_type: str, field: str, value: Any, expected: str) -> None:
        self.message_type = message_type
        self.field = field
        self.value = value
        self.expected = expected
        got = type(value).__name__
        super().__init__(
            f"{message_type}.{field}: expected {expected}, got {got} {_short_repr(value)}; "
            f"pass a value of type {expected}"
        )


class MessageEncodeError(PyDotComputeError, TypeError):
    """A message holds a value that the msgpack codec cannot serialize."""


class MessageDecodeError(PyDotComputeError, ValueError):
    """Bytes given to ``from_bytes`` are not a valid encoding of the message type."""


class LayoutError(PyDotComputeError, TypeError):
    """A message type has no fixed layout where one is required (device kernels)."""


class MessageTypeError(PyDotComputeError, TypeError):
    """A message of the wrong type was sent to a ring kernel."""


class KernelRegistrationError(PyDotComputeError, ValueError):
    """A ring kernel definition is invalid or its id is already taken."""


class KernelNotFoundError(PyDotComputeError, LookupError):
    """No ring kernel with the given id is registered or launched."""


class KernelStateError(PyDotComputeError, RuntimeError):
    """A lifecycle verb was called in a state that does not allow it."""


class KernelFailedError(PyDotComputeError, RuntimeError):
    """A ring kernel's body raised; the original exception is ``__cause__`` and ``error``.

    Attributes
    ----------
    kernel_id:
        The kernel that failed.
    error:
        The exception raised by the kernel body.
    """

    def __init__(self, kernel_id: str, error: BaseException, detail: str = "") -> None:
        self.kernel_id = kernel_id
        self.error = error
        extra = f" {detail}" if detail else ""
        super().__init__(
            f"ring kernel {kernel_id!r} failed: {type(error).__name__}: {error}.{extra} "
            "Terminate it, or launch it with restart='on_failure' to have it restarted"
        )


class QueueFullError(PyDotComputeError):
    """A mailbox is full and the kernel's backpressure policy refused the message."""


class OperationTimeoutError(PyDotComputeError, TimeoutError):
    """A blocking call did not finish within its ``timeout``."""


class ReceiveTimeoutError(OperationTimeoutError):
    """No message arrived within the ``timeout`` given to ``receive``."""


class SendTimeoutError(QueueFullError, OperationTimeoutError):
    """A ``block`` policy send waited ``timeout`` seconds and the mailbox stayed full."""


class BackendUnavailableError(PyDotComputeError, RuntimeError):
    """A backend (CUDA, Numba, a C++ compiler) is not usable on this machine."""


class DeviceNotFoundError(PyDotComputeError, LookupError):
    """An accelerator id names no device present here (``"cuda:3"`` on a one-GPU machine)."""


class KernelArgumentError(PyDotComputeError, TypeError):
    """A ``@kernel`` got an argument it cannot take (wrong type, wrong place, wrong count)."""


class KernelCompileError(PyDotComputeError, RuntimeError):
    """Numba could not compile a ``@kernel`` body; Numba's own error is the cause."""
