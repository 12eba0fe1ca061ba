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
    assert set(data) == {"time", "rate_0", "inbox_0", "outbox_0", "rate_1", "inbox_1", "outbox_1"}
    assert data["rate_0"] == [10.0, 20.0] and data["inbox_0"] == [3.0, 0.0]
    assert math.isnan(data["outbox_1"][0]) and data["outbox_1"][1] == 4.0
    assert len(plots.throughput.renderers) == 2 and len(plots.queues.renderers) == 4
    assert [i.label.value for i in plots.throughput.legend.items] == ["a", "b"]
    assert not plots.update(
        snapshot(telemetry("a", throughput=20.0), telemetry("b", outbox_depth=4), t=102.0)
    )
