"""The device panel: accelerator telemetry from ``RuntimeSnapshot.device``, read defensively.

The ``device`` dict is filled by the core's accelerator telemetry: GPU utilization, memory,
temperature and power when a GPU is there, CPU load and memory otherwise. The panel accepts
the figures flat (``{"kind": "gpu", "utilization_percent": 37, ...}``) or nested under
``"gpu"`` / ``"cpu"`` (or ``"gpus"``, a list, of which the first is shown), under a few
common spellings each, and shows "unavailable" for any figure that is missing or not a
finite number. Nothing in the dict is required.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydotcompute import RuntimeSnapshot

from ._plots import PLOT_HEIGHT, time_figure
from ._series import TimeSeries, local_ms

__all__ = ["DevicePanel", "DeviceReading", "FIGURES", "read_device"]

MIB = 1024.0**2
GIB = 1024.0**3

#: figure -> (label, unit, spellings: (key, scale to the unit))
FIGURES: dict[str, tuple[str, str, tuple[tuple[str, float], ...]]] = {
    "load": (
        "utilization",
        "%",
        (
            ("utilization_percent", 1.0), ("utilization", 1.0), ("gpu_utilization", 1.0),
            ("gpu_utilization_percent", 1.0), ("gpu_util", 1.0), ("util", 1.0),
            ("cpu_percent", 1.0), ("cpu_load_percent", 1.0), ("cpu_load", 1.0),
            ("cpu_utilization", 1.0), ("load_percent", 1.0), ("load", 1.0),
        ),
    ),
    "memory_used": (
        "memory used",
        "bytes",
        (
            ("memory_used_bytes", 1.0), ("memory_used", 1.0), ("mem_used", 1.0),
            ("memory_used_mib", MIB), ("memory_used_mb", MIB), ("memory_used_gib", GIB),
        ),
    ),
    "memory_total": (
        "memory total",
        "bytes",
        (
            ("memory_total_bytes", 1.0), ("memory_total", 1.0), ("mem_total", 1.0),
            ("memory_total_mib", MIB), ("memory_total_mb", MIB), ("memory_total_gib", GIB),
        ),
    ),
    "memory_percent": (
        "memory",
        "%",
        (("memory_percent", 1.0), ("memory_used_percent", 1.0), ("mem_percent", 1.0),
         ("memory_utilization", 1.0)),
    ),
    "temperature": (
        "temperature",
        "°C",
        (("temperature_c", 1.0), ("temperature", 1.0), ("temp_c", 1.0),
         ("gpu_temperature", 1.0), ("temperature_celsius", 1.0)),
    ),
    "power": (
        "power",
        "W",
        (("power_w", 1.0), ("power", 1.0), ("power_watts", 1.0), ("power_draw_w", 1.0),
         ("power_draw", 1.0), ("power_usage_w", 1.0), ("power_mw", 1e-3)),
    ),
}  # fmt: skip

#: figures shown for each kind of device, in order
SHOWN = {
    "gpu": ("load", "memory_percent", "memory_used", "memory_total", "temperature", "power"),
    "cpu": ("load", "memory_percent", "memory_used", "memory_total"),
}
_GPU_ONLY = ("temperature", "power")
_NAME_KEYS = ("name", "device_name", "gpu_name", "model")
_NOTE_KEYS = ("error", "detail", "reason")


@dataclass(frozen=True)
class DeviceReading:
    """What the device panel shows: the kind of device, its name and each figure (or None)."""

    kind: str  # "gpu", "cpu" or "none" (nothing reported)
    name: str | None
    figures: dict[str, float | None] = field(default_factory=dict)
    note: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, str)) or type(value).__name__ == "bool_":
        return None
    if not isinstance(value, (int, float)):
        try:  # numpy scalars and the like
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def _lookup(sections: list[Mapping[str, Any]], figure: str) -> float | None:
    for section in sections:
        for key, scale in FIGURES[figure][2]:
            if key in section:
                v = _number(section[key])
                if v is not None:
                    return v * scale
    return None


def _section(device: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = device.get(key)
    if isinstance(value, Mapping):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
        return value[0]
    return None


def read_device(device: Mapping[str, Any] | None) -> DeviceReading:
    """Read a snapshot's ``device`` dict into the figures the panel shows."""
    if not isinstance(device, Mapping) or not device:
        return DeviceReading("none", None, note="no accelerator telemetry reported")
    gpu = _section(device, "gpu") or _section(device, "gpus")
    cpu = _section(device, "cpu")
    kind = device.get("kind")
    if kind not in ("gpu", "cpu"):
        flat_gpu = any(_lookup([device], f) is not None for f in _GPU_ONLY)
        kind = "gpu" if gpu is not None or flat_gpu else "cpu"
    nested = gpu if kind == "gpu" else cpu
    sections = [s for s in (nested, device) if s is not None]
    figures = {f: _lookup(sections, f) for f in SHOWN[kind]}
    used, total = figures["memory_used"], figures["memory_total"]
    if figures["memory_percent"] is None and used is not None and total:
        figures["memory_percent"] = 100.0 * used / total
    name = next(
        (str(s[k]) for s in sections for k in _NAME_KEYS if isinstance(s.get(k), str)), None
    )
    note = next((str(s[k]) for s in sections for k in _NOTE_KEYS if s.get(k)), None)
    return DeviceReading(kind, name, figures, note)


