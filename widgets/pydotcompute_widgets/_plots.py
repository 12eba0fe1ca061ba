"""Streaming Bokeh plots per kernel: throughput, queue depths, latency, drops."""

from __future__ import annotations

from typing import Any

from pydotcompute import RuntimeSnapshot

from ._series import TimeSeries, local_ms

__all__ = ["KernelPlots", "PLOT_HEIGHT", "PLOT_WIDTH", "palette_colour"]

NAN = float("nan")


def _us(value: float | None) -> float:
    return NAN if value is None else float(value)


PLOT_WIDTH = 530
PLOT_HEIGHT = 230
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def palette_colour(i: int) -> str:
    """The colour of the ``i``-th kernel (Category10, cycling)."""
    from bokeh.palettes import Category10_10

    return Category10_10[i % len(Category10_10)]


def time_figure(title: str, x_range: Any, y_label: str) -> Any:
    """A small datetime-axis figure following the newest data."""
    from bokeh.models import DatetimeTicker, DatetimeTickFormatter
    from bokeh.models.annotations import Legend, Title
    from bokeh.plotting import figure

    fig = figure(
        title=Title(text=title, text_font_size="12px"),
        x_axis_type="datetime",
        x_range=x_range,
        width=PLOT_WIDTH,
        height=PLOT_HEIGHT,
        tools=TOOLS,
        toolbar_location="right",
    )
    fig.toolbar.autohide = True
    fig.y_range.start = 0  # type: ignore[attr-defined]
    fig.yaxis.axis_label = y_label
    clock = "%H:%M:%S"
    fig.xaxis.formatter = DatetimeTickFormatter(
        milliseconds="%M:%S.%3N", seconds=clock, minsec=clock, minutes="%H:%M", hourmin="%H:%M",
        hours="%H:%M", context=None,
    )  # fmt: skip
    fig.xaxis.ticker = DatetimeTicker(desired_num_ticks=4)  # room for whole clock times
    # The legend sits right of the plot, off the newest data; lines add their own items.
    fig.add_layout(
        Legend(click_policy="hide", label_text_font_size="10px", border_line_alpha=0), "right"
    )
    return fig


def following_range(span_ms: float) -> Any:
    """An x range that scrolls with the newest points, showing the last ``span_ms``."""
    from bokeh.models import DataRange1d

    return DataRange1d(follow="end", follow_interval=span_ms, range_padding=0)


class KernelPlots:
    """Component: throughput, queue depth, latency and drops per kernel over time.

    ``source`` is one wide ``ColumnDataSource`` (columns ``time``, ``rate_<n>``,
    ``inbox_<n>``, ``outbox_<n>``, ``p50_<n>``, ``p99_<n>``, ``dropped_<n>``, ``dead_<n>``
    for the ``n``-th kernel seen), streamed with rollover so one update is one message to
    the browser. A new kernel adds its columns and lines; a terminated one keeps its history.
    Dead letters are plotted when the kernel's telemetry counts them. ``root`` is the Bokeh
    layout (wrap it in ``jupyter_bokeh.BokehModel`` to show it; :class:`Dashboard` does).
    """

    def __init__(self, history: int, interval: float) -> None:
        from bokeh.layouts import column, row

        self.series = TimeSeries(history)
        self.source = self.series.source
        x_range = following_range(history * interval * 1000.0)
        self.throughput = time_figure("throughput per kernel", x_range, "msg/s")
        self.queues = time_figure("queue depth (inbox solid, outbox dashed)", x_range, "messages")
        self.latency = time_figure("latency (p50 solid, p99 dashed)", x_range, "µs")
        self.drops = time_figure(
            "dropped messages (dead letters dashed)", x_range, "messages, total"
        )
        self.kernels: dict[str, int] = {}  # kernel id -> column number
        self.structure = 0  # bumped when lines are added: views must be re-sent whole
        self.root = column(row(self.throughput, self.queues), row(self.latency, self.drops))

    def _add_kernel(self, kid: str) -> int:
        n = len(self.kernels)
        self.kernels[kid] = n
        self.structure += 1
        colour = palette_colour(n)
        for prefix in ("rate", "inbox", "outbox", "p50", "p99", "dropped", "dead"):
            self.series.add_column(f"{prefix}_{n}")
        common = {"source": self.source, "color": colour, "line_width": 2}
        self.throughput.line("time", f"rate_{n}", legend_label=kid, **common)
        self.queues.line("time", f"inbox_{n}", legend_label=kid, **common)
        self.queues.line("time", f"outbox_{n}", line_dash="dashed", **common)
        self.latency.line("time", f"p50_{n}", legend_label=kid, **common)
        self.latency.line("time", f"p99_{n}", line_dash="dashed", **common)
        self.drops.line("time", f"dropped_{n}", legend_label=kid, **common)
        self.drops.line("time", f"dead_{n}", line_dash="dashed", **common)
        return n

    def update(self, snapshot: RuntimeSnapshot) -> bool:
        """Stream the snapshot's figures; return whether anything was sent."""
        values: dict[str, float] = {}
        for kid, t in snapshot.kernels.items():
            n = self.kernels.get(kid)
            if n is None:
                n = self._add_kernel(kid)
            values[f"rate_{n}"] = float(t.throughput)
            values[f"inbox_{n}"] = float(t.inbox_depth)
            values[f"outbox_{n}"] = float(t.outbox_depth)
            values[f"p50_{n}"] = _us(t.latency_p50_us)
            values[f"p99_{n}"] = _us(t.latency_p99_us)
            values[f"dropped_{n}"] = float(t.dropped)
            values[f"dead_{n}"] = float(t.dead_letters)
        if not values:
            return False
        for col in self.series.columns:
            # A kernel missing from this snapshot keeps its column: no point this time.
            values.setdefault(col, float("nan"))
        return self.series.push(local_ms(snapshot.timestamp), values)
