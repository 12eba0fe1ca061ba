"""The driver's proxy of a kernel that runs in a kernel host."""

from __future__ import annotations

import time
from typing import Any

from ..errors import KernelFailedError
from ..ring._spec import RingKernelSpec
from ..ring._state import KernelState
from ..telemetry import KernelTelemetry
from ._cluster import HostRef

__all__ = ["RemoteKernel"]


class RemoteKernel:
    """What the driver knows of a kernel on a host: its host, types, and message counts.

    ``sent`` counts the messages the host accepted for it; ``processed`` and ``outbox`` are
    the kernel's progress as the host last reported it (every answer carries them). When the
    host dies, ``sent - processed + outbox`` messages were inside it: they are counted as
    lost, never silently.
    """

    __slots__ = (
        "active",
        "checkpoint",
        "error",
        "failed",
        "host",
        "input_type",
        "kernel_id",
        "last",
        "launched_at",
        "lost",
        "outbox",
        "output_type",
        "processed",
        "restarts",
        "sent",
        "spec",
    )

    def __init__(self, kernel_id: str, host: HostRef, spec: RingKernelSpec | None) -> None:
        self.kernel_id = kernel_id
        self.host = host
        self.spec = spec
        opts = spec.options if spec is not None else None
        self.input_type: type | None = opts.input_type if opts is not None else None
        self.output_type: type | None = opts.output_type if opts is not None else None
        self.sent = 0
        self.processed = 0
        self.outbox = 0
        self.lost = 0
        self.restarts = 0
        self.active = False
        self.failed = False
        self.error: BaseException | None = None
        self.last: KernelTelemetry | None = None
        self.checkpoint: Any = None  # a device kernel's State saved by runtime.checkpoint()
        self.launched_at = time.time()

    def progress(self, p: tuple[int, int]) -> None:
        """Take the progress an answer of the host carried."""
        self.processed, self.outbox = p

    def inside(self) -> int:
        """Messages inside the host as last reported: unprocessed inputs and unread replies."""
        return max(0, self.sent - self.processed) + self.outbox

    def failure(self, detail: str = "") -> KernelFailedError:
        """The error a verb raises for this failed kernel, its cause attached."""
        assert self.error is not None
        return KernelFailedError.caused_by(self.kernel_id, self.error, detail)

    def placed(self) -> dict[str, Any]:
        """Where it runs, for telemetry's ``extra["placement"]``."""
        w = self.host.where
        return {
            "host": self.host.name,
            "node_id": w.get("node_id"),
            "node_ip": w.get("node_ip"),
            "pid": w.get("pid"),
            "gpus": list(w.get("gpus", ())),
        }

    def telemetry_when_failed(self) -> KernelTelemetry:
        """Telemetry of a kernel whose host died: the last figures known, now FAILED."""
        err = f"{type(self.error).__name__}: {self.error}" if self.error else None
        last = self.last
        if last is None:
            return KernelTelemetry(
                kernel_id=self.kernel_id,
                backend=self.spec.kind if self.spec is not None else "host",
                device="remote",
                state=KernelState.FAILED.value,
                received=self.sent,
                processed=self.processed,
                sent=0,
                dropped=0,
                rejected=0,
                inbox_depth=0,
                inbox_capacity=0,
                outbox_depth=0,
                outbox_capacity=0,
                throughput=0.0,
                window_s=0.0,
                latency_p50_us=None,
                latency_p99_us=None,
                errors=1,
                last_error=err,
                restarts=0,
                redeploys=0,
                launches=1,
                uptime_s=time.time() - self.launched_at,
            )
        import dataclasses

        return dataclasses.replace(
            last,
            state=KernelState.FAILED.value,
            errors=last.errors + 1,
            last_error=err,
            inbox_depth=0,
            outbox_depth=0,
            throughput=0.0,
        )
