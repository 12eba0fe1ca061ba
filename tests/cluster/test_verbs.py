"""The runtime's verbs against kernels in kernel hosts on a local Ray (one node)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from pydotcompute import (
    InvalidArgumentError,
    KernelFailedError,
    KernelNotFoundError,
    KernelState,
    KernelStateError,
    MessageTypeError,
    ReceiveTimeoutError,
    RingKernelRuntime,
)
from pydotcompute.cluster import ClusterRuntime, Placement, RayCluster
from pydotcompute.messages import fixed_layout
from tests.cluster._kernels import Num, Text, Tick, double, fails_on_negative, inc, ticks
from tests.conftest import within

pytestmark = pytest.mark.cluster
W = 30.0  # seconds: a Ray call on two busy cores


async def start(rt: Any, kid: str, func: Any, **opts: Any) -> None:
    await within(rt.launch(kid, func=func, input_type=Num, output_type=Num, **opts), W)
    await within(rt.activate(kid), W)


async def test_cluster_argument_makes_a_runtime_whose_kernels_run_in_a_kernel_host(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    assert isinstance(rt, RingKernelRuntime) and isinstance(rt, ClusterRuntime)
    await start(rt, "inc", inc)
    assert rt.kernels == ("inc",)
    assert (await within(rt.call("inc", Num(x=41), timeout=W), W)).x == 42
    assert await within(rt.send("inc", Num(x=1)), W) is True
    assert (await within(rt.receive("inc", timeout=W), W)).x == 2
    assert rt.state("inc") is KernelState.ACTIVE
    t = rt.telemetry("inc")
    import os

    place = t.extra["placement"]
    assert place["pid"] != os.getpid() and place["node_id"] and t.processed == 2
    assert rt.snapshot().kernels["inc"].extra["placement"] == place
    await within(rt.deactivate("inc"), W)
    assert rt.state("inc") is KernelState.DEACTIVATED
    result = await within(rt.terminate("inc"), W)
    assert result.kernel_id == "inc" and rt.state("inc") is KernelState.TERMINATED
    rt.forget("inc")
    assert not rt.kernels


async def test_driver_placement_runs_the_kernel_in_this_process(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "here", inc, placement="driver")
    await start(rt, "there", inc)
    assert set(rt.kernels) == {"here", "there"}
    assert "placement" not in rt.telemetry("here").extra
    assert (await within(rt.call("here", Num(x=1)), W)).x == 2
    assert (await within(rt.call("there", Num(x=1), timeout=W), W)).x == 2


async def test_send_many_carries_a_batch_and_receive_many_takes_it(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc)
    assert await within(rt.send_many("inc", [Num(x=i) for i in range(100)]), W) == 100
    got: list[Any] = []
    while len(got) < 100:
        got += await within(rt.receive_many("inc", timeout=W), W)
    assert [m.x for m in got] == list(range(1, 101))


async def test_fixed_layout_batches_cross_as_numpy_arrays(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await within(rt.launch("ticks", func=ticks, input_type=Tick, output_type=Tick), W)
    await within(rt.activate("ticks"), W)
    layout = fixed_layout(Tick)
    assert layout is not None
    arr = layout.to_array([Tick(x=np.int64(i)) for i in range(64)])
    assert await within(rt.send_many("ticks", arr), W) == 64
    got: list[Any] = []
    while len(got) < 64:
        batch = await within(rt.receive_many("ticks", timeout=W, as_array=True), W)
        assert isinstance(batch, np.ndarray)
        got += list(batch["x"])
    assert got == list(range(64))


async def test_a_body_defined_in_a_notebook_cell_travels_by_cloudpickle(
    cluster_runtime: Any,
) -> None:
    # A module that kernel hosts cannot import, like a notebook's __main__: cloudpickle
    # carries the body and its @message class by value.
    cell = """
from pydotcompute import KernelContext, message

@message
class Greeting:
    name: str

async def greeter(ctx: KernelContext[Greeting, Greeting]) -> None:
    while not ctx.should_terminate:
        g = await ctx.receive()
        await ctx.send(Greeting(name=f"hello {g.name}"))
