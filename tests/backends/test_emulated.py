"""The emulated device's failure model and costs: faulting handlers fail only their kernel, an
idle kernel sleeps, every launch is unloaded, and no kernel outlives its Python process."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from pydotcompute import (
    DeviceFaultError,
    InvalidArgumentError,
    KernelFailedError,
    KernelState,
    OperationTimeoutError,
    RingKernelRuntime,
    fixed_layout,
    ring_kernel,
)
from pydotcompute.backends.device._compile import find_cxx
from tests.backends.conftest import NO_CXX
from tests.backends.device_kernels import Done, Job, declare
from tests.conftest import until, within

pytestmark = [pytest.mark.timeout(300), pytest.mark.skipif(find_cxx() is None, reason=NO_CXX)]

ROOT = Path(__file__).resolve().parents[2]

# handler source -> what the failure must say (each faults on message 2, at its line 2)
FAULTS = {
    "sigfpe": (
        "long long d = msg.n - 2;\nout.n = 10 / d;",
        r"SIGFPE \(integer divide by zero\) at handle line 2",
    ),
    "sigabrt": (
        "if (msg.n == 2) {\n    abort();\n}\nout.n = msg.n;",
        r"SIGABRT \(abort\(\) was called\) at handle line 2",
    ),
    "null-pointer": (
        "if (msg.n == 2) {\n    *(volatile int*)0 = 1;\n}\nout.n = msg.n;",
        r"SIGSEGV \(address not mapped: address 0x0\) at handle line 2",
    ),
    "wild-pointer": (
        "if (msg.n == 2) {\n    *(volatile int*)0x12345678 = 1;\n}\nout.n = msg.n;",
        r"SIGSEGV \(address not mapped: address 0x12345678\) at handle line 2",
    ),
    "trap": (
        "if (msg.n == 2) {\n    __trap();\n}\nout.n = msg.n;",
        r"trapped: the handler called __trap\(\)",
    ),
}


def jobs(count: int, spin: int = 0) -> list[Job]:
    return [Job(n=i, x=float(i), spin=spin) for i in range(count)]


async def started(rt: RingKernelRuntime, kid: str = "worker", **options: object) -> None:
    await within(rt.launch(kid, **options), 60)
    await rt.activate(kid)


def process_state(pid: int) -> str:
    """The one-letter state of a process (R running, S sleeping, Z zombie), "" if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


def children() -> set[str]:
    """Process ids of this process's children (live or not yet reaped)."""
    out: set[str] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out |= set(f.read().split())
    return out


def mappings(word: str) -> int:
    with open("/proc/self/maps") as f:
        return sum(word in line for line in f)


linux_proc = pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="needs Linux /proc to see processes"
)


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("case", sorted(FAULTS))
async def test_a_faulting_handler_fails_its_kernel_and_nothing_else(case: str) -> None:
    source, says = FAULTS[case]
    declare()  # a healthy neighbour
    ring_kernel(kernel_id="faulty", input_type=Job, output_type=Done, cuda=source)
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt)
        await started(rt, "faulty")
        for job in jobs(4):
            await rt.send("faulty", job)
        replies = [await within(rt.receive("faulty", timeout=10)) for _ in range(2)]
        assert len(replies) == 2
        with pytest.raises(KernelFailedError, match=says) as info:
            await within(rt.receive("faulty", timeout=10))
        cause = info.value.__cause__
        assert isinstance(cause, DeviceFaultError) and cause.context_usable
        assert "while handling message 2 (counted from 0 since launch)" in str(cause)
        assert rt.state("faulty") is KernelState.FAILED
        # The faulting message was consumed; the one after it is kept on the host.
        assert rt.telemetry("faulty").inbox_depth == 1
        reply = await within(rt.call("worker", Job(n=5, x=1.0, spin=0), timeout=10))
        assert int(reply.n) == 5 and rt.state("worker") is KernelState.ACTIVE


