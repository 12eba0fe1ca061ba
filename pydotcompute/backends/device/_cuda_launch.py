"""Run a device ring kernel on a CUDA GPU through CuPy.

The mailbox memory is one ``cudaHostAllocMapped`` pinned allocation, viewed as numpy on the
host; the kernel gets its device address from ``cudaHostGetDevicePointer``. Each launch
loads its own module from the cached CUBIN and starts the loop once, on its own
non-blocking stream. Liveness is ``cudaStreamQuery`` on that stream: this module never
calls ``cudaDeviceSynchronize`` nor synchronizes the stream while the loop runs.

Freed pinned blocks go back to a process-wide pool instead of ``cudaFreeHost``, which may
synchronize the device and so wait for every other persistent kernel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..._cuda import require_cupy
from ...errors import DeviceFaultError
from ._codegen import KERNEL_SYMBOL

__all__ = ["CudaLauncher"]

NOT_READY = 600  # cudaErrorNotReady: the stream still has work (the loop is running)
# Errors after which the CUDA context is corrupted for the rest of the process.
STICKY = {
    214: "cudaErrorECCUncorrectable",
    700: "cudaErrorIllegalAddress",
    702: "cudaErrorLaunchTimeout",
    710: "cudaErrorAssert",
    714: "cudaErrorHardwareStackError",
    715: "cudaErrorIllegalInstruction",
    716: "cudaErrorMisalignedAddress",
    717: "cudaErrorInvalidAddressSpace",
    718: "cudaErrorInvalidPc",
    719: "cudaErrorLaunchFailure",
    999: "cudaErrorUnknown",
}

_pool: list[Any] = []  # PinnedMemory blocks of terminated kernels, reused by later launches


def _pinned(cp: Any, size: int) -> Any:
    best = None
    for block in _pool:
        if block.size >= size and (best is None or block.size < best.size):
            best = block
    if best is not None:
        _pool.remove(best)
        return best
    return cp.cuda.PinnedMemory(size, cp.cuda.runtime.hostAllocMapped)


class CudaLauncher:
    """One kernel instance on the current CUDA device."""

    def __init__(self, kernel_id: str, size: int) -> None:
        # Lazy module loading may wait for running kernels when another module loads, which
        # a persistent kernel never lets happen; ask for eager loading before CUDA starts.
        os.environ.setdefault("CUDA_MODULE_LOADING", "EAGER")
        cp = require_cupy("device ring kernels on CUDA")
        self._cp = cp
        self.kernel_id = kernel_id
        self._block = _pinned(cp, size)
        ptr = cp.cuda.PinnedMemoryPointer(self._block, 0)
        self.memory = np.ndarray((size,), np.uint8, buffer=ptr)
        self.memory[:] = 0
        self._device_ptr = int(cp.cuda.runtime.hostGetDevicePointer(self._block.ptr, 0))
        self.device = f"cuda:{cp.cuda.runtime.getDevice()}"
        self._module: Any = None
        self._stream: Any = None
        self._code = NOT_READY
        self._message = ""

    @property
    def base_address(self) -> int:
        """The device address of byte 0 of :attr:`memory`."""
        return self._device_ptr

    def start(self, cubin: Path, args: tuple[int, ...], threads: int) -> None:
        """Load the module and launch the loop once on a new non-blocking stream."""
        cp = self._cp
        self._module = cp.RawModule(path=str(cubin))
        function = self._module.get_function(KERNEL_SYMBOL)
        self._stream = cp.cuda.Stream(non_blocking=True)
        function((1,), (threads,), tuple(np.uint64(a) for a in args), stream=self._stream)

    def _query(self) -> int:
        if self._code != NOT_READY or self._stream is None:
            return self._code
        rt = self._cp.cuda.runtime
        try:
            code = int(rt.streamQuery(self._stream.ptr))
            self._message = "" if code in (0, NOT_READY) else f"CUDA error {code}"
        except rt.CUDARuntimeError as exc:
            code = int(getattr(exc, "status", -1))
            self._message = str(exc)
        self._code = code
        return code

    def running(self) -> bool:
        """Whether the loop still runs (``cudaStreamQuery`` says not ready)."""
        return self._stream is not None and self._query() == NOT_READY

    def fault(self) -> DeviceFaultError | None:
        """The CUDA error of a loop that ended abnormally, else ``None``."""
        code = self._query()
        if code in (0, NOT_READY):
            return None
        name = STICKY.get(code) or self._message.split(":")[0] or f"CUDA error {code}"
        return DeviceFaultError(
            self.kernel_id,
            f"faulted on {self.device}: {self._message or name}",
            cuda_error=name,
            context_usable=self.context_usable(),
        )

    def context_usable(self) -> bool:
        """Whether the CUDA context can still run work after this kernel's end."""
        if self._code in STICKY:
            return False
        try:
            self._cp.cuda.runtime.memGetInfo()
        except self._cp.cuda.runtime.CUDARuntimeError:
            return False
        return True

    def release(self) -> None:
        """Return the pinned block to the pool once the loop has ended cleanly."""
        if self._block is None:
            return
        if self._stream is not None and self._query() == NOT_READY:
            return  # still running: freeing its memory would make it fault
        if self._code == 0 or self.context_usable():
            _pool.append(self._block)
        self._block = self._module = None
