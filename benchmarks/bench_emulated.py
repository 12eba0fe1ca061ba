"""The emulated device against its floors, measured side by side in one run (no GPU needed).

* Round trip: ``send`` + ``receive``, and ``call``, of one message through a persistent
  sequential emulated device kernel with a trivial handler (the generated CUDA source built by
  the host C++ compiler, running in its own process over shared memory), against the floor of
  two ``asyncio.Queue`` s ping-ponging between two tasks. 10,000 round trips after 1,000 of
  warm-up, 5 alternating rounds, medians of the rounds' p50 and p99.
  Targets: p50 <= 0.5x the floor's p50, p99 <= 1.0x the floor's p99.
* Batch throughput: 64 batches of 8,192 records through a sequential emulated kernel with
  ``send_many`` / ``receive_many(as_array=True)``, against a host ring kernel taking the same
  batches as lists of messages. Target: >= 10 M msg/s.
* Idle: 20 launched and activated emulated kernels with nothing to do, CPU time of this
  process and of the kernels' processes over 3 s, against 20 idle host ring kernels over the
  same span. Target: < 5% of one core in total.
"""

from __future__ import annotations

import asyncio
import os
import time
from time import perf_counter, perf_counter_ns

from _device_kernels import Sample, declare, host_batch, host_echo
from _harness import Result, median, no_gc, pct, queue_floor

from pydotcompute import RingKernelRuntime, fixed_layout

WARMUP = 1_000
MESSAGES = 10_000
BATCH = 8_192
BATCHES = 64
ROUNDS = 5
IDLE_KERNELS = 20
IDLE_S = 3.0


async def send_receive(rt: RingKernelRuntime, kid: str, msgs: list[Sample]) -> list[float]:
    send, receive = rt.send, rt.receive
    lat: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = perf_counter_ns()
            await send(kid, m)
            await receive(kid, timeout=10)
            lat.append(perf_counter_ns() - t0)
    return sorted(lat[WARMUP:])


async def call(rt: RingKernelRuntime, kid: str, msgs: list[Sample]) -> list[float]:
    request = rt.call
    lat: list[float] = []
    with no_gc():
        for m in msgs:
            t0 = perf_counter_ns()
            await request(kid, m, timeout=10)
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


def _children_cpu_s(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


async def idle_cpu(pids: list[int]) -> float:
    """Percent of one core used by this process and ``pids`` over IDLE_S seconds."""
    t0 = os.times()
    c0 = _children_cpu_s(pids)
    w0 = time.monotonic()
    await asyncio.sleep(IDLE_S)
    t1 = os.times()
    c1 = _children_cpu_s(pids)
    wall = time.monotonic() - w0
    own = (t1.user - t0.user) + (t1.system - t0.system)
    return 100.0 * (own + c1 - c0) / wall


async def idle(rounds: int) -> tuple[list[float], list[float]]:
    """CPU of 20 idle emulated kernels (with their processes), then of 20 idle host kernels."""
    ours, base = [], []
    async with RingKernelRuntime(device="emulated") as rt:
        for i in range(IDLE_KERNELS):
            await rt.launch(f"emu_idle{i}")
            await rt.activate(f"emu_idle{i}")
            await rt.call(f"emu_idle{i}", Sample(x=1.0, y=1.0), timeout=10)
        pids = [rt.telemetry(f"emu_idle{i}").extra["process_id"] for i in range(IDLE_KERNELS)]
        await asyncio.sleep(0.2)  # past the kernels' spin window
        for _ in range(rounds):
            ours.append(await idle_cpu(pids))
    async with RingKernelRuntime() as rt:
        for i in range(IDLE_KERNELS):
            await rt.launch(f"host_idle{i}", func=host_echo)
            await rt.activate(f"host_idle{i}")
        for _ in range(rounds):
            base.append(await idle_cpu([]))
    return ours, base


async def measure() -> list[Result]:
    declare("emu_echo")
    declare("emu_batch")
    for i in range(IDLE_KERNELS):
        declare(f"emu_idle{i}")
    msgs = [Sample(x=float(i), y=1.0) for i in range(WARMUP + MESSAGES)]
    records = fixed_layout(Sample).to_array([Sample(x=float(i), y=1.0) for i in range(BATCH)])
    objects = fixed_layout(Sample).from_array(records)
    rows: dict[str, list[float]] = {
        k: [] for k in ("sr50", "sr99", "call50", "call99", "f50", "f99", "tp", "htp")
    }
    async with RingKernelRuntime(device="emulated") as rt:
        await rt.launch("emu_echo")
        await rt.activate("emu_echo")
        await rt.launch("emu_batch", queue_size=4 * BATCH)
        await rt.activate("emu_batch")
        await rt.launch("host_batch", func=host_batch, queue_size=4 * BATCH)
        await rt.activate("host_batch")
        for _ in range(ROUNDS):
            a = await send_receive(rt, "emu_echo", msgs)
            c = await call(rt, "emu_echo", msgs)
            f = await queue_floor(msgs, WARMUP)
            rows["sr50"].append(pct(a, 50) / 1e3)
            rows["sr99"].append(pct(a, 99) / 1e3)
            rows["call50"].append(pct(c, 50) / 1e3)
            rows["call99"].append(pct(c, 99) / 1e3)
            rows["f50"].append(pct(f, 50) / 1e3)
            rows["f99"].append(pct(f, 99) / 1e3)
            rows["tp"].append(await throughput(rt, "emu_batch", records, True) / 1e6)
            rows["htp"].append(await throughput(rt, "host_batch", objects, False) / 1e6)
        assert rt.telemetry("emu_echo").launches == 1
    idle_ours, idle_base = await idle(3)
    m = {k: median(v) for k, v in rows.items()}
    fl = "2 asyncio.Queue ping-pong"
    return [
        Result(
            "emulated send+receive p50",
            m["sr50"],
            m["f50"],
            "us",
            fl,
            "<= 0.5x floor",
            m["sr50"] <= 0.5 * m["f50"],
        ),
        Result(
            "emulated send+receive p99",
            m["sr99"],
            m["f99"],
            "us",
            fl,
            "<= 1.0x floor",
            m["sr99"] <= m["f99"],
        ),
        Result(
            "emulated call p50",
            m["call50"],
            m["f50"],
            "us",
            fl,
            "<= 0.5x floor",
            m["call50"] <= 0.5 * m["f50"],
        ),
        Result(
            "emulated call p99",
            m["call99"],
            m["f99"],
            "us",
            fl,
            "<= 1.0x floor",
            m["call99"] <= m["f99"],
        ),
        Result(
            "emulated batch throughput (arrays)",
            m["tp"],
            m["htp"],
            "M msg/s",
            "host kernel, lists of messages",
            ">= 10 M msg/s",
            m["tp"] >= 10.0,
        ),
        Result(
            f"{IDLE_KERNELS} idle emulated kernels, CPU",
            median(idle_ours),
            median(idle_base),
            "% of a core",
            f"{IDLE_KERNELS} idle host kernels",
            "< 5% of a core",
            median(idle_ours) < 5.0,
        ),
    ]


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    return asyncio.run(measure())


if __name__ == "__main__":
    for r in run():
        print(r.row())
