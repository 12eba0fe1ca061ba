"""The device panel: accelerator telemetry from ``RuntimeSnapshot.device``.

``RuntimeSnapshot.device`` holds ``pydotcompute.DeviceTelemetry.as_dict()`` of the accelerator
in use: ``kind`` (``"cuda"`` or ``"cpu"``), ``name``, ``utilization_pct``, ``memory_used`` and
``memory_total`` (bytes), ``temperature_c``, ``power_w``, and ``unavailable`` (figure name ->
why it could not be read). The panel shows each figure, or "unavailable" with the reason.
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

#: figure -> (label, unit, key of DeviceTelemetry.as_dict(), or None when derived)
FIGURES: dict[str, tuple[str, str, str | None]] = {
    "load": ("utilization", "%", "utilization_pct"),
    "memory_percent": ("memory", "%", None),
    "memory_used": ("memory used", "bytes", "memory_used"),
    "memory_total": ("memory total", "bytes", "memory_total"),
    "temperature": ("temperature", "°C", "temperature_c"),
    "power": ("power", "W", "power_w"),
}

#: figures shown for each kind of device, in order
SHOWN = {
    "gpu": ("load", "memory_percent", "memory_used", "memory_total", "temperature", "power"),
    "cpu": ("load", "memory_percent", "memory_used", "memory_total"),
}


@dataclass(frozen=True)
class DeviceReading:
    """What the device panel shows: the kind of device, its name and each figure (or None)."""

    kind: str  # "gpu", "cpu" or "none" (nothing reported)
    name: str | None
    figures: dict[str, float | None] = field(default_factory=dict)
    note: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, str)) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_device(device: Mapping[str, Any] | None) -> DeviceReading:
    """Read a snapshot's ``device`` dict into the figures the panel shows."""
    if not isinstance(device, Mapping) or device.get("kind") not in ("cuda", "cpu"):
        return DeviceReading("none", None, note="no accelerator telemetry reported")
    kind = "gpu" if device["kind"] == "cuda" else "cpu"
    figures: dict[str, float | None] = {}
    for figure in SHOWN[kind]:
        key = FIGURES[figure][2]
        figures[figure] = _number(device.get(key)) if key is not None else None
    used, total = figures["memory_used"], figures["memory_total"]
    if used is not None and total:
        figures["memory_percent"] = 100.0 * used / total
    unavailable = device.get("unavailable")
    reasons = []
    if isinstance(unavailable, Mapping):
        for figure in SHOWN[kind]:
            key = FIGURES[figure][2]
            if figures[figure] is None and key in unavailable:
                reasons.append(f"{FIGURES[figure][0]}: {unavailable[key]}")
    name = device.get("name")
    return DeviceReading(kind, str(name) if name else None, figures, "; ".join(reasons) or None)


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
        self.right_axis = LinearAxis(y_range_name="right", axis_label="°C / W", visible=False)
        fig.add_layout(self.right_axis, "right")
        self.gpu_only: list[Any] = [self.right_axis]  # shown only for a GPU
        lines = (
            ("load", "utilization %", "#2563eb", "left"),
            ("memory_percent", "memory %", "#16a34a", "left"),
            ("temperature", "temperature °C", "#ea580c", "right"),
            ("power", "power W", "#9333ea", "right"),
        )
        for col, label, colour, side in lines:
            self.series.add_column(col)
            renderer = fig.line(
                "time", col, source=self.source, color=colour, line_width=2,
                legend_label=label, y_range_name="default" if side == "left" else "right",
            )  # fmt: skip
            if side == "right":
                renderer.visible = False
                self.gpu_only.append(renderer)
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
            for item in self.gpu_only:  # a CPU has no temperature or power to plot
                item.visible = reading.kind == "gpu"
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
