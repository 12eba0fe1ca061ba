"""The device panel reads the accelerator telemetry of the runtime's snapshots."""

from __future__ import annotations

import math

from pydotcompute import Accelerator, RingKernelRuntime
from pydotcompute_widgets import DevicePanel, read_device
from pydotcompute_widgets._device import summary_html
from tests.widgets.conftest import snapshot

GIB = 1024**3

GPU = {
    "device": "cuda:0", "kind": "cuda", "name": "NVIDIA H100", "utilization_pct": 37.0,
    "memory_used": 8 * GIB, "memory_total": 80 * GIB, "temperature_c": 54.0, "power_w": 210.5,
    "unavailable": {},
}  # fmt: skip


def test_nothing_reported_shows_every_figure_unavailable() -> None:
    reading = read_device({})
    assert reading.kind == "none"
    text = summary_html(reading)
    assert text.count("unavailable") == 4 and "no accelerator telemetry" in text


def test_gpu_telemetry_is_shown_with_memory_percent_derived() -> None:
    reading = read_device(GPU)
    assert reading.kind == "gpu" and reading.name == "NVIDIA H100"
    assert reading.figures == {
        "load": 37.0, "memory_percent": 10.0, "memory_used": 8.0 * GIB,
        "memory_total": 80.0 * GIB, "temperature": 54.0, "power": 210.5,
    }  # fmt: skip
    text = summary_html(reading)
    assert "GPU: NVIDIA H100" in text and "8.00 GiB" in text and "210.5 W" in text
    assert "unavailable" not in text


def test_missing_figures_show_the_reason_the_telemetry_gives() -> None:
    reading = read_device(
        {**GPU, "temperature_c": None, "power_w": math.nan,
         "unavailable": {"temperature_c": "NVML: not supported on this device"}}
    )  # fmt: skip
    assert reading.figures["temperature"] is None and reading.figures["power"] is None
    assert "temperature: NVML: not supported on this device" in summary_html(reading)


def test_the_cpu_accelerator_telemetry_of_this_machine() -> None:
    reading = read_device(Accelerator("cpu").telemetry().as_dict())
    assert reading.kind == "cpu" and "temperature" not in reading.figures
    assert reading.figures["memory_used"] and reading.figures["memory_total"]
    assert 0 < (reading.figures["memory_percent"] or 0) <= 100


async def test_the_runtime_snapshot_feeds_the_panel(runtime: RingKernelRuntime) -> None:
    reading = read_device(runtime.snapshot().device)
    assert reading.kind == "cpu" and reading.figures["memory_total"]


def test_panel_streams_only_when_the_reading_changes() -> None:
    panel = DevicePanel(history=10, interval=0.5)
    assert not panel.update(snapshot(t=1.0))  # nothing reported: nothing to plot
    assert panel.update(snapshot(t=2.0, **GPU))
    assert not panel.update(snapshot(t=3.0, **GPU))
    assert panel.figure.title.text == "GPU"
    assert panel.source.data["load"] == [37.0] and panel.source.data["power"] == [210.5]
    assert panel.figure.extra_y_ranges["right"].end >= 210.5  # the right axis fits the power
    assert "54.0 °C" in panel.summary.value
    assert all(item.visible for item in panel.gpu_only)  # temperature, power, their axis
    assert panel.update(snapshot(t=4.0, device="cpu", kind="cpu", name="x", memory_used=1))
    assert not any(item.visible for item in panel.gpu_only)
    panel.close()
