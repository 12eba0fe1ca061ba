"""Message types and device kernels shared by the device-kernel tests."""

from __future__ import annotations

import numpy as np

from pydotcompute import message, ring_kernel


@message
class Job:
    n: np.int64
    x: np.float32
    spin: np.int64  # the handler busy-waits this many clock64() ticks


@message
class Done:
    n: np.int64
    y: np.float32
    seen: np.int64  # messages this instance has handled, this one included


@message
class Tally:
    count: np.int64
    total: np.float64


SEQUENTIAL = """
    state.count += 1;
    state.total += msg.x;
    long long t0 = clock64();
    while (clock64() - t0 < msg.spin) {
    }
    out.n = msg.n;
    out.y = 2.0f * msg.x + 1.0f;
    out.seen = state.count;
"""

PARALLEL = """
    out.n = msg.n;
    out.y = twice(msg.x) + 1.0f;
    out.seen = 1;
"""

PRELUDE = """
__device__ float twice(float v)
{
    return 2.0f * v;
}
"""


def declare(kernel_id: str = "worker", **options: object) -> object:
    """Register the sequential test kernel (doubles x plus one, counts messages)."""
    return ring_kernel(
        kernel_id=kernel_id,
        input_type=Job,
        output_type=Done,
        state_type=Tally,
        cuda=SEQUENTIAL,
        **options,  # type: ignore[arg-type]
    )


def declare_parallel(kernel_id: str = "par", **options: object) -> object:
    """Register the parallel test kernel (stateless, uses a prelude helper)."""
    return ring_kernel(
        kernel_id=kernel_id,
        input_type=Job,
        output_type=Done,
        cuda=PARALLEL,
        cuda_prelude=PRELUDE,
        mode="parallel",
        **options,  # type: ignore[arg-type]
    )