async def test_a_failed_kernel_can_be_terminated_and_launched_again() -> None:
    ring_kernel(kernel_id="faulty", input_type=Job, output_type=Done, cuda=FAULTS["trap"][0])
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt, "faulty")
        await rt.send_many("faulty", jobs(3))
        await within(until(lambda: rt.state("faulty") is KernelState.FAILED), 10)
        await within(rt.terminate("faulty"), 15)
        await started(rt, "faulty")
        reply = await within(rt.call("faulty", Job(n=1, x=0.0, spin=0), timeout=10))
        assert int(reply.n) == 1


# ---------------------------------------------------------------- idle, waking, spinning


@linux_proc
async def test_an_idle_kernel_sleeps_in_the_os_until_a_send_wakes_it() -> None:
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt)
        await within(until(lambda: rt.telemetry("worker").extra["sleeping"]))
        pid = rt.telemetry("worker").extra["process_id"]
        await within(until(lambda: process_state(pid) == "S"))
        polls = rt.telemetry("worker").extra["idle_polls"]
        # Nothing to wait for: over this span a sleeping kernel must not poll at all.
        await asyncio.sleep(0.2)
        assert rt.telemetry("worker").extra["idle_polls"] == polls
        reply = await within(rt.call("worker", Job(n=3, x=1.0, spin=0), timeout=10))
        assert int(reply.n) == 3


async def test_a_parked_kernel_sleeps_too_and_activate_wakes_it() -> None:
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await within(rt.launch("worker"), 60)
        await rt.send_many("worker", jobs(3))
        await within(until(lambda: rt.telemetry("worker").extra["sleeping"]))
        await rt.activate("worker")
        replies = [await within(rt.receive("worker", timeout=10)) for _ in range(3)]
        assert [int(r.n) for r in replies] == [0, 1, 2]


async def test_a_full_outbox_sleeps_until_the_host_takes_replies() -> None:
    declare(input_queue_size=64, output_queue_size=2)
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt)
        await rt.send_many("worker", jobs(20))

        def asleep_on_a_full_outbox() -> bool:
            t = rt.telemetry("worker")
            return (
                t.outbox_depth == 2 and bool(t.extra["outbox_full_waits"]) and t.extra["sleeping"]
            )

        await within(until(asleep_on_a_full_outbox))
        replies = [await within(rt.receive("worker", timeout=10)) for _ in range(20)]
        assert [int(r.n) for r in replies] == list(range(20))


async def test_call_and_receive_on_a_fast_kernel_do_not_suspend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 1 s spin window: the replies come within it however busy the machine is.
    monkeypatch.setenv("PYDOTCOMPUTE_DEVICE_SPIN_US", "1000000")
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        for i in range(20):
            reply = await rt.call("worker", Job(n=i, x=0.0, spin=0), timeout=10)
            await rt.send("worker", Job(n=i, x=0.0, spin=0))
            again = await rt.receive("worker", timeout=10)
            assert int(reply.n) == int(again.n) == i
        assert ticks == before  # the event loop never ran the ticker in between
        task.cancel()


async def test_receive_many_as_array_after_a_wait_keeps_order_and_layout() -> None:
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await started(rt, queue_size=1024)
        arr = fixed_layout(Job).to_array(jobs(500, spin=2_000))
        await rt.send_many("worker", arr)
        got = []
        while sum(map(len, got)) < 500:
            got.append(await within(rt.receive_many("worker", timeout=10, as_array=True)))
        assert all(g.dtype == fixed_layout(Done).dtype for g in got)
        assert [int(n) for g in got for n in g["n"]] == list(range(500))


async def test_a_bad_spin_window_is_refused_at_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDOTCOMPUTE_DEVICE_SPIN_US", "fast")
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        with pytest.raises(
            InvalidArgumentError,
            match=r"PYDOTCOMPUTE_DEVICE_SPIN_US='fast' must be a number of microseconds",
        ):
            await within(rt.launch("worker"), 60)
        assert rt.kernels == ()


