"""Shared helpers of the benchmarks: machine description, statistics, result rows."""

from __future__ import annotations

import asyncio
import datetime
import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """One benchmark line: our figure, the baseline's, the target and whether it is met."""

    name: str
    ours: float
    baseline: float
    unit: str
    baseline_name: str
    target: str
    met: bool
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        # A zero baseline (idle CPU, say) has no ratio: the row shows a dash, not "nanx".
        ratio = f"{self.ours / self.baseline:.2f}x" if self.baseline else "-"
        return (
            f"| {self.name} | {self.ours:,.3g} {self.unit} | {self.baseline_name}: "
            f"{self.baseline:,.3g} {self.unit} | {ratio} | {self.target} | "
            f"{'yes' if self.met else 'NO'} |"
        )


def machine() -> str:
    """One line describing where the benchmark ran."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def gpu() -> str | None:
    """Name and driver of the GPU, if nvidia-smi reports one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def today() -> str:
    """The date, for the record."""
    return datetime.date.today().isoformat()


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    import math

    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def median(values: list[float]) -> float:
    """Median of the per-round figures."""
    return statistics.median(values)


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the garbage collector out of a timed section (for ours and the baseline alike)."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def queue_floor(msgs: Sequence[Any], warmup: int) -> list[float]:
    """Two asyncio.Queues ping-ponging between two tasks: the cost of one hop each way.

    Returns the sorted round-trip times in ns of ``msgs`` after the first ``warmup``.
    """
    q1: asyncio.Queue[Any] = asyncio.Queue()
    q2: asyncio.Queue[Any] = asyncio.Queue()

    async def echo_task() -> None:
        while True:
            q2.put_nowait(await q1.get())

    task = asyncio.create_task(echo_task())
    lat: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = time.perf_counter_ns()
            q1.put_nowait(m)
            await q2.get()
            lat.append(time.perf_counter_ns() - t0)
    task.cancel()
    return sorted(lat[warmup:])
