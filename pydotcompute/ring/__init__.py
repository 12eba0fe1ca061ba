"""Ring kernels: declaration, context, lifecycle states, options and mailboxes."""

from ._context import KernelContext, TerminationRequested
from ._options import Backpressure, KernelOptions, RestartPolicy
from ._spec import (
    RingKernelSpec,
    get_kernel_spec,
    registered_kernels,
    ring_kernel,
    unregister_kernel,
)
from ._state import KernelState

__all__ = [
    "Backpressure",
    "KernelContext",
    "KernelOptions",
    "KernelState",
    "RestartPolicy",
    "RingKernelSpec",
    "TerminationRequested",
    "get_kernel_spec",
    "registered_kernels",
    "ring_kernel",
    "unregister_kernel",
]
