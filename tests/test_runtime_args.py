"""RingKernelRuntime: bad arguments and misuse at every verb are refused, changing nothing."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pydotcompute import (
    InvalidArgumentError,
    KernelContext,
    KernelNotFoundError,
    KernelState,
    KernelStateError,
    MessageTypeError,
    QueueFullError,
    ReceiveTimeoutError,
    RingKernelRuntime,
    message,
    ring_kernel,
)
from tests.conftest import within


@message
class Num:
    value: float


async def echo(ctx: KernelContext[Any, Any]) -> None:
    while not ctx.should_terminate:
        await ctx.send(await ctx.receive())


async def copier(ctx: KernelContext[Num, Num]) -> None:
    """Replies with a new message, so ``call`` finds it by its correlation id."""
    while not ctx.should_terminate:
        await ctx.send(Num(value=(await ctx.receive()).value))


Verb = Callable[[RingKernelRuntime, Any], Awaitable[Any]]

#: every verb that takes a timeout, called on kernel "e" with the given timeout
TIMED: dict[str, Verb] = {
    "send": lambda rt, t: rt.send("e", Num(value=1), timeout=t),
    "send_many": lambda rt, t: rt.send_many("e", [Num(value=1)], timeout=t),
    "receive": lambda rt, t: rt.receive("e", timeout=t),
    "receive_many": lambda rt, t: rt.receive_many("e", timeout=t),
    "call": lambda rt, t: rt.call("e", Num(value=1), timeout=t),
    "terminate": lambda rt, t: rt.terminate("e", timeout=t),
    "relaunch": lambda rt, t: rt.relaunch("e", timeout=t),
    "shutdown": lambda rt, t: rt.shutdown(timeout=t),
}

BAD_TIMEOUTS = [
    (math.nan, r"timeout=nan\): expected a number of seconds >= 0 or None"),
    (-1, r"timeout=-1\): expected a number of seconds >= 0 or None"),
    (-0.5, r"timeout=-0\.5\): expected a number of seconds >= 0"),
    ("5", r"timeout='5'\): expected a number of seconds >= 0 or None, got a str"),
    (True, r"timeout=True\): expected a number of seconds >= 0 or None, got a bool"),
    ([1], r"timeout=\[1\]\): expected a number of seconds >= 0 or None, got a list"),
]


@pytest.mark.parametrize("verb", sorted(TIMED))
@pytest.mark.parametrize(("timeout", "match"), BAD_TIMEOUTS)
async def test_a_bad_timeout_is_refused_at_once_and_changes_nothing(
    runtime: RingKernelRuntime, verb: str, timeout: Any, match: str
) -> None:
    await runtime.launch("e", func=echo)
    await runtime.send("e", Num(value=0))  # queued while LAUNCHED
    with pytest.raises(InvalidArgumentError, match=f"{verb}\\({match}"):
        await within(TIMED[verb](runtime, timeout))
    t = runtime.telemetry("e")
    assert (t.state, t.received, t.inbox_depth, t.redeploys) == ("LAUNCHED", 1, 1, 0)
    assert not runtime.closed
    await runtime.activate("e")
    assert (await within(runtime.receive("e"))).value == 0  # nothing was queued twice
    with pytest.raises(ReceiveTimeoutError):
        await runtime.receive("e", timeout=0.01)


async def test_infinite_timeout_means_no_limit_like_none(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=copier)
    await runtime.activate("e")
    assert await runtime.send("e", Num(value=3), timeout=math.inf) is True
    assert (await within(runtime.receive("e", timeout=math.inf))).value == 3
    got = await within(runtime.call("e", Num(value=4), timeout=float("inf")))
    assert got.value == 4
    result = await within(runtime.terminate("e", timeout=math.inf))
    assert result.graceful


async def test_zero_timeout_means_do_not_wait(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo)
    with pytest.raises(ReceiveTimeoutError, match="within 0 s"):
        await within(runtime.receive("e", timeout=0))


ID_VERBS: dict[str, Verb] = {
    "launch": lambda rt, k: rt.launch(k, func=echo),
    "activate": lambda rt, k: rt.activate(k),
    "deactivate": lambda rt, k: rt.deactivate(k),
    "terminate": lambda rt, k: rt.terminate(k),
    "relaunch": lambda rt, k: rt.relaunch(k),
    "send": lambda rt, k: rt.send(k, Num(value=1)),
    "send_many": lambda rt, k: rt.send_many(k, [Num(value=1)]),
    "receive": lambda rt, k: rt.receive(k),
    "receive_many": lambda rt, k: rt.receive_many(k),
    "call": lambda rt, k: rt.call(k, Num(value=1)),
}


@pytest.mark.parametrize("verb", sorted(ID_VERBS))
@pytest.mark.parametrize(
    ("kernel_id", "got"),
    [(123, "a int"), (None, "a NoneType"), ("", "an empty str"), (["a"], "a list")],
)
async def test_kernel_ids_are_non_empty_strings_at_every_verb(
    runtime: RingKernelRuntime, verb: str, kernel_id: Any, got: str
) -> None:
    await runtime.launch("e", func=echo)  # a kernel exists, so error texts list ids
    with pytest.raises(
        InvalidArgumentError, match=f"{verb}\\(kernel_id=.*non-empty str, got {got}"
    ):
        await within(ID_VERBS[verb](runtime, kernel_id))
    assert runtime.kernels == ("e",)


@pytest.mark.parametrize("name", ["state", "options", "telemetry", "forget"])
async def test_sync_verbs_check_kernel_ids_too(runtime: RingKernelRuntime, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{name}\\(kernel_id=42\\)"):
        getattr(runtime, name)(42)


async def test_unknown_id_lists_the_known_ones_sorted(runtime: RingKernelRuntime) -> None:
    await runtime.launch("b", func=echo)
    await runtime.launch("a", func=echo)
    with pytest.raises(KernelNotFoundError, match=r"no ring kernel 'zz' .*known: a, b"):
        await runtime.send("zz", Num(value=1))


# ---------------------------------------------------------------- one event loop


ALL_VERBS: dict[str, Verb] = {
    **ID_VERBS,
    "shutdown": lambda rt, k: rt.shutdown(),
}


@pytest.mark.parametrize("verb", sorted(ALL_VERBS))
async def test_every_verb_refuses_another_thread_and_changes_nothing(verb: str) -> None:
    rt = RingKernelRuntime()
    await rt.launch("e", func=echo)
    await rt.send("e", Num(value=7))
    caught: list[BaseException] = []

    def other_thread() -> None:
        async def use() -> None:
            await ALL_VERBS[verb](rt, "e")

        try:
            asyncio.run(use())
        except BaseException as exc:
            caught.append(exc)

    await within(asyncio.to_thread(other_thread))
    assert len(caught) == 1
    with pytest.raises(
        KernelStateError,
        match=r"runs on the event loop of thread 'MainThread' and was called from another "
        r"event loop in another thread \('asyncio_\d+'\).*run_coroutine_threadsafe",
    ):
        raise caught[0]
    t = rt.telemetry("e")
    assert (t.state, t.received, t.inbox_depth) == ("LAUNCHED", 1, 1)
    await rt.activate("e")
    assert (await within(rt.receive("e"))).value == 7
    await within(rt.shutdown())


def test_verbs_after_the_loop_closed_say_so() -> None:
    rt = RingKernelRuntime()

    async def first() -> None:
        await rt.launch("e", func=echo)
        await rt.activate("e")

    asyncio.run(first())

    async def later() -> None:
        await rt.send("e", Num(value=1))

    with pytest.raises(
        KernelStateError, match="the event loop this RingKernelRuntime ran on is closed"
    ):
        asyncio.run(later())

    async def receive_later() -> None:
        await rt.receive("e")

    with pytest.raises(KernelStateError, match=r"is closed .*create a new RingKernelRuntime"):
        asyncio.run(receive_later())


# ---------------------------------------------------------------- send_many


@pytest.mark.parametrize("bad", [5, 3.5, None, Num(value=1)])
async def test_send_many_refuses_a_non_iterable(runtime: RingKernelRuntime, bad: Any) -> None:
    await runtime.launch("e", func=echo)
    with pytest.raises(MessageTypeError, match=r"send_many\('e', msgs=...\): expected an iterable"):
        await runtime.send_many("e", bad)
    assert runtime.telemetry("e").received == 0


async def test_send_many_keeps_an_iterators_own_error(runtime: RingKernelRuntime) -> None:
    def broken() -> Any:
        yield Num(value=1)
        raise TypeError("the generator broke")

    await runtime.launch("e", func=echo)
    with pytest.raises(TypeError, match="the generator broke"):
        await runtime.send_many("e", broken())
    assert runtime.telemetry("e").received == 0


async def test_a_reject_batch_that_partly_fits_says_how_many_were_queued(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("r", func=echo, queue_size=4, backpressure="reject")
    await runtime.send("r", Num(value=-1))
    batch = [Num(value=i) for i in range(5)]
    with pytest.raises(
        QueueFullError,
        match=r"full \(4 messages\).*\(3 of the 5 messages of this send_many were queued, the "
        r"first 3; they stay queued: resend msgs\[3:\]\)",
    ) as info:
        await runtime.send_many("r", batch)
    assert info.value.queued == 3
    t = runtime.telemetry("r")
    assert (t.inbox_depth, t.received, t.rejected) == (4, 4, 1)
    await runtime.activate("r")
    got = [(await within(runtime.receive("r"))).value for _ in range(4)]
    assert got == [-1, 0, 1, 2]
    assert await runtime.send_many("r", batch[info.value.queued :]) == 2


# ---------------------------------------------------------------- forget


async def test_forget_drops_an_ended_kernel_and_refuses_a_live_one(
    runtime: RingKernelRuntime,
) -> None:
    await runtime.launch("e", func=echo)
    with pytest.raises(
        KernelStateError, match=r"cannot forget ring kernel 'e': it is LAUNCHED .*terminate\('e'\)"
    ):
        runtime.forget("e")
    await runtime.terminate("e")
    runtime.forget("e")
    assert runtime.kernels == ()
    assert "e" not in runtime.snapshot().kernels
    with pytest.raises(KernelNotFoundError, match="no ring kernel 'e'"):
        runtime.forget("e")
    await runtime.launch("e", func=echo)  # the id is free again
    assert runtime.telemetry("e").launches == 1


async def test_forget_a_failed_host_kernel(runtime: RingKernelRuntime) -> None:
    async def boom(ctx: KernelContext[Any, Any]) -> None:
        await ctx.receive()
        raise ValueError("boom")

    await runtime.launch("f", func=boom)
    await runtime.activate("f")
    await runtime.send("f", Num(value=1))
    with pytest.raises(Exception, match="boom"):
        await within(runtime.receive("f"))
    assert runtime.state("f") is KernelState.FAILED
    runtime.forget("f")
    assert runtime.kernels == ()


async def test_forget_keeps_a_registered_kernel_registered(runtime: RingKernelRuntime) -> None:
    @ring_kernel(kernel_id="reg")
    async def reg(ctx: KernelContext[Any, Any]) -> None:
        await echo(ctx)

    await runtime.launch("reg")
    await runtime.terminate("reg")
    runtime.forget("reg")
    assert runtime.state("reg") is KernelState.CREATED


def test_forget_after_the_loop_closed_and_from_sync_code() -> None:
    rt = RingKernelRuntime()

    async def first() -> None:
        await rt.launch("live", func=echo)
        await rt.activate("live")
        await rt.launch("done", func=echo)
        await rt.terminate("done")

    asyncio.run(first())  # returns with "live" still ACTIVE: it ended with the loop
    rt.forget("done")
    rt.forget("live")
    assert rt.kernels == ()


async def test_forget_from_another_thread_is_refused(runtime: RingKernelRuntime) -> None:
    await runtime.launch("e", func=echo)
    await runtime.terminate("e")
    with pytest.raises(KernelStateError, match=r"was called from another thread \('asyncio_\d+'\)"):
        await within(asyncio.to_thread(runtime.forget, "e"))
    assert runtime.kernels == ("e",)
