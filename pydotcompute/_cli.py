"""``python -m pydotcompute``: the demo and the environment report."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import platform
import random
import statistics
import sys
from collections.abc import Callable
from typing import Any

from ._install import extra_hint, widgets_hint
from ._version import __version__
from .backends.device import probe_cuda, probe_emulated
from .messages import message
from .ring import KernelContext
from .runtime import RingKernelRuntime

OPTIONAL_PACKAGES = (
    ("cupy-cuda12x", "cuda"),
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
    """Run the demo: the seed example, request/response, a streaming detector, telemetry."""
    out(f"PyDotCompute {__version__} demo: host ring kernels on asyncio\n")
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
    packages = [(dist, _version_of(dist) or "not found") for dist in ("numpy", "msgpack")]
    for dist, extra in OPTIONAL_PACKAGES:
        packages.append((dist, _version_of(dist) or f"not installed ({extra_hint(extra)})"))
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
