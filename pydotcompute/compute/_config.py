"""Launch configurations: ``f[blocks, threads]`` as in Numba, or chosen for ``size=``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import KernelArgumentError

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = ["Config", "Configured", "auto_config", "parse_config"]

# Threads per block chosen for size=: 256 in 1-D, 16x16 in 2-D, 8x8x8 in 3-D.
_AUTO_BLOCK = {1: (256, 1, 1), 2: (16, 16, 1), 3: (8, 8, 8)}


@dataclass(frozen=True)
class Config:
    """Blocks per grid and threads per block, each as three dimensions (x, y, z)."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]

    @property
    def threads(self) -> int:
        """Threads in the whole launch."""
        return math.prod(self.grid) * math.prod(self.block)

    def __str__(self) -> str:
        def show(dims: tuple[int, int, int]) -> str:
            used = dims[: max(i + 1 for i, d in enumerate(dims) if d != 1 or i == 0)]
            return str(used[0]) if len(used) == 1 else str(used)

        return f"{show(self.grid)}, {show(self.block)}"


def _dims(name: str, what: str, value: Any) -> tuple[int, int, int]:
    items = value if isinstance(value, tuple | list) else (value,)
    ok = 1 <= len(items) <= 3 and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in items
    )
    if not ok:
        raise KernelArgumentError(
            f"{name}[...]: {what} must be a non-negative int or a tuple of 1-3 of them, got "
            f"{value!r}"
        )
    dims = [int(v) for v in items] + [1] * (3 - len(items))
    return dims[0], dims[1], dims[2]


def parse_config(name: str, config: Any, reduction: bool) -> tuple[Config, Any]:
    """``(blocks, threads[, stream])`` from ``f[...]``, checked; returns the config and stream."""
    if not isinstance(config, tuple) or len(config) not in (2, 3):
        raise KernelArgumentError(
            f"{name}[...]: expected [blocks, threads] or [blocks, threads, stream], as for a "
            f"Numba CUDA kernel, got {config!r}"
        )
    grid = _dims(name, "blocks", config[0])
    block = _dims(name, "threads", config[1])
    threads = math.prod(block)
    if math.prod(grid) < 1 or not 1 <= threads <= 1024:
        raise KernelArgumentError(
            f"{name}[{config[0]}, {config[1]}]: need at least one block and 1..1024 threads "
            f"per block (got {threads})"
        )
    if reduction and threads & (threads - 1):
        raise KernelArgumentError(
            f"{name}[{config[0]}, {config[1]}]: a reduction's block must be a power of two"
        )
    return Config(grid, block), (config[2] if len(config) == 3 else None)


def auto_config(name: str, size: Any) -> Config:
    """A configuration covering ``size`` threads (an int, or a tuple of 1-3 ints)."""
    if size is None:
        raise KernelArgumentError(
            f"{name}(): a CUDA-form kernel needs a launch configuration: "
            f"{name}[blocks, threads](...) as in Numba, or {name}(..., size=n) (an int, or a "
            "tuple of 1-3 ints for a 2-D or 3-D grid) to have one chosen"
        )
    dims = _dims(name, "size", size)
    rank = len(size) if isinstance(size, tuple | list) else 1
    block = _AUTO_BLOCK[rank]
    grid = tuple(max(1, -(-d // b)) if d else 0 for d, b in zip(dims, block))
    return Config((grid[0], grid[1], grid[2]), block)


class Configured:
    """A kernel with a fixed launch configuration (``f[blocks, threads]``)."""

    def __init__(self, kernel: Kernel, config: Config, stream: Any) -> None:
        self.kernel, self.config, self.stream = kernel, config, stream

    def __repr__(self) -> str:
        return f"{self.kernel!r}[{self.config}]"

    def __call__(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Any = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Launch with this configuration (an element-index kernel's CPU run ignores it)."""
        if size is None and accelerator is None:
            done, result = self.kernel._repeat(args, self.config)
            if done:
                return result
        stream = self.stream if stream is None else stream
        return self.kernel._launch(args, size, accelerator, stream, timeout, self.config)

    async def launch_async(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Any = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Launch with this configuration off the event loop (see :meth:`Kernel.launch_async`)."""
        stream = self.stream if stream is None else stream
        return await self.kernel._launch_async(
            args, size, accelerator, stream, timeout, self.config
        )
