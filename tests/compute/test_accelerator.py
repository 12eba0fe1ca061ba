"""Accelerators: enumeration, the CPU, the simulated GPU, clear errors, telemetry."""

from __future__ import annotations

import pytest

from pydotcompute import (
    Accelerator,
    BackendUnavailableError,
    DeviceNotFoundError,
    DeviceTelemetry,
)
from pydotcompute._cuda import cuda_status
from pydotcompute.compute import _telemetry
from tests.compute.conftest import gpu


def test_cpu_is_always_listed_first_with_its_figures() -> None:
    cpu = Accelerator("cpu")
    assert Accelerator.list()[0] is cpu
    assert (cpu.id, cpu.kind, cpu.index) == ("cpu", "cpu", 0)
    assert cpu.name and cpu.total_memory > 0 and 0 < cpu.free_memory <= cpu.total_memory
    assert cpu.compute_capability is None and cpu.sm_count is None
    assert not cpu.mapped_pinned_memory and not cpu.is_gpu


def test_one_object_per_device() -> None:
    assert Accelerator("cpu") is Accelerator(" CPU ") is Accelerator(Accelerator("cpu"))


def test_default_is_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    if cuda_status().usable:
        pytest.skip("a GPU is usable here")
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    assert Accelerator.default() is Accelerator("cpu")
    assert Accelerator.list() == [Accelerator("cpu")]


def test_missing_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if cuda_status().usable:
        pytest.skip("a GPU is usable here")
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    with pytest.raises(BackendUnavailableError, match=r"'cuda:0' needs a usable CUDA GPU, but"):
        Accelerator("cuda:0")


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cuda:-1", ""])
def test_malformed_ids_say_what_is_expected(bad: str) -> None:
    with pytest.raises(DeviceNotFoundError, match=r"expected 'cpu' or 'cuda:N'"):
        Accelerator(bad)


def test_non_string_id_is_rejected() -> None:
    with pytest.raises(DeviceNotFoundError, match="named by a string"):
        Accelerator(0)  # type: ignore[arg-type]


def test_simulator_is_a_gpu_accelerator(sim: Accelerator) -> None:
    assert sim.simulated and sim.is_gpu and sim.kind == "cuda" and sim.id == "cuda:0"
    assert Accelerator.list()[-1] is sim and Accelerator.default() is sim
    assert sim.compute_capability == (7, 5)
    with pytest.raises(DeviceNotFoundError, match="simulator has one device"):
        Accelerator("cuda:1")
    snap = sim.telemetry()
    assert snap.source == "simulator" and "note" in snap.unavailable


def test_cpu_telemetry_is_frozen_plain_data() -> None:
    snap = Accelerator("cpu").telemetry()
    assert isinstance(snap, DeviceTelemetry)
    assert snap.device == "cpu" and snap.kind == "cpu" and snap.memory_total
    assert snap.memory_used is not None and 0 < snap.memory_used <= snap.memory_total
    for name in ("utilization_pct", "temperature_c", "power_w", "memory_clock_mhz"):
        assert (getattr(snap, name) is None) == (name in snap.unavailable)
    data = snap.as_dict()
    assert data["device"] == "cpu" and isinstance(data["unavailable"], dict)
    with pytest.raises(AttributeError):
        snap.power_w = 1.0  # type: ignore[misc]


def test_cpu_utilization_is_measured_between_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = iter([(100, 1000), (250, 1200), (250, 1200)])
    monkeypatch.setattr(_telemetry, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(_telemetry, "_last_stat", None)
    monkeypatch.setattr(_telemetry, "_last_util", None)
    first = _telemetry.cpu_telemetry()
    assert first.utilization_pct is None and "first" in first.unavailable["utilization_pct"]
    assert _telemetry.cpu_telemetry().utilization_pct == pytest.approx(75.0)
    assert _telemetry.cpu_telemetry().utilization_pct == pytest.approx(75.0)  # same tick


def test_gpu_telemetry_without_nvml_reports_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_telemetry, "_nvml_state", (None, "nvidia-ml-py is not installed"))
    snap = _telemetry.gpu_telemetry("cuda:0", "Some GPU", "0000:01:00.0")
    assert snap.source == "none" and snap.utilization_pct is None
    assert snap.unavailable["power_w"] == "nvidia-ml-py is not installed"


def test_gpu_telemetry_never_fails_where_nvml_cannot_start() -> None:
    snap = _telemetry.gpu_telemetry("cuda:0", "Some GPU", "0000:01:00.0")
    if cuda_status().usable:
        pytest.skip("NVML may work here")
    assert snap.source == "none" and set(snap.unavailable) >= {"utilization_pct", "power_w"}


@pytest.mark.gpu
def test_gpu_accelerator_reports_its_properties() -> None:
    acc = gpu()
    assert acc.kind == "cuda" and not acc.simulated and acc.name
    assert acc.compute_capability is not None and acc.compute_capability[0] >= 3
    assert acc.sm_count and acc.total_memory > acc.free_memory > 0
    assert Accelerator.default() is acc
    with pytest.raises(DeviceNotFoundError, match="this machine has"):
        Accelerator(f"cuda:{cuda_status().device_count}")


@pytest.mark.gpu
def test_gpu_telemetry_reads_nvml() -> None:
    snap = gpu().telemetry()
    if snap.source != "nvml":
        pytest.skip(f"NVML is not usable: {snap.unavailable}")
    assert snap.memory_total and snap.memory_used is not None
    assert snap.utilization_pct is not None and 0 <= snap.utilization_pct <= 100
