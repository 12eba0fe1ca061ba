"""Device kernels in links (device to device, and through the host) and their state.

Device-to-device links run on the emulated device and, marked ``gpu``, on CUDA (the
``druntime`` fixture: each such test skips with the reason where no GPU is usable).
"""

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


async def feed_batched(ctx: KernelContext[Job, Job]) -> None:
    """Pass each request itself on, with ``send_many`` (the link's batch path)."""
    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send_many([m])


async def test_call_answered_by_a_device_tail_fed_by_send_many(druntime: RingKernelRuntime) -> None:
    # The upstream passes the request itself on with send_many: the call follows it along the
    # link (by its message id) and takes the device tail's reply. (A request that enters the
    # device inbox through its batch put, as a kernel host's arrivals do, is covered in
    # tests/cluster/test_routing.py.)
    declare("worker")
    await start(druntime, ("feeder", feed_batched), ("worker", None))
    await within(druntime.link("feeder", "worker"))
    for n in range(3):
        reply = await within(druntime.call("feeder", job(n, 2.0), timeout=WAIT), WAIT)
        assert (int(reply.n), float(reply.y)) == (n, 5.0)


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


# ---------------------------------------------------------------- device-to-device links

STAGE = "out.n = msg.n;\nout.x = msg.x {op};\nout.spin = 0;"


def stage(kernel_id: str, op: str, **options: Any) -> Any:
    """A sequential Job -> Job device kernel applying ``op`` to x."""
    return ring_kernel(
        kernel_id=kernel_id,
        input_type=Job,
        output_type=Job,
        cuda=STAGE.format(op=op),
        **options,
    )


@pytest.fixture
async def ert() -> Any:
    """A runtime on the emulated device (for faults: a trap on CUDA poisons the context)."""
    if find_cxx() is None:
        pytest.skip("the emulated device needs a C++ compiler")
    async with RingKernelRuntime(device="emulated") as rt:
        yield rt
        await within(rt.shutdown(), WAIT * 2)


@pytest.fixture
def drt(druntime: RingKernelRuntime) -> RingKernelRuntime:
    """A runtime on the emulated device, and on CUDA (marked gpu) where a GPU is usable."""
    return druntime


async def pipeline(rt: RingKernelRuntime, **options: Any) -> None:
    stage("a", "+ 1.0f", **options)
    stage("b", "* 2.0f", **options)
    stage("c", "- 3.0f", **options)
    await start(rt, ("a", None), ("b", None), ("c", None))
    await within(rt.link("a", "b"))
    await within(rt.link("b", "c"))


async def test_three_linked_device_kernels_pass_messages_in_device_memory(
    drt: RingKernelRuntime,
) -> None:
    await pipeline(drt)
    ta, tb = drt.telemetry("a"), drt.telemetry("b")
    assert (ta.extra["device_link_to"], tb.extra["device_link_from"]) == ("b", "a")
    assert tb.extra["device_link_to"] == "c"
    for n in range(300):
        await within(drt.send("a", job(n, float(n))))
    got = [await within(drt.receive("c"), WAIT) for _ in range(300)]
    assert [int(m.n) for m in got] == list(range(300))
    assert [float(m.x) for m in got] == [(n + 1.0) * 2.0 - 3.0 for n in range(300)]
    # No reply of a or b reached the host: their outboxes were never read.
    assert (drt.telemetry("a").sent, drt.telemetry("b").sent) == (0, 0)
    assert drt.telemetry("c").sent == 300
    assert [drt.telemetry(k).launches for k in "abc"] == [1, 1, 1]


