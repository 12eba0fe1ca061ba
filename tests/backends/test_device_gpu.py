"""CUDA-only behaviours of device ring kernels (the shared ones run in test_device.py).

A fault poisons the CUDA context of its process, so faults are provoked in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pydotcompute import RingKernelRuntime, ring_kernel
from pydotcompute._cuda import cuda_status
from tests.backends.device_kernels import Job, declare
from tests.conftest import within

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not cuda_status().usable, reason=f"no usable CUDA GPU: {cuda_status().reason}"
    ),
]

FAULT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from pydotcompute import KernelFailedError, RingKernelRuntime, ring_kernel
    from tests.backends.device_kernels import Done, Job

    ring_kernel(kernel_id="faulty", input_type=Job, output_type=Done, cuda={source!r})

    async def main():
        async with RingKernelRuntime(device="cuda") as rt:
            await rt.launch("faulty")
            await rt.activate("faulty")
            await rt.send("faulty", Job(n=1, x=0.0, spin=0))
            try:
                await rt.receive("faulty", timeout=30)
            except KernelFailedError as exc:
                cause = exc.__cause__
                print(rt.state("faulty").value, cause.cuda_error, cause.context_usable)
                print(cause)
            await rt.terminate("faulty", timeout=5)

    asyncio.run(main())
    """
)


def run_fault(source: str) -> list[str]:
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", FAULT.format(root=root, source=source)],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    return proc.stdout.strip().splitlines()


def test_illegal_address_fails_the_kernel_and_says_the_context_is_lost() -> None:
    lines = run_fault("int* p = (int*)0x10; *p = (int)msg.n; out.n = *p;")
    state, error, usable = lines[0].split()
    assert (state, error, usable) == ("FAILED", "cudaErrorIllegalAddress", "False")
    assert "NOT usable" in lines[1]


def test_trap_fails_the_kernel_with_the_cuda_error() -> None:
    lines = run_fault("__trap();")
    state, error, usable = lines[0].split()
    assert state == "FAILED" and error.startswith("cudaError") and usable == "False"


async def test_launch_runs_on_the_gpu_with_one_launch() -> None:
    declare()
    async with RingKernelRuntime(device="cuda") as rt:
        result = await within(rt.launch("worker"), 60)
        assert result.backend == "device" and result.device.startswith("cuda:")
        await rt.activate("worker")
        reply = await within(rt.call("worker", Job(n=4, x=1.0, spin=0), timeout=10))
        assert int(reply.n) == 4
        t = rt.telemetry("worker")
        assert t.launches == 1 and t.extra["compiler"].startswith("NVRTC")


def test_module_loading_is_eager_and_the_toolchain_matches_cupy() -> None:
    from pydotcompute._cuda import cupy_cuda_major
    from pydotcompute.backends.device._nvrtc import load_nvrtc

    status = cuda_status()
    assert status.module_loading == "EAGER"
    nvrtc = load_nvrtc(at_most=status.driver_major)
    assert nvrtc.version[0] == cupy_cuda_major()


async def test_a_running_kernel_holds_its_place_until_terminated() -> None:
    from pydotcompute.backends.device._cuda_launch import residency

    declare("resident")
    before = residency()
    async with RingKernelRuntime(device="cuda") as rt:
        await within(rt.launch("resident"), 60)
        count, sms = residency()
        assert count == before[0] + 1 and sms > before[1]
        await within(rt.terminate("resident"), 30)
        assert residency() == before


async def test_a_register_heavy_parallel_block_of_1024_launches_and_replies() -> None:
    from tests.backends.test_device_build import HEAVY, Wide

    ring_kernel(
        kernel_id="heavy", input_type=Wide, output_type=Wide, mode="parallel",
        block_size=1024, cuda=HEAVY,
    )  # fmt: skip
    async with RingKernelRuntime(device="cuda") as rt:
        await within(rt.launch("heavy"), 60)
        await rt.activate("heavy")
        reply = await within(rt.call("heavy", Wide(v=np.full(32, 0.5)), timeout=30), 40)
        assert np.isfinite(np.asarray(reply.v)).all()
        assert rt.telemetry("heavy").extra["threads"] == 1024


async def test_a_device_link_ring_is_gpu_global_memory_and_no_reply_crosses_to_the_host() -> None:
    import cupy

    ring_kernel(kernel_id="up", input_type=Job, output_type=Job, cuda="out = msg;")
    ring_kernel(
        kernel_id="down", input_type=Job, output_type=Job, mode="parallel", block_size=64,
        cuda="out = msg;\nout.x = msg.x + 1.0f;",
    )  # fmt: skip
    async with RingKernelRuntime(device="cuda") as rt:
        for kid in ("up", "down"):
            await within(rt.launch(kid), 60)
            await within(rt.activate(kid))
        await within(rt.link("up", "down"), 30)
        link = rt._kernels["up"].link_out  # type: ignore[attr-defined]
        assert link is not None and link.down.kernel_id == "down"
        where = cupy.cuda.runtime.pointerGetAttributes(link.offset)
        assert where.type == cupy.cuda.runtime.memoryTypeDevice  # not pinned host memory
        for n in range(1000):
            await within(rt.send("up", Job(n=n, x=float(n), spin=0)))
        got = [await within(rt.receive("down", timeout=30), 40) for _ in range(1000)]
        assert [(int(m.n), float(m.x)) for m in got] == [(n, n + 1.0) for n in range(1000)]
        up = rt.telemetry("up")
        assert (up.sent, up.outbox_depth, up.extra["device_link_to"]) == (0, 0, "down")
        assert [rt.telemetry(k).launches for k in ("up", "down")] == [1, 1]
        await within(rt.unlink("up"), 30)  # the ring is read back (empty) and pooled
        assert rt.telemetry("up").extra["device_link_to"] is None


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from pydotcompute import RingKernelRuntime
    from tests.backends.device_kernels import declare

    async def main():
        declare()
        rt = RingKernelRuntime(device="cuda")
        {body}

    asyncio.run(main())
    """
)


def run_child(body: str, **env: str) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-c", CHILD.format(root=root, body=body)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip


def test_launch_blocking_is_refused_not_hung() -> None:
    proc = run_child(
        "try:\n        await rt.launch('worker')\n"
        "    except Exception as exc:\n        print(type(exc).__name__, exc)",
        CUDA_LAUNCH_BLOCKING="1",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("BackendUnavailableError") and "never return" in proc.stdout


def test_interpreter_exit_with_a_kernel_running_stops_it_and_returns() -> None:
    proc = run_child("await rt.launch('worker'); await rt.activate('worker'); print('left')")
    assert proc.returncode == 0 and proc.stdout.strip() == "left", proc.stderr
    assert "did not stop" not in proc.stderr
