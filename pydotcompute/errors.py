"""The exception family of PyDotCompute.

Every error the library raises derives from :class:`PyDotComputeError`. Where a builtin
exception fits, the class also inherits it, so ``except TimeoutError`` or ``except
ValueError`` keep working. Each message says what failed, the offending value, what was
expected, and how to fix it.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "BackendUnavailableError",
    "CacheTrustError",
    "DeviceFaultError",
    "DeviceNotFoundError",
    "InvalidArgumentError",
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


class _BoundedRepr(reprlib.Repr):
    """``repr`` with bounded depth and size, for values that came from untrusted bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = self.maxlong = 60
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 6
        self.maxdict = 4

    def repr_bytes(self, value: bytes, level: int) -> str:
        text = repr(value[: self.maxstring])
        return text if len(value) <= self.maxstring else text + "..."

    def repr_instance(self, value: Any, level: int) -> str:
        try:
            return super().repr_instance(value, level)
        except Exception:  # a __repr__ that raises must not hide the error being reported
            return f"<{type(value).__name__} object>"


_bounded = _BoundedRepr()


def _short_repr(value: Any, limit: int = 80) -> str:
    """A repr of at most ``limit`` characters that never recurses without bound."""
    try:
        text = _bounded.repr(value)
    except Exception:  # a container subclass whose iteration or repr raises
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PyDotComputeError(Exception):
    """Base class of every error raised by PyDotCompute."""


class InvalidArgumentError(PyDotComputeError, ValueError):
    """An argument of a call is out of range or of the wrong kind."""


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
    """Bytes given to ``from_bytes`` or ``decode_message`` were refused.

    Every failure to decode raises this error (never a bare msgpack, numpy or Python error),
    and building its message never recurses without bound. The message says which of these
    happened:

    * the bytes are not msgpack, are truncated, or have bytes left over (``cannot decode X
      from N bytes``): pass exactly the bytes one ``to_bytes()`` produced;
    * a field does not match its declared type (``X: field: expected T, got ...``), or the
      tag names another class or none known here: decode with the right class, or import
      the class that encoded the bytes first;
    * an extension payload is malformed (a UUID that is not 16 bytes, a numpy array whose
      header does not match its data, an unknown extension type);
    * a limit was exceeded (the message names it): messages nested inside ``Any`` values
      more than 16 deep, lists or maps nested more than 1024 deep, an array with more than
      64 dimensions, a dtype description too large or too deep. Such bytes were not made by
      ``to_bytes()``; refuse them;
    * the class's own ``__post_init__`` refused the decoded values (the original error is
      the ``__cause__``): the bytes hold values the constructor refuses too.
    """


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

    @classmethod
    def caused_by(cls, kernel_id: str, error: BaseException, detail: str = "") -> KernelFailedError:
        """The error to raise for ``error``, with it as the cause (its traceback shown)."""
        err = cls(kernel_id, error, detail)
        err.__cause__ = error
        err.__suppress_context__ = True
        return err


class CacheTrustError(PyDotComputeError, PermissionError):
    """A cache directory or file could have been written by another user: never loaded.

    The message names the path, its owner or mode, and the fix (``chmod 700 DIR``, delete the
    file, or set ``PYDOTCOMPUTE_CACHE_DIR`` to a folder of your own).
    """


class QueueFullError(PyDotComputeError):
    """A mailbox is full and the kernel's backpressure policy refused the message.

    Attributes
    ----------
    queued:
        For ``send_many``: how many messages of the batch were queued before it was refused
        (they stay queued; resend ``msgs[queued:]``). 0 for a single ``send``.
    """

    queued: int = 0


class OperationTimeoutError(PyDotComputeError, TimeoutError):
    """A blocking call did not finish within its ``timeout``."""


class ReceiveTimeoutError(OperationTimeoutError):
    """No message arrived within the ``timeout`` given to ``receive``."""


class SendTimeoutError(QueueFullError, OperationTimeoutError):
    """A ``block`` policy send waited ``timeout`` seconds and the mailbox stayed full."""


class BackendUnavailableError(PyDotComputeError, RuntimeError):
    """A backend (CUDA, Numba, a C++ compiler) is not usable on this machine."""


class KernelCompileError(PyDotComputeError, RuntimeError):
    """The code of a kernel did not compile: a device ring kernel's handler or a ``@kernel``.

    For device ring kernels (built with :meth:`from_compiler`) the message quotes the compiler's
    errors with their line numbers mapped back to the handler ``SOURCE`` (``handle line N:
    ...``, line 1 being the first line of ``cuda=``) or the ``cuda_prelude`` (``prelude line
    N: ...``); for ``@kernel`` functions Numba's own error is the ``__cause__``.

    Attributes
    ----------
    kernel_id:
        The kernel whose code failed (``None`` when not known).
    log:
        The full compiler log (empty when the cause carries it).
    source:
        The generated source that was compiled (empty when not generated).
    errors:
        ``(part, line, text)`` for each error the log reports in the user's code, where
        ``part`` is ``"handle"`` or ``"prelude"``.
    """

    def __init__(
        self,
        message: str,
        *,
        kernel_id: str | None = None,
        log: str = "",
        source: str = "",
        errors: list[tuple[str, int, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.kernel_id = kernel_id
        self.log = log
        self.source = source
        self.errors = errors or []

    @classmethod
    def from_compiler(
        cls,
        kernel_id: str,
        compiler: str,
        log: str,
        source: str,
        errors: list[tuple[str, int, str]],
    ) -> KernelCompileError:
        """The error of a device kernel build, quoting the errors found in the user's code."""
        if errors:
            shown = "\n".join(f"  {part} line {line}: {text}" for part, line, text in errors[:5])
            where = f"errors in your code:\n{shown}"
        else:
            where = f"compiler log:\n{log.strip()[:2000]}"
        return cls(
            f"device ring kernel {kernel_id!r} did not compile with {compiler}; {where}\n"
            "Fix the cuda= SOURCE (line 1 is its first line) or cuda_prelude=; the full log "
            "is in .log and the generated source in .source",
            kernel_id=kernel_id,
            log=log,
            source=source,
            errors=errors,
        )


class DeviceFaultError(PyDotComputeError, RuntimeError):
    """A device ring kernel faulted, trapped, or did not exit in time.

    Attributes
    ----------
    kernel_id:
        The kernel that failed.
    cuda_error:
        The CUDA error name (``"cudaErrorIllegalAddress"``, ...) or ``None``.
    context_usable:
        Whether the CUDA context (or the emulated device) can still run kernels; a sticky
        CUDA error poisons the context until the process restarts.
    """

    def __init__(
        self, kernel_id: str, what: str, *, cuda_error: str | None, context_usable: bool
    ) -> None:
        self.kernel_id = kernel_id
        self.cuda_error = cuda_error
        self.context_usable = context_usable
        context = (
            "the device is still usable: other kernels keep running and new ones can launch"
            if context_usable
            else "the CUDA context is NOT usable any more (a sticky error): every CUDA call in "
            "this process will fail; restart the Python process (the kernel) to use the GPU"
        )
        super().__init__(f"device ring kernel {kernel_id!r} {what}; {context}")


class DeviceNotFoundError(PyDotComputeError, LookupError):
    """An accelerator id names no device present here (``"cuda:3"`` on a one-GPU machine)."""


class KernelArgumentError(PyDotComputeError, TypeError):
    """A ``@kernel`` got an argument it cannot take (wrong type, wrong place, wrong count)."""
