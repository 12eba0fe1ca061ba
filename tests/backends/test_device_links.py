"""Device kernels in links (through the host) and their state: read_state, write_state."""

from __future__ import annotations

from typing import Any

import pytest

from pydotcompute import (
    DeadLetterReason,
    KernelContext,
    KernelStateError,
    MessageTypeError,
    RingKernelRuntime,
    fixed_layout,
    ring_kernel,
)
from pydotcompute.backends.device._compile import find_cxx
from tests.backends.device_kernels import SEQUENTIAL, Done, Job, Tally, declare, declare_parallel
from tests.conftest import until, within

WAIT = 30.0  # a cold build of a device kernel may take several seconds


async def feed(ctx: KernelContext[Job, Job]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def collect(ctx: KernelContext[Done, Done]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def start(rt: RingKernelRuntime, *kernels: tuple[str, Any]) -> None:
    for kid, func in kernels:
        await within(rt.launch(kid, func=func), WAIT)
    for kid, _ in kernels:
        await within(rt.activate(kid))


def job(n: int, x: float = 1.0) -> Job:
    return Job(n=n, x=x, spin=0)


async def test_host_to_device_to_host_links(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await start(druntime, ("feeder", feed), ("worker", None), ("collector", collect))
    await within(druntime.link("feeder", "worker"))
    await within(druntime.link("worker", "collector"))
    for n in range(5):
        await within(druntime.send("feeder", job(n)))
    got = [await within(druntime.receive("collector"), WAIT) for _ in range(5)]
    assert [int(d.n) for d in got] == list(range(5))
    assert druntime.telemetry("worker").outputs_to == ("collector",)


async def test_call_through_a_device_kernel(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await start(druntime, ("feeder", feed), ("worker", None), ("collector", collect))
    await within(druntime.link("feeder", "worker"))
    await within(druntime.link("worker", "collector"))
    reply = await within(druntime.call("feeder", job(7, 2.0), timeout=WAIT), WAIT)
    assert (int(reply.n), float(reply.y)) == (7, 5.0)


async def test_device_link_type_is_checked_at_link_time(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await start(druntime, ("worker", None), ("feeder", feed))
    with pytest.raises(MessageTypeError, match="'worker' sends Done messages but 'feeder' takes"):
        await druntime.link("worker", "feeder")


async def test_unlinked_device_kernel_replies_to_its_outbox_again(
    druntime: RingKernelRuntime,
) -> None:
    declare("worker")
    await start(druntime, ("worker", None), ("collector", collect))
    await within(druntime.link("worker", "collector"))
    await within(druntime.send("worker", job(1)))
    assert int((await within(druntime.receive("collector"), WAIT)).n) == 1
    await within(druntime.unlink("worker"))
    await within(druntime.send("worker", job(2)))
    assert int((await within(druntime.receive("worker"), WAIT)).n) == 2


async def test_device_replies_to_a_terminated_target_are_dead_letters(
    druntime: RingKernelRuntime,
) -> None:
    declare("worker")
    await start(druntime, ("worker", None), ("collector", collect))
    await within(druntime.link("worker", "collector"))
    await within(druntime.terminate("collector"))
    await within(druntime.send("worker", job(3)))
    await within(until(lambda: len(druntime.dead_letters()) == 1, WAIT), WAIT)
    [letter] = druntime.dead_letters()
    assert (letter.reason, letter.kernel_id, letter.sender) == (
        DeadLetterReason.TERMINATED,
        "collector",
        "worker",
    )
    assert int(letter.message.n) == 3


async def test_device_terminate_discards_into_dead_letters(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await within(druntime.launch("worker"), WAIT)
    for n in range(3):
        await within(druntime.send("worker", job(n)))
    result = await within(druntime.terminate("worker"), WAIT)
    assert result.discarded == 3
    assert [int(d.message.n) for d in druntime.dead_letters()] == [0, 1, 2]
    assert {d.reason for d in druntime.dead_letters()} == {DeadLetterReason.DISCARDED}


# ---------------------------------------------------------------- state


async def test_read_state_while_active_and_after_terminate(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await start(druntime, ("worker", None))
    zero = await within(druntime.read_state("worker"), WAIT)
    assert zero.dtype == fixed_layout(Tally).dtype and int(zero["count"]) == 0
    for n in range(3):
        await within(druntime.send("worker", job(n, 2.0)))
    for _ in range(3):
        await within(druntime.receive("worker"), WAIT)
    now = await within(druntime.read_state("worker"), WAIT)
    assert (int(now["count"]), float(now["total"])) == (3, 6.0)
    assert druntime.state("worker").value == "ACTIVE"
    await within(druntime.send("worker", job(3)))  # still active after the read
    assert int((await within(druntime.receive("worker"), WAIT)).seen) == 4
    await within(druntime.terminate("worker"), WAIT)
    assert int((await within(druntime.read_state("worker")))["count"]) == 4


async def test_write_state_while_parked(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await start(druntime, ("worker", None))
    with pytest.raises(KernelStateError, match=r"it is ACTIVE; .*deactivate\('worker'\) first"):
        await druntime.write_state("worker", Tally(count=1, total=0.0))
    await within(druntime.deactivate("worker"))
    await within(druntime.write_state("worker", Tally(count=100, total=0.5)), WAIT)
    record = await within(druntime.read_state("worker"), WAIT)
    assert int(record["count"]) == 100
    record["count"] = 200
    await within(druntime.write_state("worker", record), WAIT)
    with pytest.raises(MessageTypeError, match="expected a Tally or a numpy record"):
        await druntime.write_state("worker", Done(n=0, y=0.0, seen=0))
    await within(druntime.activate("worker"))
    await within(druntime.send("worker", job(0)))
    assert int((await within(druntime.receive("worker"), WAIT)).seen) == 201


async def test_relaunch_keeps_state_of_an_unchanged_layout(druntime: RingKernelRuntime) -> None:
    declare("worker")
    await start(druntime, ("worker", None))
    await within(druntime.send("worker", job(0)))
    await within(druntime.receive("worker"), WAIT)
    new_source = ring_kernel(
        kernel_id="worker",
        input_type=Job,
        output_type=Done,
        state_type=Tally,
        cuda=SEQUENTIAL.replace("2.0f * msg.x + 1.0f", "3.0f * msg.x"),
        replace=True,
    )
    await within(druntime.relaunch("worker", new_source), WAIT)
    await within(druntime.send("worker", job(1)))
    reply = await within(druntime.receive("worker"), WAIT)
    assert (int(reply.seen), float(reply.y)) == (2, 3.0)  # state kept, new handler


async def test_state_verbs_refuse_kernels_without_state(druntime: RingKernelRuntime) -> None:
    declare_parallel("par")
    await within(druntime.launch("par"), WAIT)
    with pytest.raises(KernelStateError, match="'par': it has no state \\(a parallel kernel"):
        await druntime.read_state("par")
    await within(druntime.launch("host", func=feed))
    with pytest.raises(KernelStateError, match="'host' is a host kernel"):
        await druntime.read_state("host")


async def test_linked_device_kernel_forwards_again_after_a_failure_and_relaunch() -> None:
    # Emulated only: a trap on CUDA poisons the context.
    if find_cxx() is None:
        pytest.skip("the emulated device needs a C++ compiler")
    trap = "if (msg.n == 2) { __trap(); }\nout.n = msg.n;"
    spec = ring_kernel(kernel_id="trapper", input_type=Job, output_type=Done, cuda=trap)
    async with RingKernelRuntime(device="emulated") as rt:
        await start(rt, ("trapper", None), ("collector", collect))
        await within(rt.link("trapper", "collector"))
        for n in range(3):
            await within(rt.send("trapper", job(n)))
        got = [int((await within(rt.receive("collector"), WAIT)).n) for _ in range(2)]
        assert got == [0, 1]
        await within(until(lambda: rt.state("trapper").value == "FAILED", WAIT), WAIT)
        await within(rt.relaunch("trapper", spec), WAIT)  # back to ACTIVE
        await within(rt.send("trapper", job(5)))
        assert int((await within(rt.receive("collector"), WAIT)).n) == 5


async def test_device_kernel_declares_outputs_to_and_subscribes_to(
    druntime: RingKernelRuntime,
) -> None:
    ring_kernel(kernel_id="collector")(collect)
    declare("worker", outputs_to="collector", subscribes_to=["jobs"])
    await start(druntime, ("collector", None), ("worker", None))
    assert await within(druntime.publish("jobs", job(4))) == 1
    assert int((await within(druntime.receive("collector"), WAIT)).n) == 4
    t = druntime.telemetry("worker")
    assert (t.outputs_to, t.subscribes_to) == (("collector",), ("jobs",))
