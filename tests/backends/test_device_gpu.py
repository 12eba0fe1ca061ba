"""CUDA-only behaviours of device ring kernels (the shared ones run in test_device.py).

A fault poisons the CUDA context of its process, so faults are provoked in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pydotcompute import RingKernelRuntime
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
