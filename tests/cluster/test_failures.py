"""A kernel host that dies: its kernels FAIL with the cause, restarts, nothing lost silently."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from pydotcompute import DeadLetterReason, KernelFailedError, KernelState
from tests.cluster._kernels import Num, inc
from tests.conftest import within

pytestmark = pytest.mark.cluster
W = 30.0


async def eventually(predicate: Callable[[], bool], seconds: float = W) -> None:
    """Poll ``predicate`` (a remote state: no local event to await), bounded by ``seconds``."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def kill_host_of(rt: Any, kernel_id: str) -> int:
    pid = int(rt.telemetry(kernel_id).extra["placement"]["pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


async def test_killed_host_fails_its_kernels_and_counts_what_was_inside(
    cluster_runtime: Any,
) -> None:
    rt = cluster_runtime
    await within(rt.launch("victim", func=inc, input_type=Num, output_type=Num,
                           placement="host:victim"), W)  # fmt: skip
    # LAUNCHED, not active: the messages wait in its inbox, inside the host process.
    assert await within(rt.send_many("victim", [Num(x=i) for i in range(5)]), W) == 5
    kill_host_of(rt, "victim")
    await eventually(lambda: rt.state("victim") is KernelState.FAILED)
    with pytest.raises(KernelFailedError, match=r"'victim' failed: RuntimeError: kernel host "
                       r"'victim' .* died.* 5 message\(s\) inside its host were lost"):  # fmt: skip
        await within(rt.receive("victim", timeout=W), W)
    with pytest.raises(KernelFailedError, match="died"):
        await within(rt.send("victim", Num(x=1)), W)
    t = rt.telemetry("victim")
    assert t.state == "FAILED" and t.extra["lost"] == 5 and t.dead_letters == 5
    lost = rt.dead_letters("victim")
    assert len(lost) == 5 and {d.reason for d in lost} == {DeadLetterReason.FAILED}
    assert rt.snapshot().kernels["victim"].state == "FAILED"


async def test_restart_policy_relaunches_on_the_restarted_host(cluster_runtime: Any) -> None:
    rt = cluster_runtime
    await within(rt.launch("phoenix", func=inc, input_type=Num, output_type=Num,
                           placement="host:phoenix", restart="on_failure"), W)  # fmt: skip
    await within(rt.activate("phoenix"), W)
    assert (await within(rt.call("phoenix", Num(x=1), timeout=W), W)).x == 2
    await within(rt.deactivate("phoenix"), W)
    await within(rt.send_many("phoenix", [Num(x=i) for i in range(3)]), W)
    old = kill_host_of(rt, "phoenix")
    await eventually(lambda: rt.telemetry("phoenix").restarts == 1)
    t = rt.telemetry("phoenix")
    assert t.extra["placement"]["pid"] != old and t.extra["lost"] == 3 and t.dead_letters == 3
    assert rt.state("phoenix") is KernelState.LAUNCHED  # it was parked when its host died
    await within(rt.activate("phoenix"), W)
    assert (await within(rt.call("phoenix", Num(x=10), timeout=W), W)).x == 11
    assert len(rt.dead_letters("phoenix")) == 3


@pytest.mark.timeout(300)  # the first build of the device kernel in a fresh host may be slow
async def test_a_checkpointed_device_kernel_restarts_from_its_state(cluster_runtime: Any) -> None:
    from pydotcompute.backends.device._compile import find_cxx
    from tests.backends.device_kernels import Job, declare

    if find_cxx() is None:
        pytest.skip("the emulated device needs a C++ compiler (g++ or clang++), none found")
    rt = cluster_runtime
    declare("tally")
    await within(rt.launch("tally", placement="host:device"), 120)  # builds the kernel there
    await within(rt.activate("tally"), W)
    for n in range(3):
        await within(rt.send("tally", Job(n=n, x=2.0, spin=0)), W)
    for _ in range(3):
        await within(rt.receive("tally", timeout=W), W)
    saved = await within(rt.checkpoint("tally"), W)
    assert (int(saved["count"]), float(saved["total"])) == (3, 6.0)
    kill_host_of(rt, "tally")
    await eventually(lambda: rt.telemetry("tally").restarts == 1, 120)
    assert int((await within(rt.read_state("tally"), W))["count"]) == 3
    await within(rt.send("tally", Job(n=9, x=1.0, spin=0)), W)
    assert int((await within(rt.receive("tally", timeout=W), W)).seen) == 4


async def test_checkpoint_is_for_kernels_on_hosts(cluster_runtime: Any) -> None:
    from pydotcompute import KernelStateError

    rt = cluster_runtime
    await within(rt.launch("here", func=inc, placement="driver"), W)
    with pytest.raises(KernelStateError, match=r"checkpoint\('here'\): the kernel runs in this"):
        await rt.checkpoint("here")


async def test_a_link_into_a_dead_host_turns_its_messages_into_dead_letters(
    cluster_runtime: Any,
) -> None:
    from tests.cluster._kernels import double

    rt = cluster_runtime
    for kid, body, host in (("inc", inc, "host:a"), ("double", double, "host:b")):
        await within(rt.launch(kid, func=body, input_type=Num, output_type=Num,
                               placement=host), W)  # fmt: skip
        await within(rt.activate(kid), W)
    await within(rt.link("inc", "double"), W)
    kill_host_of(rt, "double")
    await eventually(lambda: rt.state("double") is KernelState.FAILED)
    await within(rt.send_many("inc", [Num(x=i) for i in range(5)]), W)

    def forwarded() -> list[Any]:
        return [d for d in rt.dead_letters("double") if d.message is not None]

    await eventually(lambda: len(forwarded()) == 5)
    assert sorted(d.message.x for d in forwarded()) == [1, 2, 3, 4, 5]
    assert {d.sender for d in forwarded()} == {"inc"}


async def test_a_restarted_kernel_keeps_its_topics_and_bodies_reach_it_again(
    cluster_runtime: Any,
) -> None:
    from tests.cluster._kernels import Order, router

    rt = cluster_runtime
    await within(rt.launch("phoenix", func=inc, input_type=Num, output_type=Num,
                           placement="host:phoenix", restart="on_failure"), W)  # fmt: skip
    await within(rt.activate("phoenix"), W)
    await within(rt.launch("router", func=router, placement="host:a"), W)
    await within(rt.activate("router"), W)
    await within(rt.subscribe("phoenix", "news"), W)
    kill_host_of(rt, "phoenix")
    await eventually(lambda: rt.telemetry("phoenix").restarts == 1)
    assert await within(rt.publish("news", Num(x=1)), W) == 1
    assert (await within(rt.receive("phoenix", timeout=W), W)).x == 2
    # A body on another host finds it on its new host (the directory was updated).
    assert (await within(rt.call("router", Order(x=2, target="phoenix"), timeout=W), W)).x == 1
    assert (await within(rt.receive("phoenix", timeout=W), W)).x == 3
