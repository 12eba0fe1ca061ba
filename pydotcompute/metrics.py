"""Export ring kernels' telemetry as OpenTelemetry metrics, for real monitoring.

``export_metrics(runtime)`` registers observable instruments on an OpenTelemetry meter; at each
collection (by whatever reader or exporter the meter provider has: OTLP, Prometheus, the
console, an in-memory reader) they report every kernel of the runtime from one
``runtime.snapshot()``, with the attributes ``kernel_id``, ``backend`` and ``device``.

OpenTelemetry is optional (``pip install -e '.[metrics]'``): this module imports it only when
:func:`export_metrics` is called, and ``import pydotcompute`` never imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._install import extra_hint
from .errors import BackendUnavailableError, PyDotComputeError
from .runtime import RingKernelRuntime
from .telemetry import KernelTelemetry, RuntimeSnapshot

__all__ = ["INSTRUMENTS", "MetricsExport", "export_metrics"]

_SNAPSHOT_REUSE_S = 0.5  # one collection reads all instruments from one snapshot
_SNAPSHOT_TIMEOUT_S = 5.0  # waiting for the runtime's loop to take a snapshot


def _seconds(us: float | None) -> float | None:
    return None if us is None else us / 1e6


@dataclass(frozen=True)
class _Instrument:
    name: str
    kind: str  # "counter" (a total that only grows) or "gauge"
    unit: str
    description: str
    read: Callable[[KernelTelemetry], float | None]


#: every exported instrument: (name, kind, unit, description); names start with the prefix
INSTRUMENTS: tuple[_Instrument, ...] = (
    _Instrument("messages.received", "counter", "{message}", "messages taken into the inbox",
                lambda t: t.received),
    _Instrument("messages.processed", "counter", "{message}", "messages the kernel completed",
                lambda t: t.processed),
    _Instrument("messages.sent", "counter", "{message}", "replies the kernel sent",
                lambda t: t.sent),
    _Instrument("messages.dropped", "counter", "{message}", "messages dropped by backpressure",
                lambda t: t.dropped),
    _Instrument("messages.rejected", "counter", "{message}", "sends refused by backpressure",
                lambda t: t.rejected),
    _Instrument("messages.dead_letters", "counter", "{message}",
                "undeliverable messages kept as dead letters", lambda t: t.dead_letters),
    _Instrument("errors", "counter", "{error}", "failures of the kernel's body",
                lambda t: t.errors),
    _Instrument("restarts", "counter", "{restart}", "restarts by the supervision policy",
                lambda t: t.restarts),
    _Instrument("redeploys", "counter", "{redeploy}", "relaunches with a new body",
                lambda t: t.redeploys),
    _Instrument("inbox.depth", "gauge", "{message}", "messages waiting in the inbox",
                lambda t: t.inbox_depth),
    _Instrument("inbox.capacity", "gauge", "{message}", "capacity of the inbox",
                lambda t: t.inbox_capacity),
    _Instrument("outbox.depth", "gauge", "{message}", "replies waiting in the outbox",
                lambda t: t.outbox_depth),
    _Instrument("throughput", "gauge", "{message}/s", "messages completed per second",
                lambda t: t.throughput),
    _Instrument("latency.p50", "gauge", "s", "median latency, inbox to done",
                lambda t: _seconds(t.latency_p50_us)),
    _Instrument("latency.p99", "gauge", "s", "99th percentile latency, inbox to done",
                lambda t: _seconds(t.latency_p99_us)),
    _Instrument("uptime", "gauge", "s", "seconds since launch", lambda t: t.uptime_s),
)  # fmt: skip


def _otel() -> tuple[Any, Any]:
    try:
        from opentelemetry import metrics
        from opentelemetry.metrics import Observation
    except ImportError:
        raise BackendUnavailableError(
            "exporting metrics needs OpenTelemetry (opentelemetry-api, and opentelemetry-sdk "
            f"to collect them): {extra_hint('metrics')}"
        ) from None
    return metrics, Observation


class MetricsExport:
    """The OpenTelemetry instruments that report one runtime's kernels (see :func:`export_metrics`).

    Each collection takes one ``runtime.snapshot()`` on the runtime's event loop (a reader
    collecting from another thread waits for the loop, up to 5 s), shared by every instrument
    of that collection. After :meth:`close` the instruments report nothing (OpenTelemetry has
    no way to remove an instrument from a meter).
    """

    def __init__(self, runtime: RingKernelRuntime, meter: Any, prefix: str) -> None:
        _, observation = _otel()
        self.runtime = runtime
        self.prefix = prefix
        self.closed = False
        self._observation = observation
        self._lock = threading.Lock()
        self._snapshot: RuntimeSnapshot | None = None
        self._taken = 0.0
        self.instruments: dict[str, Any] = {}
        for spec in INSTRUMENTS:
            make = (
                meter.create_observable_counter
                if spec.kind == "counter"
                else meter.create_observable_gauge
            )
            name = f"{prefix}.{spec.name}"
            self.instruments[name] = make(
                name, callbacks=[self._callback(spec)], unit=spec.unit,
                description=spec.description,
            )  # fmt: skip
        self.instruments[f"{prefix}.state"] = meter.create_observable_gauge(
            f"{prefix}.state",
            callbacks=[self._observe_state],
            unit="1",
            description="1 for the kernel's current lifecycle state (attribute 'state')",
        )

    def close(self) -> None:
        """Stop reporting: later collections get no data points from this export."""
        self.closed = True

    def snapshot(self) -> RuntimeSnapshot:
        """The snapshot of the current collection (a fresh one if the last is older than 0.5 s)."""
        with self._lock:
            now = time.monotonic()
            if self._snapshot is None or now - self._taken > _SNAPSHOT_REUSE_S:
                self._snapshot = _snapshot_on_loop(self.runtime)
                self._taken = now
            return self._snapshot

    def _callback(self, spec: _Instrument) -> Callable[[Any], Iterable[Any]]:
        def observe(_options: Any) -> Iterable[Any]:
            if self.closed:
                return []
            out = []
            for t in self.snapshot().kernels.values():
                value = spec.read(t)
                if value is not None:
                    out.append(self._observation(value, _attributes(t)))
            return out

        return observe

    def _observe_state(self, _options: Any) -> Iterable[Any]:
        if self.closed:
            return []
        return [
            self._observation(1, {**_attributes(t), "state": t.state})
            for t in self.snapshot().kernels.values()
        ]


def _attributes(t: KernelTelemetry) -> dict[str, str]:
    return {"kernel_id": t.kernel_id, "backend": t.backend, "device": t.device}


def _snapshot_on_loop(runtime: RingKernelRuntime) -> RuntimeSnapshot:
    """``runtime.snapshot()``, taken on the runtime's loop when another thread collects."""
    loop = runtime.loop
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if loop is None or loop.is_closed() or not loop.is_running() or here is loop:
        return runtime.snapshot()
    done: concurrent.futures.Future[RuntimeSnapshot] = concurrent.futures.Future()

    def take() -> None:
        try:
            done.set_result(runtime.snapshot())
        except BaseException as exc:
            done.set_exception(exc)

    loop.call_soon_threadsafe(take)
    try:
        return done.result(timeout=_SNAPSHOT_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise PyDotComputeError(
            f"the runtime's event loop did not take a telemetry snapshot within "
            f"{_SNAPSHOT_TIMEOUT_S} s (is it blocked?); the metrics of this collection are "
            "skipped"
        ) from None


def export_metrics(
    runtime: RingKernelRuntime,
    *,
    meter_provider: Any = None,
    prefix: str = "pydotcompute.kernel",
) -> MetricsExport:
    """Report every kernel of ``runtime`` through OpenTelemetry metrics.

    Parameters
    ----------
    runtime:
        The runtime whose kernels are reported (kernels launched later are reported too).
    meter_provider:
        An OpenTelemetry ``MeterProvider`` (by default the global one, set with
        ``opentelemetry.metrics.set_meter_provider``).
    prefix:
        Start of every instrument name, e.g. ``pydotcompute.kernel.messages.processed``.

    Returns
    -------
    MetricsExport
        The instruments; ``close()`` stops their reports.

    Raises
    ------
    BackendUnavailableError
        OpenTelemetry is not installed.
    PyDotComputeError
        ``runtime`` is not a ``RingKernelRuntime`` or ``prefix`` is empty.

    Examples
    --------
    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> reader = InMemoryMetricReader()
    >>> export = export_metrics(runtime, meter_provider=MeterProvider(metric_readers=[reader]))
    >>> data = reader.get_metrics_data()  # doctest: +SKIP
    """
    if not isinstance(runtime, RingKernelRuntime):
        raise PyDotComputeError(
            f"export_metrics() reports a RingKernelRuntime, got {type(runtime).__name__}; pass "
            "the runtime your kernels were launched in"
        )
    if not isinstance(prefix, str) or not prefix.strip("."):
        raise PyDotComputeError(
            f"prefix={prefix!r} must be a non-empty instrument name prefix, e.g. "
            "'pydotcompute.kernel'"
        )
    metrics, _ = _otel()
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    from ._version import __version__

    meter = provider.get_meter("pydotcompute", __version__)
    return MetricsExport(runtime, meter, prefix.strip("."))
