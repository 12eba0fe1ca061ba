"""Device memory operations behind :class:`UnifiedBuffer`: CuPy on a GPU, NumPy in the simulator.

A buffer's lazy synchronization is written once against this small surface (allocate, copy
each way on a stream, record and wait for events). ``CupyMemory`` does it on a real GPU;
``SimulatedMemory`` keeps the "device" copy in a separate host array, so the Numba CUDA
simulator (and the tests) exercise the same copy logic with real, countable copies.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .._cuda import require_cupy
from ..errors import OperationTimeoutError

__all__ = ["CupyMemory", "HostStream", "SimulatedMemory", "wait_event"]


class _DoneEvent:
    """An event that has always happened (work on a host stream runs when it is issued)."""

    done = True

    def synchronize(self) -> None:
        """Return at once: there is nothing to wait for."""


DONE = _DoneEvent()


class HostStream:
    """The stream of the CPU accelerator and of the simulator: work runs when issued.

    It offers what CuPy's streams offer to the compute layer (``synchronize``,
    ``wait_event``, ``done``), so the same code drives both.
    """

    done = True

    def __repr__(self) -> str:
        return "<HostStream>"

    def synchronize(self) -> None:
        """Return at once: host work is already done."""

    def wait_event(self, event: Any) -> None:
        """Return at once: host work is already done."""


def wait_event(event: Any, timeout: float | None, what: str) -> None:
    """Wait until ``event`` has happened, at most ``timeout`` seconds (``None``: no limit)."""
    if event.done:
        return
    if timeout is None:
        event.synchronize()
        return
    deadline = time.monotonic() + timeout
    pause = 2e-5
    while not event.done:
        if time.monotonic() >= deadline:
            raise OperationTimeoutError(
                f"{what} did not finish within {timeout} s; the GPU is still busy with it. "
                "Pass a larger timeout, or timeout=None to wait without a limit"
            )
        time.sleep(pause)  # the CUDA event API has no timed wait; poll with a capped backoff
        pause = min(pause * 2, 1e-3)


class SimulatedMemory:
    """Device memory of the simulated GPU: separate host arrays, copies made synchronously."""

    simulated = True

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
        """A zeroed "device" array."""
        return np.zeros(shape, dtype)

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype[Any], pinned: bool) -> Any:
        """A zeroed host array (the simulator has nothing to page-lock for)."""
        return np.zeros(shape, dtype), False

    def h2d(self, device: Any, host: Any, stream: Any) -> None:
        """Copy host to device."""
        np.copyto(device, host)

    def d2h(self, host: Any, device: Any, stream: Any) -> None:
        """Copy device to host."""
        np.copyto(host, device)

    def record(self, stream: Any) -> Any:
        """An event after the work issued on ``stream`` (always done here)."""
        return DONE

    def new_stream(self) -> HostStream:
        """A new stream."""
        return HostStream()

    def current_stream(self) -> HostStream:
        """The stream work goes to when none is given."""
        return HostStream()


class CupyMemory:
    """Device memory of one CUDA GPU, through CuPy."""

    simulated = False

    def __init__(self, index: int) -> None:
        self.cupy = require_cupy(f"the CUDA accelerator 'cuda:{index}'")
        self.index = index
        self.device = self.cupy.cuda.Device(index)

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
        """A zeroed CuPy array on this GPU."""
        with self.device:
            return self.cupy.zeros(shape, dtype)

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype[Any], pinned: bool) -> Any:
        """A zeroed host array, page-locked (``cudaHostAlloc``) when ``pinned``."""
        if not pinned:
            return np.zeros(shape, dtype), False
        import cupyx

        with self.device:
            arr = cupyx.zeros_pinned(shape, dtype)
        return arr, True

    def h2d(self, device: Any, host: Any, stream: Any) -> None:
        """Copy host to device on ``stream`` (asynchronous when the host side is pinned)."""
        with self.device:
            device.set(host, stream=stream)

    def d2h(self, host: Any, device: Any, stream: Any) -> None:
        """Copy device to host on ``stream`` (asynchronous when the host side is pinned)."""
        with self.device:
            device.get(stream=stream, out=host, blocking=False)

    def record(self, stream: Any) -> Any:
        """Record an event after the work issued so far on ``stream``."""
        with self.device:
            event = self.cupy.cuda.Event(disable_timing=True)
            event.record(stream)
        return event

    def new_stream(self) -> Any:
        """A new non-blocking CuPy stream on this GPU."""
        with self.device:
            return self.cupy.cuda.Stream(non_blocking=True)

    def current_stream(self) -> Any:
        """CuPy's current stream on this GPU."""
        with self.device:
            return self.cupy.cuda.get_current_stream()
