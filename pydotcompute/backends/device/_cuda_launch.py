"""Run a device ring kernel on a CUDA GPU through CuPy.

The mailbox memory is one ``cudaHostAllocMapped`` pinned allocation, viewed as numpy on the
host; under unified addressing its device address is ``pointerGetAttributes(ptr)
.devicePointer`` (CuPy has no ``cudaHostGetDevicePointer``). Each launch loads its own module
from the cached CUBIN and starts the loop once, on its own non-blocking stream. Liveness is
``cudaStreamQuery`` on that stream: this module never calls ``cudaDeviceSynchronize`` nor
synchronizes the stream while the loop runs.

Before the launch: the environment (``CUDA_LAUNCH_BLOCKING``, lazy module loading), the
function's resources against its block size, and residency (a ring kernel that the GPU
cannot keep resident beside the others would wait forever to start) are checked, each with an
error that says what to change. :meth:`CudaLauncher.start` may run off the event loop: it
names its device explicitly and guards the shared bookkeeping with a lock.

Memory a kernel may still poll is never freed nor pooled: only a stream that completed
(success) or failed with a sticky error (the context is gone) counts as ended. Freed blocks go
to a process-wide pool instead of ``cudaFreeHost``, which may synchronize the device and so
wait for every other persistent kernel. At interpreter exit, running loops are asked to stop
and waited for a bounded time; the memory of any that did not stop is leaked, never freed.

Device-to-device link rings (see :mod:`._links`) live in device global memory, one
``cudaMalloc`` per ring (:class:`CudaLinkArena`, one per GPU). They are never given back to
CUDA (``cudaFree`` synchronizes the device, so it would wait forever behind the persistent
kernels): a closed link's ring goes to the arena's pool for the next link, and a ring a loop
may still touch (a loop that did not let go of it) is never reused. The host touches a ring
only through copies on a non-blocking stream of its own: it zeroes the header before handing
the ring to the loops and reads it back after both acknowledged that they let go of it.
"""

from __future__ import annotations

import atexit
import ctypes
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..._cuda import check_ring_kernel_environment, cuda_status, require_cupy
from ...errors import BackendUnavailableError, DeviceFaultError, KernelRegistrationError
from ._codegen import KERNEL_SYMBOL
from ._links import LinkRingLostError
from ._memory import LINE, LINK_HEADER_BYTES, ring_terminate

__all__ = ["CudaLauncher", "CudaLinkArena", "cuda_link_arena", "residency"]

SUCCESS = 0
NOT_READY = 600  # cudaErrorNotReady: the stream still has work (the loop is running)
# Errors after which the CUDA context is corrupted for the rest of the process: final.
STICKY = {
    214: "cudaErrorECCUncorrectable",
    700: "cudaErrorIllegalAddress",
    702: "cudaErrorLaunchTimeout",
    709: "cudaErrorContextIsDestroyed",
    710: "cudaErrorAssert",
    714: "cudaErrorHardwareStackError",
    715: "cudaErrorIllegalInstruction",
    716: "cudaErrorMisalignedAddress",
    717: "cudaErrorInvalidAddressSpace",
    718: "cudaErrorInvalidPc",
    719: "cudaErrorLaunchFailure",
    999: "cudaErrorUnknown",
}
EXIT_WAIT_S = 2.0  # at interpreter exit, how long running loops get to stop

_lock = threading.Lock()  # guards everything below (start() may run on an executor thread)
_pool: list[Any] = []  # PinnedMemory blocks of ended kernels, reused by later launches
_kept: list[Any] = []  # blocks, modules and streams a kernel may still use: never freed
_launched: set[CudaLauncher] = set()  # started and not yet released
# device index -> {launcher: fraction of one SM its block occupies}
_resident: dict[int, dict[CudaLauncher, float]] = {}
_arenas: dict[int, CudaLinkArena] = {}  # device index -> its link rings


def _pinned(cp: Any, size: int) -> Any:
    with _lock:
        best = None
        for block in _pool:
            if block.size >= size and (best is None or block.size < best.size):
                best = block
        if best is not None:
            _pool.remove(best)
            return best
    return cp.cuda.PinnedMemory(size, cp.cuda.runtime.hostAllocMapped)


