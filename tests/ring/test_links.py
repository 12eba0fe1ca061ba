"""Links between kernels: outputs_to, link/unlink, send_to, backpressure and lifecycle, call."""

from __future__ import annotations

from typing import Any

import pytest

from pydotcompute import (
    DeadLetterReason,
    InvalidArgumentError,
    KernelContext,
    KernelNotFoundError,
    KernelState,
    MessageTypeError,
    OperationTimeoutError,
    QueueFullError,
    RingKernelRuntime,
    message,
    ring_kernel,
)
from tests.conftest import until, within


@message
class Reading:
    value: float


@message
class Scored:
    value: float
    z: float


@message
class Alert:
    text: str


async def normalize(ctx: KernelContext[Reading, Scored]) -> None:
    while not ctx.should_terminate:
        r = await ctx.receive()
        await ctx.send(Scored(value=r.value, z=r.value / 2))


async def detect(ctx: KernelContext[Scored, Alert]) -> None:
    while not ctx.should_terminate:
        s = await ctx.receive()
        await ctx.send(Alert(text=f"z={s.z}"))


async def relay(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def start(runtime: RingKernelRuntime, *kernels: tuple[str, Any, dict[str, Any]]) -> None:
    for kid, func, opts in kernels:
        await within(runtime.launch(kid, func=func, **opts))
    for kid, _, _ in kernels:
        await within(runtime.activate(kid))


# ---------------------------------------------------------------- wiring


async def test_outputs_to_sends_straight_into_the_target(runtime: RingKernelRuntime) -> None:
    ring_kernel(kernel_id="detector")(detect)
    ring_kernel(kernel_id="normalizer", outputs_to="detector")(normalize)
    await start(runtime, ("normalizer", None, {}), ("detector", None, {}))
    await within(runtime.send("normalizer", Reading(value=4.0)))
    assert (await within(runtime.receive("detector"))).text == "z=2.0"
    assert runtime.telemetry("normalizer").outbox_depth == 0
    assert runtime.links() == {"normalizer": ("detector",)}
    t = runtime.telemetry("normalizer")
    assert t.outputs_to == ("detector",) and t.as_dict()["outputs_to"] == ["detector"]


async def test_link_and_unlink_at_run_time(runtime: RingKernelRuntime) -> None:
    await start(runtime, ("n", normalize, {}), ("d", detect, {}))
    await within(runtime.link("n", "d"))
    await within(runtime.send("n", Reading(value=2.0)))
    assert (await within(runtime.receive("d"))).text == "z=1.0"
    await within(runtime.unlink("n", "d"))
    assert runtime.links() == {}
    await within(runtime.send("n", Reading(value=6.0)))
    assert (await within(runtime.receive("n"))).z == 3.0  # back to its own outbox
    with pytest.raises(InvalidArgumentError, match=r"'n' is not linked to 'd' \(its links"):
        await runtime.unlink("n", "d")


async def test_registered_kernels_can_be_linked_before_launch(runtime: RingKernelRuntime) -> None:
    ring_kernel(kernel_id="n")(normalize)
    ring_kernel(kernel_id="d")(detect)
    await within(runtime.link("n", "d"))
    await within(runtime.launch("n"))
    await within(runtime.activate("n"))
    await within(runtime.send("n", Reading(value=2.0)))  # d is not launched yet
    await within(until(lambda: len(runtime.dead_letters()) == 1))
    assert runtime.dead_letters()[0].reason is DeadLetterReason.NOT_LAUNCHED
    await start(runtime, ("d", None, {}))
    await within(runtime.send("n", Reading(value=4.0)))
    assert (await within(runtime.receive("d"))).text == "z=2.0"


async def test_link_type_mismatch_names_both_types_and_changes_nothing(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("n", normalize, {}), ("d", detect, {}), ("n2", normalize, {}))
    with pytest.raises(
        MessageTypeError,
        match=r"cannot link 'd' -> 'n': 'd' sends Alert messages but 'n' takes Reading",
    ):
        await runtime.link("d", "n")
    with pytest.raises(MessageTypeError, match="sends Scored messages but 'n2' takes Reading"):
        await runtime.link("n", ["d", "n2"])  # the good half is not applied either
    assert runtime.links() == {}


async def test_link_to_unknown_kernel_is_refused(runtime: RingKernelRuntime) -> None:
    await start(runtime, ("n", normalize, {}))
    with pytest.raises(KernelNotFoundError, match="no ring kernel 'nope' to link to"):
        await runtime.link("n", "nope")
    with pytest.raises(InvalidArgumentError, match="cannot link ring kernel 'n' to itself"):
        await runtime.link("n", "n")


async def test_declared_link_of_wrong_type_refuses_the_launch(
    runtime: RingKernelRuntime,
) -> None:
    ring_kernel(kernel_id="n2")(normalize)
    ring_kernel(kernel_id="d2", outputs_to="n2")(detect)
    with pytest.raises(MessageTypeError, match="'d2' sends Alert messages but 'n2' takes Reading"):
        await runtime.launch("d2")
    assert runtime.kernels == ()


async def test_untyped_source_is_checked_per_message(runtime: RingKernelRuntime) -> None:
    caught: list[BaseException] = []

    async def sloppy(ctx: KernelContext[Any, Any]) -> None:
        while not ctx.should_terminate:
            m = await ctx.receive()
            try:
                await ctx.send(m)
            except MessageTypeError as e:
                caught.append(e)

    await start(runtime, ("s", sloppy, {}), ("d", detect, {}))
    await within(runtime.link("s", "d"))
    await within(runtime.send("s", Reading(value=1.0)))
    await within(until(lambda: caught))
    assert "sent a Reading to 'd', which takes Scored messages" in str(caught[0])
    await within(runtime.send("s", Scored(value=1.0, z=0.5)))
    assert (await within(runtime.receive("d"))).text == "z=0.5"


async def test_send_to_addresses_any_kernel_by_id(runtime: RingKernelRuntime) -> None:
    async def router(ctx: KernelContext[Reading, Any]) -> None:
        while not ctx.should_terminate:
            r = await ctx.receive()
            target = "hi" if r.value > 0 else "lo"
            assert await ctx.send_to(target, Scored(value=r.value, z=0.0)) is True

    await start(runtime, ("r", router, {}), ("hi", relay, {}), ("lo", relay, {}))
    await within(runtime.send("r", Reading(value=1.0)))
    await within(runtime.send("r", Reading(value=-1.0)))
    assert (await within(runtime.receive("hi"))).value == 1.0
    assert (await within(runtime.receive("lo"))).value == -1.0


async def test_send_to_a_kernel_of_another_type_raises_in_the_sender(
    runtime: RingKernelRuntime,
) -> None:
    caught: list[BaseException] = []

    async def wrong(ctx: KernelContext[Any, Any]) -> None:
        await ctx.receive()
        try:
            await ctx.send_to("d", Reading(value=1.0))
        except MessageTypeError as e:
            caught.append(e)

    await start(runtime, ("w", wrong, {}), ("d", detect, {}))
    await within(runtime.send("w", Reading(value=1.0)))
    await within(until(lambda: caught))
    assert "ring kernel 'w' sent a Reading to 'd', which takes Scored" in str(caught[0])


async def test_fan_out_and_fan_in(runtime: RingKernelRuntime) -> None:
    await start(
        runtime, ("n", normalize, {}), ("a", relay, {}), ("b", relay, {}), ("sink", relay, {})
    )
    await within(runtime.link("n", ["a", "b"]))  # fan-out
    await within(runtime.link("a", "sink"))  # fan-in
    await within(runtime.link("b", "sink"))
    await within(runtime.send("n", Reading(value=8.0)))
    got = [await within(runtime.receive("sink")) for _ in range(2)]
    assert [m.z for m in got] == [4.0, 4.0]


# ---------------------------------------------------------------- backpressure


async def test_block_downstream_slows_the_sender_and_loses_nothing(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("n", normalize, {}))
    await within(runtime.launch("d", func=detect, queue_size=2, backpressure="block"))
    await within(runtime.link("n", "d"))
    for i in range(5):
        await within(runtime.send("n", Reading(value=float(i))))
    # Two fit downstream; the normalizer waits with the third, two more wait in its inbox.
    await within(until(lambda: runtime.telemetry("d").inbox_depth == 2))
    await within(until(lambda: runtime.telemetry("n").inbox_depth == 2))
    await within(runtime.activate("d"))
    got = [(await within(runtime.receive("d"))).text for _ in range(5)]
    assert got == [f"z={i / 2}" for i in range(5)]
    assert runtime.dead_letters() == []


async def test_reject_downstream_raises_in_the_senders_body(runtime: RingKernelRuntime) -> None:
    caught: list[BaseException] = []

    async def careful(ctx: KernelContext[Reading, Scored]) -> None:
        while not ctx.should_terminate:
            r = await ctx.receive()
            try:
                await ctx.send(Scored(value=r.value, z=0.0))
            except QueueFullError as e:
                caught.append(e)

    await start(runtime, ("c", careful, {}))
    await within(runtime.launch("d", func=detect, queue_size=1, backpressure="reject"))
    await within(runtime.link("c", "d"))
    await within(runtime.send("c", Reading(value=1.0)))
    await within(runtime.send("c", Reading(value=2.0)))
    await within(until(lambda: caught))
    assert "inbox of ring kernel 'd' is full (1 messages)" in str(caught[0])
    assert runtime.telemetry("d").rejected == 1


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_drops_downstream_are_counted_and_become_dead_letters(
    runtime: RingKernelRuntime, policy: str
) -> None:
    await start(runtime, ("n", normalize, {}))
    await within(runtime.launch("d", func=detect, queue_size=1, backpressure=policy))
    await within(runtime.link("n", "d"))
    for i in range(3):
        await within(runtime.send("n", Reading(value=float(i))))
    await within(until(lambda: runtime.telemetry("n").processed == 3))
    t = runtime.telemetry("d")
    assert t.dropped == 2 and t.dead_letters == 2
    letters = runtime.dead_letters()
    assert [d.reason for d in letters] == [DeadLetterReason(policy)] * 2
    assert {d.kernel_id for d in letters} == {"d"}
    kept = 2.0 if policy == "drop_oldest" else 0.0
    assert sorted(d.message.value for d in letters) == sorted({0.0, 1.0, 2.0} - {kept})


async def test_fan_out_serves_every_target_before_raising_a_reject(
    runtime: RingKernelRuntime,
) -> None:
    caught: list[BaseException] = []

    async def careful(ctx: KernelContext[Reading, Scored]) -> None:
        while not ctx.should_terminate:
            r = await ctx.receive()
            try:
                await ctx.send(Scored(value=r.value, z=0.0))
            except QueueFullError as e:
                caught.append(e)

    await start(runtime, ("c", careful, {}))
    await within(runtime.launch("strict", func=detect, queue_size=1, backpressure="reject"))
    await within(runtime.launch("easy", func=detect))
    await within(runtime.link("c", ["strict", "easy"]))
    for v in (1.0, 2.0):
        await within(runtime.send("c", Reading(value=v)))
    await within(until(lambda: caught))
    assert "inbox of ring kernel 'strict' is full" in str(caught[0])
    assert runtime.telemetry("easy").inbox_depth == 2


# ---------------------------------------------------------------- lifecycle


async def test_deactivated_downstream_queues(runtime: RingKernelRuntime) -> None:
    await start(runtime, ("n", normalize, {}), ("d", detect, {}))
    await within(runtime.link("n", "d"))
    await within(runtime.deactivate("d"))
    for i in range(3):
        await within(runtime.send("n", Reading(value=float(i))))
    await within(until(lambda: runtime.telemetry("d").inbox_depth == 3))
    await within(runtime.activate("d"))
    assert len(await within(runtime.receive_many("d", 3))) >= 1
    await within(until(lambda: runtime.telemetry("d").processed == 3))


async def test_terminated_downstream_turns_messages_into_dead_letters(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("n", normalize, {}), ("d", detect, {}))
    await within(runtime.link("n", "d"))
    await within(runtime.terminate("d"))
    await within(runtime.send("n", Reading(value=1.0)))
    await within(until(lambda: runtime.telemetry("n").processed == 1))
    assert runtime.state("n") is KernelState.ACTIVE  # nothing raised in the sender
    [letter] = runtime.dead_letters()
    assert letter.reason is DeadLetterReason.TERMINATED
    assert (letter.kernel_id, letter.sender) == ("d", "n")
    assert letter.message.value == 1.0


async def test_sender_blocked_on_a_terminated_target_gets_a_dead_letter(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("n", normalize, {}))
    await within(runtime.launch("d", func=detect, queue_size=1))
    await within(runtime.link("n", "d"))
    await within(runtime.send("n", Reading(value=1.0)))
    await within(runtime.send("n", Reading(value=2.0)))  # waits: d's inbox is full
    await within(until(lambda: runtime.telemetry("n").inbox_depth == 0))
    await within(runtime.terminate("d"))
    await within(until(lambda: len(runtime.dead_letters()) == 2))
    reasons = sorted(d.reason.value for d in runtime.dead_letters())
    assert reasons == ["discarded", "terminated"]
    assert runtime.state("n") is KernelState.ACTIVE


async def test_relaunched_target_takes_linked_messages_again(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("n", normalize, {}), ("d", detect, {}))
    await within(runtime.link("n", "d"))
    await within(runtime.send("n", Reading(value=2.0)))  # the link now knows this d
    assert (await within(runtime.receive("d"))).text == "z=1.0"
    await within(runtime.terminate("d"))
    runtime.forget("d")
    await start(runtime, ("d", detect, {}))
    await within(runtime.send("n", Reading(value=4.0)))
    assert (await within(runtime.receive("d"))).text == "z=2.0"
    assert not runtime.dead_letters()


# ---------------------------------------------------------------- call


async def test_call_answers_an_echo_a_fresh_reply_and_reply(runtime: RingKernelRuntime) -> None:
    async def replier(ctx: KernelContext[Reading, Any]) -> None:
        while not ctx.should_terminate:
            r = await ctx.receive()
            await ctx.send(r.reply(Scored, value=r.value, z=1.0))

    await start(runtime, ("echo", relay, {}), ("fresh", normalize, {}), ("rep", replier, {}))
    req = Reading(value=3.0)
    assert await within(runtime.call("echo", req, timeout=2)) is req
    assert (await within(runtime.call("fresh", Reading(value=3.0), timeout=2))).z == 1.5
    assert (await within(runtime.call("rep", Reading(value=3.0), timeout=2))).z == 1.0


async def test_call_through_links_awaits_the_tails_reply(runtime: RingKernelRuntime) -> None:
    async def scale(ctx: KernelContext[Scored, Scored]) -> None:
        while not ctx.should_terminate:
            s = await ctx.receive()
            await ctx.send(Scored(value=s.value, z=s.z * 10))

    await start(runtime, ("n", normalize, {}), ("s", scale, {}), ("d", detect, {}))
    await within(runtime.link("n", "s"))
    await within(runtime.link("s", "d"))
    await within(runtime.send("n", Reading(value=2.0)))  # an earlier, uncorrelated message
    reply = await within(runtime.call("n", Reading(value=4.0), timeout=2))
    assert reply.text == "z=20.0"
    assert (await within(runtime.receive("d"))).text == "z=10.0"  # still receivable


async def test_call_through_a_link_to_an_echo(runtime: RingKernelRuntime) -> None:
    await start(runtime, ("a", relay, {}), ("b", relay, {}))
    await within(runtime.link("a", "b"))
    req = Reading(value=1.0)
    assert await within(runtime.call("a", req, timeout=2)) is req


async def test_call_through_links_times_out_when_the_tail_is_gone(
    runtime: RingKernelRuntime,
) -> None:
    await start(runtime, ("n", normalize, {}), ("d", detect, {}))
    await within(runtime.link("n", "d"))
    await within(runtime.terminate("d"))
    with pytest.raises(OperationTimeoutError, match="no reply through the links of ring kernel"):
        await runtime.call("n", Reading(value=1.0), timeout=0.05)
    assert runtime._routing.calls == {}
