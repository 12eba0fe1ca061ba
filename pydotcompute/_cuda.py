"""Whether CUDA is usable here, found without importing CuPy at ``import pydotcompute``.

``cuda_status()`` imports CuPy on first call (only then) and asks it for a device; the answer is
cached for the process. Every GPU feature and every ``gpu`` test asks this one function.

Importing this module (``import pydotcompute`` does) sets ``CUDA_MODULE_LOADING=EAGER`` unless
the environment already names a mode. The CUDA driver reads that variable once, when it is
initialised: with lazy loading, loading a module while a persistent ring kernel runs can wait
for that kernel forever. :func:`check_ring_kernel_environment` verifies the mode the driver
really uses (``cuModuleGetLoadingMode``) before a ring kernel is launched.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

from ._install import extra_hint
from .errors import BackendUnavailableError

__all__ = [
    "CudaStatus",
    "check_ring_kernel_environment",
    "cuda_status",
    "cupy_cuda_major",
    "cupy_distribution",
    "module_loading_mode",
    "require_cupy",
]

MODULE_LOADING = "CUDA_MODULE_LOADING"
#: Whether this module chose the loading mode (the environment named none before import).
EAGER_SET_HERE = MODULE_LOADING not in os.environ
if EAGER_SET_HERE:
    os.environ[MODULE_LOADING] = "EAGER"

#: CuPy's wheels, newest toolchain first, and the CUDA major each is built for.
CUPY_WHEELS = (("cupy-cuda13x", 13), ("cupy-cuda12x", 12), ("cupy-cuda11x", 11), ("cupy", None))
_LOADING_MODES = {1: "EAGER", 2: "LAZY"}  # CUmoduleLoadingMode


@dataclass(frozen=True)
class CudaStatus:
    """Whether a usable CUDA GPU is present, and why not if it is not."""

    usable: bool
    reason: str
    device_count: int = 0
    device_name: str | None = None
    compute_capability: str | None = None
    driver_version: int | None = None  # e.g. 13000 for CUDA 13.0
    module_loading: str | None = None  # "EAGER" / "LAZY" as the driver reports it

    def __str__(self) -> str:
        if self.usable:
            name, cc = self.device_name, self.compute_capability
            return f"{self.device_count} GPU(s), device 0: {name} (sm_{cc})"
        return self.reason

    @property
    def driver_major(self) -> int | None:
        """The newest CUDA major version the driver runs (``None`` when unknown)."""
        return None if self.driver_version is None else self.driver_version // 1000


def cupy_distribution() -> tuple[str, str] | None:
    """The installed CuPy wheel and its version, e.g. ``("cupy-cuda13x", "14.2.0")``."""
    for dist, _ in CUPY_WHEELS:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cupy_cuda_major() -> int | None:
    """The CUDA major version the installed CuPy is built for (without importing CuPy)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
        except Exception:  # a CuPy without its runtime library: fall back to the wheel name
            pass
    found = cupy_distribution()
    return None if found is None else dict(CUPY_WHEELS)[found[0]]


def module_loading_mode() -> str | None:
    """``"EAGER"`` or ``"LAZY"`` as the initialised driver reports it, ``None`` if unknown."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        query = lib.cuModuleGetLoadingMode  # CUDA 11.7 and later
    except (OSError, AttributeError):
        return None
    mode = ctypes.c_int()
    if query(ctypes.byref(mode)) != 0:
        return None
    return _LOADING_MODES.get(mode.value)


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
        driver = int(cupy.cuda.runtime.driverGetVersion())
    except Exception as exc:
        return CudaStatus(False, f"CUDA device 0 cannot be queried: {exc}")
    return CudaStatus(True, "usable", count, name, cc, driver, module_loading_mode())


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


def check_ring_kernel_environment(status: CudaStatus | None = None) -> None:
    """Refuse settings under which a persistent kernel's launch would never come back.

    Raises
    ------
    BackendUnavailableError
        ``CUDA_LAUNCH_BLOCKING`` is on (every launch waits for its kernel to end, and a ring
        kernel ends only when terminated), or the driver loads modules lazily (loading a
        module while a ring kernel runs can wait for it forever).
    """
    blocking = os.environ.get("CUDA_LAUNCH_BLOCKING", "0").strip()
    if blocking not in ("", "0"):
        raise BackendUnavailableError(
            f"device ring kernels cannot run with CUDA_LAUNCH_BLOCKING={blocking}: every "
            "launch then waits for its kernel to finish, and a ring kernel runs until it "
            "is terminated, so the launch would never return; unset CUDA_LAUNCH_BLOCKING "
            "(tools that serialise launches, such as ncu, cannot profile a ring kernel "
            "either), or use device='emulated'"
        )
    status = status if status is not None else cuda_status()
    mode = status.module_loading
    if mode is None and status.usable:
        mode = os.environ.get(MODULE_LOADING, "").upper() or None
    if mode == "LAZY":
        cause = (
            f"{MODULE_LOADING}={os.environ[MODULE_LOADING]} is set"
            if not EAGER_SET_HERE and os.environ.get(MODULE_LOADING, "").upper() == "LAZY"
            else "CUDA was initialised before pydotcompute was imported, with lazy loading"
        )
        raise BackendUnavailableError(
            f"device ring kernels need CUDA's eager module loading, but the driver loads "
            f"modules lazily ({cause}): loading a module while a ring kernel runs could "
            f"wait for it forever; start Python with {MODULE_LOADING}=EAGER, or import "
            "pydotcompute before anything that uses CUDA"
        )
