"""The emulated device against a host ring kernel doing the same work (no GPU needed).

Round trip: ``send`` + ``receive`` of one message through a persistent emulated device
kernel (the generated CUDA source built by the host C++ compiler, running in its own native
thread) against the same through a host ring kernel on asyncio. Throughput: batches of
structured arrays through a parallel emulated kernel (``send_many`` / ``receive_many(...,
as_array=True)``) against lists of messages through a batching host kernel. 5 alternating
rounds, medians. There is no target: the emulated device exists for machines without a GPU.
"""

from __future__ import annotations

import asyncio
from time import perf_counter, perf_counter_ns

from _device_kernels import Sample, declare, host_batch, host_echo
from _harness import Result, median, no_gc, pct

from pydotcompute import RingKernelRuntime, fixed_layout

WARMUP = 1_000
MESSAGES = 10_000
BATCH = 8_192
BATCHES = 64
ROUNDS = 5


async def round_trip(rt: RingKernelRuntime, kid: str, msgs: list[Sample]) -> list[float]:
    send, receive = rt.send, rt.receive
    lat: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = perf_counter_ns()
            await send(kid, m)
            await receive(kid, timeout=10)
            lat.append(perf_counter_ns() - t0)
    return sorted(lat[WARMUP:])


async def throughput(rt: RingKernelRuntime, kid: str, batch: object, as_array: bool) -> float:
    total = BATCH * BATCHES
    got = 0
    start = perf_counter()
    for _ in range(BATCHES):
        await rt.send_many(kid, batch, timeout=30)  # type: ignore[arg-type]
        while got < total and rt.telemetry(kid).outbox_depth:
            got += len(await rt.receive_many(kid, timeout=30, as_array=as_array))
    while got < total:
        got += len(await rt.receive_many(kid, timeout=30, as_array=as_array))
    return total / (perf_counter() - start)


async def measure() -> list[Result]:
    declare("emu_echo")
    declare("emu_batch", mode="parallel", block_size=4)
    msgs = [Sample(x=float(i), y=1.0) for i in range(WARMUP + MESSAGES)]
    records = fixed_layout(Sample).to_array([Sample(x=float(i), y=1.0) for i in range(BATCH)])
    objects = fixed_layout(Sample).from_array(records)
    ours50, ours99, host50, host99, ours_tp, host_tp = [], [], [], [], [], []
    async with RingKernelRuntime(device="emulated") as rt:
        await rt.launch("emu_echo")
        await rt.activate("emu_echo")
        await rt.launch("emu_batch", queue_size=4 * BATCH)
        await rt.activate("emu_batch")
        await rt.launch("host_echo", func=host_echo)
        await rt.activate("host_echo")
        await rt.launch("host_batch", func=host_batch, queue_size=4 * BATCH)
        await rt.activate("host_batch")
        for _ in range(ROUNDS):
            a = await round_trip(rt, "emu_echo", msgs)
            b = await round_trip(rt, "host_echo", msgs)
            ours50.append(pct(a, 50) / 1e3)
            ours99.append(pct(a, 99) / 1e3)
            host50.append(pct(b, 50) / 1e3)
            host99.append(pct(b, 99) / 1e3)
            ours_tp.append(await throughput(rt, "emu_batch", records, True) / 1e6)
            host_tp.append(await throughput(rt, "host_batch", objects, False) / 1e6)
        assert rt.telemetry("emu_echo").launches == 1
    base = "host ring kernel, same work"
    p50, p99, h50, h99 = map(median, (ours50, ours99, host50, host99))
    tp, htp = median(ours_tp), median(host_tp)
    return [
        Result("emulated round trip p50", p50, h50, "us", base, "none (reported)", True),
        Result("emulated round trip p99", p99, h99, "us", base, "none (reported)", True),
        Result(
            "emulated batch throughput (arrays)",
            tp,
            htp,
            "M msg/s",
            "host kernel, lists of messages",
            "none (reported)",
            True,
        ),
    ]


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
