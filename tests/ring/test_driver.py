"""A body parked in receive runs inline in the sender's call: task identity, context variables,
re-entrancy, fairness, cancellation and failures stay as if it ran in its own task."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from pydotcompute import (
    InvalidArgumentError,
    KernelContext,
    KernelFailedError,
    KernelState,
    ReceiveTimeoutError,
    RingKernelRuntime,
    message,
)
from pydotcompute.ring._driver import INLINE_BUDGET
from tests.conftest import until, within


@message
class Num:
    n: int


async def echo(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def test_send_then_receive_runs_the_parked_body_without_a_loop_turn(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("e", func=echo)
    await runtime.activate("e")
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the body parks in its first receive, the ticker starts
    before = turns
    for i in range(5):
        assert await runtime.send("e", Num(n=i)) is True
        assert runtime.telemetry("e").inbox_depth == 1  # queued; the body is runnable
        assert (await within(runtime.receive("e"))).n == i  # the body ran here, inline
    assert turns == before  # no trip through the event loop
    tick.cancel()
    t = runtime.telemetry("e")
    assert (t.received, t.processed, t.sent) == (5, 5, 5)


async def test_a_runnable_body_runs_at_the_next_loop_turn_without_a_receive(
    runtime: RingKernelRuntime,
) -> None:
    got: list[int] = []

    async def sink(ctx: KernelContext[Num, Num]) -> None:
        while not ctx.should_terminate:
            got.append((await ctx.receive()).n)

    await runtime.launch("s", func=sink)
    await runtime.activate("s")
    await runtime.send_many("s", [Num(n=i) for i in range(3)])
    await until(lambda: len(got) == 3)
    assert got == [0, 1, 2]


async def test_the_body_runs_as_its_own_task_and_in_its_own_context(
    runtime: RingKernelRuntime,
) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[str, str]] = []

    async def body(ctx: KernelContext[Any, Any]) -> None:
        var.set("body")
        while not ctx.should_terminate:
            m = await ctx.receive()
            task = asyncio.current_task()
            assert task is not None
            seen.append((task.get_name(), var.get()))
            await ctx.send(m)

    var.set("sender")
    await runtime.launch("k", func=body)
    await runtime.activate("k")
    for i in range(3):
        await runtime.send("k", Num(n=i))
        await within(runtime.receive("k"))
    assert seen == [("ring kernel k", "body")] * 3
    assert var.get() == "sender"
    assert asyncio.current_task() is not None
    assert asyncio.current_task().get_name() != "ring kernel k"  # type: ignore[union-attr]


async def test_asyncio_timeout_in_a_body_cancels_the_body_not_the_sender(
    runtime: RingKernelRuntime,
) -> None:
    async def body(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            try:
                async with asyncio.timeout(0.01):
                    await ctx.receive()  # parks inside the timeout: it fires
            except TimeoutError:
                await ctx.send(Num(n=-m.n))

    await runtime.launch("t", func=body)
    await runtime.activate("t")
    await runtime.send("t", Num(n=4))
    assert (await within(runtime.receive("t"))).n == -4
    await runtime.send("t", Num(n=5))
    assert (await within(runtime.receive("t"))).n == -5
    assert runtime.state("t") is KernelState.ACTIVE


async def test_a_body_sending_to_itself_queues_instead_of_recursing(
    runtime: RingKernelRuntime,
) -> None:
    async def countdown(ctx: KernelContext[Num, Num]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            if m.n > 0:
                await runtime.send("self", Num(n=m.n - 1))  # to itself, while running
            await ctx.send(Num(n=m.n))

    await runtime.launch("self", func=countdown)
    await runtime.activate("self")
    await runtime.send("self", Num(n=2000))  # deeper than Python's recursion limit
    got = [(await within(runtime.receive("self"))).n for _ in range(2001)]
    assert got == list(range(2000, -1, -1))


async def test_two_bodies_sending_to_each_other_take_turns(runtime: RingKernelRuntime) -> None:
    async def player(me: str, other: str) -> Any:
        async def body(ctx: KernelContext[Num, Num]) -> None:
            while not ctx.should_terminate:
                m = await ctx.receive()
                await ctx.send(Num(n=m.n))
                if m.n > 0:
                    await runtime.send(other, Num(n=m.n - 1))

        return body

    await runtime.launch("ping", func=await player("ping", "pong"))
    await runtime.launch("pong", func=await player("pong", "ping"))
    await runtime.activate("ping")
    await runtime.activate("pong")
    await runtime.send("ping", Num(n=100))
    pings = [(await within(runtime.receive("ping"))).n for _ in range(51)]
    pongs = [(await within(runtime.receive("pong"))).n for _ in range(50)]
    assert pings == list(range(100, -1, -2)) and pongs == list(range(99, 0, -2))


async def test_a_chain_longer_than_the_inline_depth_still_delivers_everything(
    runtime: RingKernelRuntime,
) -> None:
    stages = 16

    def stage(i: int) -> Any:
        async def body(ctx: KernelContext[Num, Num]) -> None:
            while not ctx.should_terminate:
                m = await ctx.receive()
                if i + 1 < stages:
                    await runtime.send(f"s{i + 1}", Num(n=m.n + 1))
                else:
                    await ctx.send(Num(n=m.n + 1))

        return body

    for i in range(stages):
        await runtime.launch(f"s{i}", func=stage(i))
        await runtime.activate(f"s{i}")
    for k in range(3):
        await runtime.send("s0", Num(n=k))
        assert (await within(runtime.receive(f"s{stages - 1}"))).n == k + stages


async def test_inline_runs_leave_the_event_loop_turns_for_other_tasks(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("e", func=echo)
    await runtime.activate("e")
    turns = 0
    stop = False

    async def ticker() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    messages = INLINE_BUDGET * 20
    for i in range(messages):
        await runtime.send("e", Num(n=i))
        assert (await within(runtime.receive("e"))).n == i
    stop = True
    await within(tick)
    assert turns >= 10  # the loop turned at least once per budget of inline runs


async def test_a_body_awaiting_something_else_carries_on_in_its_task(
    runtime: RingKernelRuntime,
) -> None:
    async def slow_echo(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            await ctx.send(m)

    await runtime.launch("s", func=slow_echo)
    await runtime.activate("s")
    await runtime.send_many("s", [Num(n=i) for i in range(5)])
    for i in range(5, 8):
        await runtime.send("s", Num(n=i))
    got = [(await within(runtime.receive("s"))).n for _ in range(8)]
    assert got == list(range(8))


async def test_receive_from_another_task_of_the_body_still_works(
    runtime: RingKernelRuntime,
) -> None:
    async def body(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            m = await asyncio.create_task(ctx.receive())  # not the body's own task
            await ctx.send(m)

    await runtime.launch("o", func=body)
    await runtime.activate("o")
    for i in range(3):
        await runtime.send("o", Num(n=i))
        assert (await within(runtime.receive("o"))).n == i


async def test_a_receive_timeout_wakes_a_parked_body(runtime: RingKernelRuntime) -> None:
    errors: list[str] = []

    async def body(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            try:
                await ctx.send(await ctx.receive(timeout=0.01))
            except ReceiveTimeoutError as exc:
                errors.append(str(exc))
                await ctx.send(Num(n=-1))

    await runtime.launch("w", func=body)
    await runtime.activate("w")
    assert (await within(runtime.receive("w"))).n == -1
    await runtime.send("w", Num(n=7))  # a message before the deadline: the timer is cancelled
    assert (await within(runtime.receive("w"))).n == 7
    assert errors[0] == "ring kernel 'w' received no message within 0.01 s"


async def test_a_body_that_raises_inline_fails_its_kernel(runtime: RingKernelRuntime) -> None:
    async def body(ctx: KernelContext[Any, Any]) -> None:
        m = await ctx.receive()
        raise ValueError(f"bad {m.n}")

    await runtime.launch("f", func=body)
    await runtime.activate("f")
    await asyncio.sleep(0)
    assert await runtime.send("f", Num(n=3)) is True
    with pytest.raises(KernelFailedError, match=r"ring kernel 'f' failed: ValueError: bad 3"):
        await within(runtime.receive("f"))
    assert runtime.state("f") is KernelState.FAILED


async def test_a_batch_sent_to_a_parked_body_is_taken_in_priority_order(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("p", func=echo)
    await runtime.activate("p")
    await asyncio.sleep(0)
    assert await runtime.send_many("p", [Num(n=i, priority=10 * i) for i in range(4)]) == 4
    got = [m.n for m in await within(runtime.receive_many("p"))]
    # the batch is queued, then the body takes it from the inbox by priority
    assert got == [3, 2, 1, 0]


async def test_deactivate_parks_the_body_and_activate_hands_it_the_queue(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("d", func=echo)
    await runtime.activate("d")
    await runtime.deactivate("d")
    for i in range(3):
        await runtime.send("d", Num(n=i))
    assert runtime.telemetry("d").inbox_depth == 3
    await runtime.activate("d")
    assert [(await within(runtime.receive("d"))).n for _ in range(3)] == [0, 1, 2]


# ---------------------------------------------------------------- cancellation


async def test_terminate_cancels_a_body_waiting_after_an_inline_run(
    runtime: RingKernelRuntime,
) -> None:
    cancelled: list[bool] = []

    async def body(ctx: KernelContext[Any, Any]) -> None:
        await ctx.receive()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    await runtime.launch("c", func=body)
    await runtime.activate("c")
    await asyncio.sleep(0)
    await runtime.send("c", Num(n=1))
    await until(lambda: runtime.telemetry("c").inbox_depth == 0)  # taken: now it sleeps
    result = await within(runtime.terminate("c", timeout=0.01))
    assert result.graceful is False and cancelled == [True]
    assert runtime.state("c") is KernelState.TERMINATED


async def swallower(ctx: KernelContext[Any, Any]) -> None:
    """A body that catches CancelledError and goes on (what a body must not do)."""
    while True:
        try:
            await ctx.receive()
        except BaseException:  # TerminationRequested and CancelledError alike
            pass
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


async def test_terminate_closes_a_body_that_swallows_cancellation(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("sw", func=swallower)
    await runtime.activate("sw")
    await runtime.send("sw", Num(n=1))
    result = await within(runtime.terminate("sw", timeout=0.01))
    assert result.graceful is False
    t = runtime.telemetry("sw")
    assert t.state == "TERMINATED" and t.errors == 1
    assert t.last_error is not None
    assert "went on after it was cancelled (its body caught CancelledError)" in t.last_error
    assert any("forced" in what for _, what in t.events)


def test_asyncio_run_returns_with_a_body_that_swallows_cancellation() -> None:
    async def main() -> None:
        rt = RingKernelRuntime()
        await rt.launch("sw", func=swallower)
        await rt.activate("sw")
        await rt.send("sw", Num(n=1))
        # returns without shutting the runtime down: asyncio.run cancels the body

    done = threading.Event()

    def run() -> None:
        asyncio.run(main())
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert done.is_set(), "asyncio.run hung on a body that swallows CancelledError"


async def test_a_bodys_bad_timeout_is_refused_in_the_body(runtime: RingKernelRuntime) -> None:
    errors: list[str] = []

    async def body(ctx: KernelContext[Any, Any]) -> None:
        for call in (
            lambda: ctx.receive(timeout=float("nan")),
            lambda: ctx.receive_many(4, timeout=-1),
            lambda: ctx.send_many([], timeout="1"),
            lambda: ctx.wait_active(timeout=True),
        ):
            try:
                await call()
            except InvalidArgumentError as exc:
                errors.append(str(exc).split(":")[0])
        await ctx.send(Num(n=len(errors)))

    await runtime.launch("b", func=body)
    await runtime.send("b", Num(n=0))  # queued: receive would not have to wait
    await runtime.activate("b")
    assert (await within(runtime.receive("b"))).n == 4
    assert errors == [
        "ctx.receive(timeout=nan)",
        "ctx.receive_many(timeout=-1)",
        "ctx.send_many(timeout='1')",
        "ctx.wait_active(timeout=True)",
    ]


async def test_a_body_calling_another_kernel_gets_its_reply(runtime: RingKernelRuntime) -> None:
    async def doubler(ctx: KernelContext[Num, Num]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            await ctx.send(m.reply(n=m.n * 2))

    async def front(ctx: KernelContext[Num, Num]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            # runs inline from the caller's receive; its call waits through its own task
            doubled = await runtime.call("double", Num(n=m.n), timeout=5)
            await ctx.send(Num(n=doubled.n + 1))

    await runtime.launch("double", func=doubler)
    await runtime.launch("front", func=front)
    await runtime.activate("double")
    await runtime.activate("front")
    for i in range(3):
        await runtime.send("front", Num(n=i))
        assert (await within(runtime.receive("front"))).n == 2 * i + 1
    assert (await within(runtime.call("front", Num(n=10)))).n == 21
