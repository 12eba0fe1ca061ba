"""What host and device kernels share: state changes, closing, and their telemetry snapshot."""

from __future__ import annotations

from typing import Any

from ..errors import KernelStateError
from ..ring._state import ACCEPTING, KernelState
from ..telemetry import KernelMetrics, KernelTelemetry

__all__ = ["KernelBase"]

S = KernelState


class KernelBase:
    """Base of a backend kernel: the attributes the runtime reads, and shared lifecycle steps."""

    kernel_id: str
    backend: str
    device: str
    state: KernelState
    accepting: bool
    metrics: KernelMetrics
    inbox: Any
    outbox: Any
    _run_state: KernelState
    route: Any = None  # a ring._routing.Route while the kernel's output is linked
    router: Any = None  # the runtime's ring._routing.Router (send_to, publish)

    def _set_state(self, state: KernelState) -> None:
        self.state = state
        self.accepting = state in ACCEPTING
        if state in (S.LAUNCHED, S.ACTIVE, S.DEACTIVATED):
            self._run_state = state  # the running state a restart or relaunch returns to
        self.metrics.event(state.value)

    def ended(self) -> bool:
        """True once nothing of the kernel runs any more (it may be forgotten)."""
        return self.state is S.TERMINATED

    def _release(self) -> None:
        """Let go of the backend's resources once the inbox is closed (a hook)."""

    def _close(self, how: str) -> int:
        """Close the mailboxes, end in ``TERMINATED``, and return how many were discarded."""
        kid = self.kernel_id
        discarded: int = self.inbox.close(
            lambda: KernelStateError(
                f"ring kernel {kid!r} was {how} before taking this message; launch it again"
            )
        )
        self._release()
        self._set_state(S.TERMINATED)
        self.outbox.fail(
            lambda: KernelStateError(
                f"ring kernel {kid!r} is TERMINATED and no more messages will arrive; "
                "launch it again to start a new instance"
            )
        )
        return discarded

    def _telemetry(
        self, *, processed: int, restarts: int, extra: dict[str, Any] | None = None
    ) -> KernelTelemetry:
        """A frozen snapshot of the kernel, with the figures only the backend knows."""
        m = self.metrics
        throughput, window = m.throughput()
        p50, p99 = m.latency_us()
        return KernelTelemetry(
            kernel_id=self.kernel_id,
            backend=self.backend,
            device=self.device,
            state=self.state.value,
            received=self.inbox.received,
            processed=processed,
            sent=self.outbox.sent,
            dropped=self.inbox.dropped,
            rejected=self.inbox.rejected,
            inbox_depth=len(self.inbox),
            inbox_capacity=self.inbox.capacity,
            outbox_depth=len(self.outbox),
            outbox_capacity=self.outbox.capacity,
            throughput=throughput,
            window_s=window,
            latency_p50_us=p50,
            latency_p99_us=p99,
            errors=m.errors,
            last_error=m.last_error,
            restarts=restarts,
            redeploys=m.redeploys,
            launches=m.launches,
            uptime_s=m.uptime_s(),
            events=tuple(m.events[-20:]),
            extra=extra or {},
        )
