"""``Accelerator``: a device that runs ``@kernel`` code and holds ``UnifiedBuffer`` memory.

The CPU is always there. CUDA GPUs are found through the one CUDA probe
(:func:`pydotcompute._cuda.cuda_status`, which imports CuPy on first use only). With
``NUMBA_ENABLE_CUDASIM=1`` in the environment and no usable GPU, ``"cuda:0"`` is Numba's CUDA
simulator: a GPU accelerator whose device memory is separate host memory, so code written for
a GPU (and its copies between host and device) runs and is tested on any machine.
"""

from __future__ import annotations

import os
import platform
import threading
from typing import Any, ClassVar

from .._cuda import cuda_status, require_cupy
from .._install import extra_hint
from ..errors import BackendUnavailableError, DeviceNotFoundError, PyDotComputeError
from ._memory import CupyMemory, HostStream, SimulatedMemory, wait_event
from ._telemetry import DeviceTelemetry, cpu_telemetry, gpu_telemetry

__all__ = ["Accelerator", "numba_cuda", "simulating"]

SIM_ENV = "NUMBA_ENABLE_CUDASIM"


def simulating() -> bool:
    """True when Numba's CUDA simulator is asked for in the environment."""
    return os.environ.get(SIM_ENV, "0") not in ("", "0")


