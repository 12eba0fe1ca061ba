"""Persistent device ring kernels on a GPU against launching the same handler per message.

Needs a usable CUDA GPU: without one, ``run()`` prints why and returns no rows (no figure is
ever made up). In one run:

* round trip: ``send`` + ``receive`` of one 16-byte-payload message through a persistent
  sequential ring kernel, against the same handler compiled into a one-shot CuPy RawKernel
  launched per message (pack into pinned memory, launch, ``stream.synchronize()``, unpack).
  20,000 messages after 2,000 of warm-up; p50 and p99. Targets: p50 <= 5 us and at least 5x
  faster than launch-per-message; p99 <= 15 us.
* batch throughput: ``send_many`` / ``receive_many(as_array=True)`` of structured arrays
  through a parallel ring kernel (1,024 threads), against one RawKernel launch per batch
  (copy in, launch, synchronize, copy out). Target: >= 20 million messages/s.
"""

from __future__ import annotations

import asyncio
import sys
from time import perf_counter, perf_counter_ns
from typing import Any

import numpy as np
from _device_kernels import Sample, declare
from _harness import Result, no_gc, pct

from pydotcompute import RingKernelRuntime, fixed_layout, generated_source
from pydotcompute._cuda import cuda_status
from pydotcompute.backends.device._records import RecordCodec

WARMUP = 2_000
MESSAGES = 20_000
BATCH = 65_536
BATCHES = 64

ONE_SHOT = """
extern "C" __global__ void pdc_once(const Sample* in, Sample* out, unsigned long long n)
{
    const unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    pdc_no_state state = pdc_no_state();
    const Sample msg = in[i];
    Sample reply = Sample();
    bool wanted = true;  // parallel handlers always reply
    handle(msg, reply, state, wanted);
    reply.message_id = pdc_uuid();
    reply.correlation_id = msg.message_id;
    reply.priority = msg.priority;
    out[i] = reply;
}
"""
ONE_SHOT_OPTIONS = ("-std=c++17",)


def one_shot_source() -> str:
    """The benchmark handler in a kernel launched once per call (the baseline's source)."""
    declare("bench_once", mode="parallel")
    return generated_source("bench_once") + ONE_SHOT


def _one_shot(cp: Any) -> Any:
    """The same handler, compiled (NVRTC through CuPy) as a kernel launched per call."""
    module = cp.RawModule(code=one_shot_source(), options=ONE_SHOT_OPTIONS)
    return module.get_function("pdc_once")


async def persistent_round_trip(msgs: list[Sample]) -> list[float]:
    declare("bench_rt")
    async with RingKernelRuntime(device="cuda") as rt:
        await rt.launch("bench_rt")
        await rt.activate("bench_rt")
        send, receive = rt.send, rt.receive
        lat: list[float] = []
        with no_gc():
            for m in msgs:
                t0 = perf_counter_ns()
                await send("bench_rt", m)
                await receive("bench_rt", timeout=10)
                lat.append(perf_counter_ns() - t0)
        assert rt.telemetry("bench_rt").launches == 1
    return sorted(lat[WARMUP:])


def launch_per_message(cp: Any, msgs: list[Sample]) -> list[float]:
    fn = _one_shot(cp)
    codec = RecordCodec(fixed_layout(Sample))  # type: ignore[arg-type]
    size = codec.itemsize
    pinned = cp.cuda.alloc_pinned_memory(2 * size)
    host = np.frombuffer(pinned, np.uint8, 2 * size)
    dev = cp.empty(2 * size, np.uint8)
    stream = cp.cuda.Stream(non_blocking=True)
    mv = memoryview(host)  # type: ignore[arg-type]
    lat: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = perf_counter_ns()
            codec.pack_into(mv, 0, m)
            dev[:size].set(host[:size], stream=stream)
            fn((1,), (1,), (dev[:size], dev[size:], np.uint64(1)), stream=stream)
            dev[size:].get(stream=stream, out=host[size:])
            stream.synchronize()
            codec.unpack_from(mv, size)
            lat.append(perf_counter_ns() - t0)
    return sorted(lat[WARMUP:])


async def persistent_throughput(records: np.ndarray) -> float:
    declare("bench_tp", mode="parallel", block_size=1024)
    total = len(records) * BATCHES
    async with RingKernelRuntime(device="cuda") as rt:
        await rt.launch("bench_tp", queue_size=4 * BATCH)
        await rt.activate("bench_tp")
        await rt.call("bench_tp", Sample(x=0.0, y=0.0), timeout=10)  # warm
        got = 0
        start = perf_counter()
        for _ in range(BATCHES):
            await rt.send_many("bench_tp", records, timeout=30)
            got += len(await rt.receive_many("bench_tp", timeout=30, as_array=True))
        while got < total:
            got += len(await rt.receive_many("bench_tp", timeout=30, as_array=True))
        return total / (perf_counter() - start)


def launch_per_batch(cp: Any, records: np.ndarray) -> float:
    fn = _one_shot(cp)
    n = len(records)
    dev_in = cp.empty(records.nbytes, np.uint8)
    dev_out = cp.empty(records.nbytes, np.uint8)
    out = np.empty_like(records)
    stream = cp.cuda.Stream(non_blocking=True)
    raw = records.view(np.uint8)
    start = perf_counter()
    for _ in range(BATCHES):
        dev_in.set(raw, stream=stream)
        fn(((n + 255) // 256,), (256,), (dev_in, dev_out, np.uint64(n)), stream=stream)
        dev_out.get(stream=stream, out=out.view(np.uint8))
        stream.synchronize()
    return n * BATCHES / (perf_counter() - start)


def run() -> list[Result]:
    """Run the benchmark and return its rows (none, with the reason printed, without a GPU)."""
    status = cuda_status()
    if not status.usable:
        print(f"bench_device needs a usable CUDA GPU: {status.reason}", file=sys.stderr)
        return []
    import cupy as cp

    msgs = [Sample(x=float(i), y=1.0) for i in range(WARMUP + MESSAGES)]
    ours = asyncio.run(persistent_round_trip(msgs))
    base = launch_per_message(cp, msgs)
    p50, p99 = pct(ours, 50) / 1e3, pct(ours, 99) / 1e3
    b50, b99 = pct(base, 50) / 1e3, pct(base, 99) / 1e3
    records = fixed_layout(Sample).to_array(  # type: ignore[union-attr]
        [Sample(x=float(i), y=1.0) for i in range(BATCH)]
    )
    tp = asyncio.run(persistent_throughput(records)) / 1e6
    btp = launch_per_batch(cp, records) / 1e6
    base_name = "RawKernel launched per message + stream sync"
    return [
        Result(
            "device round trip p50", p50, b50, "us", base_name,
            "<= 5 us and >= 5x faster", p50 <= 5 and b50 >= 5 * p50,
        ),
        Result("device round trip p99", p99, b99, "us", base_name, "<= 15 us", p99 <= 15),
        Result(
            "device batch throughput (16-byte payload)", tp, btp, "M msg/s",
            "RawKernel launched per 65,536-message batch", ">= 20 M msg/s", tp >= 20,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    for r in run():
        print(r.row())
