"""Bodies that address kernels on other hosts: ctx.send_to, ctx.publish, call through links."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pydotcompute import (
    DeadLetterReason,
    KernelStateError,
    OperationTimeoutError,
)
from tests.cluster._kernels import Num, Order, double, inc, router, stuck
from tests.conftest import within

pytestmark = pytest.mark.cluster
W = 30.0  # seconds: a Ray call on two busy cores


async def start(rt: Any, kid: str, func: Any, placement: Any, **opts: Any) -> None:
    opts.setdefault("input_type", Num)
    opts.setdefault("output_type", Num)
    await within(rt.launch(kid, func=func, placement=placement, **opts), W)
    await within(rt.activate(kid), W)


async def start_router(rt: Any, placement: Any = "host:a") -> None:
    await start(rt, "router", router, placement, input_type=Order, output_type=Num)


async def eventually(predicate: Callable[[], bool], seconds: float = W) -> None:
    """Poll ``predicate`` (state on other hosts: no local event to await), bounded."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def receive_n(rt: Any, kid: str, n: int) -> list[int]:
    got: list[Any] = []
    while len(got) < n:
        got += await within(rt.receive_many(kid, timeout=W), W)
    return [m.x for m in got]


# ---------------------------------------------------------------- ctx.send_to
async def test_send_to_from_a_body_reaches_a_kernel_on_another_host(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start_router(rt)
    await start(rt, "inc", inc, "host:b")
    assert (await within(rt.call("router", Order(x=5, target="inc"), timeout=W), W)).x == 1
    assert (await within(rt.receive("inc", timeout=W), W)).x == 6
    # Many at once travel in batches, in order.
    await within(rt.send_many("router", [Order(x=i, target="inc") for i in range(300)]), W)
    assert await receive_n(rt, "inc", 300) == [i + 1 for i in range(300)]
    assert await receive_n(rt, "router", 300) == [1] * 300


async def test_send_to_a_kernel_placed_in_the_driver_and_from_it(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start_router(rt, "driver")
    await start(rt, "inc", inc, "host:b")
    assert (await within(rt.call("router", Order(x=1, target="inc"), timeout=W), W)).x == 1
    assert (await within(rt.receive("inc", timeout=W), W)).x == 2


async def test_send_to_an_unknown_kernel_is_a_dead_letter_with_its_reason(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start_router(rt)
    assert (await within(rt.call("router", Order(x=1, target="nobody"), timeout=W), W)).x == 0
    [letter] = rt.dead_letters("nobody")
    assert letter.reason is DeadLetterReason.UNKNOWN_KERNEL and letter.sender == "router"
    assert letter.message.x == 1


async def test_send_to_a_terminated_kernel_on_another_host_is_a_dead_letter_there(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start_router(rt)
    await start(rt, "inc", inc, "host:b")
    await within(rt.terminate("inc"), W)
    assert (await within(rt.call("router", Order(x=7, target="inc"), timeout=W), W)).x == 1
    await eventually(lambda: len(rt.dead_letters("inc")) == 1)
    [letter] = rt.dead_letters("inc")
    assert letter.reason is DeadLetterReason.TERMINATED and letter.message.x == 7
    assert letter.sender == "router"


@pytest.mark.parametrize(
    ("policy", "reason"),
    [("reject", DeadLetterReason.REJECTED), ("drop_newest", DeadLetterReason.DROP_NEWEST)],
)
async def test_a_full_remote_inbox_that_refuses_makes_counted_dead_letters(
    cluster_runtime: Any, policy: str, reason: DeadLetterReason
) -> None:
    rt = cluster_runtime
    await start_router(rt)
    await start(rt, "full", stuck, "host:b", queue_size=2, backpressure=policy)
    await within(rt.send_many("router", [Order(x=i, target="full") for i in range(5)]), W)
    assert await receive_n(rt, "router", 5) == [1] * 5  # each one handed to the hop
    await eventually(lambda: len(rt.dead_letters("full")) == 3)
    letters = rt.dead_letters("full")
    assert {d.reason for d in letters} == {reason}
    assert sorted(d.message.x for d in letters) == [2, 3, 4]
    assert rt.telemetry("full").dead_letters == 3 and rt.telemetry("full").inbox_depth == 2


async def test_a_full_remote_block_inbox_holds_the_hop_until_it_has_room(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start_router(rt)
    # Launched, not active: it queues two and takes nothing until activated.
    await within(rt.launch("slow", func=inc, input_type=Num, output_type=Num,
                           placement="host:b", queue_size=2, backpressure="block"), W)  # fmt: skip
    await within(rt.send_many("router", [Order(x=i, target="slow") for i in range(6)]), W)
    assert await receive_n(rt, "router", 6) == [1] * 6
    await eventually(lambda: rt.telemetry("slow").inbox_depth == 2)
    await within(rt.activate("slow"), W)
    assert await receive_n(rt, "slow", 6) == [i + 1 for i in range(6)]  # all, in order
    assert rt.dead_letters("slow") == []


async def test_a_wrong_type_is_refused_in_the_sending_body(cluster_runtime: Any) -> None:
    from tests.cluster._kernels import Text, ticks

    rt = cluster_runtime
    await start_router(rt)
    await start(rt, "texts", ticks, "host:b", input_type=Text, output_type=Text)
    assert (await within(rt.call("router", Order(x=1, target="texts"), timeout=W), W)).x == -1
    assert rt.dead_letters("texts") == []


# ---------------------------------------------------------------- topics
async def test_ctx_publish_reaches_subscribers_on_every_host(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start_router(rt)
    await start(rt, "near", inc, "host:a")
    await start(rt, "inc", inc, "host:b")
    await start(rt, "double", double, "host:c", subscribes_to=("numbers",))
    await within(rt.subscribe("near", "numbers"), W)
    await within(rt.subscribe("inc", "numbers"), W)
    assert set(rt.topics()["numbers"]) == {"near", "inc", "double"}
    assert rt.telemetry("inc").subscribes_to == ("numbers",)
    assert (await within(rt.call("router", Order(x=5, topic="numbers"), timeout=W), W)).x == 3
    assert (await within(rt.receive("near", timeout=W), W)).x == 6
    assert (await within(rt.receive("inc", timeout=W), W)).x == 6
    assert (await within(rt.receive("double", timeout=W), W)).x == 10
    # The driver's publish reaches all three as well, and says how many queued it.
    assert await within(rt.publish("numbers", Num(x=1)), W) == 3
    assert (await within(rt.receive("double", timeout=W), W)).x == 2
    await within(rt.unsubscribe("inc", "numbers"), W)
    assert (await within(rt.call("router", Order(x=5, topic="numbers"), timeout=W), W)).x == 2
    # A forgotten kernel leaves its topics on every host.
    await within(rt.terminate("double"), W)
    rt.forget("double")
    await eventually(lambda: rt.topics().get("numbers") == ("near",))
    assert (await within(rt.call("router", Order(x=5, topic="numbers"), timeout=W), W)).x == 1


# ---------------------------------------------------------------- call through links
async def test_call_follows_links_across_hosts_to_the_last_kernel(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "double", double, "host:b")
    await start(rt, "inc2", inc, "host:c")
    await within(rt.link("inc", "double"), W)
    assert (await within(rt.call("inc", Num(x=1), timeout=W), W)).x == 4
    await within(rt.link("double", "inc2"), W)
    replies = await within(
        asyncio.gather(*(rt.call("inc", Num(x=i), timeout=W) for i in range(10))), W
    )
    assert [r.x for r in replies] == [(i + 1) * 2 + 1 for i in range(10)]
    # Replies to calls went to their callers, not to the tail's outbox.
    with pytest.raises(OperationTimeoutError):
        await rt.receive("inc2", timeout=0.2)


@pytest.mark.timeout(300)  # the first build of the device kernel in a fresh host may be slow
async def test_call_through_a_link_ends_at_a_device_kernel_on_another_host(
    cluster_runtime: Any,
) -> None:
    # The far end of the link is an emulated device kernel: its reply, matched on that host
    # by the bytes of the forwarded request's id, comes back to the caller here.
    from pydotcompute.backends.device._compile import find_cxx
    from tests.backends.device_kernels import Job, declare
    from tests.cluster._kernels import pass_job

    if find_cxx() is None:
        pytest.skip("the emulated device needs a C++ compiler (g++ or clang++), none found")
    rt = cluster_runtime
    declare("tally")
    await within(rt.launch("tally", placement="host:device"), 120)  # builds the kernel there
    await within(rt.activate("tally"), W)
    await start(rt, "feeder", pass_job, "host:a", input_type=Job, output_type=Job)
    await within(rt.link("feeder", "tally"), W)
    reply = await within(rt.call("feeder", Job(n=1, x=2.0, spin=0), timeout=W), W)
    assert (int(reply.n), float(reply.y)) == (2, 5.0)
    replies = await within(
        asyncio.gather(*(rt.call("feeder", Job(n=i, x=1.0, spin=0), timeout=W) for i in range(8))),
        W,
    )
    assert [int(r.n) for r in replies] == [i + 1 for i in range(8)]
    assert int(replies[-1].seen) == 9  # the device kernel handled all nine, in one launch
    assert rt.telemetry("tally").launches == 1


async def test_call_follows_in_process_links_on_the_far_host(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "double", double, "host:b")
    await start(rt, "inc2", inc, "host:b")
    await within(rt.link("inc", "double"), W)
    await within(rt.link("double", "inc2"), W)  # in the far host's own process
    assert (await within(rt.call("inc", Num(x=1), timeout=W), W)).x == 5


async def test_call_through_a_link_to_a_terminated_kernel_says_why(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "double", double, "host:b")
    await within(rt.link("inc", "double"), W)
    await within(rt.terminate("double"), W)
    with pytest.raises(KernelStateError, match=r"could not enter ring kernel 'double' on kernel "
                       r"host 'b' \(terminated\).*no reply will come"):  # fmt: skip
        await within(rt.call("inc", Num(x=1), timeout=W), W)


async def test_call_through_links_times_out_with_the_path(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "sink", stuck, "host:b")
    await within(rt.link("inc", "sink"), W)
    with pytest.raises(OperationTimeoutError, match=r"no reply through the links of ring kernel "
                       r"'inc' \(across kernel hosts\) to Num .* within 0\.5 s"):  # fmt: skip
        await within(rt.call("inc", Num(x=1), timeout=0.5), W)


async def test_call_through_a_link_into_a_dead_host_raises(cluster_runtime: Any) -> None:
    import os
    import signal

    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "sink", stuck, "host:b")
    await within(rt.link("inc", "sink"), W)
    call = asyncio.ensure_future(rt.call("inc", Num(x=1), timeout=W))
    await eventually(lambda: rt.telemetry("sink").received == 1)
    os.kill(int(rt.telemetry("sink").extra["placement"]["pid"]), signal.SIGKILL)
    with pytest.raises(KernelStateError, match=r"went on to kernel host 'b', which died"):
        await within(call, W)


# ---------------------------------------------------------------- links across hosts
async def test_fan_out_to_two_other_hosts_gives_each_target_every_message(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "double", double, "host:b")
    await start(rt, "inc2", inc, "host:c")
    await within(rt.link("inc", ["double", "inc2"]), W)
    await within(rt.send_many("inc", [Num(x=i) for i in range(100)]), W)
    assert await receive_n(rt, "double", 100) == [(i + 1) * 2 for i in range(100)]
    assert await receive_n(rt, "inc2", 100) == [i + 2 for i in range(100)]


async def test_links_on_the_own_host_and_on_others_are_not_mixed(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "near", double, "host:a")
    await start(rt, "far", double, "host:b")
    with pytest.raises(KernelStateError, match=r"all on its own host or all on other hosts"):
        await rt.link("inc", ["near", "far"])
    assert rt.links() == {}
    await within(rt.link("inc", "far"), W)
    with pytest.raises(KernelStateError, match=r"all on its own host or all on other hosts"):
        await rt.link("inc", "near")
    assert rt.links() == {"inc": ("far",)}


async def test_a_link_across_hosts_survives_terminate_and_launch(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "double", double, "host:b")
    await within(rt.link("inc", "double"), W)
    await within(rt.terminate("inc"), W)
    await start(rt, "inc", inc, "host:a")
    await within(rt.send("inc", Num(x=1)), W)
    assert (await within(rt.receive("double", timeout=W), W)).x == 4


async def test_call_refuses_in_process_links_that_then_leave_the_host(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, "host:a")
    await start(rt, "mid", double, "host:a")
    await start(rt, "far", inc, "host:b")
    await within(rt.link("inc", "mid"), W)
    await within(rt.link("mid", "far"), W)
    with pytest.raises(KernelStateError, match=r"call\('inc'\): its links in this host lead to "
                       r"'mid', whose links go to other hosts"):  # fmt: skip
        await within(rt.call("inc", Num(x=1), timeout=W), W)
    # The data still flows, and the call on 'mid' (where the links leave) works.
    await within(rt.send("inc", Num(x=1)), W)
    assert (await within(rt.receive("far", timeout=W), W)).x == 5
    assert (await within(rt.call("mid", Num(x=1), timeout=W), W)).x == 3


# ---------------------------------------------------------------- the driver's endpoint
async def test_bodies_on_hosts_reach_kernels_and_topic_receivers_in_the_driver(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start_router(rt)
    await start(rt, "here", inc, "driver", subscribes_to=("numbers",))
    with rt.topic_receiver("numbers") as rx:
        # send_to from a body on a host into a kernel placed in the driver
        assert (await within(rt.call("router", Order(x=1, target="here"), timeout=W), W)).x == 1
        assert (await within(rt.receive("here", timeout=W), W)).x == 2
        # ctx.publish on a host: the driver's kernel and its receiver each get a copy
        assert (await within(rt.call("router", Order(x=5, topic="numbers"), timeout=W), W)).x == 2
        assert (await within(rx.receive(timeout=W), W)).x == 5
        assert (await within(rt.receive("here", timeout=W), W)).x == 6
        assert set(rt.topics()["numbers"]) == {"here", "<host>"}
    # Closed: publishes from hosts no longer come here (no subscriber is left anywhere).
    await eventually(lambda: "numbers" not in rt.topics() or rt.topics()["numbers"] == ("here",))


async def test_ctx_publish_in_a_driver_kernel_reaches_subscribers_on_hosts(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await start_router(rt, "driver")
    await start(rt, "inc", inc, "host:b")
    await within(rt.subscribe("inc", "numbers"), W)
    assert (await within(rt.call("router", Order(x=3, topic="numbers"), timeout=W), W)).x == 1
    assert (await within(rt.receive("inc", timeout=W), W)).x == 4
