"""``python -m pydotcompute``: the demo and the environment report."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from ._cuda import cupy_distribution
from ._install import extra_hint, widgets_hint
from ._version import __version__
from .backends.device import probe_cuda, probe_emulated, resolve_device
from .errors import BackendUnavailableError
from .messages import message
from .ring import KernelContext, ring_kernel
from .runtime import RingKernelRuntime

OPTIONAL_PACKAGES = (
    ("cupy", "cuda"),  # whichever CuPy wheel is installed: cupy-cuda12x or cupy-cuda13x
    ("numba", "cuda"),
    ("IPython", "jupyter"),
    ("jupyterlab", "jupyter"),
    ("ipywidgets", "jupyter"),
    ("bokeh", "jupyter"),
    ("jupyter_bokeh", "jupyter"),
    ("nest-asyncio2", "jupyter"),
)

#: Extra rows for ``info``'s backend section: callables returning (name, usable, detail).
BACKEND_PROBES: list[Callable[[], tuple[str, bool, str]]] = [probe_cuda, probe_emulated]


@message
class ComputeRequest:
    """A list of numbers to add up."""

    values: list[float]


@message
class ComputeResponse:
    """The sum of a :class:`ComputeRequest`."""

    result: float


@message
class Reading:
    """One sensor sample."""

    sensor: int
    t: int
    value: float


@message
class Anomaly:
    """A reading far from its sensor's running mean."""

    sensor: int
    t: int
    value: float
    zscore: float


async def summer(ctx: KernelContext[ComputeRequest, ComputeResponse]) -> None:
    """The seed's actor: reply with the sum of each request."""
    while not ctx.should_terminate:
        request = await ctx.receive()
        await ctx.send(ComputeResponse(result=sum(request.values)))


async def detector(ctx: KernelContext[Reading, Anomaly]) -> None:
    """Flag readings more than 4 standard deviations from their sensor's running mean."""
    stats: dict[int, tuple[int, float, float]] = {}  # sensor -> (n, mean, M2) (Welford)
    while not ctx.should_terminate:
        for r in await ctx.receive_many(512):
            n, mean, m2 = stats.get(r.sensor, (0, 0.0, 0.0))
            if n >= 30:
                std = (m2 / (n - 1)) ** 0.5
                z = (r.value - mean) / std if std else 0.0
                if abs(z) > 4:
                    await ctx.send(Anomaly(sensor=r.sensor, t=r.t, value=r.value, zscore=z))
                    continue
            n += 1
            delta = r.value - mean
            mean += delta / n
            m2 += delta * (r.value - mean)
            stats[r.sensor] = (n, mean, m2)


@message
class Point:
    """A fixed-layout message: it can go through a device ring kernel's mailbox."""

    x: float  # float64 in the fixed layout
    y: float


#: The device ring kernel's handler (CUDA C++, one message at a time, state kept on the device).
SCALE = "state.count += 1; out.x = 2.0 * msg.x + 1.0; out.y = (double)state.count;"


@message
class Count:
    """The device kernel's state: messages handled so far."""

    count: int  # int64 in the fixed layout


async def scale_host(ctx: KernelContext[Point, Point]) -> None:
    """The same work as a host ring kernel, for the round-trip comparison."""
    count = 0
    while not ctx.should_terminate:
        m = await ctx.receive()
        count += 1
        await ctx.send(Point(x=2.0 * m.x + 1.0, y=float(count)))


async def _round_trip_us(runtime: RingKernelRuntime, kernel_id: str, n: int) -> float:
    """Median ``call()`` round trip in microseconds."""
    times = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        await runtime.call(kernel_id, Point(x=float(i), y=0.0), timeout=10)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


async def device_demo(out: Callable[[str], Any], messages: int = 5000) -> None:
    """A device ring kernel: launched once, thousands of messages, round trip beside a host's."""
    where = resolve_device("auto")
    label = (
        f"on the GPU ({probe_cuda()[2].split(';')[0]})"
        if where == "cuda"
        else "on the emulated device (no usable GPU: the same generated CUDA source, built "
        "by the host C++ compiler)"
    )
    out(f"\n5. Device ring kernel  {label}")
    ring_kernel(
        kernel_id="scaler", input_type=Point, output_type=Point, state_type=Count, cuda=SCALE,
        replace=True,
    )  # fmt: skip
    try:
        async with RingKernelRuntime(device="auto") as runtime:
            await runtime.launch("scaler", queue_size=1024)
            await runtime.activate("scaler")
            await runtime.launch("scaler_host", func=scale_host)
            await runtime.activate("scaler_host")
            replies: list[Point] = []
            for i in range(0, messages, 1000):
                batch = [Point(x=float(j), y=0.0) for j in range(i, min(i + 1000, messages))]
                await runtime.send_many("scaler", batch, timeout=10)
                while len(replies) < i + len(batch):
                    replies += await runtime.receive_many("scaler", timeout=10)
            right = all(r.x == 2.0 * j + 1.0 for j, r in enumerate(replies))
            t = runtime.telemetry("scaler")
            out(
                f"   {messages:,} messages through 'scaler' on {t.device}: {t.launches} launch, "
                f"{len(replies):,} replies ({'all correct' if right else 'WRONG'}), "
                f"{int(replies[-1].y):,} counted by the kernel's own state"
            )
            device_us = await _round_trip_us(runtime, "scaler", 300)
            host_us = await _round_trip_us(runtime, "scaler_host", 300)
            out(
                f"   call() round trip p50: device kernel {device_us:.1f} us, "
                f"host kernel {host_us:.1f} us"
            )
    except BackendUnavailableError as exc:
        out(f"   skipped: {exc}")


