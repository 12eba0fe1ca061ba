"""Fixtures of the dashboard tests: dashboards closed at the end, synthetic telemetry."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pydotcompute import KernelTelemetry, RingKernelRuntime, RuntimeSnapshot
from pydotcompute_widgets import Dashboard


def telemetry(kernel_id: str = "k", **changes: Any) -> KernelTelemetry:
    """A kernel's telemetry with plausible values, changed by ``changes``."""
    base = KernelTelemetry(
        kernel_id=kernel_id, backend="host", device="cpu", state="ACTIVE", received=10,
        processed=10, sent=10, dropped=0, rejected=0, inbox_depth=0, inbox_capacity=64,
        outbox_depth=0, outbox_capacity=64, throughput=0.0, window_s=1.0,
        latency_p50_us=None, latency_p99_us=None, errors=0, last_error=None, restarts=0,
        redeploys=0, launches=1, uptime_s=1.0,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def snapshot(*kernels: KernelTelemetry, t: float | None = None, **device: Any) -> RuntimeSnapshot:
    """A runtime snapshot of ``kernels`` (and a device dict) at time ``t``."""
    return RuntimeSnapshot(
        timestamp=time.time() if t is None else t,
        kernels={k.kernel_id: k for k in kernels},
        device=device,
    )


@pytest.fixture
def open_dashboard() -> Iterator[Any]:
    """Make dashboards that are closed (updates stopped, widgets closed) after the test."""
    made: list[Dashboard] = []

    def make(runtime: RingKernelRuntime, *args: Any, **kwargs: Any) -> Dashboard:
        dashboard = Dashboard(runtime, *args, **kwargs)
        made.append(dashboard)
        return dashboard

    yield make
    for dashboard in made:
        dashboard.close()
