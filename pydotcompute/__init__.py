"""PyDotCompute: GPU-native actors (ring kernels) with typed message passing.

``import pydotcompute`` needs only numpy and msgpack; CUDA, Numba and Jupyter support are
imported when first used.
"""

from ._version import __version__
from .backends.device import generated_source
from .backends.host import LaunchResult, TerminateResult
from .errors import (
    BackendUnavailableError,
    DeviceFaultError,
    InvalidArgumentError,
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
    KernelContext,
    KernelOptions,
    KernelState,
    RestartPolicy,
    RingKernelSpec,
    TerminationRequested,
    get_kernel_spec,
    registered_kernels,
    ring_kernel,
    unregister_kernel,
)
from .runtime import RingKernelRuntime
from .telemetry import KernelTelemetry, RuntimeSnapshot

__all__ = [
    "Array",
    "BackendUnavailableError",
    "Backpressure",
    "DeviceFaultError",
    "FixedLayout",
    "InvalidArgumentError",
    "KernelCompileError",
    "KernelContext",
    "KernelFailedError",
    "KernelNotFoundError",
    "KernelOptions",
    "KernelRegistrationError",
    "KernelState",
    "KernelStateError",
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
    "TerminateResult",
    "TerminationRequested",
    "__version__",
    "decode_message",
    "fixed_layout",
    "generated_source",
    "get_kernel_spec",
    "is_message",
    "message",
    "registered_kernels",
    "ring_kernel",
    "unregister_kernel",
]
