"""Device telemetry: a frozen snapshot of a GPU (through NVML) or of the CPU (through /proc).

Nothing here fails because a source is missing: a figure that cannot be read is ``None`` and
``unavailable`` says why. The CPU figures need only the standard library (Linux ``/proc`` and
``/sys``; elsewhere the load average alone), so the runtime's ``snapshot()`` can include them
without importing CuPy or Numba.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DeviceTelemetry", "cpu_telemetry", "gpu_telemetry"]

_FIGURES = (
    "utilization_pct",
    "memory_used",
    "memory_total",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "memory_clock_mhz",
)


@dataclass(frozen=True)
class DeviceTelemetry:
    """A frozen snapshot of one accelerator's load, memory, temperature, power and clocks.

    Every figure is ``None`` where it could not be read, and ``unavailable`` maps the name of
    each such figure to the reason (no NVML, a counter the device does not expose, the first
    CPU sample, ...). Memory is in bytes, power in watts, clocks in MHz.

    Attributes
    ----------
    device:
        Accelerator id (``"cpu"``, ``"cuda:0"``).
    kind:
        ``"cpu"`` or ``"cuda"``.
    name:
        Device name.
    timestamp:
        ``time.time()`` when the snapshot was taken.
    source:
        Where the figures come from: ``"nvml"``, ``"procfs"``, ``"simulator"`` or ``"none"``.
    utilization_pct:
        GPU: percent of time a kernel ran over NVML's last sample period. CPU: percent of
        CPU time not idle since the previous snapshot of this accelerator.
    load_average:
        CPU only: the 1, 5 and 15 minute load averages.
    """

    device: str
    kind: str
    name: str
    timestamp: float
    source: str
    utilization_pct: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    load_average: tuple[float, float, float] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as plain data (dicts, lists, str, numbers, None)."""
        out = dataclasses.asdict(self)
        if self.load_average is not None:
            out["load_average"] = list(self.load_average)
        return out


def _missing(figures: dict[str, Any], reason: str, names: tuple[str, ...] = _FIGURES) -> None:
    for name in names:
        if figures.get(name) is None:
            figures.setdefault("unavailable", {})[name] = reason


# ---------------------------------------------------------------------------- CPU (/proc)
_last_stat: tuple[int, int] | None = None  # (busy, total) jiffies at the previous snapshot
_last_util: float | None = None
_stat_lock = threading.Lock()


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and key in ("MemTotal", "MemAvailable"):
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _cpu_temperature() -> float | None:
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            if kind.startswith(("x86_pkg", "cpu", "k10temp", "coretemp", "acpitz")):
                return int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return None


def _cpu_clock_mhz() -> float | None:
    mhz = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    mhz.append(float(line.split(":", 1)[1]))
    except (OSError, ValueError):
        return None
    return sum(mhz) / len(mhz) if mhz else None


def cpu_telemetry(device: str = "cpu", name: str = "CPU") -> DeviceTelemetry:
    """Snapshot the host CPU: utilization since the previous call, load, memory, clock."""
    global _last_stat, _last_util
    figures: dict[str, Any] = {}
    now = _cpu_times()
    with _stat_lock:
        before = _last_stat
        if now is not None and (before is None or now[1] > before[1]):
            _last_stat = now
            if before is not None:
                _last_util = 100.0 * (now[0] - before[0]) / (now[1] - before[1])
        # Snapshots closer than a clock tick (10 ms) repeat the previous figure.
        util = _last_util
    if now is None:
        figures["unavailable"] = {"utilization_pct": "no /proc/stat on this system"}
    elif util is None:
        figures["unavailable"] = {
            "utilization_pct": "measured between two snapshots; this is the first"
        }
    else:
        figures["utilization_pct"] = util
    mem = _meminfo()
    if "MemTotal" in mem:
        figures["memory_total"] = mem["MemTotal"]
        if "MemAvailable" in mem:
            figures["memory_used"] = mem["MemTotal"] - mem["MemAvailable"]
    figures["temperature_c"] = _cpu_temperature()
    figures["sm_clock_mhz"] = _cpu_clock_mhz()
    try:
        figures["load_average"] = os.getloadavg()
    except OSError:
        figures.setdefault("unavailable", {})["load_average"] = "no load average here"
    _missing(figures, "not exposed by this system", ("memory_used", "memory_total"))
    _missing(figures, "no CPU thermal zone in /sys/class/thermal", ("temperature_c",))
    _missing(figures, "CPU power is not measured", ("power_w", "power_limit_w"))
    _missing(figures, "no 'cpu MHz' in /proc/cpuinfo", ("sm_clock_mhz",))
    _missing(figures, "a CPU has no separate memory clock", ("memory_clock_mhz",))
    source = "procfs" if now is not None else "none"
    return DeviceTelemetry(device, "cpu", name, time.time(), source, **figures)


# ---------------------------------------------------------------------------- GPU (NVML)
_nvml_state: tuple[Any, str] | None = None  # (pynvml module or None, reason)
_nvml_lock = threading.Lock()


def _nvml() -> tuple[Any, str]:
    """The initialized pynvml module (once per process), or None and why not."""
    global _nvml_state
    with _nvml_lock:
        if _nvml_state is None:
            try:
                import pynvml
            except ImportError:
                _nvml_state = (None, "nvidia-ml-py is not installed (pip install nvidia-ml-py)")
            else:
                try:
                    pynvml.nvmlInit()
                    _nvml_state = (pynvml, "")
                except pynvml.NVMLError as exc:
                    _nvml_state = (None, f"NVML cannot start: {exc}")
        return _nvml_state


def gpu_telemetry(device: str, name: str, pci_bus_id: str | None) -> DeviceTelemetry:
    """Snapshot one GPU through NVML, found by its PCI bus id (CUDA and NVML order differ)."""
    figures: dict[str, Any] = {}
    nvml, reason = _nvml()
    if nvml is None or pci_bus_id is None:
        _missing(figures, reason or "the device's PCI bus id is unknown")
        return DeviceTelemetry(device, "cuda", name, time.time(), "none", **figures)
    try:
        handle = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
    except nvml.NVMLError as exc:
        _missing(figures, f"NVML does not know PCI device {pci_bus_id}: {exc}")
        return DeviceTelemetry(device, "cuda", name, time.time(), "none", **figures)

    def read(names: tuple[str, ...], call: Any) -> None:
        try:
            values = call()
        except nvml.NVMLError as exc:
            for n in names:
                figures.setdefault("unavailable", {})[n] = f"NVML: {exc}"
            return
        figures.update(zip(names, values if isinstance(values, tuple) else (values,)))

    read(("utilization_pct",), lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))

    def memory() -> tuple[int, int]:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.used), int(info.total)

    read(("memory_used", "memory_total"), memory)
    read(
        ("temperature_c",),
        lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
    )
    read(("power_w",), lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
    read(("power_limit_w",), lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
    read(("sm_clock_mhz",), lambda: float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)))
    read(
        ("memory_clock_mhz",),
        lambda: float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
    )
    figures.setdefault("unavailable", {})["load_average"] = "a GPU has no load average"
    return DeviceTelemetry(device, "cuda", name, time.time(), "nvml", **figures)
