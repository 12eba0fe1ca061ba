"""The compute layer: accelerators, unified buffers, ``@kernel`` and the orchestrator.

``Accelerator`` names a device (the CPU, a CUDA GPU); ``UnifiedBuffer`` is an array with a
host and a device side copied lazily; ``@kernel`` compiles one Python body with Numba for
the CPU or as a CUDA kernel (PTX cached on disk); ``ComputeOrchestrator`` runs kernels and
host steps on streams with a record per step. CuPy and Numba are imported on first use.
"""

from ._accelerator import Accelerator
from ._buffer import BufferState, BufferStats, UnifiedBuffer
from ._kernel import Kernel, KernelStats, kernel
from ._orchestrator import ComputeOrchestrator, StepRecord
from ._runtime import device_snapshot
from ._telemetry import DeviceTelemetry

__all__ = [
    "Accelerator",
    "BufferState",
    "BufferStats",
    "ComputeOrchestrator",
    "DeviceTelemetry",
    "Kernel",
    "KernelStats",
    "StepRecord",
    "UnifiedBuffer",
    "device_snapshot",
    "kernel",
]
