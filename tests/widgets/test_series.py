"""Streaming plots: one row per change, held rows, rollover, columns for new kernels."""

from __future__ import annotations

import math

from pydotcompute_widgets import KernelPlots
from pydotcompute_widgets._series import TimeSeries
from tests.widgets.conftest import snapshot, telemetry


def test_unchanged_rows_are_not_streamed_and_the_held_row_comes_first() -> None:
    s = TimeSeries(rollover=100)
    s.add_column("x")
    assert s.push(1.0, {"x": 5.0})
    assert not s.push(2.0, {"x": 5.0})
    assert not s.push(3.0, {"x": 5.0})
    assert s.push(4.0, {"x": 7.0})
    assert s.source.data["time"] == [1.0, 3.0, 4.0]  # flat until 3.0, then the change
    assert s.source.data["x"] == [5.0, 5.0, 7.0]


def test_nan_equals_nan_for_change_detection() -> None:
    s = TimeSeries(rollover=100)
    s.add_column("x")
    assert s.push(1.0, {"x": math.nan})
    assert not s.push(2.0, {"x": math.nan})


def test_rollover_keeps_the_newest_rows() -> None:
    s = TimeSeries(rollover=3)
    s.add_column("x")
    for i in range(10):
        s.push(float(i), {"x": float(i)})
    assert list(s.source.data["time"]) == [7.0, 8.0, 9.0]


def test_a_column_added_later_is_padded_with_nan() -> None:
    s = TimeSeries(rollover=100)
    s.add_column("x")
    s.push(1.0, {"x": 1.0})
    s.add_column("y")
    s.push(2.0, {"x": 1.0, "y": 2.0})
    assert math.isnan(s.source.data["y"][0]) and s.source.data["y"][1] == 2.0


def test_kernel_plots_give_each_kernel_columns_and_lines() -> None:
    plots = KernelPlots(history=50, interval=0.5)
    plots.update(snapshot(telemetry("a", throughput=10.0, inbox_depth=3), t=100.0))
    plots.update(snapshot(telemetry("a", throughput=20.0), telemetry("b", outbox_depth=4), t=101.0))
    data = plots.source.data
    prefixes = ("rate", "inbox", "outbox", "p50", "p99", "dropped", "dead")
    assert set(data) == {"time"} | {f"{p}_{n}" for p in prefixes for n in (0, 1)}
    assert data["rate_0"] == [10.0, 20.0] and data["inbox_0"] == [3.0, 0.0]
    assert math.isnan(data["outbox_1"][0]) and data["outbox_1"][1] == 4.0
    assert len(plots.throughput.renderers) == 2 and len(plots.queues.renderers) == 4
    assert len(plots.latency.renderers) == 4 and len(plots.drops.renderers) == 4
    assert [i.label.value for i in plots.throughput.legend.items] == ["a", "b"]
    assert not plots.update(
        snapshot(telemetry("a", throughput=20.0), telemetry("b", outbox_depth=4), t=102.0)
    )


def test_latency_drops_and_dead_letters_are_plotted_when_telemetry_has_them() -> None:
    plots = KernelPlots(history=50, interval=0.5)
    plots.update(snapshot(telemetry("a"), t=100.0))  # no message yet: no latency
    with_dead = telemetry("a", latency_p50_us=12.5, latency_p99_us=80.0, dropped=3, dead_letters=2)
    plots.update(snapshot(with_dead, t=101.0))
    data = plots.source.data
    assert math.isnan(data["p50_0"][0]) and data["p50_0"][1] == 12.5
    assert data["p99_0"][1] == 80.0
    assert data["dropped_0"] == [0.0, 3.0]
    assert data["dead_0"] == [0.0, 2.0]
    assert plots.latency.title.text == "latency (p50 solid, p99 dashed)"
    assert plots.drops.title.text == "dropped messages (dead letters dashed)"
