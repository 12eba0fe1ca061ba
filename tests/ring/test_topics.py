"""Topics: subscribes_to, subscribe/unsubscribe, publish from the host and from a body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pydotcompute import (
    DeadLetterReason,
    InvalidArgumentError,
    KernelContext,
    KernelStateError,
    MessageTypeError,
    QueueFullError,
    ReceiveTimeoutError,
    RingKernelRuntime,
    message,
    ring_kernel,
)
from tests.conftest import until, within


@message
class Alert:
    level: int


@message
class Other:
    text: str


async def relay(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def alerts_only(ctx: KernelContext[Alert, Alert]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def start(runtime: RingKernelRuntime, *kernels: tuple[str, Any, dict[str, Any]]) -> None:
    for kid, func, opts in kernels:
        await within(runtime.launch(kid, func=func, **opts))
    for kid, _, _ in kernels:
        await within(runtime.activate(kid))


async def test_every_subscriber_gets_its_own_copy(runtime: RingKernelRuntime) -> None:
    ring_kernel(kernel_id="pager", subscribes_to=["alerts"])(relay)
    ring_kernel(kernel_id="log", subscribes_to="alerts")(relay)
    await start(runtime, ("pager", None, {}), ("log", None, {}))
    sent = Alert(level=3)
    assert await within(runtime.publish("alerts", sent)) == 2
    a = await within(runtime.receive("pager"))
    b = await within(runtime.receive("log"))
    assert a.level == b.level == 3 and a is not b
    assert a.message_id == b.message_id == sent.message_id
    assert runtime.topics() == {"alerts": ("pager", "log")}
    assert runtime.telemetry("log").subscribes_to == ("alerts",)
    assert runtime.snapshot().as_dict()["topics"] == {"alerts": ["pager", "log"]}


async def test_subscribe_and_unsubscribe_at_run_time(runtime: RingKernelRuntime) -> None:
    await start(runtime, ("k", relay, {}))
    assert await within(runtime.publish("t", Alert(level=1))) == 0
    await within(runtime.subscribe("k", "t"))
    assert await within(runtime.publish("t", Alert(level=2))) == 1
    assert (await within(runtime.receive("k"))).level == 2
    await within(runtime.unsubscribe("k", "t"))
    assert await within(runtime.publish("t", Alert(level=3))) == 0
    with pytest.raises(InvalidArgumentError, match="'k' is not subscribed to topic 't'"):
        await runtime.unsubscribe("k", "t")
    with pytest.raises(InvalidArgumentError, match="topic='' must be a non-empty str"):
        await runtime.subscribe("k", "")


async def test_a_body_publishes_with_ctx_publish(runtime: RingKernelRuntime) -> None:
    async def watcher(ctx: KernelContext[Alert, Any]) -> None:
        while not ctx.should_terminate:
            a = await ctx.receive()
            if a.level > 2:
                await ctx.publish("pages", Other(text=f"level {a.level}"))

    await start(runtime, ("w", watcher, {}), ("pager", relay, {}))
    await within(runtime.subscribe("pager", "pages"))
    for level in (1, 5):
        await within(runtime.send("w", Alert(level=level)))
    assert (await within(runtime.receive("pager"))).text == "level 5"


async def test_each_subscriber_has_its_own_backpressure(runtime: RingKernelRuntime) -> None:
    await within(runtime.launch("small", func=relay, queue_size=1, backpressure="drop_newest"))
    await within(runtime.launch("big", func=relay, queue_size=8))
    for kid in ("small", "big"):
        await within(runtime.subscribe(kid, "t"))
    counts = [await within(runtime.publish("t", Alert(level=i))) for i in range(3)]
    assert counts == [2, 1, 1]
    assert runtime.telemetry("small").inbox_depth == 1
    assert runtime.telemetry("big").inbox_depth == 3
    assert [d.reason for d in runtime.dead_letters()] == [DeadLetterReason.DROP_NEWEST] * 2


async def test_a_reject_subscriber_raises_after_the_others_got_theirs(
    runtime: RingKernelRuntime,
) -> None:
    await within(runtime.launch("strict", func=relay, queue_size=1, backpressure="reject"))
    await within(runtime.launch("easy", func=relay))
    for kid in ("strict", "easy"):
        await within(runtime.subscribe(kid, "t"))
    await within(runtime.publish("t", Alert(level=1)))
    with pytest.raises(QueueFullError, match="inbox of ring kernel 'strict' is full"):
        await runtime.publish("t", Alert(level=2))
    assert runtime.telemetry("easy").inbox_depth == 2


async def test_a_subscriber_of_another_type_refuses_the_publish(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("a", alerts_only, {}), ("any", relay, {}))
    for kid in ("any", "a"):
        await within(runtime.subscribe(kid, "t"))
    with pytest.raises(
        MessageTypeError, match="topic 't': subscriber 'a' takes Alert messages, got a Other"
    ):
        await runtime.publish("t", Other(text="x"))
    assert runtime.telemetry("any").received == 0  # nobody got it


async def test_host_topic_receiver_awaits_and_iterates_with_timeouts(
    runtime: RingKernelRuntime,
) -> None:
    rx = runtime.topic_receiver("alerts")
    with pytest.raises(ReceiveTimeoutError, match="nothing published to topic 'alerts' within"):
        await rx.receive(timeout=0.01)
    for level in range(3):
        assert await within(runtime.publish("alerts", Alert(level=level))) == 1
    assert (await within(rx.receive(timeout=1))).level == 0
    got = [a.level async for a in rx.iter(timeout=0.01)]
    assert got == [1, 2]
    rx.close()
    assert runtime.topics() == {}
    with pytest.raises(KernelStateError, match="the receiver of topic 'alerts' is closed"):
        await rx.receive()


async def test_topic_receiver_drops_oldest_into_dead_letters(runtime: RingKernelRuntime) -> None:
    with runtime.topic_receiver("t", capacity=2) as rx:
        for level in range(4):
            await within(runtime.publish("t", Alert(level=level)))
        assert [a.level for a in await within(rx.receive_many())] == [2, 3]
        assert rx.dropped == 2
    letters = runtime.dead_letters()
    assert [(d.reason, d.topic, d.kernel_id) for d in letters] == [
        (DeadLetterReason.DROP_OLDEST, "t", None)
    ] * 2
    assert runtime.topics() == {}


async def test_unheard_topic_is_a_dead_letter_when_asked() -> None:
    async with RingKernelRuntime(unheard_topics="dead_letter") as rt:
        assert await within(rt.publish("nobody", Alert(level=1))) == 0
        [letter] = rt.dead_letters()
        assert (letter.reason, letter.topic) == (DeadLetterReason.NO_SUBSCRIBER, "nobody")
    with pytest.raises(InvalidArgumentError, match="unheard_topics='loud'"):
        RingKernelRuntime(unheard_topics="loud")


async def test_publish_to_a_terminated_subscriber_is_a_dead_letter(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("k", relay, {}))
    await within(runtime.subscribe("k", "t"))
    await within(runtime.terminate("k"))
    assert await within(runtime.publish("t", Alert(level=1))) == 0
    await within(until(lambda: len(runtime.dead_letters()) == 1))
    assert runtime.dead_letters()[0].reason is DeadLetterReason.TERMINATED


async def test_shutdown_closes_host_receivers() -> None:
    rt = RingKernelRuntime()
    async with rt:
        rx = rt.topic_receiver("t")
        await within(rt.publish("t", Alert(level=1)))
        waiting = asyncio.ensure_future(rx.receive())
        assert (await within(waiting)).level == 1
        waiting = asyncio.ensure_future(rx.receive())
        await asyncio.sleep(0)
    with pytest.raises(KernelStateError, match="the receiver of topic 't' is closed"):
        await within(waiting)
    assert rx.closed
