"""Ring kernels: declaration, context, lifecycle states, options, mailboxes and routing."""

from ._context import KernelContext, TerminationRequested
from ._dead_letters import DeadLetter, DeadLetterReason
from ._options import Backpressure, KernelOptions, RestartPolicy
from ._spec import (
    RingKernelSpec,
    get_kernel_spec,
    registered_kernels,
    ring_kernel,
    unregister_kernel,
)
from ._state import KernelState
from ._topics import TopicReceiver

__all__ = [
    "Backpressure",
    "DeadLetter",
    "DeadLetterReason",
    "KernelContext",
    "KernelOptions",
    "KernelState",
    "RestartPolicy",
    "RingKernelSpec",
    "TerminationRequested",
    "TopicReceiver",
    "get_kernel_spec",
    "registered_kernels",
    "ring_kernel",
    "unregister_kernel",
]
