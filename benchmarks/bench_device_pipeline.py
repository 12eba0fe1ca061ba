"""A pipeline of three linked device kernels: device links against host relaying.

Three sequential device kernels (``x -> 2x + 1`` each) linked ``s1 -> s2 -> s3``; the host
sends to ``s1`` and receives from ``s3``. *Ours*: ``runtime.link`` serves each link with a
link ring in device memory, so the messages between the stages never reach the host.
*Baseline*: the same kernels and links with the device link switched off, so each stage's
replies are read from its outbox by the host's link forwarder and put into the next stage's
inbox (the relaying every device link did before device links existed). Both in one run,
alternating, ROUNDS rounds each, medians.

Two variants, each with its own rows:

* the emulated device (the link ring is in its shared link arena), always;
* CUDA, when a usable GPU exists (the link ring is in GPU global memory). Without one it
  prints why and adds no row: no GPU figure is ever estimated.

``$PDC_BENCH_DEVICE_PIPELINE`` picks the variants (comma-separated, default
``emulated,cuda``); ``tools/gpu_check.sh`` runs ``cuda`` only.

* Throughput: MESSAGES messages sent with ``send_many`` in batches of BATCH records (a
  structured array of the input layout) while another task takes them from ``s3`` with
  ``receive_many(as_array=True)``. Target: >= 5x the baseline.
* Latency: one message through the whole pipeline and back (``send`` to ``s1``, ``receive``
  from ``s3``), LATENCY times after WARMUP; p50. Target: below the baseline's p50.
"""

from __future__ import annotations

import asyncio
import os
import sys
from time import perf_counter, perf_counter_ns
from typing import Any

from _device_kernels import Sample, declare
from _harness import Result, median, no_gc, pct

from pydotcompute import RingKernelRuntime, fixed_layout
from pydotcompute._cuda import cuda_status

STAGES = ("s1", "s2", "s3")
MESSAGES = 200_000
BATCH = 4_096
WARMUP = 200
LATENCY = 2_000
ROUNDS = 3
VARIANTS = ("emulated", "cuda")
WHERE = {"emulated": "emulated", "cuda": "CUDA"}


async def pipeline(device_links: bool, device: str) -> RingKernelRuntime:
    rt = RingKernelRuntime(device=device)
    declare("s1", queue_size=8192, output_queue_size=65536)
    declare("s2", queue_size=8192, output_queue_size=65536)
    declare("s3", queue_size=8192, output_queue_size=65536)
    for kid in STAGES:
        await rt.launch(kid)
        k: Any = rt._kernels[kid]  # the benchmark's switch: no device link for the baseline
        if not device_links:
            k.device_target = lambda route, kernels: None
        await rt.activate(kid)
    await rt.link("s1", "s2")
    await rt.link("s2", "s3")
    linked = rt.telemetry("s1").extra["device_link_to"] == "s2"
    assert linked == device_links, "the pipeline is not linked the way it should be"
    return rt


async def throughput(rt: RingKernelRuntime) -> float:
    batch = fixed_layout(Sample).to_array([Sample(x=float(i), y=0.0) for i in range(BATCH)])
    total = MESSAGES // BATCH * BATCH

    async def take() -> None:
        got = 0
        while got < total:
            got += len(await rt.receive_many("s3", timeout=60, as_array=True))

    start = perf_counter()
    taker = asyncio.create_task(take())
    for _ in range(total // BATCH):
        await rt.send_many("s1", batch, timeout=60)  # type: ignore[arg-type]
    await taker
    return total / (perf_counter() - start)


async def latency(rt: RingKernelRuntime) -> float:
    send, receive = rt.send, rt.receive
    lat: list[float] = []
    with no_gc():
        for i in range(WARMUP + LATENCY):
            t0 = perf_counter_ns()
            await send("s1", Sample(x=float(i), y=0.0))
            await receive("s3", timeout=10)
            lat.append(perf_counter_ns() - t0)
    return pct(sorted(lat[WARMUP:]), 50) / 1000.0


async def measure(device: str) -> list[Result]:
    tput: dict[bool, list[float]] = {True: [], False: []}
    p50: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(ROUNDS):
        for device_links in (True, False):
            rt = await pipeline(device_links, device)
            async with rt:
                tput[device_links].append(await throughput(rt))
                p50[device_links].append(await latency(rt))
    ours_t, base_t = median(tput[True]), median(tput[False])
    ours_l, base_l = median(p50[True]), median(p50[False])
    where = WHERE[device]
    return [
        Result(
            f"{where} pipeline of 3 linked device kernels, throughput",
            ours_t,
            base_t,
            "msg/s",
            "same kernels relayed through the host",
            ">= 5x baseline",
            ours_t >= 5 * base_t,
            {"rounds": tput},
        ),
        Result(
            f"{where} pipeline of 3 linked device kernels, end-to-end p50",
            ours_l,
            base_l,
            "us",
            "same kernels relayed through the host",
            "< baseline",
            ours_l < base_l,
            {"rounds": p50},
        ),
    ]


def variants() -> list[str]:
    """The variants ``$PDC_BENCH_DEVICE_PIPELINE`` asks for (all by default)."""
    asked = os.environ.get("PDC_BENCH_DEVICE_PIPELINE", ",".join(VARIANTS))
    names = [n.strip() for n in asked.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(
            f"PDC_BENCH_DEVICE_PIPELINE={asked!r}: unknown variant(s) {unknown}; "
            f"use a comma-separated list of {list(VARIANTS)}"
        )
    return names


def run() -> list[Result]:
    """Run the benchmark and return its rows (no CUDA row, with the reason, without a GPU)."""
    rows: list[Result] = []
    for device in variants():
        if device == "cuda":
            status = cuda_status()
            if not status.usable:
                print(
                    f"bench_device_pipeline: the CUDA variant needs a usable CUDA GPU: "
                    f"{status.reason}",
                    file=sys.stderr,
                )
                continue
        rows += asyncio.run(measure(device))
    return rows


if __name__ == "__main__":
    for r in run():
        print(r.row())
