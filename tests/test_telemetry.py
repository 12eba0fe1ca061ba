"""Telemetry snapshots: counts, latency percentiles, throughput window, plain data."""

from __future__ import annotations

import json
from typing import Any

from pydotcompute import KernelContext, KernelTelemetry, RingKernelRuntime, message
from pydotcompute.ring._inbox import LAT_EVERY
from pydotcompute.telemetry import KernelMetrics, percentile
from tests.conftest import within


@message
class Tick:
    n: int


async def echo(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7], 99) == 7


def test_latency_ring_keeps_the_most_recent_samples() -> None:
    m = KernelMetrics()
    for v in range(5000):
        m.record_latency_ns(v * 1000)
    p50, p99 = m.latency_us()
    assert p50 is not None and p99 is not None
    assert 3976 <= p50 <= 4500 and p99 >= 4950  # only the last 1024 samples count


def test_throughput_between_snapshots() -> None:
    m = KernelMetrics()
    rate0, window0 = m.throughput()
    assert rate0 == 0.0 and window0 >= 0.0
    m.processed = 1000
    rate, window = m.throughput()
    assert rate > 0 and window > 0


async def test_counts_and_latency_after_traffic(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo, queue_size=64)
    await runtime.activate("e")
    for i in range(100):
        await runtime.send("e", Tick(n=i))
        await within(runtime.receive("e"))
    t = runtime.telemetry("e")
    assert isinstance(t, KernelTelemetry)
    assert (t.received, t.processed, t.sent) == (100, 100, 100)
    assert t.inbox_depth == t.outbox_depth == 0 and t.inbox_capacity == 64
    assert t.latency_p50_us is not None and 0 < t.latency_p50_us <= t.latency_p99_us
    assert t.throughput > 0 and t.uptime_s > 0 and t.launches == 1
    assert [what for _, what in t.events] == ["LAUNCHED", "ACTIVE"]


async def test_latency_is_sampled_and_counts_stay_exact(runtime: RingKernelRuntime) -> None:
    """The 1st message and every LAT_EVERY-th after it are timed; every message is counted."""
    await runtime.launch("e", func=echo, queue_size=64)
    await runtime.activate("e")
    for i in range(17):  # one at a time, then a burst of 20 queued before the body runs
        await runtime.send("e", Tick(n=i))
        await within(runtime.receive("e"))
    metrics = runtime._kernels["e"].metrics
    assert metrics.lat_n == 1 + 16 // LAT_EVERY  # messages 1, 9 and 17
    for i in range(20):
        await runtime.send("e", Tick(n=i))
    for _ in range(20):
        await within(runtime.receive("e"))
    t = runtime.telemetry("e")
    assert (t.received, t.processed, t.sent) == (37, 37, 37)
    assert metrics.lat_n == 1 + 36 // LAT_EVERY  # and 25, 33
    assert t.latency_p50_us is not None and t.latency_p50_us > 0


async def test_a_batch_is_timed_once_by_its_oldest_timed_message(
    runtime: RingKernelRuntime,
) -> None:
    async def batches(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            await ctx.send_many(await ctx.receive_many(100))

    await runtime.launch("b", func=batches, queue_size=64)
    for i in range(10):  # queued before activation: one batch, of untimed and timed ones
        await runtime.send("b", Tick(n=i))
    await runtime.activate("b")
    got = await within(runtime.receive_many("b"))
    while len(got) < 10:
        got += await within(runtime.receive_many("b"))
    await runtime.send_many("b", [Tick(n=i) for i in range(5)])  # 11 to 15: none timed
    await runtime.send_many("b", [Tick(n=i) for i in range(5)])  # 16 to 20: 17 is
    while len(got) < 20:
        got += await within(runtime.receive_many("b"))
    t = runtime.telemetry("b")
    assert (t.received, t.processed) == (20, 20)  # done once the body waits again
    assert runtime._kernels["b"].metrics.lat_n == 2  # one sample per batch with a timed one
    assert t.latency_p50_us is not None and t.latency_p50_us > 0


async def test_snapshot_and_table(runtime: RingKernelRuntime) -> None:
    await runtime.launch("a", func=echo)
    await runtime.launch("b", func=echo)
    snap = runtime.snapshot()
    data = json.loads(json.dumps(snap.as_dict()))
    assert set(data["kernels"]) == {"a", "b"}
    assert data["kernels"]["a"]["state"] == "LAUNCHED" and data["kernels"]["a"]["backend"] == "host"
    table = snap.table().splitlines()
    assert table[0].split()[:3] == ["kernel", "where", "state"]
    assert table[2].split()[:3] == ["a", "host:cpu", "LAUNCHED"]
