"""OpenTelemetry export of kernel telemetry, read back through the SDK's in-memory reader."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from pydotcompute import KernelContext, PyDotComputeError, RingKernelRuntime
from pydotcompute.metrics import INSTRUMENTS, export_metrics

sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
sdk_export = pytest.importorskip("opentelemetry.sdk.metrics.export")


async def doubler(ctx: KernelContext[int, int]) -> None:
    while not ctx.should_terminate:
        await ctx.send(2 * await ctx.receive())


def points(reader: Any) -> dict[str, dict[tuple[str, ...], float]]:
    """metric name -> (kernel_id[, state]) -> value, from one collection."""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    data = reader.get_metrics_data()
    if data is None:  # nothing was observed
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "pydotcompute"
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    key = (p.attributes["kernel_id"], *([p.attributes["state"]]
                           if "state" in p.attributes else []))  # fmt: skip
                    out.setdefault(metric.name, {})[key] = p.value
    return out


@pytest.fixture
def reader() -> Any:
    return sdk_export.InMemoryMetricReader()


async def test_every_kernel_is_reported_with_its_counts_depths_and_state(reader: Any) -> None:
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    async with RingKernelRuntime() as rt:
        await rt.launch("d", func=doubler, queue_size=8)
        await rt.activate("d")
        await rt.launch("parked", func=doubler)
        export = export_metrics(rt, meter_provider=provider)
        for n in range(3):
            await rt.send("d", n)
        replies = [await rt.receive("d", timeout=5) for _ in range(3)]
        assert replies == [0, 2, 4]
        await rt.send("parked", 1)
        got = points(reader)
        assert got["pydotcompute.kernel.messages.processed"] == {("d",): 3, ("parked",): 0}
        assert got["pydotcompute.kernel.messages.received"][("d",)] == 3
        assert got["pydotcompute.kernel.inbox.depth"] == {("d",): 0, ("parked",): 1}
        assert got["pydotcompute.kernel.inbox.capacity"][("d",)] == 8
        assert got["pydotcompute.kernel.state"] == {("d", "ACTIVE"): 1, ("parked", "LAUNCHED"): 1}
        assert 0 < got["pydotcompute.kernel.latency.p50"][("d",)] < 5  # seconds
        assert ("parked",) not in got.get("pydotcompute.kernel.latency.p99", {})  # no sample
        assert got["pydotcompute.kernel.messages.dead_letters"] == {("d",): 0, ("parked",): 0}

        export.close()
        assert points(reader) == {}
    provider.shutdown()


async def test_a_reader_in_another_thread_gets_the_snapshot_from_the_runtimes_loop(
    reader: Any,
) -> None:
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    async with RingKernelRuntime() as rt:
        await rt.launch("d", func=doubler)
        export_metrics(rt, meter_provider=provider, prefix="app.actors")
        got = await asyncio.wait_for(asyncio.to_thread(points, reader), timeout=10)
        assert got["app.actors.messages.processed"] == {("d",): 0}
        expected = {f"app.actors.{i.name}" for i in INSTRUMENTS} | {"app.actors.state"}
        expected -= {"app.actors.latency.p50", "app.actors.latency.p99"}  # no message yet
        assert expected <= set(got)
    provider.shutdown()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(PyDotComputeError, match="reports a RingKernelRuntime, got str"):
        export_metrics("runtime")  # type: ignore[arg-type]
    with pytest.raises(PyDotComputeError, match="prefix='' must be a non-empty"):
        export_metrics(RingKernelRuntime(), prefix="")


def test_importing_pydotcompute_does_not_import_opentelemetry() -> None:
    code = "import sys, pydotcompute, pydotcompute.metrics; print('opentelemetry' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