def _readings(count: int, sensors: int, seed: int) -> tuple[list[Reading], set[tuple[int, int]]]:
    rng = random.Random(seed)
    spikes = {(rng.randrange(sensors), t) for t in rng.sample(range(100, count), 5)}
    out = []
    for t in range(count):
        for s in range(sensors):
            value = 20.0 + s + rng.gauss(0, 0.5)
            if (s, t) in spikes:
                value += rng.choice((-1, 1)) * 15
            out.append(Reading(sensor=s, t=t, value=value))
    return out, spikes


async def demo(out: Callable[[str], Any] = print, readings: int = 2000) -> int:
    """Run the demo: the seed example, request/response, a detector, telemetry, a device kernel."""
    out(f"PyDotCompute {__version__} demo: host ring kernels on asyncio, then a device one\n")
    async with RingKernelRuntime() as runtime:
        await runtime.launch("summer", func=summer)
        await runtime.activate("summer")
        await runtime.send("summer", ComputeRequest(values=[1, 2, 3, 4, 5]))
        response = await runtime.receive("summer", timeout=5)
        out(f"1. Seed example        Sum: {response.result}")

        replies = [
            (await runtime.call("summer", ComputeRequest(values=v), timeout=5)).result
            for v in ([0.5, 0.25], [float(x) for x in range(10)])
        ]
        out(f"2. call() round trips  {replies}")

        await runtime.launch("detector", func=detector, queue_size=8192)
        await runtime.activate("detector")
        stream, spikes = _readings(readings, sensors=4, seed=7)
        for i in range(0, len(stream), 1000):
            await runtime.send_many("detector", stream[i : i + 1000], timeout=5)
        await runtime.terminate("detector", drain=True, timeout=10)
        found = []
        while runtime.telemetry("detector").outbox_depth:
            found.append(await runtime.receive("detector", timeout=5))
        hits = sorted((a.sensor, a.t) for a in found)
        out(
            f"3. Anomaly detector    {len(stream)} readings from 4 sensors, {len(found)} "
            f"anomalies flagged, {len(set(hits) & spikes)}/{len(spikes)} injected spikes found"
        )
        for a in sorted(found, key=lambda a: a.t):
            out(f"   sensor {a.sensor} t={a.t:<5} value={a.value:7.2f}  z={a.zscore:+.1f}")

        latencies = [t.latency_p50_us for t in runtime.snapshot().kernels.values()]
        typical = statistics.median(v for v in latencies if v is not None)
        out(f"\n4. Telemetry (median p50 latency {typical:.1f} us)\n")
        out(runtime.snapshot().table())
    await device_demo(out)
    return 0


def _version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def info(out: Callable[[str], Any] = print) -> int:
    """Print versions and which backends are usable on this machine."""
    out(f"pydotcompute {__version__}")
    out(f"python {platform.python_version()} ({platform.system()} {platform.machine()})")
    packages = [
        (dist, _version_of(dist) or "not found") for dist in ("numpy", "msgpack", "msgspec")
    ]
    for dist, extra in OPTIONAL_PACKAGES:
        version = _version_of(dist)
        if dist == "cupy":
            wheel = cupy_distribution()
            version = f"{wheel[1]} ({wheel[0]})" if wheel else None
        packages.append((dist, version or f"not installed ({extra_hint(extra)})"))
    widgets = _version_of("pydotcompute-widgets")
    packages.append(("pydotcompute-widgets", widgets or f"not installed ({widgets_hint()})"))
    backends = [("host", "usable (asyncio ring kernels)")]
    for probe in BACKEND_PROBES:
        name, usable, detail = probe()
        backends.append((name, f"{'usable' if usable else 'not usable'} ({detail})"))
    width = max(len(name) for name, _ in packages + backends)
    for title, rows in (("packages:", packages), ("backends:", backends)):
        out(title)
        for name, shown in rows:
            out(f"  {name:<{width}}  {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pydotcompute`` and the ``pydotcompute`` command."""
    parser = argparse.ArgumentParser(
        prog="python -m pydotcompute", description="PyDotCompute: GPU-native actors."
    )
    version = f"pydotcompute {__version__}"
    parser.add_argument("--version", action="version", version=version, help="print the version")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run a short demo of actors and print telemetry")
    p_demo.add_argument("--readings", type=int, default=2000, help="sensor readings per sensor")
    sub.add_parser("info", help="print versions and the backends usable here")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.readings < 200:
            parser.error(f"--readings must be at least 200, got {args.readings}")
        return asyncio.run(demo(readings=args.readings))
    return info()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
