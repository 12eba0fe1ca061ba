"""``ComputeOrchestrator``: a pipeline of ``@kernel`` launches and host steps on streams.

Steps run in the order they were added. Kernel steps go to named streams; ordering between
streams comes from the buffers: a step that uses a buffer another stream touched last waits
for that stream's event (``UnifiedBuffer`` records one after each device use), so steps on
different streams with no buffer in common overlap on a GPU. Host steps wait for the device
work on their buffers, then run on the calling thread. Buffers stay where the last step left
them: a kernel that reads what the previous kernel wrote copies nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import KernelArgumentError, OperationTimeoutError
from ._accelerator import Accelerator
from ._buffer import BufferStats, UnifiedBuffer
from ._config import Config, parse_config
from ._kernel import Kernel
from ._memory import wait_event

__all__ = ["ComputeOrchestrator", "StepRecord"]


@dataclass(frozen=True)
class StepRecord:
    """What one step of a :meth:`ComputeOrchestrator.run` did.

    ``duration_s`` of a kernel step on a GPU is measured between CUDA events recorded on
    its stream around the step (its copies included); elsewhere it is wall time. Copy
    counts are those of the step's ``UnifiedBuffer`` arguments during the step.
    ``waited_for`` lists the earlier steps whose buffers this one used.
    """

    index: int
    name: str
    kind: str
    accelerator: str
    stream: str
    duration_s: float
    h2d_copies: int
    d2h_copies: int
    copied_bytes: int
    copies_avoided: int
    waited_for: tuple[int, ...]
    result: Any = None

    @property
    def copies(self) -> int:
        """Copies made in both directions during the step."""
        return self.h2d_copies + self.d2h_copies


@dataclass(frozen=True)
class _Step:
    kind: str
    name: str
    func: Any
    args: tuple[Any, ...]
    stream: str
    size: int | tuple[int, ...] | None
    config: Config | None


def _buffers(args: tuple[Any, ...]) -> list[UnifiedBuffer]:
    """The distinct buffers among ``args`` (one passed twice is counted once)."""
    seen: dict[int, UnifiedBuffer] = {}
    for a in args:
        if isinstance(a, UnifiedBuffer):
            seen.setdefault(id(a), a)
    return list(seen.values())


def _stats(buffers: list[UnifiedBuffer]) -> BufferStats:
    total = BufferStats()
    for b in buffers:
        total = total + b.stats
    return total


class ComputeOrchestrator:
    """Run a sequence of ``@kernel`` launches and host steps, with a record per step.

    Examples
    --------
    >>> pipeline = ComputeOrchestrator()
    >>> pipeline.add_kernel(saxpy, 2.0, x, y, out)
    >>> pipeline.add_host(check, out)
    >>> records = pipeline.run(timeout=10)
    """

    def __init__(self, accelerator: Accelerator | str | None = None) -> None:
        self.accelerator = (
            Accelerator.default() if accelerator is None else Accelerator(accelerator)
        )
        self._steps: list[_Step] = []
        self._streams: dict[str, Any] = {}
        self.records: list[StepRecord] = []

    def __repr__(self) -> str:
        return f"<ComputeOrchestrator {len(self._steps)} steps on {self.accelerator.id}>"

    def __len__(self) -> int:
        return len(self._steps)

    def add_kernel(
        self,
        kern: Kernel,
        *args: Any,
        size: int | tuple[int, ...] | None = None,
        grid: int | tuple[int, ...] | None = None,
        block: int | tuple[int, ...] | None = None,
        stream: str = "default",
        name: str | None = None,
    ) -> int:
        """Append a kernel launch on the named stream; return the step's index.

        ``grid`` and ``block`` fix the launch configuration (ints or tuples of 1-3 ints, as in
        ``kern[grid, block]``); a CUDA-form kernel needs them or ``size``.
        """
        if not isinstance(kern, Kernel):
            raise KernelArgumentError(
                f"add_kernel() takes a @kernel, got {type(kern).__name__}; use add_host() for "
                "a plain Python function"
            )
        if (grid is None) != (block is None):
            raise KernelArgumentError("add_kernel(): give both grid and block, or neither")
        self._check_buffers(args)
        config = None
        if grid is not None and block is not None:
            config = parse_config(kern.name, (grid, block), kern.reduce is not None)[0]
        self._steps.append(_Step("kernel", name or kern.name, kern, args, stream, size, config))
        return len(self._steps) - 1

    def add_host(self, func: Any, *args: Any, name: str | None = None) -> int:
        """Append a host step ``func(*args)``; it runs once device work on its buffers is done."""
        if not callable(func):
            raise KernelArgumentError(
                f"add_host() takes a callable, got {type(func).__name__} {func!r}"
            )
        self._check_buffers(args)
        label = str(name or getattr(func, "__name__", "host"))
        self._steps.append(_Step("host", label, func, args, "host", None, None))
        return len(self._steps) - 1

    def _check_buffers(self, args: tuple[Any, ...]) -> None:
        for b in _buffers(args):
            if b.accelerator is not self.accelerator:
                raise KernelArgumentError(
                    f"{b!r} is on {b.accelerator.id}, but this orchestrator runs on "
                    f"{self.accelerator.id}; create it with accelerator="
                    f"{self.accelerator.id!r}"
                )

    def _stream(self, name: str) -> Any:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = self.accelerator.stream()
        return stream

    def run(self, *, timeout: float | None = None) -> list[StepRecord]:
        """Run every step once, wait for the device, and return one record per step.

        Raises
        ------
        OperationTimeoutError
            The steps had not finished after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        gpu = self.accelerator.is_gpu and not self.accelerator.simulated
        last_user: dict[int, int] = {}
        pending: list[tuple[int, Any, Any, Any]] = []  # (index, start, end, stream)
        records: list[dict[str, Any]] = []
        for index, step in enumerate(self._steps):
            buffers = _buffers(step.args)
            waited = tuple(sorted({last_user[id(b)] for b in buffers if id(b) in last_user}))
            for b in buffers:
                last_user[id(b)] = index
            before = _stats(buffers)
            t0 = time.perf_counter()
            result = None
            if step.kind == "host":
                for b in buffers:
                    b.synchronize(timeout=self._left(deadline, step.name))
                result = step.func(*step.args)
                stream_name = "host"
            else:
                stream = self._stream(step.stream)
                start = end = None
                if gpu:
                    start = self._event(stream)
                result = step.func._launch(
                    step.args, step.size, self.accelerator, stream,
                    self._left(deadline, step.name), step.config,
                )  # fmt: skip
                if gpu:
                    end = self._event(stream)
                    pending.append((index, start, end, stream))
                stream_name = step.stream
            spent = _stats(buffers) - before
            records.append(
                dict(
                    index=index, name=step.name, kind=step.kind,
                    accelerator=self.accelerator.id, stream=stream_name,
                    duration_s=time.perf_counter() - t0, h2d_copies=spent.h2d_copies,
                    d2h_copies=spent.d2h_copies,
                    copied_bytes=spent.h2d_bytes + spent.d2h_bytes,
                    copies_avoided=spent.copies_avoided, waited_for=waited, result=result,
                )
            )  # fmt: skip
        if gpu:
            import cupy

            for index, start, end, _stream in pending:
                wait_event(end, self._left(deadline, self._steps[index].name), "a kernel step")
                records[index]["duration_s"] = cupy.cuda.get_elapsed_time(start, end) / 1e3
        self.records = [StepRecord(**r) for r in records]
        return self.records

    def _event(self, stream: Any) -> Any:
        import cupy

        with self.accelerator._memory.device:
            event = cupy.cuda.Event()
            event.record(stream)
        return event

    @staticmethod
    def _left(deadline: float | None, what: str) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise OperationTimeoutError(
                f"the orchestrator ran out of time before step {what!r}; pass a larger timeout"
            )
        return left