def _parse(device: str) -> tuple[str, int]:
    text = device.strip().lower()
    if text == "cpu":
        return "cpu", 0
    kind, _, index = text.partition(":")
    if kind in ("cuda", "gpu") and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise DeviceNotFoundError(
        f"unknown accelerator {device!r}; expected 'cpu' or 'cuda:N' (N = 0, 1, ...). "
        "Accelerator.list() shows the ones present"
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _cpu_memory() -> tuple[int, int]:
    """(total, available) bytes of host memory; (0, 0) where /proc/meminfo is missing."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


class Accelerator:
    """A device that runs ``@kernel`` code: the CPU, or one CUDA GPU.

    ``Accelerator("cpu")`` is always there; ``Accelerator("cuda:0")`` is the first GPU (or
    the Numba CUDA simulator when ``NUMBA_ENABLE_CUDASIM=1`` and no GPU is usable). One
    object exists per device: ``Accelerator("cuda:0") is Accelerator("cuda:0")``.

    Attributes
    ----------
    id:
        ``"cpu"`` or ``"cuda:N"``.
    kind:
        ``"cpu"`` or ``"cuda"``.
    index:
        Device ordinal (0 for the CPU).
    name:
        Device name (the CPU model, or the GPU's name).
    compute_capability:
        ``(major, minor)`` of a GPU; ``None`` for the CPU.
    total_memory:
        Bytes of device memory (host memory for the CPU).
    sm_count:
        Streaming multiprocessors of a GPU; ``None`` for the CPU.
    mapped_pinned_memory:
        Whether page-locked host memory can be mapped into the device's address space
        (``canMapHostMemory`` and unified addressing); ``False`` for the CPU.
    simulated:
        True for the Numba CUDA simulator.

    Raises
    ------
    DeviceNotFoundError
        The id is malformed, or names a GPU index that is not present.
    BackendUnavailableError
        A GPU was asked for and CUDA is not usable here (the message says why).
    """

    _instances: ClassVar[dict[tuple[str, int, bool], Accelerator]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    id: str
    kind: str
    index: int
    name: str
    compute_capability: tuple[int, int] | None
    total_memory: int
    sm_count: int | None
    mapped_pinned_memory: bool
    simulated: bool

    def __new__(cls, device: str | Accelerator = "cpu") -> Accelerator:
        if isinstance(device, Accelerator):
            return device
        if not isinstance(device, str):
            raise DeviceNotFoundError(
                f"an accelerator is named by a string such as 'cpu' or 'cuda:0', got "
                f"{type(device).__name__} {device!r}"
            )
        kind, index = _parse(device)
        sim = kind == "cuda" and simulating() and not cuda_status().usable
        key = (kind, index, sim)
        with cls._lock:
            found = cls._instances.get(key)
            if found is None:
                found = object.__new__(cls)
                found._setup(kind, index, sim)
                cls._instances[key] = found
        return found

    def _setup(self, kind: str, index: int, sim: bool) -> None:
        self.kind, self.index, self.simulated = kind, index, sim
        self.id = "cpu" if kind == "cpu" else f"cuda:{index}"
        self._pci_bus_id: str | None = None
        self._memory: Any = None
        if kind == "cpu":
            self.name = _cpu_name()
            self.compute_capability = None
            self.total_memory = _cpu_memory()[0]
            self.sm_count = None
            self.mapped_pinned_memory = False
        elif sim:
            if index != 0:
                raise DeviceNotFoundError(
                    f"the Numba CUDA simulator has one device, 'cuda:0'; got 'cuda:{index}'"
                )
            self.name = "Numba CUDA simulator"
            self.compute_capability = (7, 5)
            self.total_memory = _cpu_memory()[0]
            self.sm_count = 1
            self.mapped_pinned_memory = False
            self._memory = SimulatedMemory()
        else:
            self._setup_gpu(index)

    def _setup_gpu(self, index: int) -> None:
        cupy = require_cupy(f"the CUDA accelerator 'cuda:{index}'")
        count = cuda_status().device_count
        if index >= count:
            raise DeviceNotFoundError(
                f"no CUDA device 'cuda:{index}': this machine has {count} "
                f"({', '.join(f'cuda:{i}' for i in range(count))}); use one of those"
            )
        props = cupy.cuda.runtime.getDeviceProperties(index)
        raw = props["name"]
        self.name = raw.decode() if isinstance(raw, bytes) else str(raw)
        self.compute_capability = (int(props["major"]), int(props["minor"]))
        self.total_memory = int(props["totalGlobalMem"])
        self.sm_count = int(props["multiProcessorCount"])
        self.mapped_pinned_memory = bool(props["canMapHostMemory"]) and bool(
            props.get("unifiedAddressing", 1)
        )
        self._pci_bus_id = cupy.cuda.runtime.deviceGetPCIBusId(index)
        self._memory = CupyMemory(index)

    def __repr__(self) -> str:
        extra = ""
        if self.compute_capability is not None:
            major, minor = self.compute_capability
            extra = f" sm_{major}{minor} {self.sm_count} SMs"
        sim = " simulated" if self.simulated else ""
        return f"<Accelerator {self.id} {self.name!r}{extra}{sim}>"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Accelerator, (self.id,))

    @property
    def is_gpu(self) -> bool:
        """True for a CUDA GPU (real or simulated): memory separate from the host's."""
        return self.kind == "cuda"

    @property
    def free_memory(self) -> int:
        """Bytes of device memory free now (available host memory for the CPU)."""
        if self.kind == "cpu" or self.simulated:
            return _cpu_memory()[1]
        free, _total = self._memory.device.mem_info
        return int(free)

    @classmethod
    def list(cls) -> list[Accelerator]:
        """Every accelerator present: the CPU first, then each CUDA GPU."""
        found = [cls("cpu")]
        status = cuda_status()
        if status.usable:
            found.extend(cls(f"cuda:{i}") for i in range(status.device_count))
        elif simulating():
            found.append(cls("cuda:0"))
        return found

    @classmethod
    def default(cls) -> Accelerator:
        """The first GPU if one is usable (or simulated), else the CPU."""
        found = cls.list()
        return found[1] if len(found) > 1 else found[0]

    def telemetry(self) -> DeviceTelemetry:
        """A frozen snapshot of the device's load, memory, temperature, power and clocks."""
        if self.kind == "cpu":
            return cpu_telemetry(self.id, self.name)
        if self.simulated:
            host = cpu_telemetry(self.id, self.name)
            unavailable = dict(host.unavailable)
            unavailable["note"] = "the CUDA simulator runs on the CPU: these are host figures"
            return DeviceTelemetry(**{**host.__dict__, "kind": "cuda", "source": "simulator",
                                      "unavailable": unavailable})  # fmt: skip
        return gpu_telemetry(self.id, self.name, self._pci_bus_id)

    def stream(self) -> Any:
        """A new stream: a non-blocking CuPy stream on a GPU, a host stream otherwise."""
        if self._memory is None:
            return HostStream()
        return self._memory.new_stream()

    def synchronize(self, *, timeout: float | None = None) -> None:
        """Wait until all work issued to this device has finished.

        Raises
        ------
        OperationTimeoutError
            The device was still busy after ``timeout`` seconds.
        """
        if self._memory is None or self._memory.simulated:
            return
        cupy = self._memory.cupy
        with self._memory.device:
            event = cupy.cuda.Event(disable_timing=True)
            event.record(cupy.cuda.Stream.null)
        # The legacy default stream waits for every blocking stream; non-blocking streams
        # made by stream() are synchronized by the orchestrator and buffers themselves.
        wait_event(event, timeout, f"work on {self.id}")

    def _require_memory(self) -> Any:
        if self._memory is None:
            raise PyDotComputeError(f"{self!r} has no separate device memory")
        return self._memory


def numba_cuda(acc: Accelerator) -> Any:
    """Import ``numba.cuda`` for ``acc``, checking that it is the simulator exactly when asked."""
    try:
        import numba.cuda
    except ImportError as exc:
        raise BackendUnavailableError(
            f"@kernel on {acc.id} needs Numba's CUDA target; {extra_hint('cuda')}"
        ) from exc
    is_sim = numba.cuda.jit.__module__.startswith("numba.cuda.simulator")
    if acc.simulated and not is_sim:
        raise BackendUnavailableError(
            f"{acc.id} is the CUDA simulator, but numba.cuda was imported before "
            f"{SIM_ENV}=1 was set; set it before numba is first imported in this process"
        )
    if not acc.simulated and is_sim:
        raise BackendUnavailableError(
            f"{acc.id} is a real GPU, but numba.cuda is the simulator ({SIM_ENV}=1); unset "
            f"{SIM_ENV} to compile for the GPU"
        )
    return numba.cuda
