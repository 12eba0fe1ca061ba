"""Messages and device kernels shared by the device benchmarks."""

from __future__ import annotations

import numpy as np

from pydotcompute import KernelContext, message, ring_kernel


@message
class Sample:
    """16 bytes of payload (plus the 33 bytes of id, priority and correlation id)."""

    x: np.float64
    y: np.float64


HANDLER = "out.x = 2.0 * msg.x + 1.0; out.y = msg.y;"


def declare(kernel_id: str, mode: str = "sequential", **options: object) -> None:
    """Register the benchmark kernel: ``x -> 2x + 1``."""
    ring_kernel(
        kernel_id=kernel_id,
        input_type=Sample,
        output_type=Sample,
        cuda=HANDLER,
        mode=mode,
        replace=True,
        **options,  # type: ignore[arg-type]
    )


async def host_echo(ctx: KernelContext[Sample, Sample]) -> None:
    """The same work as a host ring kernel, one message at a time."""
    while not ctx.should_terminate:
        m = await ctx.receive()
        await ctx.send(Sample(x=2.0 * m.x + 1.0, y=m.y))


async def host_batch(ctx: KernelContext[Sample, Sample]) -> None:
    """The same work as a host ring kernel taking batches."""
    while not ctx.should_terminate:
        batch = await ctx.receive_many(4096)
        await ctx.send_many([Sample(x=2.0 * m.x + 1.0, y=m.y) for m in batch])