# ---------------------------------------------------------------- lifetimes and memory


async def test_a_queue_size_that_cannot_be_allocated_is_a_clear_error() -> None:
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        with pytest.raises(
            InvalidArgumentError,
            match=r"queue_size 1099511627776 \(inbox\) / 1099511627776 \(outbox\) needs "
            r"[\d,]+ bytes of mailbox memory .* launch it with a smaller queue_size",
        ):
            await within(rt.launch("worker", queue_size=2**40), 60)
        assert rt.kernels == ()
        await started(rt)
        assert int((await within(rt.call("worker", jobs(1)[0], timeout=10))).n) == 0


@linux_proc
async def test_200_launches_leave_no_process_mapping_or_library_behind() -> None:
    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await within(rt.launch("worker"), 60)  # builds once
        await within(rt.terminate("worker"), 15)
        kids, mailboxes = children(), mappings("/memfd:pdc-")
        pids = set()
        for _ in range(200):
            await within(rt.launch("worker"), 60)
            pids.add(rt.telemetry("worker").extra["process_id"])
            await within(rt.terminate("worker"), 15)
        assert len(pids) == 200
        assert children() == kids
        assert mappings("/memfd:pdc-") == mailboxes == 0
        assert mappings("/emulated/") == 0  # kernel libraries load in the kernels' processes


@linux_proc
async def test_a_handler_that_never_returns_is_reported_once_and_its_process_ended() -> None:
    declare()
    rt = RingKernelRuntime(device="emulated")
    async with rt:
        await started(rt)
        await rt.send("worker", Job(n=0, x=0.0, spin=600_000_000_000))
        await within(until(lambda: rt.telemetry("worker").inbox_depth == 0))
        pid = rt.telemetry("worker").extra["process_id"]
        with pytest.raises(OperationTimeoutError, match=r"did not exit within 0\.1 s") as info:
            await rt.terminate("worker", timeout=0.1)
        assert "its process was ended" in str(info.value.__cause__)
        assert rt.state("worker") is KernelState.FAILED
        assert process_state(pid) == ""  # ended and reaped
    # Leaving the block shut the runtime down without reporting the kernel again.
    assert rt.state("worker") is KernelState.TERMINATED


