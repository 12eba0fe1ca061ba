"""Device ring kernels through the runtime, on the emulated device and (with a GPU) CUDA."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pydotcompute import (
    DeviceFaultError,
    KernelCompileError,
    KernelFailedError,
    KernelState,
    KernelStateError,
    OperationTimeoutError,
    QueueFullError,
    RingKernelRuntime,
    SendTimeoutError,
    fixed_layout,
    ring_kernel,
)
from tests.backends.device_kernels import Done, Job, declare, declare_parallel
from tests.conftest import until, within

pytestmark = pytest.mark.timeout(300)


def jobs(count: int, start: int = 0, spin: int = 0, priority: int = 128) -> list[Job]:
    return [Job(n=i, x=float(i), spin=spin, priority=priority) for i in range(start, start + count)]


async def receive_n(rt: RingKernelRuntime, kid: str, count: int) -> list[Done]:
    out: list[Done] = []
    while len(out) < count:
        out.extend(await within(rt.receive_many(kid, count - len(out), timeout=10)))
    return out


async def started(rt: RingKernelRuntime, kid: str = "worker", **options: object) -> None:
    await within(rt.launch(kid, **options), 60)
    await rt.activate(kid)


# ---------------------------------------------------------------- messaging


async def test_round_trip_replies_with_handler_result(druntime: RingKernelRuntime) -> None:
    declare()
    await started(druntime)
    assert await druntime.send("worker", Job(n=7, x=1.5, spin=0)) is True
    reply = await within(druntime.receive("worker"))
    assert isinstance(reply, Done)
    assert (int(reply.n), float(reply.y), int(reply.seen)) == (7, 4.0, 1)


async def test_call_correlates_reply_copies_priority_and_gives_fresh_id(
    druntime: RingKernelRuntime,
) -> None:
    declare()
    await started(druntime)
    request = Job(n=3, x=2.0, spin=0, priority=200)
    reply = await within(druntime.call("worker", request, timeout=10))
    assert reply.correlation_id == request.message_id
    assert reply.priority == 200
    assert reply.message_id not in (None, request.message_id)
    assert float(reply.y) == 5.0


async def test_call_behind_untaken_replies_leaves_them_receivable_in_order(
    druntime: RingKernelRuntime,
) -> None:
    # The call's own reply comes after two replies nobody has taken yet: the call gets its
    # reply and the others stay in the outbox, in order, for receive.
    declare()
    await started(druntime)
    await druntime.send("worker", Job(n=1, x=0.0, spin=0))
    await druntime.send("worker", Job(n=2, x=0.0, spin=0))
    request = Job(n=3, x=0.0, spin=0)
    reply = await within(druntime.call("worker", request, timeout=10))
    assert int(reply.n) == 3 and reply.correlation_id == request.message_id
    assert [int(r.n) for r in await receive_n(druntime, "worker", 2)] == [1, 2]
    # Many calls at once: each gets its own reply, whatever order they are resolved in.
    requests = jobs(50, start=100)
    replies = await within(
        asyncio.gather(*(druntime.call("worker", j, timeout=10) for j in requests))
    )
    assert [int(r.n) for r in replies] == list(range(100, 150))
    assert [r.correlation_id for r in replies] == [j.message_id for j in requests]
    assert druntime.telemetry("worker").outbox_depth == 0


async def test_replies_keep_send_order_and_state_persists(druntime: RingKernelRuntime) -> None:
    declare()
    await started(druntime)
    for job in jobs(300):
        await druntime.send("worker", job)
    replies = await receive_n(druntime, "worker", 300)
    assert [int(r.n) for r in replies] == list(range(300))
    assert [int(r.seen) for r in replies] == list(range(1, 301))


async def test_priority_orders_messages_queued_while_parked(druntime: RingKernelRuntime) -> None:
    declare()
    await within(druntime.launch("worker"), 60)
    for n, p in [(1, 10), (2, 200), (3, 10), (4, 128), (5, 200)]:
        await druntime.send("worker", Job(n=n, x=0.0, spin=0, priority=p))
    await druntime.activate("worker")
    replies = await receive_n(druntime, "worker", 5)
    assert [int(r.n) for r in replies] == [2, 5, 4, 1, 3]


async def test_send_many_and_receive_many_move_structured_arrays(
    druntime: RingKernelRuntime,
) -> None:
    declare()
    await started(druntime, queue_size=4096)
    arr = fixed_layout(Job).to_array(jobs(2000))
    assert await within(druntime.send_many("worker", arr, timeout=10), 10) == 2000
    got: list[np.ndarray] = []
    while sum(map(len, got)) < 2000:
        got.append(await within(druntime.receive_many("worker", timeout=10, as_array=True)))
    out = np.concatenate(got)
    assert out.dtype == fixed_layout(Done).dtype
    assert out["n"].tolist() == list(range(2000))
    assert np.allclose(out["y"], 2 * arr["x"] + 1)


async def test_send_many_refuses_an_array_of_another_layout(druntime: RingKernelRuntime) -> None:
    declare()
    await started(druntime)
    wrong = np.zeros(3, dtype=[("a", "f4")])
    with pytest.raises(Exception, match="does not have the fields of Job"):
        await druntime.send_many("worker", wrong)


# ---------------------------------------------------------------- backpressure


async def test_full_inbox_reject_raises_and_counts(druntime: RingKernelRuntime) -> None:
    declare(backpressure="reject", queue_size=4)
    await within(druntime.launch("worker"), 60)
    for job in jobs(4):
        await druntime.send("worker", job)
    with pytest.raises(QueueFullError, match=r"full \(4 messages\) and its backpressure"):
        await druntime.send("worker", Job(n=9, x=0.0, spin=0))
    t = druntime.telemetry("worker")
    assert (t.rejected, t.inbox_depth) == (1, 4)


async def test_full_inbox_drop_newest_discards_the_new_message(
    druntime: RingKernelRuntime,
) -> None:
    declare(backpressure="drop_newest", queue_size=3)
    await within(druntime.launch("worker"), 60)
    for job in jobs(3):
        await druntime.send("worker", job)
    assert await druntime.send("worker", Job(n=99, x=0.0, spin=0)) is False
    await druntime.activate("worker")
    assert sorted(int(r.n) for r in await receive_n(druntime, "worker", 3)) == [0, 1, 2]
    assert druntime.telemetry("worker").dropped == 1


async def test_full_inbox_drop_oldest_evicts_oldest_staged(druntime: RingKernelRuntime) -> None:
    declare(backpressure="drop_oldest", queue_size=3)
    await within(druntime.launch("worker"), 60)
    for n, p in [(1, 10), (2, 200), (3, 10)]:
        await druntime.send("worker", Job(n=n, x=0.0, spin=0, priority=p))
    assert await druntime.send("worker", Job(n=4, x=0.0, spin=0, priority=50)) is True
    await druntime.activate("worker")
    assert [int(r.n) for r in await receive_n(druntime, "worker", 3)] == [2, 4, 3]
    assert druntime.telemetry("worker").dropped == 1


async def test_full_inbox_block_waits_then_times_out(druntime: RingKernelRuntime) -> None:
    declare(backpressure="block", queue_size=2)
    await within(druntime.launch("worker"), 60)
    for job in jobs(2):
        await druntime.send("worker", job)
    with pytest.raises(SendTimeoutError, match=r"stayed full \(2 messages\) for 0\.05 s"):
        await druntime.send("worker", Job(n=5, x=0.0, spin=0), timeout=0.05)
    waiting = asyncio.create_task(druntime.send("worker", Job(n=6, x=0.0, spin=0)))
    await asyncio.sleep(0)
    assert not waiting.done()
    await druntime.activate("worker")
    assert await within(waiting) is True
    assert sorted(int(r.n) for r in await receive_n(druntime, "worker", 3)) == [0, 1, 6]


async def test_full_outbox_makes_the_device_wait_and_loses_nothing(
    druntime: RingKernelRuntime,
) -> None:
    declare(input_queue_size=64, output_queue_size=4)
    await started(druntime)
    for job in jobs(40):
        await druntime.send("worker", job)
    await within(until(lambda: druntime.telemetry("worker").outbox_depth == 4))
    t = druntime.telemetry("worker")
    assert t.processed == 4 and t.inbox_depth == 36
    await within(until(lambda: druntime.telemetry("worker").extra["outbox_full_waits"] > 0))
    replies = await receive_n(druntime, "worker", 40)
    assert [int(r.n) for r in replies] == list(range(40))


# ---------------------------------------------------------------- lifecycle


async def test_deactivate_parks_and_activate_resumes_queued(druntime: RingKernelRuntime) -> None:
    declare()
    await started(druntime)
    await within(druntime.call("worker", Job(n=0, x=0.0, spin=0), timeout=10))
    await druntime.deactivate("worker")
    await within(until(lambda: druntime.telemetry("worker").extra["device_status"] == "parked"))
    for job in jobs(5, start=1):
        await druntime.send("worker", job)
    with pytest.raises(OperationTimeoutError):
        await druntime.receive("worker", timeout=0.2)
    assert druntime.telemetry("worker").inbox_depth == 5
    await druntime.activate("worker")
    assert [int(r.n) for r in await receive_n(druntime, "worker", 5)] == [1, 2, 3, 4, 5]


async def test_terminate_while_busy_is_graceful_and_keeps_replies(
    druntime: RingKernelRuntime,
) -> None:
    declare()
    await started(druntime)
    for job in jobs(30, spin=20_000_000):
        await druntime.send("worker", job)
    await within(until(lambda: druntime.telemetry("worker").processed >= 1), 10)
    result = await within(druntime.terminate("worker", timeout=10), 15)
    assert result.graceful and result.discarded > 0
    assert druntime.state("worker") is KernelState.TERMINATED
    t = druntime.telemetry("worker")
    assert t.processed + result.discarded == 30
    kept = [await within(druntime.receive("worker")) for _ in range(t.outbox_depth)]
    assert [int(r.n) for r in kept] == list(range(len(kept)))
    with pytest.raises(KernelStateError, match="TERMINATED"):
        await druntime.receive("worker", timeout=1)


async def test_terminate_with_drain_takes_everything_queued(druntime: RingKernelRuntime) -> None:
    declare()
    await within(druntime.launch("worker"), 60)
    for job in jobs(50):
        await druntime.send("worker", job)
    result = await within(druntime.terminate("worker", drain=True, timeout=10), 15)
    assert result.discarded == 0 and druntime.telemetry("worker").processed == 50


async def test_relaunch_swaps_the_handler_and_keeps_queued_messages(
    druntime: RingKernelRuntime,
) -> None:
    declare()
    await within(druntime.launch("worker"), 60)
    for job in jobs(3):
        await druntime.send("worker", job)
    new = ring_kernel(
        kernel_id="worker2",
        input_type=Job,
        output_type=Done,
        cuda="out.n = msg.n; out.y = -1.0f;",
    )
    result = await within(druntime.relaunch("worker", new), 60)
    assert result.state is KernelState.LAUNCHED
    await druntime.activate("worker")
    replies = await receive_n(druntime, "worker", 3)
    assert [(int(r.n), float(r.y)) for r in replies] == [(0, -1.0), (1, -1.0), (2, -1.0)]
    t = druntime.telemetry("worker")
    assert (t.redeploys, t.launches, t.errors) == (1, 2, 0)


async def test_relaunch_that_does_not_compile_leaves_the_old_loop_serving(
    druntime: RingKernelRuntime,
) -> None:
    declare()
    await started(druntime)
    broken = ring_kernel(
        kernel_id="worker", input_type=Job, output_type=Done, cuda="out.n = nope;", replace=True
    )
    with pytest.raises(KernelCompileError, match=r"handle line 1: .*nope"):
        await within(druntime.relaunch("worker", broken), 60)
    assert druntime.state("worker") is KernelState.ACTIVE
    await druntime.send_many("worker", jobs(3))
    assert [int(r.n) for r in await receive_n(druntime, "worker", 3)] == [0, 1, 2]
    assert druntime.telemetry("worker").redeploys == 0


async def test_launches_stays_one_after_100000_messages(druntime: RingKernelRuntime) -> None:
    declare_parallel(block_size=64)
    await started(druntime, "par", queue_size=8192)
    arr = fixed_layout(Job).to_array(jobs(5000))
    total = 0
    for _ in range(20):
        await within(druntime.send_many("par", arr, timeout=10), 20)
        while total < (_ + 1) * 5000:
            got = await within(druntime.receive_many("par", timeout=10, as_array=True))
            total += len(got)
    t = druntime.telemetry("par")
    assert (t.processed, t.launches, t.sent) == (100_000, 1, 100_000)
    assert t.extra["heartbeat"] > 0 and t.extra["busy_s"] > 0


async def test_parallel_mode_handles_every_message_once(druntime: RingKernelRuntime) -> None:
    declare_parallel()
    await started(druntime, "par")
    replies = []
    for chunk in range(4):
        await druntime.send_many("par", jobs(250, start=chunk * 250))
        replies += await receive_n(druntime, "par", 250)
    assert [int(r.n) for r in replies] == list(range(1000))
    assert all(float(r.y) == 2 * int(r.n) + 1 for r in replies)


async def test_skip_reply_lets_a_sequential_handler_filter(druntime: RingKernelRuntime) -> None:
    ring_kernel(
        kernel_id="evens",
        input_type=Job,
        output_type=Done,
        cuda="if (msg.n % 2 != 0) {\n    skip_reply();\n    return;\n}\nout.n = msg.n;\n",
    )
    await started(druntime, "evens")
    await druntime.send_many("evens", jobs(10))
    replies = await receive_n(druntime, "evens", 5)
    assert [int(r.n) for r in replies] == [0, 2, 4, 6, 8]
    await until(lambda: druntime.telemetry("evens").processed == 10)
    assert druntime.telemetry("evens").outbox_depth == 0


async def test_skip_reply_in_parallel_mode_is_a_clear_compile_error(
    druntime: RingKernelRuntime,
) -> None:
    ring_kernel(
        kernel_id="par-skip",
        input_type=Job,
        output_type=Done,
        mode="parallel",
        cuda="out.n = msg.n;\nskip_reply();\n",
    )
    with pytest.raises(KernelCompileError, match=r"handle line 2: .*sequential mode only"):
        await within(druntime.launch("par-skip"), 60)


# ---------------------------------------------------------------- failures and telemetry


async def test_compile_error_maps_lines_to_the_handler_source(
    druntime: RingKernelRuntime,
) -> None:
    ring_kernel(
        kernel_id="broken",
        input_type=Job,
        output_type=Done,
        cuda="out.n = msg.n;\nout.y = undefined_name;\n",
    )
    with pytest.raises(KernelCompileError, match=r"handle line 2: .*undefined_name") as info:
        await within(druntime.launch("broken"), 60)
    assert info.value.errors[0][:2] == ("handle", 2)
    assert "broken.handle" in info.value.log
    assert druntime.kernels == ()


async def test_telemetry_merges_device_counters(druntime: RingKernelRuntime) -> None:
    declare()
    await started(druntime)
    for job in jobs(10):
        await druntime.send("worker", job)
    await receive_n(druntime, "worker", 10)
    t = druntime.snapshot().kernels["worker"]
    assert t.backend == "device" and t.device.startswith(
        druntime.snapshot().device["device_kernels"]["run_on"][:4]
    )
    assert (t.received, t.processed, t.sent, t.launches) == (10, 10, 10, 1)
    # Latency is timed on a 1-in-8 sample of ring positions (0 and 8 here); counts are exact.
    assert t.latency_p50_us is not None and t.latency_p50_us > 0
    assert 1 <= druntime._kernels["worker"].metrics.lat_n <= 2  # a batch read gives one
    assert t.extra["device_status"] == "active" and t.extra["idle_polls"] >= 0
    assert t.as_dict()["extra"]["mode"] == "sequential"


async def test_trap_fails_the_kernel_and_says_the_device_survives() -> None:
    # Emulated only: a trap on CUDA poisons the context (tested in a subprocess, GPU file).
    ring_kernel(
        kernel_id="trapper",
        input_type=Job,
        output_type=Done,
        cuda="if (msg.n == 2) { __trap(); }\nout.n = msg.n;",
    )
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt, "trapper")
        for job in jobs(3):
            await rt.send("trapper", job)
        got = [await within(rt.receive("trapper")) for _ in range(2)]
        assert [int(r.n) for r in got] == [0, 1]
        with pytest.raises(KernelFailedError, match="trapped") as info:
            await within(rt.receive("trapper", timeout=10))
        cause = info.value.__cause__
        assert isinstance(cause, DeviceFaultError) and cause.context_usable
        assert "still usable" in str(cause)
        assert rt.state("trapper") is KernelState.FAILED
        t = rt.telemetry("trapper")
        assert t.errors == 1 and t.extra["context_usable"] is True


async def test_terminate_past_deadline_fails_the_kernel() -> None:
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt)
        await rt.send("worker", Job(n=0, x=0.0, spin=1_500_000_000))
        await within(until(lambda: rt.telemetry("worker").inbox_depth == 0))
        with pytest.raises(OperationTimeoutError, match=r"did not exit within 0\.1 s") as info:
            await rt.terminate("worker", timeout=0.1)
        assert isinstance(info.value.__cause__, DeviceFaultError)
        assert rt.state("worker") is KernelState.FAILED
        await within(rt.terminate("worker", timeout=10), 15)
        assert rt.state("worker") is KernelState.TERMINATED


async def test_relaunch_of_an_active_kernel_is_not_counted_as_a_failure(
    druntime: RingKernelRuntime,
) -> None:
    declare()
    await started(druntime)
    for n in range(3):
        await within(druntime.relaunch("worker"), 60)
        reply = await within(druntime.call("worker", Job(n=n, x=0.0, spin=0), timeout=10))
        assert int(reply.n) == n
    t = druntime.telemetry("worker")
    assert (t.state, t.errors, t.redeploys) == ("ACTIVE", 0, 3)
    assert not any("failed" in what for _, what in t.events)
