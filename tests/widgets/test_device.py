"""The device panel reads the snapshot's device dict defensively."""

from __future__ import annotations

import math

from pydotcompute_widgets import DevicePanel, read_device
from pydotcompute_widgets._device import summary_html
from tests.widgets.conftest import snapshot

GIB = 1024**3


def test_nothing_reported_shows_every_figure_unavailable() -> None:
    reading = read_device({})
    assert reading.kind == "none"
    text = summary_html(reading)
    assert text.count("unavailable") == 4 and "no accelerator telemetry" in text


def test_flat_gpu_figures_are_read_under_their_common_names() -> None:
    reading = read_device(
        {"kind": "gpu", "name": "H100", "utilization_percent": 37, "memory_used_bytes": 8 * GIB,
         "memory_total_bytes": 80 * GIB, "temperature_c": 54.0, "power_w": 210.5}
    )  # fmt: skip
    assert reading.kind == "gpu" and reading.name == "H100"
    assert reading.figures == {
        "load": 37.0, "memory_percent": 10.0, "memory_used": 8.0 * GIB,
        "memory_total": 80.0 * GIB, "temperature": 54.0, "power": 210.5,
    }  # fmt: skip
    text = summary_html(reading)
    assert "GPU: H100" in text and "8.00 GiB" in text and "210.5 W" in text
    assert "unavailable" not in text


def test_nested_gpu_list_and_scaled_units() -> None:
    reading = read_device(
        {"gpus": [{"name": "A10", "gpu_utilization": 5, "memory_used_mib": 512,
                   "power_mw": 60000}, {"name": "second"}]}
    )  # fmt: skip
    assert reading.kind == "gpu" and reading.name == "A10"
    assert reading.figures["memory_used"] == 512 * 1024**2
    assert reading.figures["power"] == 60.0
    assert reading.figures["temperature"] is None


def test_cpu_figures_without_a_gpu() -> None:
    reading = read_device({"cpu": {"cpu_percent": 12.5, "memory_percent": 40}})
    assert reading.kind == "cpu"
    assert reading.figures["load"] == 12.5 and reading.figures["memory_percent"] == 40.0
    assert "temperature" not in reading.figures
    assert summary_html(reading).count("unavailable") == 2  # used and total bytes


def test_values_that_are_not_finite_numbers_are_unavailable() -> None:
    reading = read_device(
        {"kind": "gpu", "utilization_percent": "n/a", "temperature_c": math.nan,
         "power_w": True, "error": "NVML: insufficient permissions"}
    )  # fmt: skip
    assert reading.figures["load"] is None and reading.figures["temperature"] is None
    assert reading.figures["power"] is None
    assert "NVML: insufficient permissions" in summary_html(reading)


def test_panel_streams_only_when_the_reading_changes() -> None:
    panel = DevicePanel(history=10, interval=0.5)
    assert not panel.update(snapshot(t=1.0))  # nothing reported: nothing to plot
    gpu = {"kind": "gpu", "utilization_percent": 50, "temperature_c": 60, "power_w": 300}
    assert panel.update(snapshot(t=2.0, **gpu))
    assert not panel.update(snapshot(t=3.0, **gpu))
    assert panel.figure.title.text == "GPU"
    assert panel.source.data["load"] == [50.0] and panel.source.data["power"] == [300.0]
    assert panel.figure.extra_y_ranges["right"].end >= 300  # the right axis fits the power
    assert "60.0 °C" in panel.summary.value
    panel.close()