async def test_parallel_kernels_take_and_feed_device_links_in_order(drt: RingKernelRuntime) -> None:
    stage("a", "+ 1.0f")
    stage("p", "* 2.0f", mode="parallel", block_size=64)  # a block takes batches
    stage("q", "- 3.0f", mode="parallel", block_size=32, input_queue_size=256)
    await start(drt, ("a", None), ("p", None), ("q", None))
    await within(drt.link("a", "p"))
    await within(drt.link("p", "q"))
    tp = drt.telemetry("p").extra
    assert (tp["device_link_from"], tp["device_link_to"]) == ("a", "q")
    jobs = fixed_layout(Job).to_array([job(n, float(n)) for n in range(2000)])  # type: ignore[union-attr]
    for at in range(0, 2000, 500):
        await within(drt.send_many("a", jobs[at : at + 500], timeout=WAIT), WAIT)  # type: ignore[arg-type]
    got = [await within(drt.receive("q"), WAIT) for _ in range(2000)]
    # Each batch's replies keep its order, and batches keep theirs: order survives the links.
    assert [int(m.n) for m in got] == list(range(2000))
    assert [float(m.x) for m in got] == [(n + 1.0) * 2.0 - 3.0 for n in range(2000)]
    assert (drt.telemetry("a").sent, drt.telemetry("p").sent) == (0, 0)
    assert [drt.telemetry(k).launches for k in "apq"] == [1, 1, 1]
    reply = await within(drt.call("a", job(8, 2.0), timeout=WAIT), WAIT)  # answered by q
    assert (int(reply.n), float(reply.x)) == (8, 3.0)


async def test_state_of_a_kernel_fed_by_a_device_link_reads_and_writes_as_usual(
    drt: RingKernelRuntime,
) -> None:
    stage("a", "+ 1.0f")
    declare("worker")  # Job -> Done, with a Tally state
    await start(drt, ("a", None), ("worker", None))
    await within(drt.link("a", "worker"))
    assert drt.telemetry("worker").extra["device_link_from"] == "a"
    for n in range(5):
        await within(drt.send("a", job(n, 1.0)))
    assert [int((await within(drt.receive("worker"), WAIT)).n) for _ in range(5)] == [*range(5)]
    record = await within(drt.read_state("worker"), WAIT)  # parks and resumes the loop
    assert (int(record["count"]), float(record["total"])) == (5, 10.0)
    await within(drt.deactivate("worker"))
    await within(drt.write_state("worker", Tally(count=100, total=0.0)), WAIT)
    await within(drt.activate("worker"))
    await within(drt.send("a", job(5, 1.0)))  # still through the link ring
    assert int((await within(drt.receive("worker"), WAIT)).seen) == 101
    assert drt.telemetry("a").sent == 0


