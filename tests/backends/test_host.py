"""Host ring kernels: backpressure at the boundary, failures, restarts, termination."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import pytest

from pydotcompute import (
    KernelContext,
    KernelFailedError,
    KernelState,
    KernelStateError,
    QueueFullError,
    RingKernelRuntime,
    SendTimeoutError,
    TerminationRequested,
    message,
)
from tests.conftest import until, within


@message
class Job:
    n: int


async def echo(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def fill(runtime: RingKernelRuntime, kid: str, items: list[tuple[int, int]]) -> None:
    for n, p in items:
        assert await runtime.send(kid, Job(n=n, priority=p)) is True


async def drain(runtime: RingKernelRuntime, kid: str, count: int) -> list[int]:
    return [(await within(runtime.receive(kid))).n for _ in range(count)]


# ---------------------------------------------------------------- backpressure


async def test_block_waits_for_space_then_times_out(runtime: RingKernelRuntime) -> None:
    await runtime.launch("k", func=echo, queue_size=2, backpressure="block")
    await fill(runtime, "k", [(1, 128), (2, 128)])
    with pytest.raises(SendTimeoutError, match=r"stayed full \(2 messages\) for 0\.05 s"):
        await runtime.send("k", Job(n=3), timeout=0.05)
    waiting = asyncio.create_task(runtime.send("k", Job(n=4)))
    await asyncio.sleep(0)
    assert not waiting.done()
    await runtime.activate("k")
    assert await within(waiting) is True
    assert sorted(await drain(runtime, "k", 3)) == [1, 2, 4]


async def test_send_timeout_error_is_a_queue_full_and_timeout_error() -> None:
    assert issubclass(SendTimeoutError, QueueFullError)
    assert issubclass(SendTimeoutError, TimeoutError)


async def test_reject_raises_at_once_and_counts(runtime: RingKernelRuntime) -> None:
    await runtime.launch("k", func=echo, queue_size=2, backpressure="reject")
    await fill(runtime, "k", [(1, 128), (2, 128)])
    with pytest.raises(
        QueueFullError, match="full \\(2 messages\\) and its backpressure is 'reject'"
    ):
        await runtime.send("k", Job(n=3))
    t = runtime.telemetry("k")
    assert (t.rejected, t.inbox_depth, t.dropped) == (1, 2, 0)


async def test_drop_oldest_evicts_oldest_not_highest_priority(runtime: RingKernelRuntime) -> None:
    await runtime.launch("k", func=echo, queue_size=3, backpressure="drop_oldest")
    await fill(runtime, "k", [(1, 10), (2, 200), (3, 10)])
    assert await runtime.send("k", Job(n=4, priority=50)) is True
    assert runtime.telemetry("k").dropped == 1
    await runtime.activate("k")
    assert await drain(runtime, "k", 3) == [2, 4, 3]


async def test_drop_oldest_can_evict_the_highest_priority_when_it_is_oldest(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("k", func=echo, queue_size=2, backpressure="drop_oldest")
    await fill(runtime, "k", [(1, 255), (2, 0)])
    await runtime.send("k", Job(n=3))
    await runtime.activate("k")
    assert await drain(runtime, "k", 2) == [3, 2]


async def test_odd_priorities_queue_as_the_default_one(runtime: RingKernelRuntime) -> None:
    class Odd:
        def __init__(self, n: int, priority: object) -> None:
            self.n, self.priority = n, priority

    async def relay(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            await ctx.send(await ctx.receive())

    await runtime.launch("u", func=relay)
    for n, p in [(1, 128), (2, True), (3, 128.0), (4, 300), (5, "high"), (6, 200), (7, 128)]:
        assert await runtime.send("u", Odd(n, p)) is True
    await runtime.activate("u")
    got = [(await within(runtime.receive("u"))).n for _ in range(7)]
    assert got == [6, 1, 2, 3, 4, 5, 7]


async def test_drop_newest_discards_the_new_message(runtime: RingKernelRuntime) -> None:
    await runtime.launch("k", func=echo, queue_size=2, backpressure="drop_newest")
    await fill(runtime, "k", [(1, 128), (2, 128)])
    assert await runtime.send("k", Job(n=3, priority=255)) is False
    assert await runtime.send_many("k", [Job(n=5), Job(n=6)]) == 0
    assert runtime.telemetry("k").dropped == 3
    await runtime.activate("k")
    assert await drain(runtime, "k", 2) == [1, 2]


async def test_full_outbox_makes_the_kernel_wait_without_losing_replies(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("k", func=echo, input_queue_size=20, output_queue_size=2)
    await runtime.activate("k")
    await runtime.send_many("k", [Job(n=i) for i in range(10)])
    await until(lambda: runtime.telemetry("k").outbox_depth == 2)
    assert runtime.telemetry("k").sent == 2
    assert await drain(runtime, "k", 10) == list(range(10))


# ---------------------------------------------------------------- failures and restarts


async def failing(ctx: KernelContext[Job, Job]) -> None:
    while not ctx.should_terminate:
        job = await ctx.receive()
        if job.n < 0:
            raise ValueError(f"negative job {job.n}")
        await ctx.send(job)


async def test_failure_is_raised_from_receive_with_the_traceback(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("f", func=failing)
    await runtime.activate("f")
    await runtime.send("f", Job(n=1))
    await runtime.send("f", Job(n=-1))
    await runtime.send("f", Job(n=2))
    assert (await within(runtime.receive("f"))).n == 1  # sent before the failure
    with pytest.raises(KernelFailedError, match="'f' failed: ValueError: negative job -1") as info:
        await within(runtime.receive("f"))
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and info.value.error is cause
    frames = traceback.extract_tb(cause.__traceback__)
    assert any(f.name == "failing" for f in frames)
    assert runtime.state("f") is KernelState.FAILED
    t = runtime.telemetry("f")
    assert t.errors == 1 and t.last_error == "ValueError: negative job -1"
    with pytest.raises(KernelFailedError, match="The message was not queued"):
        await runtime.send("f", Job(n=3))
    with pytest.raises(KernelFailedError):  # still failed: every receive says so
        await within(runtime.receive("f"))
    assert t.inbox_depth == 1  # the job after the failing one is kept
    result = await within(runtime.terminate("f"))
    assert result.discarded == 1 and runtime.state("f") is KernelState.TERMINATED


async def test_waiting_receiver_is_woken_by_the_failure(runtime: RingKernelRuntime) -> None:
    await runtime.launch("f", func=failing)
    await runtime.activate("f")
    waiter = asyncio.create_task(runtime.receive("f"))
    await asyncio.sleep(0)
    await runtime.send("f", Job(n=-5))
    with pytest.raises(KernelFailedError, match="negative job -5"):
        await within(waiter)


async def test_call_raises_when_the_kernel_fails(runtime: RingKernelRuntime) -> None:
    await runtime.launch("f", func=failing)
    await runtime.activate("f")
    with pytest.raises(KernelFailedError):
        await runtime.call("f", Job(n=-1), timeout=2)


async def test_relaunch_after_failure_keeps_the_inbox(runtime: RingKernelRuntime) -> None:
    await runtime.launch("f", func=failing)
    await runtime.activate("f")
    await runtime.send_many("f", [Job(n=-1), Job(n=7)])
    with pytest.raises(KernelFailedError):
        await within(runtime.receive("f"))
    await within(runtime.relaunch("f"))
    assert runtime.state("f") is KernelState.ACTIVE
    assert (await within(runtime.receive("f"))).n == 7


async def test_restart_on_failure_keeps_the_inbox(runtime: RingKernelRuntime) -> None:
    await runtime.launch("f", func=failing, restart="on_failure", max_restarts=3, within=60)
    await runtime.send_many("f", [Job(n=1), Job(n=-1), Job(n=2), Job(n=-2), Job(n=3)])
    await runtime.activate("f")
    assert await drain(runtime, "f", 3) == [1, 2, 3]
    t = runtime.telemetry("f")
    assert (t.restarts, t.errors, t.state) == (2, 2, "ACTIVE")


async def test_restart_intensity_limit_leaves_it_failed(runtime: RingKernelRuntime) -> None:
    await runtime.launch("f", func=failing, restart="on_failure", max_restarts=2, within=60)
    await runtime.send_many("f", [Job(n=-1), Job(n=-2), Job(n=-3), Job(n=4)])
    await runtime.activate("f")
    with pytest.raises(KernelFailedError, match="negative job -3"):
        await within(runtime.receive("f"))
    t = runtime.telemetry("f")
    assert (t.restarts, t.errors, t.state, t.inbox_depth) == (2, 3, "FAILED", 1)
    assert any("restart limit reached" in what for _, what in t.events)


async def test_restart_always_restarts_a_body_that_returns(runtime: RingKernelRuntime) -> None:
    async def one_shot(ctx: KernelContext[Job, Job]) -> None:
        await ctx.send(await ctx.receive())

    await runtime.launch("o", func=one_shot, restart="always", max_restarts=5, within=60)
    await runtime.activate("o")
    await runtime.send_many("o", [Job(n=i) for i in range(3)])
    assert await drain(runtime, "o", 3) == [0, 1, 2]
    assert runtime.telemetry("o").restarts >= 2


async def test_body_that_returns_without_restart_ends_terminated(
    runtime: RingKernelRuntime,
) -> None:
    async def one_shot(ctx: KernelContext[Job, Job]) -> None:
        await ctx.send(await ctx.receive())

    await runtime.launch("o", func=one_shot)
    await runtime.activate("o")
    await runtime.send("o", Job(n=1))
    assert (await within(runtime.receive("o"))).n == 1
    await until(lambda: runtime.state("o") is KernelState.TERMINATED)
    with pytest.raises(KernelStateError, match="'o' is TERMINATED and no more messages"):
        await within(runtime.receive("o"))


# ---------------------------------------------------------------- termination


async def test_terminate_wakes_a_blocked_receive(runtime: RingKernelRuntime) -> None:
    seen: list[str] = []

    async def body(ctx: KernelContext[Any, Any]) -> None:
        try:
            while not ctx.should_terminate:
                await ctx.receive()
        finally:
            seen.append("finally")

    await runtime.launch("t", func=body)
    await runtime.activate("t")
    await asyncio.sleep(0)  # the body is now blocked in receive
    result = await within(runtime.terminate("t", timeout=2))
    assert result.graceful and seen == ["finally"]
    assert runtime.state("t") is KernelState.TERMINATED


async def test_terminate_lets_a_busy_body_finish_its_message(runtime: RingKernelRuntime) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def busy(ctx: KernelContext[Job, Job]) -> None:
        while not ctx.should_terminate:
            job = await ctx.receive()
            started.set()
            await release.wait()
            await ctx.send(job)

    await runtime.launch("b", func=busy)
    await runtime.activate("b")
    await runtime.send("b", Job(n=9))
    await within(started.wait())
    term = asyncio.create_task(runtime.terminate("b", timeout=5))
    await until(lambda: runtime.state("b") is KernelState.TERMINATING)
    release.set()
    result = await within(term)
    assert result.graceful
    assert (await within(runtime.receive("b"))).n == 9  # the reply survives termination
    with pytest.raises(KernelStateError, match="TERMINATED"):
        await runtime.receive("b", timeout=1)


async def test_terminate_cancels_a_body_past_its_deadline(runtime: RingKernelRuntime) -> None:
    cancelled: list[bool] = []

    async def stubborn(ctx: KernelContext[Any, Any]) -> None:
        try:
            await asyncio.Event().wait()  # never looks at should_terminate
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    await runtime.launch("s", func=stubborn)
    await runtime.activate("s")
    await asyncio.sleep(0)
    result = await within(runtime.terminate("s", timeout=0.05))
    assert not result.graceful and cancelled == [True]
    assert runtime.state("s") is KernelState.TERMINATED
    assert runtime.telemetry("s").errors == 0


async def test_terminate_with_drain_processes_the_queue_first(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=echo)
    await runtime.send_many("d", [Job(n=i) for i in range(5)])
    await runtime.activate("d")
    result = await within(runtime.terminate("d", drain=True))
    assert result.discarded == 0 and result.graceful
    assert await drain(runtime, "d", 5) == [0, 1, 2, 3, 4]


async def test_should_terminate_turns_true_with_drain_once_the_last_message_is_taken(
    runtime: RingKernelRuntime,
) -> None:
    seen: list[bool] = []

    async def body(ctx: KernelContext[Job, Job]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            seen.append(ctx.should_terminate)
            await ctx.send(m)

    await runtime.launch("d", func=body)
    await runtime.send_many("d", [Job(n=i) for i in range(3)])
    result = await within(runtime.terminate("d", drain=True))
    assert result.graceful and seen == [False, False, True]
    assert await drain(runtime, "d", 3) == [0, 1, 2]


async def test_terminate_without_drain_discards_and_refuses_sends(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("d", func=echo)
    await runtime.send_many("d", [Job(n=i) for i in range(4)])
    result = await within(runtime.terminate("d"))
    assert result.discarded == 4
    with pytest.raises(KernelStateError, match="sends are queued only while"):
        await runtime.send("d", Job(n=1))
    with pytest.raises(
        KernelStateError, match="cannot terminate ring kernel 'd': it is TERMINATED"
    ):
        await runtime.terminate("d")
    assert (await within(runtime.launch("d", func=echo))).state is KernelState.LAUNCHED


async def test_blocked_sender_is_refused_when_the_kernel_terminates(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("k", func=echo, queue_size=1)
    await runtime.send("k", Job(n=1))
    blocked = asyncio.create_task(runtime.send("k", Job(n=2)))
    await asyncio.sleep(0)
    await within(runtime.terminate("k"))
    with pytest.raises(KernelStateError, match="was terminated before taking this message"):
        await within(blocked)


async def test_wait_active_and_is_active(runtime: RingKernelRuntime) -> None:
    states: list[bool] = []

    async def waiter(ctx: KernelContext[Any, Any]) -> None:
        states.append(ctx.is_active)
        await ctx.wait_active(timeout=5)
        states.append(ctx.is_active)
        await ctx.wait_active()  # already active: returns at once
        while not ctx.should_terminate:
            await ctx.receive()

    await runtime.launch("w", func=waiter)
    await asyncio.sleep(0)
    await runtime.activate("w")
    await until(lambda: len(states) == 2)
    assert states == [False, True]


async def test_wait_active_is_woken_by_terminate(runtime: RingKernelRuntime) -> None:
    outcome: list[str] = []

    async def waiter(ctx: KernelContext[Any, Any]) -> None:
        try:
            await ctx.wait_active()
        except TerminationRequested:
            outcome.append("terminated")
            raise

    await runtime.launch("w", func=waiter)
    await asyncio.sleep(0)
    assert (await within(runtime.terminate("w"))).graceful
    assert outcome == ["terminated"]


async def test_idle_active_kernel_is_parked_on_a_future(runtime: RingKernelRuntime) -> None:
    await runtime.launch("i", func=echo)
    await runtime.activate("i")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "ring kernel i")
    waiter = task._fut_waiter  # type: ignore[attr-defined]
    assert isinstance(waiter, asyncio.Future) and not waiter.done()
    ours = [
        h
        for h in loop._scheduled  # type: ignore[attr-defined]
        if getattr(h._callback, "__module__", "").startswith("pydotcompute")
    ]
    assert ours == []  # no pydotcompute timer: nothing polls