"""
    ns: dict[str, Any] = {"__name__": "a_notebook_cell"}
    exec(compile(cell, "<cell>", "exec", dont_inherit=True), ns)
    greeting = ns["Greeting"]
    await within(rt_launch(cluster_runtime, "greeter", ns["greeter"], greeting), W)
    reply = await within(cluster_runtime.call("greeter", greeting(name="ray"), timeout=W), W)
    assert reply.name == "hello ray" and type(reply) is greeting
    # The directory's topic table carries the class too (to every host).
    await within(cluster_runtime.subscribe("greeter", "greetings"), W)
    assert await within(cluster_runtime.publish("greetings", greeting(name="all")), W) == 1
    assert (await within(cluster_runtime.receive("greeter", timeout=W), W)).name == "hello all"


async def rt_launch(rt: Any, kid: str, func: Any, t: type) -> None:
    await rt.launch(kid, func=func, input_type=t, output_type=t)
    await rt.activate(kid)


async def test_a_failing_body_surfaces_its_error_on_the_next_verb(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "picky", fails_on_negative)
    await within(rt.send("picky", Num(x=-1)), W)
    with pytest.raises(KernelFailedError, match=r"'picky' failed: ValueError: negative: -1") as e:
        await within(rt.receive("picky", timeout=W), W)
    assert isinstance(e.value.__cause__, ValueError) and isinstance(e.value.error, ValueError)
    assert rt.state("picky") is KernelState.FAILED


async def test_bad_input_is_refused_in_the_driver_with_the_fix(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc)
    with pytest.raises(MessageTypeError, match="takes Num messages, got a Text; send a Num"):
        await rt.send("inc", Text(text="no"))
    with pytest.raises(InvalidArgumentError, match=r"receive\(timeout=-1\)"):
        await rt.receive("inc", timeout=-1)
    with pytest.raises(KernelNotFoundError, match="no ring kernel 'nope'"):
        await rt.send("nope", Num(x=1))
    with pytest.raises(ReceiveTimeoutError, match=r"no message from ring kernel 'inc' within 0\.1"):
        await within(rt.receive("inc", timeout=0.1), W)
    with pytest.raises(InvalidArgumentError, match="expected 'driver', 'gpu'"):
        await rt.launch("x", func=inc, placement="moon")
    assert rt.kernels == ("inc",)


async def test_link_across_two_hosts_batches_messages_to_the_target(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, placement="host:a")
    await start(rt, "double", double, placement=Placement(host="b"))
    a, b = (rt.telemetry(k).extra["placement"]["pid"] for k in ("inc", "double"))
    assert a != b
    await within(rt.link("inc", "double"), W)
    assert rt.links() == {"inc": ("double",)}
    assert rt.telemetry("inc").outputs_to == ("double",)
    await within(rt.send_many("inc", [Num(x=i) for i in range(200)]), W)
    got: list[Any] = []
    while len(got) < 200:
        got += await within(rt.receive_many("double", timeout=W), W)
    assert [m.x for m in got] == [(i + 1) * 2 for i in range(200)]


async def test_publish_reaches_subscribers_on_every_host(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "inc", inc, placement="host:a")
    await start(rt, "double", double, placement="host:b")
    await rt.subscribe("inc", "numbers")
    await rt.subscribe("double", "numbers")
    assert rt.topics() == {"numbers": ("inc", "double")}
    assert await within(rt.publish("numbers", Num(x=5)), W) == 2
    assert (await within(rt.receive("inc", timeout=W), W)).x == 6
    assert (await within(rt.receive("double", timeout=W), W)).x == 10


async def test_a_second_runtime_finds_kernels_through_the_directory(local_ray: None) -> None:
    first = RingKernelRuntime(cluster=RayCluster(name="shared"))
    async with first:
        await start(first, "inc", inc)
        second = RingKernelRuntime(cluster=RayCluster(name="shared"))
        assert (await within(second.call("inc", Num(x=1), timeout=W), W)).x == 2
        assert second.state("inc") is KernelState.ACTIVE


async def test_options_and_relaunch_reach_the_host(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await start(rt, "k", inc, queue_size=64)
    assert rt.options("k").queue_size == 64 and rt.options("k").input_type is Num
    await within(rt.relaunch("k", double), W)
    assert (await within(rt.call("k", Num(x=4), timeout=W), W)).x == 8
    assert rt.telemetry("k").redeploys == 1


async def test_placement_group_bundle(cluster_runtime: Any) -> None:
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}], strategy="PACK")
    await within(asyncio.wrap_future(pg.ready().future()), W)
    try:
        await start(rt := cluster_runtime, "grouped", inc, placement=Placement(group=pg, bundle=0))
        assert rt.telemetry("grouped").extra["placement"]["host"].startswith("group-")
        assert (await within(rt.call("grouped", Num(x=1), timeout=W), W)).x == 2
        await within(rt.terminate("grouped"), W)
    finally:
        remove_placement_group(pg)


async def test_the_dashboard_shows_remote_kernels_with_their_node(cluster_runtime: Any) -> None:
    pytest.importorskip("pydotcompute_widgets", reason="the dashboard: pip install -e ./widgets")
    from pydotcompute_widgets import Dashboard

    rt = cluster_runtime
    await start(rt, "inc", inc)
    dash = Dashboard(rt, interval=0.5)
    try:
        dash.update()
        assert "inc" in dash.table.rows
        ip = rt.telemetry("inc").extra["placement"]["node_ip"]
        assert any(ip in str(c) for c in dash.table.shown["inc"])
    finally:
        dash.close()


async def test_after_shutdown_remote_kernels_read_as_terminated_and_refuse_verbs(
    local_ray: None,
) -> None:
    rt = RingKernelRuntime(cluster=RayCluster())
    async with rt:
        await start(rt, "inc", inc)
        await within(rt.call("inc", Num(x=1), timeout=W), W)
    assert rt.state("inc") is KernelState.TERMINATED
    assert rt.telemetry("inc").state == "TERMINATED" and rt.telemetry("inc").processed == 1
    assert rt.snapshot().kernels["inc"].state == "TERMINATED"
    with pytest.raises(KernelStateError, match="ended when this RingKernelRuntime was shut down"):
        await rt.send("inc", Num(x=1))
    import ray

    assert ray.is_initialized()  # the module's Ray: RayCluster did not start it, nor stop it


async def test_dead_letters_of_a_host_come_back_as_messages(cluster_runtime: Any) -> None:
    from pydotcompute import DeadLetterReason

    rt = cluster_runtime
    await within(rt.launch("tiny", func=inc, input_type=Num, output_type=Num, queue_size=2,
                           backpressure="drop_newest"), W)  # fmt: skip
    assert await within(rt.send_many("tiny", [Num(x=i) for i in range(5)]), W) == 2
    letters = rt.dead_letters("tiny")
    assert [d.message.x for d in letters] == [2, 3, 4]
    assert {d.reason for d in letters} == {DeadLetterReason.DROP_NEWEST}
    assert rt.telemetry("tiny").dead_letters == 3 and rt.snapshot().dead_letters == 3
