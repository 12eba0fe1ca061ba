"""Telemetry of ring kernels: O(1) counters per message, rates computed at snapshot time.

The hot path only increments an integer and writes one latency sample into a fixed ring.
Rates and percentiles are computed when a snapshot is taken: a frozen
:class:`KernelTelemetry` (throughput over a sliding window of snapshots, latency percentiles
over the most recent samples) is what the dashboard and users read.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from . import _display

__all__ = ["KernelTelemetry", "RuntimeSnapshot"]

LATENCY_SAMPLES = 1024  # power of two: the ring index is masked
LAT_MASK = LATENCY_SAMPLES - 1
WINDOW_NS = 5_000_000_000  # throughput is measured over the last 5 s of snapshots
MIN_SAMPLE_GAP_NS = 50_000_000  # snapshots closer than 50 ms share a sample


@dataclass(frozen=True)
class KernelTelemetry:
    """A frozen snapshot of one ring kernel's telemetry.

    Counts are totals since launch (kept across restarts and relaunches). ``throughput`` is
    messages completed per second over the last ``window_s`` seconds; ``latency_p50_us`` /
    ``latency_p99_us`` are over the most recent samples (``None`` before the first message).
    Throughput is measured between snapshots: the first snapshot reports the average since
    launch, later ones the rate over up to the last 5 s of snapshots (``window_s``).
    Host kernels measure latency from the moment a message enters the inbox to the moment the
    body is done with it (its next ``send`` or ``receive``), on a fixed sample: the first message
    an inbox queues and every 8th after it (a batch of ``send_many`` / ``receive_many`` counts
    once); counts cover every message. ``dead_letters`` counts messages
    meant for this kernel that became dead letters; ``outputs_to`` lists the kernels its output
    is linked to and ``subscribes_to`` the topics it is subscribed to.
    """

    kernel_id: str
    backend: str
    device: str
    state: str
    received: int
    processed: int
    sent: int
    dropped: int
    rejected: int
    inbox_depth: int
    inbox_capacity: int
    outbox_depth: int
    outbox_capacity: int
    throughput: float
    window_s: float
    latency_p50_us: float | None
    latency_p99_us: float | None
    errors: int
    last_error: str | None
    restarts: int
    redeploys: int
    launches: int
    uptime_s: float
    events: tuple[tuple[float, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    dead_letters: int = 0
    outputs_to: tuple[str, ...] = ()
    subscribes_to: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return _display.telemetry_repr(self)

    def _repr_html_(self) -> str:
        """A table of this kernel's figures, shown when a notebook cell evaluates it."""
        return _display.telemetry_html(self)

    @property
    def messages_processed(self) -> int:
        """Return ``processed`` (the earlier port's name, kept as an alias).

        Code written for the unrelated ``pydotcompute`` 0.2.0 on PyPI runs unchanged; new code
        uses ``processed``. See ``docs/migration.md``.
        """
        return self.processed

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as plain data (dicts, lists, str, numbers, None)."""
        out = dataclasses.asdict(self)
        out["events"] = [list(e) for e in self.events]
        out["outputs_to"] = list(self.outputs_to)
        out["subscribes_to"] = list(self.subscribes_to)
        return out


@dataclass(frozen=True)
class RuntimeSnapshot:
    """A frozen snapshot of every kernel of a runtime, taken at one moment.

    ``dead_letters`` is the runtime's total of dead letters (each kernel's share is in its
    telemetry); ``topics`` maps each topic to its subscribers (kernel ids, ``"<host>"`` for a
    host topic receiver).
    """

    timestamp: float
    kernels: dict[str, KernelTelemetry]
    device: dict[str, Any] = field(default_factory=dict)
    dead_letters: int = 0
    topics: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return _display.snapshot_repr(self)

    def _repr_html_(self) -> str:
        """A table of the kernels, shown when a notebook cell evaluates the snapshot."""
        return _display.snapshot_html(self)

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as plain data."""
        return {
            "timestamp": self.timestamp,
            "kernels": {k: t.as_dict() for k, t in self.kernels.items()},
            "device": dict(self.device),
            "dead_letters": self.dead_letters,
            "topics": {k: list(v) for k, v in self.topics.items()},
        }

    def table(self) -> str:
        """Format the kernels as a fixed-width text table (one row per kernel)."""
        header = ("kernel", "where", "state", "in", "out", "processed", "msg/s", "p50 us",
                  "p99 us", "dropped", "errors", "restarts")  # fmt: skip
        rows = [header]
        for t in self.kernels.values():
            where = t.backend if t.backend == t.device else f"{t.backend}:{t.device}"
            rows.append((
                t.kernel_id, where, t.state, str(t.inbox_depth), str(t.outbox_depth),
                str(t.processed), f"{t.throughput:,.0f}", _us(t.latency_p50_us),
                _us(t.latency_p99_us), str(t.dropped), str(t.errors), str(t.restarts),
            ))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))) for r in rows]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending, non-empty list."""
    k = math.ceil(q / 100 * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, k))]


class KernelMetrics:
    """Mutable counters of one kernel; updated in O(1) on the hot path.

    Throughput is measured between observations: every snapshot records ``(time,
    processed)`` and the rate is taken over the samples of the last :data:`WINDOW_S`
    seconds. The first snapshot gives the average since launch.
    """

    __slots__ = (
        "errors",
        "events",
        "last_error",
        "lat",
        "lat_n",
        "launches",
        "processed",
        "redeploys",
        "restarts",
        "samples",
        "started_ns",
        "started_wall",
    )

    def __init__(self) -> None:
        self.processed = 0
        self.errors = 0
        self.last_error: str | None = None
        self.restarts = 0
        self.redeploys = 0
        self.launches = 0
        self.lat = [0] * LATENCY_SAMPLES
        self.lat_n = 0
        self.started_ns = perf_counter_ns()
        self.started_wall = time.time()
        self.samples: deque[tuple[int, int]] = deque()
        self.events: list[tuple[float, str]] = []

    def completed(self, enqueued_ns: int, n: int = 1) -> None:
        """Record ``n`` messages done, the oldest of which entered the inbox at ``enqueued_ns``.

        ``enqueued_ns <= 0`` means none of them was timed: they are counted, with no latency
        sample (host inboxes time a sample of their messages, see ``LAT_EVERY``).
        """
        if enqueued_ns > 0:
            i = self.lat_n
            self.lat[i & LAT_MASK] = perf_counter_ns() - enqueued_ns
            self.lat_n = i + 1
        self.processed += n

    def record_latency_ns(self, value: int) -> None:
        """Add one latency sample in nanoseconds."""
        i = self.lat_n
        self.lat[i & LAT_MASK] = value
        self.lat_n = i + 1

    def event(self, what: str) -> None:
        """Remember a lifecycle event (kept to the last 100)."""
        self.events.append((time.time(), what))
        if len(self.events) > 100:
            del self.events[0]

    def failed(self, exc: BaseException) -> None:
        """Record a failure of the body."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.event(f"failed: {self.last_error}")

    def throughput(self) -> tuple[float, float]:
        """Messages per second over the sliding window, and the window length in seconds."""
        now = perf_counter_ns()
        samples = self.samples
        if not samples or now - samples[-1][0] >= MIN_SAMPLE_GAP_NS:
            samples.append((now, self.processed))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_NS:
            samples.popleft()
        if len(samples) < 2:
            t0, n0 = self.started_ns, 0
        else:
            t0, n0 = samples[0]
        elapsed = now - t0
        if elapsed <= 0:
            return 0.0, 0.0
        return (self.processed - n0) * 1e9 / elapsed, elapsed / 1e9

    def latency_us(self) -> tuple[float | None, float | None]:
        """p50 and p99 latency in microseconds over the most recent samples."""
        n = min(self.lat_n, LATENCY_SAMPLES)
        if n == 0:
            return None, None
        samples = sorted(self.lat[:n])
        return percentile(samples, 50) / 1e3, percentile(samples, 99) / 1e3

    def uptime_s(self) -> float:
        """Seconds since launch."""
        return (perf_counter_ns() - self.started_ns) / 1e9
