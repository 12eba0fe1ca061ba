"""Run a device ring kernel on the emulated device: a native thread over host memory.

The kernel's shared library is loaded from a private copy, so every launch has its own
``__shared__`` and global variables (as every CUDA launch has its own module), and
``pdc_emulated_run`` is called through ctypes on a Python thread: ctypes releases the GIL
for the whole call, so the loop runs in parallel with Python and costs the interpreter
nothing.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np

from ...errors import DeviceFaultError
from ._memory import CMD_TERMINATE, ERR_TRAP, WORD

__all__ = ["EmulatedLauncher"]

_live: weakref.WeakSet[EmulatedLauncher] = weakref.WeakSet()


def aligned_zeros(size: int, align: int = 64) -> np.ndarray:
    """A zeroed uint8 buffer whose first byte is ``align``-byte aligned."""
    raw = np.zeros(size + align, np.uint8)
    skip = (-raw.ctypes.data) % align
    return raw[skip : skip + size]


class EmulatedLauncher:
    """One kernel instance on the emulated device."""

    device = "emulated"

    def __init__(self, kernel_id: str, size: int) -> None:
        self.kernel_id = kernel_id
        self.memory = aligned_zeros(size)
        self._thread: threading.Thread | None = None
        self._rc: int | None = None
        self._error: BaseException | None = None

    @property
    def base_address(self) -> int:
        """The address the kernel sees for byte 0 of :attr:`memory`."""
        return int(self.memory.ctypes.data)

    def start(self, library: Path, args: tuple[int, ...], threads: int) -> None:
        """Load a private copy of ``library`` and run its loop on a native thread."""
        fd, private = tempfile.mkstemp(prefix="pdc-kernel-", suffix=".so")
        os.close(fd)
        try:
            shutil.copyfile(library, private)
            lib = ctypes.CDLL(private)
        finally:
            os.unlink(private)  # the mapping stays valid; nothing is left on disk
        run = lib.pdc_emulated_run
        run.argtypes = [ctypes.c_uint, *([ctypes.c_ulonglong] * 6)]
        run.restype = ctypes.c_int

        def body() -> None:
            try:
                self._rc = run(threads, *args)
            except BaseException as exc:  # recorded and reported as the kernel's fault
                self._error = exc

        self._thread = threading.Thread(
            target=body, name=f"pydotcompute emulated {self.kernel_id}", daemon=True
        )
        self._thread.start()
        _live.add(self)

    def running(self) -> bool:
        """Whether the loop is still running (the ``cudaStreamQuery`` of the emulation)."""
        return self._thread is not None and self._thread.is_alive()

    def fault(self) -> DeviceFaultError | None:
        """The failure of a loop that ended abnormally, else ``None``."""
        if self.running() or self._thread is None:
            return None
        if self._error is not None:
            return DeviceFaultError(
                self.kernel_id,
                f"could not run on the emulated device: {self._error!r}",
                cuda_error=None,
                context_usable=True,
            )
        if self._rc:
            code = int(self.memory[WORD["error"] * 8 : WORD["error"] * 8 + 8].view(np.uint64)[0])
            what = (
                "trapped: the handler called __trap()"
                if code == ERR_TRAP
                else "failed: the handler threw a C++ exception"
            )
            return DeviceFaultError(self.kernel_id, what, cuda_error=None, context_usable=True)
        return None

    def context_usable(self) -> bool:
        """The emulated device survives any kernel's failure."""
        return True

    def release(self) -> None:
        """Let go of the memory (only once the loop has ended; a running loop keeps it)."""
        if not self.running():
            _live.discard(self)


@atexit.register
def _stop_all() -> None:
    """Ask loops still running at interpreter exit to stop before their memory goes away."""
    for launcher in list(_live):
        if launcher.running():
            ctl = launcher.memory[: 8 * (WORD["command"] + 1)].view(np.uint64)
            ctl[WORD["command"]] = CMD_TERMINATE
            assert launcher._thread is not None
            launcher._thread.join(1.0)
