"""Ring kernels on a local Ray cluster against plain Ray, measured in the same run.

Five rows, each against its baseline measured alternately in the same process:

* remote ``call`` round trip (driver -> kernel host -> driver), p50, against a plain Ray
  async actor method echoing the same message. Target: at most 1.0x.
* batched one-way throughput into a kernel host (``send_many`` of 1,000 small messages per
  Ray call), against one plain Ray actor call per message (all in flight together).
  Target: at least 20x.
* one-way throughput over a link between two kernel hosts (the driver feeds a forwarding
  kernel on host ``a`` with ``send_many``; its output is linked to a kernel on host ``b``; the
  link carries batches), against the same per-call baseline. Target: at least 20x.
* one-way throughput of ``ctx.send_to`` from a body on host ``a`` to a kernel on host ``b``
  (the driver feeds the sending kernel with ``send_many``; the hop between the hosts carries
  batches), against the same per-call baseline. Target: at least 20x.
* a kernel placed in the driver (``placement="driver"``) of a cluster runtime, send+receive
  round trip p50, against the plain local runtime. Target: at most 1.1x.

Ray is started here with ``num_cpus=2``, a 100 MiB object store and no dashboard.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

from _cluster_kernels import Ping, PlainEcho, echo, relay, sink
from _harness import Result, median, no_gc, pct

from pydotcompute import RingKernelRuntime

CALLS = 1_000
CALL_WARMUP = 100
BATCH = 1_000
BATCHES = 20
PER_CALL = 2_000
LOCAL = 20_000
LOCAL_WARMUP = 2_000
ROUNDS = 3
HERE = str(Path(__file__).resolve().parent)


async def call_p50(rt: Any, actor: Any) -> tuple[float, float]:
    msgs = [Ping(seq=i) for i in range(CALLS + CALL_WARMUP)]
    ours: list[float] = []
    plain: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = perf_counter_ns()
            await rt.call("echo", m)
            t1 = perf_counter_ns()
            await actor.echo.remote(m)
            t2 = perf_counter_ns()
            ours.append(t1 - t0)
            plain.append(t2 - t1)
    return pct(sorted(ours[CALL_WARMUP:]), 50) / 1e3, pct(sorted(plain[CALL_WARMUP:]), 50) / 1e3


async def throughput(rt: Any, actor: Any) -> tuple[float, float]:
    batch = [Ping(seq=i) for i in range(BATCH)]
    before = rt.telemetry("sink").processed
    t0 = perf_counter()
    for _ in range(BATCHES):
        await rt.send_many("sink", batch)
    # Delivered and taken: the host's count is remote state, with no local event to await.
    while rt.telemetry("sink").processed < before + BATCH * BATCHES:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    ours = BATCH * BATCHES / (perf_counter() - t0)
    msgs = [Ping(seq=i) for i in range(PER_CALL)]
    t0 = perf_counter()
    await asyncio.gather(*(actor.push.remote(m) for m in msgs))
    plain = PER_CALL / (perf_counter() - t0)
    return ours, plain


async def linked(rt: Any, source: str = "near") -> float:
    batch = [Ping(seq=i) for i in range(BATCH)]
    before = rt.telemetry("far").processed
    t0 = perf_counter()
    for _ in range(BATCHES):
        await rt.send_many(source, batch)
    # Delivered over the link and taken: remote state, with no local event to await.
    while rt.telemetry("far").processed < before + BATCH * BATCHES:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    return BATCH * BATCHES / (perf_counter() - t0)


async def local_p50(rt: Any) -> list[float]:
    msgs = [Ping(seq=i) for i in range(LOCAL + LOCAL_WARMUP)]
    send, receive = rt.send, rt.receive
    lat: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = perf_counter_ns()
            await send("echo", m)
            await receive("echo")
            lat.append(perf_counter_ns() - t0)
    return sorted(lat[LOCAL_WARMUP:])


async def measure() -> list[Result]:
    import ray

    from pydotcompute.cluster import RayCluster

    # Ray's workers (kernel hosts and the baseline actor) import _cluster_kernels from here.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
    cluster = RayCluster(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False)
    async with RingKernelRuntime(cluster=cluster) as rt:
        for kid, body in (("echo", echo), ("sink", sink)):
            await rt.launch(kid, func=body, input_type=Ping, output_type=Ping)
            await rt.activate(kid)
        await rt.launch("near", func=echo, input_type=Ping, output_type=Ping, placement="host:a")
        await rt.launch("far", func=sink, input_type=Ping, output_type=Ping, placement="host:b")
        await rt.launch("relay", func=relay, input_type=Ping, output_type=Ping, placement="host:a")
        await rt.link("near", "far")
        for kid in ("near", "far", "relay"):
            await rt.activate(kid)
        actor = ray.remote(PlainEcho).options(num_cpus=0).remote()
        calls = [await call_p50(rt, actor) for _ in range(ROUNDS)]
        flows = [await throughput(rt, actor) for _ in range(ROUNDS)]
        links = [await linked(rt) for _ in range(ROUNDS)]
        sends = [await linked(rt, "relay") for _ in range(ROUNDS)]
        ray.kill(actor)
        local_ours, local_plain = [], []
        async with RingKernelRuntime(cluster=cluster) as crt:
            await crt.launch("echo", func=echo, placement="driver")
            await crt.activate("echo")
            async with RingKernelRuntime() as plain_rt:
                await plain_rt.launch("echo", func=echo)
                await plain_rt.activate("echo")
                for _ in range(ROUNDS):
                    local_ours.append(pct(await local_p50(crt), 50) / 1e3)
                    local_plain.append(pct(await local_p50(plain_rt), 50) / 1e3)
    c_ours, c_plain = median([a for a, _ in calls]), median([b for _, b in calls])
    t_ours, t_plain = median([a for a, _ in flows]), median([b for _, b in flows])
    l_ours, l_plain = median(local_ours), median(local_plain)
    x_ours = median(links)
    s_ours = median(sends)
    return [
        Result("cluster: remote call round trip p50", c_ours, c_plain, "us",
               "plain Ray async actor echo", "<= 1.0x", c_ours <= c_plain),
        Result("cluster: batched one-way into a kernel host", t_ours, t_plain, "msg/s",
               "plain Ray, one call per message", ">= 20x", t_ours >= 20 * t_plain,
               {"batch": BATCH}),
        Result("cluster: one-way over a link between two hosts", x_ours, t_plain, "msg/s",
               "plain Ray, one call per message", ">= 20x", x_ours >= 20 * t_plain,
               {"batch": BATCH}),
        Result("cluster: ctx.send_to from a body to a kernel on another host", s_ours, t_plain,
               "msg/s", "plain Ray, one call per message", ">= 20x", s_ours >= 20 * t_plain,
               {"batch": BATCH}),
        Result("cluster: kernel placed in the driver, send+receive p50", l_ours, l_plain,
               "us", "plain local runtime", "<= 1.1x", l_ours <= 1.1 * l_plain),
    ]  # fmt: skip


def run() -> list[Result]:
    """Run the cluster benchmark rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
