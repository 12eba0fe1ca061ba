"""Host ring kernels: an ``async def body(ctx)`` run as an asyncio task (the CPU backend)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import KernelFailedError, OperationTimeoutError
from ..ring._context import KernelContext, TerminationRequested
from ..ring._driver import CANCEL_GRACE_S, BodyDriver, Scheduler
from ..ring._inbox import Inbox
from ..ring._options import RestartPolicy
from ..ring._outbox import Outbox
from ..ring._state import KernelState, check
from ..telemetry import KernelMetrics, KernelTelemetry
from ._base import KernelBase

if TYPE_CHECKING:
    from ..ring._spec import RingKernelSpec

__all__ = ["HostKernel", "LaunchResult", "TerminateResult"]

log = logging.getLogger("pydotcompute")

S = KernelState


async def _awaiting(aw: Any) -> Any:
    """A coroutine awaiting ``aw`` (a body that returned another awaitable)."""
    return await aw


class LaunchResult:
    """What a launch produced: where the kernel runs and, for device kernels, its build.

    Attributes
    ----------
    kernel_id, backend, device, state:
        The kernel, ``"host"`` or ``"device"``, where it runs (``"cpu"``, ``"cuda:0"``,
        ``"emulated"``) and its state after the launch.
    cache_hit:
        For device kernels, whether the compiled module came from the disk cache.
    compile_s:
        Seconds spent compiling (0.0 on a cache hit; ``None`` for host kernels).
    """

    __slots__ = ("backend", "cache_hit", "compile_s", "device", "kernel_id", "state")

    def __init__(
        self,
        kernel_id: str,
        backend: str,
        device: str,
        state: KernelState,
        cache_hit: bool | None = None,
        compile_s: float | None = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.backend = backend
        self.device = device
        self.state = state
        self.cache_hit = cache_hit
        self.compile_s = compile_s

    def __repr__(self) -> str:
        extra = "" if self.cache_hit is None else f", cache_hit={self.cache_hit}"
        return (
            f"LaunchResult({self.kernel_id!r}, backend={self.backend!r}, "
            f"device={self.device!r}, state={self.state.value}{extra})"
        )


class TerminateResult:
    """How a terminate went: graceful or forced, and how many queued messages it discarded."""

    __slots__ = ("discarded", "duration_s", "graceful", "kernel_id")

    def __init__(self, kernel_id: str, graceful: bool, discarded: int, duration_s: float) -> None:
        self.kernel_id = kernel_id
        self.graceful = graceful
        self.discarded = discarded
        self.duration_s = duration_s

    def __repr__(self) -> str:
        return (
            f"TerminateResult({self.kernel_id!r}, graceful={self.graceful}, "
            f"discarded={self.discarded}, duration_s={self.duration_s:.4f})"
        )


class HostKernel(KernelBase):
    """One running host ring kernel: its mailboxes, body task, lifecycle and supervision."""

    backend = "host"
    device = "cpu"

    def __init__(
        self,
        spec: RingKernelSpec,
        loop: asyncio.AbstractEventLoop,
        sched: Scheduler | None = None,
    ) -> None:
        opts = spec.options
        self.kernel_id = spec.kernel_id
        self.spec = spec
        self.options = opts
        self.input_type = opts.input_type
        self.inbox = Inbox(self.kernel_id, opts.inbox_capacity, opts.backpressure, loop)
        self.outbox = Outbox(self.kernel_id, opts.outbox_capacity, loop)
        self.metrics = KernelMetrics()
        self.state = S.CREATED
        self.accepting = False
        self.error: BaseException | None = None
        self._loop = loop
        self._sched = sched if sched is not None else Scheduler(loop)  # the runtime's
        self._task: asyncio.Task[None] | None = None
        self._driver: BodyDriver | None = None
        self._ctx: KernelContext[Any, Any] | None = None
        self._run_state = S.LAUNCHED  # the running state a restart or relaunch returns to
        self._restart_times: deque[float] = deque()
        self._active_waiters: list[asyncio.Future[None]] = []
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<HostKernel {self.kernel_id!r} {self.state.value}>"

    # ---------------------------------------------------------------- lifecycle
    def _start_body(self) -> None:
        ctx: KernelContext[Any, Any] = KernelContext(self)
        self._ctx = ctx
        coro = self.spec.func(ctx)  # type: ignore[misc]
        if not asyncio.iscoroutine(coro):
            coro = _awaiting(coro)
        driver = BodyDriver(coro, self.inbox, self._sched, self.kernel_id)
        ctx._driver = self._driver = driver
        self._task = driver.task = self._loop.create_task(
            self._run(ctx, driver), name=f"ring kernel {self.kernel_id}", context=driver.context
        )

    async def launch(self) -> LaunchResult:
        """Allocate the mailboxes' loop state and start the body, parked until activated."""
        async with self._lock:
            check(self.kernel_id, self.state, "launch")
            self.metrics.launches += 1
            self._start_body()
            self._set_state(S.LAUNCHED)
            return self.launch_result()

    def launch_result(self) -> LaunchResult:
        """Describe where the kernel runs."""
        return LaunchResult(self.kernel_id, self.backend, self.device, self.state)

    async def activate(self) -> None:
        """Let the body take messages."""
        async with self._lock:
            check(self.kernel_id, self.state, "activate")
            self.inbox.set_open(True)
            self._set_state(S.ACTIVE)
            waiters, self._active_waiters = self._active_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def deactivate(self) -> None:
        """Park the body's ``receive``; sends keep queueing."""
        async with self._lock:
            check(self.kernel_id, self.state, "deactivate")
            self.inbox.open = False
            self._set_state(S.DEACTIVATED)

    async def wait_active(self, ctx: KernelContext[Any, Any], timeout: float | None) -> None:
        """Wait until activated (used by ``ctx.wait_active``)."""
        if ctx._stopping:
            raise TerminationRequested(self.kernel_id)
        if self.inbox.open:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._active_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise OperationTimeoutError(
                f"ring kernel {self.kernel_id!r} was not activated within {timeout} s"
            ) from None

    def _stop_body(self, ctx: KernelContext[Any, Any], drain: bool) -> None:
        ctx._stopping = True
        if drain:
            self.inbox.set_open(True)
        else:
            self.inbox.open = False
        # With drain, the body's receives turn it true once they took the last message.
        ctx.should_terminate = not drain or len(self.inbox) == 0
        kid = self.kernel_id
        if not drain or len(self.inbox) == 0:
            self.inbox.wake_getters(lambda: TerminationRequested(kid))
        waiters, self._active_waiters = self._active_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(TerminationRequested(kid))

    async def _await_body(self, timeout: float | None) -> bool:
        """Wait for the body to end; cancel it at the deadline. True if it ended by itself."""
        task = self._task
        if task is None or task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        if not done and self._driver is not None:
            # It caught CancelledError and went on: close its coroutine, so terminate (and
            # asyncio.run at exit) never hang on it. The failure is counted in telemetry.
            log.warning(
                "ring kernel %r ignored cancellation for %.1f s after its terminate deadline; "
                "its body is closed",
                self.kernel_id,
                CANCEL_GRACE_S,
            )
            self._driver.kill()
            await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        return False

    async def terminate(
        self, timeout: float | None = 5.0, drain: bool = False, *, if_alive: bool = False
    ) -> TerminateResult | None:
        """Stop the body gracefully (cancelled at ``timeout``), then close the mailboxes.

        With ``if_alive`` a kernel that already ended is left alone (returns ``None``).
        """
        async with self._lock:
            if if_alive and self.state is S.TERMINATED:
                return None
            check(self.kernel_id, self.state, "terminate")
            start = time.perf_counter()
            self._set_state(S.TERMINATING)
            graceful = True
            if self._ctx is not None and self._task is not None and not self._task.done():
                self._stop_body(self._ctx, drain)
                graceful = await self._await_body(timeout)
            discarded = self._close("terminated")
            result = TerminateResult(
                self.kernel_id, graceful, discarded, time.perf_counter() - start
            )
            self.metrics.event(
                f"terminated ({'graceful' if graceful else 'forced'}, {discarded} discarded)"
            )
            return result

    async def relaunch(self, spec: RingKernelSpec | None, timeout: float | None) -> LaunchResult:
        """Swap in a new body (same id), keeping queued messages and telemetry history."""
        async with self._lock:
            check(self.kernel_id, self.state, "relaunch")
            target = self._run_state
            if self._ctx is not None and self._task is not None and not self._task.done():
                self._stop_body(self._ctx, drain=False)
                await self._await_body(timeout)
            if spec is not None:
                self.spec = spec
            self.error = None
            self.outbox.reopen()
            self.metrics.redeploys += 1
            self.metrics.event("redeployed")
            self._start_body()
            self.inbox.set_open(target is S.ACTIVE)
            self._set_state(target)
            return self.launch_result()

    def ended(self) -> bool:
        """True once terminated, or failed with its body no longer running."""
        if self.state is S.FAILED:
            return self._task is None or self._task.done()
        return self.state is S.TERMINATED

    # ---------------------------------------------------------------- body and supervision
    async def _run(self, ctx: KernelContext[Any, Any], driver: BodyDriver) -> None:
        try:
            await driver
        except TerminationRequested:
            self._flush_completed(ctx)
        except asyncio.CancelledError:
            if not ctx._stopping:
                raise
        except Exception as exc:
            self._on_failure(ctx, exc)
        else:
            self._flush_completed(ctx)
            self._on_return(ctx)

    def _flush_completed(self, ctx: KernelContext[Any, Any]) -> None:
        """A body that ended cleanly is done with what it last received."""
        if ctx._pending:
            self.metrics.completed(ctx._pending, ctx._pending_n)
            ctx._pending = 0

    def _on_failure(self, ctx: KernelContext[Any, Any], exc: Exception) -> None:
        self.metrics.failed(exc)
        self.error = exc
        if ctx is not self._ctx or ctx._stopping:
            return  # failed while being stopped: recorded, the stop goes on
        log.warning("ring kernel %r failed: %s: %s", self.kernel_id, type(exc).__name__, exc)
        self._set_state(S.FAILED)
        if self._may_restart(RestartPolicy.ON_FAILURE):
            self._restart("failure")
            return
        kid = self.kernel_id
        self.outbox.fail(lambda: KernelFailedError.caused_by(kid, exc))

    def _on_return(self, ctx: KernelContext[Any, Any]) -> None:
        if ctx is not self._ctx or ctx._stopping:
            return
        if self._may_restart(RestartPolicy.ALWAYS):
            self._restart("return")
            return
        self.metrics.event("body returned")
        self._close("stopped (its body returned)")

    def _may_restart(self, needs: RestartPolicy) -> bool:
        policy = self.options.restart
        if policy is RestartPolicy.NEVER:
            return False
        if needs is RestartPolicy.ALWAYS and policy is not RestartPolicy.ALWAYS:
            return False
        now = time.monotonic()
        times = self._restart_times
        while times and now - times[0] > self.options.within:
            times.popleft()
        if len(times) >= self.options.max_restarts:
            self.metrics.event(
                f"restart limit reached ({self.options.max_restarts} within "
                f"{self.options.within} s)"
            )
            return False
        times.append(now)
        return True

    def _restart(self, reason: str) -> None:
        self.metrics.restarts += 1
        self.metrics.event(f"restarted after {reason}")
        self._start_body()
        self._set_state(self._run_state)

    # ---------------------------------------------------------------- telemetry

    def telemetry(self) -> KernelTelemetry:
        """A frozen snapshot of this kernel's telemetry."""
        return self._telemetry(processed=self.metrics.processed, restarts=self.metrics.restarts)