async def test_fan_out_and_a_second_link_into_a_kernel_go_through_the_host(
    drt: RingKernelRuntime,
) -> None:
    stage("a", "+ 1.0f")
    stage("b", "* 2.0f")
    stage("c", "- 3.0f")
    await start(drt, ("a", None), ("b", None), ("c", None))
    await within(drt.link("a", ["b", "c"]))  # fan-out: relayed by the host
    assert drt.telemetry("a").extra["device_link_to"] is None
    await within(drt.send("a", job(1, 1.0)))
    assert float((await within(drt.receive("b"), WAIT)).x) == 4.0
    assert float((await within(drt.receive("c"), WAIT)).x) == -1.0
    await within(drt.unlink("a"))
    await within(drt.link("a", "c"))
    await within(drt.link("b", "c"))  # fan-in: one device link into c, the other relayed
    linked = {k: drt.telemetry(k).extra["device_link_to"] for k in "ab"}
    assert linked == {"a": "c", "b": None}  # the first link made gets the link ring
    assert drt.telemetry("c").extra["device_link_from"] == "a"
    await within(drt.send("a", job(2, 1.0)))
    await within(drt.send("b", job(3, 1.0)))
    got = sorted([int((await within(drt.receive("c"), WAIT)).n) for _ in range(2)])
    assert got == [2, 3]


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
async def test_full_device_link_blocks_the_upstream_and_loses_nothing(
    drt: RingKernelRuntime, mode: str
) -> None:
    stage("a", "+ 1.0f", mode=mode)
    stage("b", "* 2.0f", mode=mode, input_queue_size=4)
    await start(drt, ("a", None), ("b", None))
    await within(drt.link("a", "b"))
    await within(drt.deactivate("b"))  # b parks: it takes nothing from the link ring
    for n in range(12):
        await within(drt.send("a", job(n, 1.0)))
    await within(until(lambda: drt.telemetry("a").extra["device_link_depth"] == 4, WAIT), WAIT)
    await within(until(lambda: drt.telemetry("a").extra["outbox_full_waits"] > 0, WAIT), WAIT)
    assert drt.telemetry("a").processed == 4  # it waits for room rather than overwriting
    await within(drt.activate("b"))
    got = [int((await within(drt.receive("b"), WAIT)).n) for _ in range(12)]
    assert got == list(range(12))


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
async def test_unlink_moves_what_the_link_ring_holds_to_the_target(
    drt: RingKernelRuntime, mode: str
) -> None:
    stage("a", "+ 1.0f", mode=mode)
    stage("b", "* 2.0f", mode=mode)
    await start(drt, ("a", None), ("b", None))
    await within(drt.link("a", "b"))
    await within(drt.deactivate("b"))
    for n in range(5):
        await within(drt.send("a", job(n, 1.0)))
    await within(until(lambda: drt.telemetry("a").extra["device_link_depth"] == 5, WAIT), WAIT)
    await within(drt.unlink("a"), WAIT)
    assert drt.telemetry("a").extra["device_link_to"] is None
    assert drt.telemetry("b").inbox_depth == 5  # in b's inbox now, through the host
    await within(drt.send("a", job(9, 1.0)))
    assert int((await within(drt.receive("a"), WAIT)).n) == 9  # a's outbox again
    await within(drt.activate("b"))
    got = [await within(drt.receive("b"), WAIT) for _ in range(5)]
    assert [(int(m.n), float(m.x)) for m in got] == [(n, 4.0) for n in range(5)]


async def test_terminating_the_downstream_turns_the_link_ring_into_dead_letters(
    drt: RingKernelRuntime,
) -> None:
    stage("a", "+ 1.0f")
    stage("b", "* 2.0f")
    await start(drt, ("a", None), ("b", None))
    await within(drt.link("a", "b"))
    await within(drt.deactivate("b"))
    for n in range(3):
        await within(drt.send("a", job(n)))
    await within(until(lambda: drt.telemetry("a").extra["device_link_depth"] == 3, WAIT), WAIT)
    await within(drt.terminate("b"), WAIT)
    letters = drt.dead_letters()
    assert [int(d.message.n) for d in letters] == [0, 1, 2]
    assert {(d.kernel_id, d.sender) for d in letters} == {("b", "a")}
    # a writes to its outbox again; the host route makes its replies dead letters too.
    await within(drt.send("a", job(3)))
    await within(until(lambda: len(drt.dead_letters()) == 4, WAIT), WAIT)
    assert drt.telemetry("a").extra["device_link_to"] is None


async def test_relaunched_upstream_is_linked_in_device_memory_again(
    drt: RingKernelRuntime,
) -> None:
    await pipeline(drt)
    await within(drt.relaunch("a"), WAIT)
    await within(until(lambda: drt.telemetry("a").extra["device_link_to"] == "b", WAIT), WAIT)
    await within(drt.send("a", job(1, 1.0)))
    assert float((await within(drt.receive("c"), WAIT)).x) == 1.0
    assert drt.telemetry("a").sent == 0


async def test_links_a_device_link_cannot_serve_go_through_the_host(
    drt: RingKernelRuntime,
) -> None:
    stage("a", "+ 1.0f")
    stage("r", "* 2.0f", backpressure="reject")  # a link ring only blocks
    await start(drt, ("a", None), ("r", None))
    await within(drt.link("a", "r"))
    assert drt.telemetry("a").extra["device_link_to"] is None
    await within(drt.send("a", job(2, 1.0)))
    assert float((await within(drt.receive("r"), WAIT)).x) == 4.0
    assert drt.telemetry("a").sent == 1  # relayed by the host


