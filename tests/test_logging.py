"""The library logs through logging.getLogger("pydotcompute") and prints nothing by itself."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import pydotcompute
from pydotcompute import KernelContext, KernelFailedError, RingKernelRuntime, message
from tests.conftest import within


@message
class Job:
    n: int


async def fails_on_negative(ctx: KernelContext[Job, Job]) -> None:
    while not ctx.should_terminate:
        job = await ctx.receive()
        if job.n < 0:
            raise ValueError(f"cannot handle job {job.n}")
        await ctx.send(job)


def test_the_library_logger_has_a_null_handler_only() -> None:
    handlers = logging.getLogger("pydotcompute").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]
    assert pydotcompute.__doc__ is not None and 'getLogger("pydotcompute")' in pydotcompute.__doc__


def test_a_failing_kernel_prints_nothing_but_still_raises() -> None:
    # A fresh interpreter: no logging configured, as in a notebook kernel or a script.
    script = textwrap.dedent(
        """
        import asyncio
        from pydotcompute import KernelContext, KernelFailedError, RingKernelRuntime, message

        @message
        class Job:
            n: int

        async def body(ctx: KernelContext[Job, Job]) -> None:
            while not ctx.should_terminate:
                job = await ctx.receive()
                raise ValueError(f"cannot handle job {job.n}")

        async def main() -> None:
            async with RingKernelRuntime() as rt:
                await rt.launch("flaky", func=body)
                await rt.activate("flaky")
                await rt.send("flaky", Job(n=-1))
                try:
                    await rt.receive("flaky", timeout=5)
                except KernelFailedError as exc:
                    print("raised:", exc.__cause__)
                print("errors:", rt.telemetry("flaky").errors, rt.telemetry("flaky").last_error)

        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [
        "raised: cannot handle job -1",
        "errors: 1 ValueError: cannot handle job -1",
    ]


async def test_a_failure_is_logged_for_an_application_that_listens(
    runtime: RingKernelRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pydotcompute")
    await within(runtime.launch("flaky", func=fails_on_negative))
    await within(runtime.activate("flaky"))
    await within(runtime.send("flaky", Job(n=-1)))
    with pytest.raises(KernelFailedError, match="flaky"):
        await within(runtime.receive("flaky"))
    records = [r for r in caplog.records if r.name == "pydotcompute"]
    assert [r.getMessage() for r in records] == [
        "ring kernel 'flaky' failed: ValueError: cannot handle job -1"
    ]
    assert records[0].levelno == logging.WARNING
