"""PyDotCompute: GPU-native actors (ring kernels) with typed message passing.

``import pydotcompute`` needs only numpy and msgpack; CUDA, Numba and Jupyter support are
imported when first used.

The library logs through ``logging.getLogger("pydotcompute")``, which has only a
``NullHandler``: nothing is printed unless the application configures logging (for example
``logging.basicConfig(level=logging.INFO)``). Failures are never only logged: they are in
telemetry and raised by the next ``receive`` or ``call``.
"""

import logging
from typing import Any

from ._progress import BuildEvent, add_build_listener
from ._version import __version__
from .backends.device import generated_source
from .backends.host import LaunchResult, TerminateResult
from .compute import (
    Accelerator,
    BufferState,
    BufferStats,
    ComputeOrchestrator,
    DeviceTelemetry,
    Kernel,
    KernelStats,
    StepRecord,
    UnifiedBuffer,
    kernel,
)
from .errors import (
    BackendUnavailableError,
    CacheTrustError,
    DeviceFaultError,
    DeviceNotFoundError,
    InvalidArgumentError,
    KernelArgumentError,
    KernelCompileError,
    KernelFailedError,
    KernelNotFoundError,
    KernelRegistrationError,
    KernelStateError,
    LayoutError,
    MessageDecodeError,
    MessageDefinitionError,
    MessageEncodeError,
    MessageTypeError,
    MessageValidationError,
    OperationTimeoutError,
    PyDotComputeError,
    QueueFullError,
    ReceiveTimeoutError,
    SendTimeoutError,
)
from .messages import Array, FixedLayout, decode_message, fixed_layout, is_message, message
from .ring import (
    Backpressure,
    DeadLetter,
    DeadLetterReason,
    KernelContext,
    KernelOptions,
    KernelState,
    RestartPolicy,
    RingKernelSpec,
    TerminationRequested,
    TopicReceiver,
    get_kernel_spec,
    registered_kernels,
    ring_kernel,
    unregister_kernel,
)
from .runtime import RingKernelRuntime
from .telemetry import KernelTelemetry, RuntimeSnapshot

# A library leaves output to the application (Python's logging HOWTO): without a handler of
# its own, warnings would reach stderr through logging.lastResort, into every notebook cell.
logging.getLogger("pydotcompute").addHandler(logging.NullHandler())


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%%ring_kernel`` and ``%ring`` magics: ``%load_ext pydotcompute``."""
    from .jupyter import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Terminate the notebook runtime's kernels and remove the magics: ``%unload_ext``."""
    from .jupyter import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "Accelerator",
    "Array",
    "BackendUnavailableError",
    "Backpressure",
    "BufferState",
    "BufferStats",
    "BuildEvent",
    "CacheTrustError",
    "ComputeOrchestrator",
    "DeadLetter",
    "DeadLetterReason",
    "DeviceFaultError",
    "DeviceNotFoundError",
    "DeviceTelemetry",
    "FixedLayout",
    "InvalidArgumentError",
    "Kernel",
    "KernelArgumentError",
    "KernelCompileError",
    "KernelContext",
    "KernelFailedError",
    "KernelNotFoundError",
    "KernelOptions",
    "KernelRegistrationError",
    "KernelState",
    "KernelStateError",
    "KernelStats",
    "KernelTelemetry",
    "LaunchResult",
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
    "RestartPolicy",
    "RingKernelRuntime",
    "RingKernelSpec",
    "RuntimeSnapshot",
    "SendTimeoutError",
    "StepRecord",
    "TerminateResult",
    "TerminationRequested",
    "TopicReceiver",
    "UnifiedBuffer",
    "__version__",
    "add_build_listener",
    "decode_message",
    "fixed_layout",
    "generated_source",
    "get_kernel_spec",
    "is_message",
    "kernel",
    "load_ipython_extension",
    "message",
    "registered_kernels",
    "ring_kernel",
    "unload_ipython_extension",
    "unregister_kernel",
]