async def test_call_to_the_head_of_a_device_pipeline_answers_from_its_tail(
    drt: RingKernelRuntime,
) -> None:
    await pipeline(drt)
    reply = await within(drt.call("a", job(8, 2.0), timeout=WAIT), WAIT)
    assert (int(reply.n), float(reply.x)) == (8, 3.0)
    await within(drt.send("a", job(9, 1.0)))  # other replies still reach receive
    assert float((await within(drt.receive("c"), WAIT)).x) == 1.0


async def test_a_failed_downstream_turns_what_its_link_holds_into_dead_letters(
    ert: RingKernelRuntime,
) -> None:
    stage("a", "+ 1.0f")
    ring_kernel(
        kernel_id="t",
        input_type=Job,
        output_type=Job,
        cuda="if (msg.n == 2) { __trap(); }\nout = msg;",
    )
    await start(ert, ("a", None), ("t", None))
    await within(ert.link("a", "t"))
    assert ert.telemetry("a").extra["device_link_to"] == "t"
    for n in range(5):
        await within(ert.send("a", job(n)))
    assert [int((await within(ert.receive("t"), WAIT)).n) for _ in range(2)] == [0, 1]
    await within(until(lambda: ert.state("t").value == "FAILED", WAIT), WAIT)
    await within(until(lambda: len(ert.dead_letters()) == 2, WAIT), WAIT)
    letters = ert.dead_letters()
    assert [int(d.message.n) for d in letters] == [3, 4]  # 2 was lost with the fault
    assert {d.reason for d in letters} == {DeadLetterReason.FAILED}
    assert ert.telemetry("a").extra["device_link_to"] is None


async def test_a_parallel_batch_that_faults_stays_in_the_link_ring_as_dead_letters(
    ert: RingKernelRuntime,
) -> None:
    stage("a", "+ 1.0f")
    ring_kernel(
        kernel_id="pt",
        input_type=Job,
        output_type=Job,
        mode="parallel",
        block_size=4,
        cuda="if (msg.n == 2) { __trap(); }\nout = msg;",
    )
    await start(ert, ("a", None), ("pt", None))
    await within(ert.link("a", "pt"))
    assert ert.telemetry("a").extra["device_link_to"] == "pt"
    jobs = fixed_layout(Job).to_array([job(n) for n in range(5)])  # type: ignore[union-attr]
    await within(ert.send_many("a", jobs, timeout=WAIT), WAIT)  # type: ignore[arg-type]
    await within(until(lambda: ert.state("pt").value == "FAILED", WAIT), WAIT)
    # The batch in flight was not taken from the ring (its head moves after a batch): it
    # comes back as dead letters with what followed it, the faulting message included.
    done = ert.telemetry("pt").processed
    await within(until(lambda: len(ert.dead_letters()) == 5 - done, WAIT), WAIT)
    letters = ert.dead_letters()
    assert [int(d.message.n) for d in letters] == list(range(done, 5))
    assert {d.reason for d in letters} == {DeadLetterReason.FAILED}


async def test_no_room_for_a_link_ring_leaves_the_link_to_the_host_and_says_so(
    ert: RingKernelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydotcompute.backends.device import _links

    def full(self: Any, size: int) -> int:
        raise MemoryError(f"the device link arena has no room for a {size:,}-byte link ring")

    stage("a", "+ 1.0f")
    stage("b", "* 2.0f")
    await start(ert, ("a", None), ("b", None))
    monkeypatch.setattr(_links.LinkArena, "allocate", full)
    await within(ert.link("a", "b"))
    assert ert.telemetry("a").extra["device_link_to"] is None
    events = [e for _, e in ert.telemetry("a").events]
    assert any(
        "device link to 'b' goes through the host: the device link arena" in e for e in events
    )
    await within(ert.send("a", job(1, 1.0)))
    assert float((await within(ert.receive("b"), WAIT)).x) == 4.0
    assert ert.telemetry("a").sent == 1  # relayed by the host