def _format(figure: str, value: float | None) -> str:
    if value is None:
        return '<span class="pdc-muted">unavailable</span>'
    unit = FIGURES[figure][1]
    if unit == "bytes":
        return f"{value / GIB:,.2f} GiB" if value >= GIB else f"{value / MIB:,.0f} MiB"
    return f"{value:,.1f} {unit}" if unit != "%" else f"{value:.0f} %"


def summary_html(reading: DeviceReading) -> str:
    """The panel's text: the device and each figure's current value."""
    title = {"gpu": "GPU", "cpu": "CPU", "none": "Device"}[reading.kind]
    if reading.name:
        title += f": {html.escape(reading.name)}"
    rows = "".join(
        f"<tr><td>{FIGURES[f][0]}</td><td class='pdc-c-{f}'>{_format(f, v)}</td></tr>"
        for f, v in reading.figures.items()
    )
    if reading.kind == "none":
        rows = "".join(
            f"<tr><td>{FIGURES[f][0]}</td><td>{_format(f, None)}</td></tr>" for f in SHOWN["cpu"]
        )
    note = f'<div class="pdc-muted">{html.escape(reading.note)}</div>' if reading.note else ""
    return f'<div class="pdc-title">{title}</div><table class="pdc-device">{rows}</table>{note}'


class DevicePanel:
    """Component: the accelerator's figures now (text) and over time (a Bokeh plot).

    ``root`` is a ``VBox`` of the summary and the plot; ``source`` the plot's streamed
    ``ColumnDataSource`` (``load``, ``memory_percent`` on the left axis in %, and for a GPU
    ``temperature`` and ``power`` on the right axis).
    """

    def __init__(self, history: int, interval: float) -> None:
        import ipywidgets as w
        from bokeh.models import LinearAxis, Range1d

        from ._bokeh import bokeh_widget
        from ._plots import following_range

        self.series = TimeSeries(history)
        self.source = self.series.source
        fig = time_figure("device", following_range(history * interval * 1000.0), "%")
        fig.width = 420
        fig.height = PLOT_HEIGHT
        fig.y_range = Range1d(start=0, end=100)
        fig.extra_y_ranges = {"right": Range1d(start=0, end=100)}
        fig.add_layout(LinearAxis(y_range_name="right", axis_label="°C / W"), "right")
        lines = (
            ("load", "utilization %", "#2563eb", "left"),
            ("memory_percent", "memory %", "#16a34a", "left"),
            ("temperature", "temperature °C", "#ea580c", "right"),
            ("power", "power W", "#9333ea", "right"),
        )
        for col, label, colour, side in lines:
            self.series.add_column(col)
            fig.line(
                "time", col, source=self.source, color=colour, line_width=2,
                legend_label=label, y_range_name="default" if side == "left" else "right",
            )  # fmt: skip
        self.figure = fig
        self.reading = read_device(None)
        self.summary = w.HTML(summary_html(self.reading))
        self.plot = bokeh_widget(fig)
        self.plot.layout.display = "none"  # until a device reports figures
        self.root = w.VBox([self.summary, self.plot])
        self.root.add_class("pdc-device-panel")

    def update(self, snapshot: RuntimeSnapshot) -> bool:
        """Show the snapshot's device figures; return whether anything changed."""
        reading = read_device(snapshot.device)
        if reading == self.reading:
            return False
        kind_changed = reading.kind != self.reading.kind
        self.reading = reading
        self.summary.value = summary_html(reading)
        if kind_changed:
            self.figure.title.text = {"gpu": "GPU", "cpu": "CPU", "none": "device"}[reading.kind]
            self.plot.layout.display = "none" if reading.kind == "none" else None
        nan = float("nan")
        values = {c: nan for c in self.series.columns}
        for f, v in reading.figures.items():
            if f in values and v is not None:
                values[f] = v
        right = [v for c in ("temperature", "power") if (v := values[c]) == v]
        if right and max(right) > self.figure.extra_y_ranges["right"].end:
            self.figure.extra_y_ranges["right"].end = max(right) * 1.2
        self.series.push(local_ms(snapshot.timestamp), values)
        if kind_changed:
            self.plot.resync()
        return True

    def resync(self) -> None:
        """Send the plot whole to the browser (see ``PlotWidget.resync``)."""
        self.plot.resync()

    def close(self) -> None:
        """Close the panel's widgets."""
        for widget in (self.summary, self.plot, self.root):
            widget.close()
