"""A host ring kernel that keeps a UnifiedBuffer as state and runs a @kernel per batch.

Each ``Batch`` message carries readings for a fixed set of channels. The actor folds every
batch into an exponential moving average held in a ``UnifiedBuffer`` (on the GPU when there
is one, else the CPU) with one awaited ``@kernel`` launch (``launch_async``: other ring
kernels keep running meanwhile), and replies with the channel that moved
most. The state never leaves the device between batches: only the batch goes in, and the
reply reads the state back once.

Run it with ``python examples/compute_ring_kernel.py``.
"""

from __future__ import annotations

import asyncio

import numpy as np

from pydotcompute import (
    Array,
    KernelContext,
    RingKernelRuntime,
    UnifiedBuffer,
    kernel,
    message,
)

CHANNELS = 256


@message
class Batch:
    """One reading per channel."""

    values: Array[np.float32, CHANNELS]


@message
class Summary:
    """The state after a batch: the channel with the largest average, and that average."""

    batches: int
    hottest: int
    average: float


@kernel
def blend(i, alpha, batch, state):
    state[i] = (1.0 - alpha) * state[i] + alpha * batch[i]


async def smoother(ctx: KernelContext[Batch, Summary]) -> None:
    """Fold each batch into a moving average kept on the accelerator."""
    state = UnifiedBuffer((CHANNELS,), np.float32)  # zeroed on both sides
    batch = UnifiedBuffer((CHANNELS,), np.float32, pinned=True)
    seen = 0
    while not ctx.should_terminate:
        msg = await ctx.receive()
        batch.host[:] = msg.values  # host side written: one copy to the device at launch
        # Awaited: the launch (and its first compilation) leaves the event loop free.
        await blend.launch_async(np.float32(0.25), batch, state)  # state stays on the device
        seen += 1
        averages = state.host_view()  # one copy back, read-only
        hottest = int(np.argmax(averages))
        await ctx.send(Summary(batches=seen, hottest=hottest, average=float(averages[hottest])))


async def main(batches: int = 20, seed: int = 3) -> list[Summary]:
    """Stream ``batches`` batches through the smoother and return its replies."""
    rng = np.random.default_rng(seed)
    hot = 17  # the channel whose readings run high
    replies = []
    async with RingKernelRuntime() as runtime:
        await runtime.launch("smoother", func=smoother)
        await runtime.activate("smoother")
        for _ in range(batches):
            values = rng.normal(0.0, 1.0, CHANNELS).astype(np.float32)
            values[hot] += 5.0
            replies.append(await runtime.call("smoother", Batch(values=values), timeout=60))
        snapshot = runtime.snapshot()
    last = replies[-1]
    device = snapshot.device
    print(f"{last.batches} batches on {device['device']} ({device['name']})")
    print(f"hottest channel {last.hottest}, moving average {last.average:.2f}")
    return replies


if __name__ == "__main__":
    asyncio.run(main())
