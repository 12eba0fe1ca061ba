"""``UnifiedBuffer``: one array seen from the host and from the device, synchronized lazily.

The rules (``docs/articles/concepts/unified-memory.md`` shows them with a copy count):

* ``.host`` / ``.device`` give the caller a writable array, so after bringing that side up
  to date (copying only if the other side is newer) they mark it as the newer side.
* ``host_view()`` / ``device_view()`` and ``np.asarray(buf)`` are for reading: they bring the
  side up to date and leave it marked current on both sides after a copy.
* A ``@kernel`` uses ``device_view()`` for the arguments its body only reads and ``.device``
  for those it writes.
* An array kept from an earlier access and written later is not seen: call
  ``mark_host_dirty()`` / ``mark_device_dirty()`` after such a write.
"""

from __future__ import annotations

import enum
import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import KernelArgumentError
from ._accelerator import Accelerator
from ._memory import wait_event

__all__ = ["BufferState", "BufferStats", "UnifiedBuffer"]


class BufferState(enum.Enum):
    """Which side of a :class:`UnifiedBuffer` holds the newest data."""

    SYNCHRONIZED = "synchronized"
    HOST_DIRTY = "host_dirty"
    DEVICE_DIRTY = "device_dirty"


@dataclass(frozen=True)
class BufferStats:
    """Copies a :class:`UnifiedBuffer` made, and those lazy synchronization avoided.

    ``copies_avoided`` counts accesses (and explicit ``to_device``/``to_host`` calls) that
    found their side already current on a buffer with separate device memory. A buffer on
    the CPU accelerator has one memory and never copies: all its counters stay zero.
    """

    h2d_copies: int = 0
    d2h_copies: int = 0
    h2d_bytes: int = 0
    d2h_bytes: int = 0
    copies_avoided: int = 0

    @property
    def copies(self) -> int:
        """Copies made in both directions."""
        return self.h2d_copies + self.d2h_copies

    def __sub__(self, other: BufferStats) -> BufferStats:
        return BufferStats(*(a - b for a, b in zip(_astuple(self), _astuple(other))))

    def __add__(self, other: BufferStats) -> BufferStats:
        return BufferStats(*(a + b for a, b in zip(_astuple(self), _astuple(other))))


def _astuple(s: BufferStats) -> tuple[int, ...]:
    return (s.h2d_copies, s.d2h_copies, s.h2d_bytes, s.d2h_bytes, s.copies_avoided)


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = (operator.index(shape),) if not isinstance(shape, tuple | list) else shape
        out = tuple(operator.index(d) for d in dims)
    except TypeError:
        out = None
    if out is None or any(d < 0 for d in out):
        raise KernelArgumentError(
            f"UnifiedBuffer shape must be an int or a tuple of non-negative ints, got "
            f"{shape!r}; for example UnifiedBuffer((1000,), dtype=np.float32)"
        )
    return out


