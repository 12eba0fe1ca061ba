"""RingKernelRuntime: lifecycle verbs, messaging verbs, call correlation, priority."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pydotcompute import (
    InvalidArgumentError,
    KernelContext,
    KernelFailedError,
    KernelNotFoundError,
    KernelState,
    KernelStateError,
    MessageTypeError,
    OperationTimeoutError,
    QueueFullError,
    ReceiveTimeoutError,
    RingKernelRuntime,
    message,
    ring_kernel,
)
from tests.conftest import until, within


@message
class Num:
    value: float


@message
class Out:
    value: float


async def doubler(ctx: KernelContext[Num, Out]) -> None:
    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send(Out(value=m.value * 2))


async def echo(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def test_two_phase_launch_then_activate(runtime: RingKernelRuntime) -> None:
    result = await within(runtime.launch("d", func=doubler))
    assert result.state is KernelState.LAUNCHED and result.backend == "host"
    assert runtime.state("d") is KernelState.LAUNCHED and runtime.kernels == ("d",)
    await within(runtime.send("d", Num(value=1)))  # queued while launched
    with pytest.raises(ReceiveTimeoutError, match="no message from ring kernel 'd' within"):
        await runtime.receive("d", timeout=0.05)
    await within(runtime.activate("d"))
    assert (await within(runtime.receive("d"))).value == 2.0
    assert runtime.state("d") is KernelState.ACTIVE


async def test_registered_kernel_is_created_until_launched(runtime: RingKernelRuntime) -> None:
    @ring_kernel(kernel_id="reg")
    async def reg(ctx: Any) -> None:
        await ctx.receive()

    assert runtime.state("reg") is KernelState.CREATED
    with pytest.raises(KernelStateError, match=r"'reg' is CREATED .*launch\('reg'\) first"):
        await runtime.activate("reg")
    with pytest.raises(KernelNotFoundError, match="no ring kernel 'nope'"):
        runtime.state("nope")
    with pytest.raises(KernelNotFoundError, match="decorate its body with @ring_kernel"):
        await runtime.launch("nope")


async def test_illegal_transition_says_state_and_what_is_allowed(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("d", func=doubler)
    with pytest.raises(
        KernelStateError,
        match=r"cannot deactivate ring kernel 'd': it is LAUNCHED; allowed now: activate, "
        r"relaunch, terminate",
    ):
        await runtime.deactivate("d")
    with pytest.raises(KernelStateError, match="already launched"):
        await runtime.launch("d", func=doubler)


async def test_wrong_input_type_is_refused_at_the_sender(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=doubler)
    with pytest.raises(MessageTypeError, match=r"'d' takes Num messages, got an Out; send a Num"):
        await runtime.send("d", Out(value=1))
    with pytest.raises(MessageTypeError, match="got an int"):
        await runtime.send_many("d", [Num(value=1), 3])
    assert runtime.telemetry("d").inbox_depth == 0  # nothing of the batch was queued


async def test_input_type_from_option_overrides(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo, input_type=Out)
    with pytest.raises(MessageTypeError):
        await runtime.send("e", Num(value=1))


async def test_options_tell_what_a_launched_kernel_runs_with(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=doubler, queue_size=8)
    await runtime.launch("e", func=echo, input_type=Out)
    assert runtime.options("d").input_type is Num and runtime.options("d").inbox_capacity == 8
    assert runtime.options("e").input_type is Out
    with pytest.raises(KernelNotFoundError, match="no ring kernel 'nope'"):
        runtime.options("nope")


async def test_deactivate_parks_receive_and_loses_nothing(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=doubler)
    await runtime.activate("d")
    await runtime.send("d", Num(value=1))
    assert (await within(runtime.receive("d"))).value == 2
    await runtime.deactivate("d")
    for i in range(5):
        await runtime.send("d", Num(value=i))
    with pytest.raises(ReceiveTimeoutError):
        await runtime.receive("d", timeout=0.05)
    assert runtime.telemetry("d").inbox_depth == 5
    await runtime.activate("d")
    got = [(await within(runtime.receive("d"))).value for _ in range(5)]
    assert got == [0, 2, 4, 6, 8]


async def test_priority_order_then_fifo_within_priority(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo)
    order = [(10, "a"), (200, "b"), (10, "c"), (128, "d"), (200, "e"), (0, "f")]
    for p, name in order:
        await runtime.send("e", Num(value=ord(name), priority=p))
    await runtime.activate("e")
    got = [chr(int((await within(runtime.receive("e"))).value)) for _ in order]
    assert got == ["b", "e", "d", "a", "c", "f"]


async def test_send_many_receive_many_keep_order(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo, queue_size=64)
    await runtime.activate("e")
    msgs = [Num(value=i) for i in range(50)]
    assert await within(runtime.send_many("e", msgs)) == 50
    got: list[Any] = []
    while len(got) < 50:
        got += await within(runtime.receive_many("e", max_count=7))
    assert [m.value for m in got] == list(range(50))
    assert await runtime.send_many("e", []) == 0


async def test_send_many_waits_for_space_under_block(runtime: RingKernelRuntime) -> None:
    async def batch_echo(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            await ctx.send_many(await ctx.receive_many(3))

    await runtime.launch("b", func=batch_echo, queue_size=4)
    await runtime.activate("b")
    sender = asyncio.create_task(runtime.send_many("b", [Num(value=i) for i in range(40)]))
    got: list[Any] = []
    while len(got) < 40:
        got += await within(runtime.receive_many("b"))
    assert await within(sender) == 40
    assert [m.value for m in got] == list(range(40))


async def test_call_returns_the_correlated_reply(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=doubler)
    await runtime.activate("d")
    await runtime.send("d", Num(value=100))  # an unrelated reply will be waiting
    await until(lambda: runtime.telemetry("d").outbox_depth == 1)
    req = Num(value=4)
    reply = await within(runtime.call("d", req, timeout=2))
    assert reply.value == 8 and reply.correlation_id == req.message_id
    assert (await within(runtime.receive("d"))).value == 200  # still receivable


async def test_send_and_send_to_correlate_fresh_messages_but_not_other_objects(
    runtime: RingKernelRuntime,
) -> None:
    class Plain:  # not a message: send never writes a correlation id into it
        pass

    async def relay(ctx: KernelContext[Num, Any]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            await ctx.send(Plain() if m.value < 0 else Out(value=m.value))
            await ctx.send_to("sink", Num(value=m.value))

    await runtime.launch("sink", func=echo)
    await runtime.launch("r", func=relay)
    for kid in ("sink", "r"):
        await runtime.activate(kid)
    req, neg = Num(value=1), Num(value=-1)
    await runtime.send("r", req)
    await runtime.send("r", neg)
    out = await within(runtime.receive("r"))
    assert out.correlation_id == req.message_id
    assert not hasattr(await within(runtime.receive("r")), "correlation_id")
    forwarded = [await within(runtime.receive("sink")) for _ in range(2)]
    assert [m.correlation_id for m in forwarded] == [req.message_id, neg.message_id]


async def test_call_works_with_reply_helper_and_times_out(runtime: RingKernelRuntime) -> None:
    async def replier(ctx: KernelContext[Num, Any]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            if m.value >= 0:
                await ctx.send(m.reply(Out, value=-m.value))

    await runtime.launch("r", func=replier)
    await runtime.activate("r")
    assert (await within(runtime.call("r", Num(value=3), timeout=2))).value == -3
    with pytest.raises(OperationTimeoutError, match="no reply from ring kernel 'r' to Num"):
        await runtime.call("r", Num(value=-1), timeout=0.05)
    with pytest.raises(MessageTypeError, match="call\\(\\) needs a @message instance"):
        await runtime.call("r", 5)


async def test_leaving_the_context_terminates_every_kernel() -> None:
    async with asyncio.timeout(10):
        async with RingKernelRuntime() as rt:
            await rt.launch("a", func=echo)
            await rt.launch("b", func=echo)
            await rt.activate("b")
        assert rt.state("a") is KernelState.TERMINATED
        assert rt.state("b") is KernelState.TERMINATED
        assert rt.closed
        with pytest.raises(KernelStateError, match="was shut down"):
            await rt.launch("c", func=echo)


async def test_relaunch_keeps_queued_messages_and_history(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=doubler)
    await runtime.activate("d")
    await runtime.send("d", Num(value=1))
    assert (await within(runtime.receive("d"))).value == 2
    await runtime.deactivate("d")
    for i in range(3):
        await runtime.send("d", Num(value=i))

    async def tripler(ctx: KernelContext[Num, Out]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            await ctx.send(Out(value=m.value * 3))

    result = await within(runtime.relaunch("d", tripler))
    assert result.state is KernelState.DEACTIVATED
    await runtime.activate("d")
    got = [(await within(runtime.receive("d"))).value for _ in range(3)]
    assert got == [0, 3, 6]
    t = runtime.telemetry("d")
    assert t.redeploys == 1 and t.processed == 4 and t.launches == 1
    assert any(what == "redeployed" for _, what in t.events)


async def test_snapshot_is_plain_data(runtime: RingKernelRuntime) -> None:
    import json

    await runtime.launch("d", func=doubler)
    snap = runtime.snapshot()
    assert set(snap.kernels) == {"d"} and snap.kernels["d"].state == "LAUNCHED"
    json.dumps(snap.as_dict())


async def test_batch_replies_reach_several_waiting_receivers_once_each(
    runtime: RingKernelRuntime,
) -> None:
    async def batch_echo(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            await ctx.send_many(await ctx.receive_many(16))

    await runtime.launch("b", func=batch_echo)
    await runtime.activate("b")
    waiters = [asyncio.create_task(runtime.receive("b")) for _ in range(3)]
    await asyncio.sleep(0)  # all three are now waiting on the outbox
    await runtime.send_many("b", [Num(value=i) for i in range(6)])
    first = sorted([(await within(w)).value for w in waiters])
    rest = [m.value for m in await within(runtime.receive_many("b"))]
    assert first == [0, 1, 2] and rest == [3, 4, 5]


async def test_receive_many_refuses_a_bad_max_count(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo)
    with pytest.raises(InvalidArgumentError, match=r"max_count=0 must be an int >= 1"):
        await runtime.receive_many("e", max_count=0)

    seen: list[BaseException] = []

    async def bad(ctx: KernelContext[Any, Any]) -> None:
        try:
            await ctx.receive_many(-3)
        except InvalidArgumentError as exc:
            seen.append(exc)

    await runtime.launch("bad", func=bad)
    await runtime.activate("bad")
    await until(lambda: bool(seen))
    assert "max_count=-3" in str(seen[0])


async def test_call_finds_replies_that_carry_an_explicit_correlation_id(
    runtime: RingKernelRuntime,
) -> None:
    held: list[Num] = []

    async def late(ctx: KernelContext[Num, Out]) -> None:
        # Holds the first request, answers the second, then the first: replies carry the
        # requests' message ids explicitly (as a decoded or forwarded reply would).
        while not ctx.should_terminate:
            m = await ctx.receive()
            held.append(m)
            if len(held) == 2:
                for req in reversed(held):
                    await ctx.send(Out(value=req.value * 10, correlation_id=req.message_id))
                held.clear()

    await runtime.launch("l", func=late)
    await runtime.activate("l")
    first = asyncio.create_task(runtime.call("l", Num(value=1), timeout=2))
    await asyncio.sleep(0)
    second = await within(runtime.call("l", Num(value=2), timeout=2))
    assert second.value == 20 and (await within(first)).value == 10
    assert runtime.telemetry("l").outbox_depth == 0


async def test_call_says_when_its_request_was_dropped(runtime: RingKernelRuntime) -> None:
    await runtime.launch("d", func=doubler, queue_size=1, backpressure="drop_newest")
    await runtime.send("d", Num(value=1))  # fills the inbox while LAUNCHED
    with pytest.raises(QueueFullError, match=r"request to ring kernel 'd' was dropped.*no reply"):
        await within(runtime.call("d", Num(value=2), timeout=1))


async def test_call_raises_when_the_kernel_fails_while_handling_it(
    runtime: RingKernelRuntime,
) -> None:
    async def failing(ctx: KernelContext[Num, Out]) -> None:
        m = await ctx.receive()
        await asyncio.sleep(0)  # fails later, from its task, while the caller waits
        raise ValueError(f"cannot handle {m.value}")

    await runtime.launch("f", func=failing)
    await runtime.activate("f")
    with pytest.raises(KernelFailedError, match=r"'f' failed: ValueError: cannot handle 5"):
        await within(runtime.call("f", Num(value=5), timeout=2))
    with pytest.raises(KernelFailedError, match="cannot handle 5"):
        await within(runtime.call("f", Num(value=6)))