@linux_proc
def test_a_kernel_process_ends_with_its_python_process(build_cache: Path) -> None:
    script = textwrap.dedent("""
        import asyncio, os
        from pydotcompute import RingKernelRuntime
        from tests.backends.device_kernels import declare

        async def main():
            declare()
            rt = RingKernelRuntime(device="emulated")
            await rt.launch("worker")
            print(rt.telemetry("worker").extra["process_id"], flush=True)
            os._exit(0)  # no cleanup at all, as if the Python process crashed

        asyncio.run(main())
    """)
    env = {**os.environ, "PYDOTCOMPUTE_CACHE_DIR": str(build_cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    try:
        ready, _, _ = select.select([fd], [], [], 30)
    finally:
        os.close(fd)
    assert ready, f"the kernel's process {pid} outlived its Python process"


@linux_proc
async def test_a_launch_that_does_not_return_is_a_clear_error_and_the_loop_runs_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydotcompute.backends.device import _emulated, _kernel

    declare()
    async with RingKernelRuntime(device="emulated") as rt:
        await within(rt.launch("worker"), 60)  # built and cached before the launch sticks
        await within(rt.terminate("worker"), 15)
        kids = children()
        monkeypatch.setattr(_kernel, "START_TIMEOUT_S", 0.3)
        gate, returned = threading.Event(), threading.Event()
        real_start = _emulated.EmulatedLauncher.start

        def stuck_start(self: _emulated.EmulatedLauncher, *args: object) -> None:
            gate.wait(30)  # a launch call that does not return (a busy GPU, a blocking driver)
            real_start(self, *args)  # type: ignore[arg-type]
            returned.set()

        monkeypatch.setattr(_emulated.EmulatedLauncher, "start", stuck_start)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        with pytest.raises(
            DeviceFaultError, match=r"did not start: launching it did not return within 0\.3 s"
        ):
            await within(rt.launch("worker"), 30)
        assert ticks > 10  # the event loop ran while the launch was stuck
        task.cancel()
        assert rt.state("worker") is KernelState.TERMINATED  # the refused launch changed nothing
        gate.set()  # the launch returns late: its process is ended at once
        await within(until(returned.is_set), 10)
        await within(until(lambda: children() == kids), 10)


@pytest.mark.parametrize("flavour", ["extension", "ctypes"])
def test_the_host_endpoint_native_and_python_fallback_agree(flavour: str) -> None:
    # The Python fallback serves CUDA machines without a C++ compiler: same stores, no spin.
    # The native code is a CPython extension where this Python's headers are installed, and
    # the same C code through ctypes where they are not: both must behave alike.
    from pydotcompute.backends.device import _native
    from pydotcompute.backends.device._memory import CONTROL_BYTES, WORD

    if flavour == "extension":
        if _native._python_headers() is None:
            pytest.skip("this Python's headers (Python.h) are not installed")
        lib = ("extension", _native._extension())
    else:
        lib = _native._ctypes_library()
    memory = np.zeros(CONTROL_BYTES // 8, np.uint64)
    ctl = memoryview(memory).cast("B").cast("Q")
    native = _native.NativeEndpoint(lib, memory.ctypes.data, ctl, 2_000_000)
    assert native.kind == flavour
    fallback = _native.PythonEndpoint(ctl)
    native.publish(WORD["doorbell"], 4 << 2 | 1)
    assert int(memory[WORD["doorbell"]]) == 17
    fallback.publish(WORD["host_wait"], 3)
    assert int(memory[WORD["host_wait"]]) == 3
    memory[WORD["out_tail"]] = 5
    assert native.spin(WORD["out_tail"], 4) == 5  # already changed: returns at once
    assert native.spin(WORD["out_tail"], 5) == 5  # unchanged: returns after its 2 ms window
    assert fallback.spin(WORD["out_tail"], 5) == 5 and fallback.spin_ns == 0
    # A sleeping device (sleeping 1: waiting for the doorbell) is woken by a publish.
    seq = int(memory[WORD["wake_seq"]])
    memory[WORD["sleeping"]] = 1
    native.publish(WORD["doorbell"], 5 << 2 | 1)
    assert int(memory[WORD["wake_seq"]]) == seq + 1


def test_the_extension_endpoint_refuses_words_outside_the_control_block() -> None:
    from pydotcompute.backends.device import _native
    from pydotcompute.backends.device._memory import CONTROL_BYTES

    if _native._python_headers() is None:
        pytest.skip("this Python's headers (Python.h) are not installed")
    memory = np.zeros(CONTROL_BYTES // 8, np.uint64)
    ep = _native._extension().Endpoint(memory.ctypes.data, 0, memory)
    with pytest.raises(IndexError, match="out of range"):
        ep.publish(CONTROL_BYTES // 8, 1)
    with pytest.raises(IndexError, match="out of range"):
        ep.spin(CONTROL_BYTES // 8, 0)
    with pytest.raises(OverflowError):
        ep.publish(-1, 1)
    with pytest.raises(ValueError, match="aligned"):
        _native._extension().Endpoint(memory.ctypes.data + 1, 0, memory)
    assert not memory.any()  # nothing was written by the refused calls


def test_info_says_how_the_host_endpoint_runs() -> None:
    from pydotcompute.backends.device import probe_emulated
    from pydotcompute.backends.device._native import endpoint_kind

    name, usable, detail = probe_emulated()
    assert name == "emulated" and usable and f"host endpoint: {endpoint_kind()}" in detail
