# ruff: noqa: N802, N803, N815 (the names are CuPy's own)
"""A fake CuPy that models the real API names the CUDA launcher uses, without a GPU.

Every public name here exists in the real CuPy: ``test_cuda_names.py`` checks that against
the installed CuPy, so the launcher's tests cannot pass on a name CuPy does not have.

The fake GPU runs a ring kernel as a flag on its stream: the loop "runs" until the host
writes the terminate command into the control block (unless the test made it hang), or
until the test makes it fault. Device memory (``runtime.malloc``) is host memory here, filled
with garbage as real device memory would be; copies record their stream.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np

from pydotcompute.backends.device._memory import CMD_TERMINATE, doorbell_command

_ptrs = itertools.count(0x7F0000000000, 0x100000)


class CUDARuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError: ``status`` is the error code."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"cudaError {status}")


class PointerAttributes:
    def __init__(self, ptr: int) -> None:
        self.device, self.devicePointer, self.hostPointer, self.type = 0, ptr, ptr, 1


class PinnedMemory:
    """cupy.cuda.PinnedMemory(size, flags): ``ptr`` and ``size`` as in CuPy."""

    def __init__(self, size: int, flags: int = 0) -> None:
        self.size = size
        self.flags = flags
        self.host = np.zeros(size, np.uint8)
        self.ptr = int(self.host.ctypes.data)
        gpu.allocations.append(self)


def PinnedMemoryPointer(mem: PinnedMemory, offset: int) -> memoryview:
    return memoryview(mem.host)[offset:]


class Stream:
    """cupy.cuda.Stream(non_blocking=...): ``ptr``; the fake loop's state lives here."""

    def __init__(self, non_blocking: bool = False) -> None:
        self.ptr = next(_ptrs)
        self.kernel: Any = None  # (launcher memory address, threads) once launched
        self.memory: np.ndarray | None = None
        self.code: int | None = None  # a fault the test injected
        self.hangs = False  # the loop ignores the terminate command
        gpu.streams[self.ptr] = self

    def query(self) -> int:
        if self.code is not None:
            return self.code
        if self.memory is None:
            return 0
        command = doorbell_command(self.memory)
        return 0 if command == CMD_TERMINATE and not self.hangs else 600