class UnifiedBuffer:
    """An array with a host side (NumPy) and a device side, copied only when needed.

    Both sides start zeroed; the device side is allocated on first use. A buffer is not
    thread-safe: use it from one thread at a time.

    Parameters
    ----------
    shape:
        Shape of the array (an int or a tuple).
    dtype:
        NumPy dtype (default float32).
    pinned:
        Page-lock the host side (``cudaHostAlloc`` through CuPy), which makes copies faster
        and lets ``to_device``/``to_host`` with a stream run asynchronously. Has no effect
        on the CPU accelerator and the simulator (``pinned`` then reads ``False``).
    accelerator:
        Where the device side lives (an :class:`Accelerator` or an id such as ``"cuda:0"``);
        default :meth:`Accelerator.default`.

    Examples
    --------
    >>> buf = UnifiedBuffer((1000,), dtype=np.float32)
    >>> buf.host[:] = np.random.randn(1000)
    """

    def __init__(
        self,
        shape: int | tuple[int, ...],
        dtype: Any = np.float32,
        *,
        pinned: bool = False,
        accelerator: Accelerator | str | None = None,
    ) -> None:
        self._shape = _shape(shape)
        self._dtype = np.dtype(dtype)
        if self._dtype.hasobject:
            raise KernelArgumentError(
                f"UnifiedBuffer cannot hold Python objects (dtype {self._dtype}); use a "
                "numeric or structured dtype"
            )
        acc = Accelerator.default() if accelerator is None else Accelerator(accelerator)
        self._acc = acc
        self._mem = acc._memory
        if self._mem is None:
            self._host: np.ndarray = np.zeros(self._shape, self._dtype)
            self._pinned = False
        else:
            self._host, self._pinned = self._mem.host_array(self._shape, self._dtype, pinned)
        self._device: Any = None
        self._state = BufferState.SYNCHRONIZED
        self._event: Any = None  # after the last device-side work touching this buffer
        self._event_stream: Any = None
        self._h2d = self._d2h = self._h2d_bytes = self._d2h_bytes = self._avoided = 0

    @classmethod
    def from_array(
        cls,
        array: Any,
        *,
        pinned: bool = False,
        accelerator: Accelerator | str | None = None,
    ) -> UnifiedBuffer:
        """A buffer holding a copy of ``array`` on the host side (host-dirty)."""
        data = np.asarray(array)
        buf = cls(data.shape, data.dtype, pinned=pinned, accelerator=accelerator)
        buf.host[...] = data
        return buf

    # ------------------------------------------------------------------ description
    def __repr__(self) -> str:
        return (
            f"<UnifiedBuffer shape={self._shape} dtype={self._dtype} on {self._acc.id} "
            f"{self._state.value}{' pinned' if self._pinned else ''}>"
        )

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d UnifiedBuffer")
        return self._shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array."""
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """NumPy dtype of the array."""
        return self._dtype

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self._shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self._shape)

    @property
    def nbytes(self) -> int:
        """Bytes of one side."""
        return self.size * self._dtype.itemsize

    @property
    def accelerator(self) -> Accelerator:
        """The accelerator holding the device side."""
        return self._acc

    @property
    def pinned(self) -> bool:
        """True when the host side is really page-locked."""
        return self._pinned

    @property
    def state(self) -> BufferState:
        """Which side holds the newest data."""
        return self._state

    @property
    def stats(self) -> BufferStats:
        """Copies made and avoided so far."""
        return BufferStats(self._h2d, self._d2h, self._h2d_bytes, self._d2h_bytes, self._avoided)

    # ------------------------------------------------------------------ host side
    @property
    def host(self) -> np.ndarray:
        """The host array, up to date, for reading and writing (marks the host side newer).

        Waits for device work still using this buffer; see :meth:`to_host` for a bounded
        wait.
        """
        self._host_current(None)
        if self._mem is not None:
            self._state = BufferState.HOST_DIRTY
        return self._host

    def host_view(self) -> np.ndarray:
        """A read-only view of the up-to-date host array (leaves the state as it is)."""
        self._host_current(None)
        view = self._host.view()
        view.flags.writeable = False
        return view

    def mark_host_dirty(self) -> None:
        """Declare that the host side was written through an array kept from earlier."""
        if self._mem is not None:
            self._state = BufferState.HOST_DIRTY

    def _host_current(self, timeout: float | None) -> None:
        if self._mem is None:
            return
        if self._event is not None:
            wait_event(self._event, timeout, f"device work on {self!r}")
            self._event = None
        if self._state is BufferState.DEVICE_DIRTY:
            stream = self._mem.current_stream()
            self._copy_d2h(stream)
            wait_event(self._mem.record(stream), timeout, f"the copy of {self!r} to the host")
            self._state = BufferState.SYNCHRONIZED
        else:
            self._avoided += 1

    def _copy_d2h(self, stream: Any) -> None:
        self._mem.d2h(self._host, self._device, stream)
        self._d2h += 1
        self._d2h_bytes += self.nbytes

    # ------------------------------------------------------------------ device side
    @property
    def device(self) -> Any:
        """The device array, up to date, for reading and writing (marks the device newer).

        A CuPy array on a GPU, a NumPy array standing for device memory in the simulator,
        and the host array itself on the CPU accelerator.
        """
        arr = self._device_current(None, None)
        if self._mem is not None:
            self._state = BufferState.DEVICE_DIRTY
        return arr

    def device_view(self) -> Any:
        """The up-to-date device array for reading only (leaves the state as it is).

        CuPy arrays cannot be made read-only: writing through this one is not tracked
        (call :meth:`mark_device_dirty` after such a write).
        """
        return self._device_current(None, None)

    def mark_device_dirty(self) -> None:
        """Declare that the device side was written through an array kept from earlier."""
        if self._mem is not None:
            self._state = BufferState.DEVICE_DIRTY

    def _device_current(self, stream: Any, timeout: float | None) -> Any:
        mem = self._mem
        if mem is None:
            return self._host
        if self._device is None:
            self._device = mem.zeros(self._shape, self._dtype)
        if stream is None:
            stream = mem.current_stream()
        if self._event is not None and self._event_stream is not stream:
            stream.wait_event(self._event)
        if self._state is BufferState.HOST_DIRTY:
            mem.h2d(self._device, self._host, stream)
            self._h2d += 1
            self._h2d_bytes += self.nbytes
            self._state = BufferState.SYNCHRONIZED
            self._used_on(stream)
        else:
            self._avoided += 1
        return self._device

    def _for_kernel(self, stream: Any, write: bool) -> Any:
        """The device array for a kernel launch on ``stream`` (marked newer if written)."""
        arr = self._device_current(stream, None)
        if write and self._mem is not None:
            self._state = BufferState.DEVICE_DIRTY
        return arr

    def _used_on(self, stream: Any) -> None:
        """Remember that device work on ``stream`` now touches this buffer."""
        if self._mem is not None and not self._mem.simulated:
            self._event = self._mem.record(stream)
            self._event_stream = stream

    # ------------------------------------------------------------------ explicit copies
    def to_device(self, *, stream: Any = None, timeout: float | None = None) -> UnifiedBuffer:
        """Bring the device side up to date (copy only if the host is newer).

        With ``stream`` the copy is queued on it and the call returns at once (truly
        asynchronous for a pinned buffer); later work on other streams waits for it.
        Without, the call returns when the copy is done, waiting at most ``timeout``.
        """
        self._device_current(stream, timeout)
        if stream is None and self._event is not None:
            wait_event(self._event, timeout, f"the copy of {self!r} to the device")
        return self

    def to_host(self, *, stream: Any = None, timeout: float | None = None) -> UnifiedBuffer:
        """Bring the host side up to date (copy only if the device is newer).

        With ``stream`` the copy is queued on it and the call returns at once; the next
        host access waits for it. Without, the call returns when the copy is done, waiting
        at most ``timeout`` (for earlier device work too).
        """
        if stream is None or self._mem is None or self._state is not BufferState.DEVICE_DIRTY:
            self._host_current(timeout)
            return self
        if self._event is not None and self._event_stream is not stream:
            stream.wait_event(self._event)
        self._copy_d2h(stream)
        self._state = BufferState.SYNCHRONIZED
        self._used_on(stream)
        return self

    def synchronize(self, *, timeout: float | None = None) -> None:
        """Wait until device work and copies touching this buffer have finished."""
        if self._event is not None:
            wait_event(self._event, timeout, f"device work on {self!r}")
            self._event = None

    # ------------------------------------------------------------------ array protocols
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        view = self.host_view()
        if dtype is not None and np.dtype(dtype) != self._dtype:
            return view.astype(dtype)
        if copy:
            return view.copy()
        return view

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """The device array's CUDA array interface (a GPU buffer only; marks the device newer).

        Lets CuPy (``cupy.asarray(buf)``) and Numba kernels use the device side directly.
        """
        if self._mem is None or self._mem.simulated:
            raise AttributeError(
                f"{self!r} has no CUDA memory (its accelerator is {self._acc.id}); use "
                "buf.host or np.asarray(buf)"
            )
        return self.device.__cuda_array_interface__
