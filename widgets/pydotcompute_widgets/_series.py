"""Time series in a Bokeh ``ColumnDataSource``: streamed with rollover, unchanged rows skipped."""

from __future__ import annotations

import math
import time
from typing import Any

__all__ = ["TimeSeries", "local_ms"]

NAN = float("nan")


def local_ms(timestamp: float) -> float:
    """A Unix timestamp as milliseconds of local wall time (Bokeh datetime axes show UTC)."""
    return (timestamp + time.localtime(timestamp).tm_gmtoff) * 1000.0


def _same(a: dict[str, float], b: dict[str, float] | None) -> bool:
    if b is None or a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if x != y and not (math.isnan(x) and math.isnan(y)):
            return False
    return True


class TimeSeries:
    """Rows of ``time`` plus named value columns, streamed into ``source`` with ``rollover``.

    A row equal to the previous one is not sent: the browser gets nothing while values hold
    still. When they change again, the held row is sent first, stamped with the last time it
    was seen, so a line stays flat up to the moment it really changed.
    """

    def __init__(self, rollover: int) -> None:
        from bokeh.models import ColumnDataSource

        self.rollover = rollover
        self.source = ColumnDataSource(data={"time": []})
        self._last: dict[str, float] | None = None
        self._held_at: float | None = None

    @property
    def columns(self) -> list[str]:
        """Names of the value columns."""
        return [c for c in self.source.data if c != "time"]

    def add_column(self, name: str) -> None:
        """Add a value column; rows streamed before it hold NaN (drawn as nothing)."""
        self.source.data[name] = [NAN] * len(self.source.data["time"])

    def push(self, t_ms: float, values: dict[str, float]) -> bool:
        """Stream one row at ``t_ms``; return whether anything was sent."""
        last = self._last
        if _same(values, last):
            self._held_at = t_ms
            return False
        if last is not None and self._held_at is not None:
            data: dict[str, Any] = {"time": [self._held_at, t_ms]}
            for k, v in values.items():
                data[k] = [last.get(k, NAN), v]
        else:
            data = {"time": [t_ms], **{k: [v] for k, v in values.items()}}
        self.source.stream(data, rollover=self.rollover)
        self._last = dict(values)
        self._held_at = None
        return True