class Device:
    """cupy.cuda.Device(id) as a context manager."""

    def __init__(self, device: int = 0) -> None:
        self.id = device

    def __enter__(self) -> Device:
        gpu.device_stack.append(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        gpu.device_stack.pop()


class Function:
    def __init__(self) -> None:
        self.ptr = next(_ptrs)


class RawKernel:
    """What RawModule.get_function returns: resource attributes and a launch call."""

    def __init__(self, num_regs: int, max_threads_per_block: int, shared: int) -> None:
        self.num_regs = num_regs
        self.max_threads_per_block = max_threads_per_block
        self.shared_size_bytes = shared
        self.local_size_bytes = 0
        self.kernel = Function()

    def __call__(self, grid: tuple, block: tuple, args: tuple, stream: Stream) -> None:
        gpu.launch_entered.set()
        if gpu.launch_gate is not None:  # a launch that takes its time (a test opens it)
            assert gpu.launch_gate.wait(30), "the test never let the launch finish"
        gpu.launches.append((grid, block, args, stream, list(gpu.device_stack)))
        if gpu.launch_error is not None:
            raise CUDARuntimeError(gpu.launch_error)
        control = int(args[0])
        owner = next(m for m in gpu.allocations if m.ptr == control)
        stream.memory = owner.host
        stream.kernel = (control, block[0])


class RawModule:
    def __init__(self, path: str | None = None, code: str | None = None, **kw: Any) -> None:
        self.path = path

    def get_function(self, name: str) -> RawKernel:
        gpu.functions.append(name)
        return RawKernel(*gpu.function_resources)


class _Runtime:
    CUDARuntimeError = CUDARuntimeError
    PointerAttributes = PointerAttributes
    hostAllocMapped = 2
    memcpyHostToDevice = 1
    memcpyDeviceToHost = 2
    cudaDevAttrMultiProcessorCount = 16
    cudaDevAttrMaxSharedMemoryPerBlock = 8

    def getDevice(self) -> int:
        return gpu.current_device

    def getDeviceCount(self) -> int:
        return 1

    def driverGetVersion(self) -> int:
        return 13000

    def runtimeGetVersion(self) -> int:
        return 13000

    def pointerGetAttributes(self, ptr: int) -> PointerAttributes:
        return PointerAttributes(ptr)

    def deviceGetAttribute(self, attrib: int, device: int) -> int:
        return {16: gpu.sms, 8: 49152}[attrib]

    def streamQuery(self, stream: int) -> int:
        if gpu.query_error is not None:
            code, gpu.query_error = gpu.query_error, None
            raise CUDARuntimeError(code)
        return gpu.streams[stream].query()

    def memGetInfo(self) -> tuple[int, int]:
        if gpu.context_lost:
            raise CUDARuntimeError(700)
        return (1 << 30, 1 << 31)

    def malloc(self, size: int) -> int:
        if gpu.context_lost:
            raise CUDARuntimeError(700)
        ptr = next(_ptrs)
        gpu.device_memory[ptr] = np.full(size, 0xAB, np.uint8)  # not zeroed, as on a GPU
        gpu.mallocs.append((ptr, size, list(gpu.device_stack)))
        return ptr

    def free(self, ptr: int) -> None:
        gpu.frees.append(ptr)

    def _host_address(self, ptr: int, size: int) -> int:
        """The host address of ``size`` bytes at device address ``ptr`` (inside one malloc)."""
        for base, buf in gpu.device_memory.items():
            if base <= ptr and ptr + size <= base + buf.size:
                return int(buf.ctypes.data) + ptr - base
        raise CUDARuntimeError(1)  # cudaErrorInvalidValue: not device memory

    def memcpyAsync(self, dst: int, src: int, size: int, kind: int, stream: int) -> None:
        if gpu.context_lost:
            raise CUDARuntimeError(700)
        gpu.copies.append((kind, stream, gpu.on_copy() if gpu.on_copy else None))
        if kind == self.memcpyHostToDevice:
            dst = self._host_address(dst, size)
        elif kind == self.memcpyDeviceToHost:
            src = self._host_address(src, size)
        else:
            raise CUDARuntimeError(21)  # cudaErrorInvalidMemcpyDirection
        ctypes.memmove(dst, src, size)

    def streamSynchronize(self, stream: int) -> None:
        gpu.synchronized.append(stream)


class _Driver:
    def occupancyMaxActiveBlocksPerMultiprocessor(
        self, func: int, blockSize: int, dynamicSMemSize: int
    ) -> int:
        return gpu.blocks_per_sm(blockSize)


class FakeGpu:
    """The state of the fake device; tests set its knobs."""

    def __init__(self) -> None:
        self.current_device = 0
        self.sms = 4
        self.function_resources = (32, 1024, 64)  # registers, max threads per block, shared
        self.blocks_per_sm = lambda threads: max(0, 2048 // max(threads, 64))
        self.launch_error: int | None = None
        self.query_error: int | None = None
        self.context_lost = False
        self.allocations: list[PinnedMemory] = []
        self.streams: dict[int, Stream] = {}
        self.launches: list[tuple] = []
        self.functions: list[str] = []
        self.device_stack: list[int] = []
        self.launch_entered = threading.Event()
        self.launch_gate: threading.Event | None = None
        self.device_memory: dict[int, np.ndarray] = {}  # malloc'd address -> its bytes
        self.mallocs: list[tuple[int, int, list[int]]] = []  # address, size, device stack
        self.frees: list[int] = []
        self.copies: list[tuple[int, int, Any]] = []  # kind, stream, what on_copy returned
        self.on_copy: Any = None  # called as each copy starts (the test records state)
        self.synchronized: list[int] = []  # streams the host waited for


gpu = FakeGpu()


def make_fake_cupy() -> tuple[SimpleNamespace, FakeGpu]:
    """A fresh fake ``cupy`` module object and the fake GPU behind it."""
    global gpu
    gpu = FakeGpu()
    cuda = SimpleNamespace(
        runtime=_Runtime(),
        driver=_Driver(),
        PinnedMemory=PinnedMemory,
        PinnedMemoryPointer=PinnedMemoryPointer,
        Stream=Stream,
        Device=Device,
    )
    return SimpleNamespace(cuda=cuda, RawModule=RawModule), gpu