def _keep_forever(*objects: Any) -> None:
    """Never free ``objects``, not even while the interpreter shuts down (a kernel uses them)."""
    for obj in objects:
        if obj is not None:
            _kept.append(obj)
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def residency(device: int = 0) -> tuple[int, float]:
    """The running ring kernels on ``device`` and how many SMs' worth of slots they hold."""
    with _lock:
        shares = _resident.get(device, {})
        return len(shares), sum(shares.values())


class CudaLauncher:
    """One kernel instance on the current CUDA device."""

    def __init__(self, kernel_id: str, size: int) -> None:
        status = cuda_status()
        check_ring_kernel_environment(status)
        cp = require_cupy("device ring kernels on CUDA")
        self._cp = cp
        self.kernel_id = kernel_id
        self._device_id = int(cp.cuda.runtime.getDevice())
        self.device = f"cuda:{self._device_id}"
        with cp.cuda.Device(self._device_id):
            self._block = _pinned(cp, size)
            ptr = cp.cuda.PinnedMemoryPointer(self._block, 0)
            self.memory = np.ndarray((size,), np.uint8, buffer=ptr)
            self.memory[:] = 0
            attributes = cp.cuda.runtime.pointerGetAttributes(self._block.ptr)
            self._device_ptr = int(attributes.devicePointer)
        self._module: Any = None
        self._stream: Any = None
        self._code = NOT_READY
        self._final = False
        self._message = ""
        self._starting = False  # start() is running (maybe on an executor thread)
        self._owns_memory = True  # False once the block went back to the pool

    @property
    def base_address(self) -> int:
        """The device address of byte 0 of :attr:`memory`."""
        return self._device_ptr

    def link_arena(self) -> CudaLinkArena:
        """Where this kernel's device-to-device link rings live (its GPU's global memory)."""
        return cuda_link_arena(self._device_id)

    def start(self, cubin: Path, args: tuple[int, ...], threads: int) -> None:
        """Load the module and launch the loop once on a new non-blocking stream.

        Safe to call off the event loop (on an executor thread).

        Raises
        ------
        KernelRegistrationError
            A block of ``threads`` threads of this handler does not fit an SM.
        BackendUnavailableError
            The GPU cannot keep one more ring kernel resident beside those running.
        """
        cp = self._cp
        with _lock:
            if self._block is None:
                raise BackendUnavailableError(
                    f"device ring kernel {self.kernel_id!r}: its launcher was released before "
                    "it started; launch the kernel again"
                )
            self._starting = True
        try:
            with cp.cuda.Device(self._device_id):
                module = cp.RawModule(path=str(cubin))
                function = module.get_function(KERNEL_SYMBOL)
                share = self._check_resources(function, threads)
                self._reserve(share, threads)
                try:
                    stream = cp.cuda.Stream(non_blocking=True)
                    args64 = tuple(np.uint64(a) for a in args)
                    function((1,), (threads,), args64, stream=stream)
                except BaseException:
                    self._unreserve()
                    raise
        except BaseException:
            # Nothing runs on the block: pool it now, since freeing it (when this launcher
            # is dropped) could synchronize the device and wait for the running ring kernels.
            with _lock:
                self._starting = False
            self.release()
            raise
        with _lock:
            self._module, self._stream = module, stream
            self._starting = False
            given_up = self._block is None  # released while launching (a start timeout)
            if not given_up:
                _launched.add(self)
        if given_up:
            # Its memory was kept for good by release(): tell the late loop to exit at once.
            self.request_stop()
            _keep_forever(module, stream)

    def _check_resources(self, function: Any, threads: int) -> float:
        """The fraction of an SM one block takes; refuse a block that cannot launch."""
        rt = self._cp.cuda.runtime
        fits = int(function.max_threads_per_block)
        regs, shared = int(function.num_regs), int(function.shared_size_bytes)
        per_sm = 0
        if threads <= fits:
            per_sm = int(
                self._cp.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                    function.kernel.ptr, threads, 0
                )
            )
        if per_sm >= 1:
            return 1.0 / per_sm
        shared_max = int(
            rt.deviceGetAttribute(rt.cudaDevAttrMaxSharedMemoryPerBlock, self._device_id)
        )
        smaller = max(32, fits // 32 * 32) if fits < threads else max(32, threads // 2)
        raise KernelRegistrationError(
            f"device ring kernel {self.kernel_id!r} cannot launch with block_size={threads} on "
            f"{self.device}: its handler uses {regs} registers per thread and {shared} bytes "
            f"of shared memory (the device allows {shared_max} per block), so at most {fits} "
            f"threads fit one block; declare it with block_size={smaller} or fewer, or make "
            "the handler use fewer registers (smaller local arrays, less unrolling)"
        )

    def _reserve(self, share: float, threads: int) -> None:
        """Count this kernel's block against what the GPU keeps resident, or refuse."""
        rt = self._cp.cuda.runtime
        sms = int(rt.deviceGetAttribute(rt.cudaDevAttrMultiProcessorCount, self._device_id))
        with _lock:
            holders = list(_resident.get(self._device_id, {}))
        for holder in holders:
            holder.running()  # a loop that ended unnoticed (or was given up) frees its place
        with _lock:
            shares = _resident.setdefault(self._device_id, {})
            used = sum(shares.values())
            if used + share > sms + 1e-9:
                per_sm = round(1 / share)
                raise BackendUnavailableError(
                    f"cannot launch device ring kernel {self.kernel_id!r}: {self.device} "
                    f"keeps at most {sms * per_sm} ring kernels like it resident ({sms} SMs x "
                    f"{per_sm} blocks of {threads} threads per SM), and the {len(shares)} "
                    f"running ring kernels already hold {used:.1f} of its {sms} SMs; a ring "
                    "kernel that cannot stay resident would never start. Terminate a ring "
                    "kernel, declare smaller blocks (block_size=), or let one kernel serve "
                    "more work"
                )
            shares[self] = share

    def _unreserve(self) -> None:
        with _lock:
            _resident.get(self._device_id, {}).pop(self, None)

    def _query(self) -> int:
        """``SUCCESS``, a sticky error (both final), or ``NOT_READY`` (maybe still running)."""
        if self._final or self._stream is None:
            return self._code
        rt = self._cp.cuda.runtime
        try:
            code = int(rt.streamQuery(self._stream.ptr))
            message = f"CUDA error {code}"
        except rt.CUDARuntimeError as exc:
            code = int(getattr(exc, "status", -1))
            message = str(exc)
        if code == SUCCESS or code in STICKY:
            self._code, self._final = code, True
            self._message = "" if code == SUCCESS else message
            self._unreserve()
        elif code != NOT_READY:
            # Any other error may belong to an earlier asynchronous call and says nothing
            # about this stream: the loop may still run, so it is not final.
            self._message = message
        return self._code

    def running(self) -> bool:
        """Whether the loop may still run (``cudaStreamQuery`` has not reported its end)."""
        return self._stream is not None and self._query() == NOT_READY

    def fault(self) -> DeviceFaultError | None:
        """The CUDA error of a loop that ended abnormally, else ``None``."""
        code = self._query()
        if code in (SUCCESS, NOT_READY):
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
            with self._cp.cuda.Device(self._device_id):
                self._cp.cuda.runtime.memGetInfo()
        except self._cp.cuda.runtime.CUDARuntimeError:
            return False
        return True

    def request_stop(self) -> None:
        """Write the terminate command into the control block (the loop exits on its own)."""
        if self._owns_memory:
            ring_terminate(self.memory)

    def __del__(self) -> None:
        # Dropped without release(): never let the pinned block be freed (cudaFreeHost may
        # wait for every running ring kernel), and never free one a kernel may still poll.
        block = getattr(self, "_block", None)
        if block is None:
            return
        if not self._starting and (self._stream is None or self._code == SUCCESS):
            _pool.append(block)
        else:
            _keep_forever(block, self._module, self._stream)

    def release(self) -> None:
        """Let go of the memory: pooled once the loop has ended, kept forever otherwise.

        Safe while :meth:`start` runs on another thread (a start that timed out): the
        memory is then kept for good, and a loop that starts late is told to exit.
        """
        with _lock:
            block, module, stream = self._block, self._module, self._stream
            if block is None:
                return
            _launched.discard(self)
            idle = not self._starting and (stream is None or self._code == SUCCESS)
            if idle:
                _pool.append(block)  # never launched, or ended cleanly: nothing polls it
                self._owns_memory = False
            self._block = self._module = None
        if not idle:
            # Running, launching, unknown, or the context is gone: a kernel may poll it.
            _keep_forever(block, module, stream)


class CudaLinkArena:
    """The device-to-device link rings of one GPU: global memory, pooled, never freed.

    A ring is named by its device address (the loops' ``link_base`` is 0 on a GPU).
    """

    def __init__(self, device_id: int) -> None:
        self._cp = require_cupy("device links on CUDA")
        self.device_id = device_id
        self._lock = threading.Lock()
        self._free: dict[int, list[int]] = {}  # size -> device addresses of closed rings
        self._stream: Any = None  # a non-blocking stream for the host's copies

    def _copy(self, dst: int, src: int, size: int, kind: int) -> None:
        """Copy on the arena's own stream and wait for that stream only (never a kernel's)."""
        rt = self._cp.cuda.runtime
        with self._cp.cuda.Device(self.device_id):
            if self._stream is None:
                self._stream = self._cp.cuda.Stream(non_blocking=True)
            rt.memcpyAsync(dst, src, size, kind, self._stream.ptr)
            rt.streamSynchronize(self._stream.ptr)

    def allocate(self, size: int) -> int:
        """Reserve a ring of ``size`` bytes with a zeroed header; return its device address."""
        size = (size + LINE - 1) // LINE * LINE
        rt = self._cp.cuda.runtime
        with self._lock:
            free = self._free.get(size)
            ring = free.pop() if free else 0
        if ring == 0:
            try:
                with self._cp.cuda.Device(self.device_id):
                    ring = int(rt.malloc(size))
            except rt.CUDARuntimeError as exc:
                raise MemoryError(
                    f"cuda:{self.device_id} has no room for a {size:,}-byte device link "
                    f"ring ({exc}); unlink kernels or use smaller inboxes"
                ) from exc
        zeros = np.zeros(LINK_HEADER_BYTES, np.uint8)
        self._copy(ring, int(zeros.ctypes.data), LINK_HEADER_BYTES, rt.memcpyHostToDevice)
        return ring

    def free(self, ring: int, size: int) -> None:
        """Pool a ring no loop touches any more (both let go of it, or ended)."""
        size = (size + LINE - 1) // LINE * LINE
        with self._lock:
            self._free.setdefault(size, []).append(ring)

    def read(self, ring: int, size: int) -> np.ndarray:
        """A copy of ``size`` bytes of a ring (its header, then its slots).

        Raises
        ------
        LinkRingLostError
            The copy failed: the CUDA context is gone, and the ring with it.
        """
        out = np.empty(size, np.uint8)
        rt = self._cp.cuda.runtime
        try:
            self._copy(int(out.ctypes.data), ring, size, rt.memcpyDeviceToHost)
        except rt.CUDARuntimeError as exc:
            raise LinkRingLostError(
                f"the device link ring at {ring:#x} cannot be read: {exc}"
            ) from exc
        return out


def cuda_link_arena(device_id: int) -> CudaLinkArena:
    """The link arena of GPU ``device_id`` (one per process and GPU, made on first use)."""
    with _lock:
        arena = _arenas.get(device_id)
        if arena is None:
            arena = _arenas[device_id] = CudaLinkArena(device_id)
        return arena


@atexit.register
def _stop_all() -> None:
    """Stop loops still running at interpreter exit; leak what a loop may still use."""
    with _lock:
        running = list(_launched)
    running = [launcher for launcher in running if launcher.running()]
    for launcher in running:
        launcher.request_stop()
    deadline = time.monotonic() + EXIT_WAIT_S
    while running and time.monotonic() < deadline:
        running = [launcher for launcher in running if launcher.running()]
        if running:
            time.sleep(0.005)  # interpreter exit: there is no event loop to wait on
    for launcher in list(_launched):
        launcher.release()  # ended: pooled; still running: kept forever
    if running:
        ids = ", ".join(sorted(repr(launcher.kernel_id) for launcher in running))
        print(
            f"pydotcompute: device ring kernel(s) {ids} did not stop within {EXIT_WAIT_S} s "
            "of interpreter exit; their pinned memory is leaked rather than freed under a "
            "running kernel",
            file=sys.stderr,
        )
        with _lock:
            # Freeing any pinned block may synchronize the device and wait for them forever.
            pool = list(_pool)
        _keep_forever(*pool)
