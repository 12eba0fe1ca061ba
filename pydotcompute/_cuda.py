"""Whether CUDA is usable here, found without importing CuPy at ``import pydotcompute``.

``cuda_status()`` imports CuPy on first call (only then) and asks it for a device; the answer is
cached for the process. Every GPU feature and every ``gpu`` test asks this one function.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any

from ._install import extra_hint
from .errors import BackendUnavailableError

__all__ = ["CudaStatus", "cuda_status", "require_cupy"]


@dataclass(frozen=True)
class CudaStatus:
    """Whether a usable CUDA GPU is present, and why not if it is not."""

    usable: bool
    reason: str
    device_count: int = 0
    device_name: str | None = None
    compute_capability: str | None = None

    def __str__(self) -> str:
        if self.usable:
            name, cc = self.device_name, self.compute_capability
            return f"{self.device_count} GPU(s), device 0: {name} (sm_{cc})"
        return self.reason


@functools.cache
def cuda_status() -> CudaStatus:
    """Report whether CuPy is installed and sees a usable CUDA device (cached)."""
    if importlib.util.find_spec("cupy") is None:
        return CudaStatus(False, f"CuPy is not installed ({extra_hint('cuda')})")
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises CUDARuntimeError, ImportError of libs, ...
        return CudaStatus(False, f"CuPy found no usable CUDA driver or device: {exc}")
    if count == 0:
        return CudaStatus(False, "no CUDA device is visible")
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        cc = f"{props['major']}{props['minor']}"
    except Exception as exc:
        return CudaStatus(False, f"CUDA device 0 cannot be queried: {exc}")
    return CudaStatus(True, "usable", count, name, cc)


def require_cupy(feature: str) -> Any:
    """Import and return CuPy for ``feature``, or raise a clear error when CUDA is unusable."""
    status = cuda_status()
    if not status.usable:
        raise BackendUnavailableError(
            f"{feature} needs a usable CUDA GPU, but {status.reason}; use the CPU or the "
            "emulated device instead"
        )
    import cupy

    return cupy
