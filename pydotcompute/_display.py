"""How runtimes, telemetry snapshots and messages show themselves in a notebook or a terminal.

Jupyter calls ``_repr_html_`` on the value of a cell; the classes' hooks delegate here, so the
rendering lives in one place and the core never imports IPython. Every user-supplied string
(kernel ids, field values, error texts) is escaped. Plain ``__repr__`` texts are one line,
except a snapshot's, which adds :meth:`RuntimeSnapshot.table` like a data frame does.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import RingKernelRuntime
    from .telemetry import KernelTelemetry, RuntimeSnapshot

__all__ = [
    "message_html",
    "runtime_html",
    "runtime_repr",
    "short_id",
    "snapshot_html",
    "snapshot_repr",
    "telemetry_html",
    "telemetry_repr",
]

_VALUE_LIMIT = 120  # characters of a field's repr shown in a message's table
_EVENTS_SHOWN = 5

_STYLE = (
    "<style>"
    ".pdc-repr table{border-collapse:collapse;margin:2px 0 4px 0;font-size:12px}"
    ".pdc-repr th,.pdc-repr td{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
    ".pdc-repr th{font-weight:600}"
    ".pdc-repr .l{text-align:left}"
    ".pdc-repr .muted{color:#777;font-weight:normal}"
    ".pdc-repr code{font-size:12px}"
    "</style>"
)
_STATE_COLORS = {
    "ACTIVE": "#2e7d32",
    "FAILED": "#c62828",
    "DEACTIVATED": "#9e6a00",
    "LAUNCHED": "#1565c0",
    "TERMINATING": "#777",
    "TERMINATED": "#777",
}
_KERNEL_COLUMNS = ("kernel", "where", "state", "inbox", "outbox", "processed", "msg/s", "p50 µs",
                   "p99 µs", "dropped", "errors", "restarts")  # fmt: skip


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def short_id(value: Any) -> str:
    """The first 8 hex digits of a UUID (as git shortens a commit), or ``-`` for ``None``."""
    return "-" if value is None else str(value)[:8]


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _where(t: KernelTelemetry) -> str:
    return t.backend if t.backend == t.device else f"{t.backend}:{t.device}"


def _state(state: str) -> str:
    color = _STATE_COLORS.get(state, "inherit")
    return f'<span style="color:{color};font-weight:600">{_e(state)}</span>'


def _box(title: str, subtitle: str, body: str) -> str:
    head = f"<strong>{_e(title)}</strong>"
    if subtitle:
        head += f' <span class="muted">{subtitle}</span>'
    return f'<div class="pdc-repr">{_STYLE}<div>{head}</div>{body}</div>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """An HTML table; cells are already escaped. The first ``left`` columns align left."""

    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="l">{c}</{tag}>' if i < left else f"<{tag}>{c}</{tag}>"
            for i, c in enumerate(row)
        )

    head = f"<thead><tr>{cells('th', [_e(h) for h in header])}</tr></thead>" if header else ""
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _kernel_table(kernels: Iterable[KernelTelemetry]) -> str:
    rows = []
    for t in kernels:
        errors = _e(t.errors)
        if t.last_error:
            errors = f'<span title="{_e(t.last_error)}">{errors}</span>'
        rows.append((
            f"<code>{_e(t.kernel_id)}</code>", _e(_where(t)), _state(t.state),
            f"{t.inbox_depth}/{t.inbox_capacity}", f"{t.outbox_depth}/{t.outbox_capacity}",
            f"{t.processed:,}", f"{t.throughput:,.0f}", _us(t.latency_p50_us),
            _us(t.latency_p99_us), f"{t.dropped:,}", errors, f"{t.restarts}",
        ))  # fmt: skip
    if not rows:
        return '<div class="muted">no kernels launched</div>'
    return _table(_KERNEL_COLUMNS, rows, left=3)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


# ---------------------------------------------------------------- runtime
def runtime_repr(rt: RingKernelRuntime, device: str) -> str:
    """One line: the requested device and each kernel's state."""
    states = ", ".join(f"{kid} {rt.state(kid).value}" for kid in rt.kernels)
    closed = " closed" if rt.closed else ""
    return (
        f"<RingKernelRuntime device={device!r}{closed}: {_count(len(rt.kernels), 'kernel')}"
        f"{f' ({states})' if states else ''}>"
    )


def runtime_html(rt: RingKernelRuntime, device: str, run_on: str | None) -> str:
    """A title line and one table row per kernel (what ``snapshot().table()`` shows)."""
    where = _e(device) if run_on is None or run_on == device else f"{_e(device)} → {_e(run_on)}"
    parts = [_count(len(rt.kernels), "kernel"), f"device kernels: {where}"]
    if rt.closed:
        parts.append("shut down")
    elif rt.loop is None:
        parts.append("not bound to an event loop yet")
    body = _kernel_table(rt.telemetry(kid) for kid in rt.kernels)
    return _box("RingKernelRuntime", " · ".join(parts), body)


# ---------------------------------------------------------------- snapshots
def _taken(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def snapshot_repr(snap: RuntimeSnapshot) -> str:
    """A title line, then the kernels as a text table."""
    head = f"<RuntimeSnapshot {_taken(snap.timestamp)}: {_count(len(snap.kernels), 'kernel')}>"
    return f"{head}\n{snap.table()}" if snap.kernels else head


def snapshot_html(snap: RuntimeSnapshot) -> str:
    """The kernels as a table, with when the snapshot was taken and on which device."""
    parts = [f"taken {_e(_taken(snap.timestamp))}", _count(len(snap.kernels), "kernel")]
    name = snap.device.get("name")
    if name:
        parts.append(f"{_e(snap.device.get('device', ''))} {_e(name)}".strip())
    return _box("RuntimeSnapshot", " · ".join(parts), _kernel_table(snap.kernels.values()))


# ---------------------------------------------------------------- one kernel
def telemetry_repr(t: KernelTelemetry) -> str:
    """One line with the figures a terminal user looks at first."""
    return (
        f"<KernelTelemetry {t.kernel_id!r} {_where(t)} {t.state}: processed {t.processed}, "
        f"inbox {t.inbox_depth}/{t.inbox_capacity}, outbox {t.outbox_depth}/"
        f"{t.outbox_capacity}, {t.throughput:,.0f} msg/s, p50 {_us(t.latency_p50_us)} us, "
        f"p99 {_us(t.latency_p99_us)} us, errors {t.errors}, restarts {t.restarts}>"
    )


def telemetry_html(t: KernelTelemetry) -> str:
    """A two-column table of one kernel's figures, its last error and latest events."""
    last = f" · last: <code>{_e(t.last_error)}</code>" if t.last_error else ""
    rows = [
        ("messages", f"{t.received:,} received · {t.processed:,} processed · {t.sent:,} sent"),
        ("inbox", f"{t.inbox_depth:,} of {t.inbox_capacity:,}"),
        ("outbox", f"{t.outbox_depth:,} of {t.outbox_capacity:,}"),
        ("throughput", f"{t.throughput:,.1f} msg/s over {t.window_s:.1f} s"),
        ("latency", f"p50 {_us(t.latency_p50_us)} µs · p99 {_us(t.latency_p99_us)} µs"),
        ("refused", f"{t.dropped:,} dropped · {t.rejected:,} rejected"),
        ("errors", f"{t.errors:,}{last}"),
        ("restarts", f"{t.restarts} · redeploys {t.redeploys} · launches {t.launches}"),
        ("uptime", f"{t.uptime_s:,.1f} s"),
    ]
    for key, value in sorted(t.extra.items()):
        rows.append((_e(key), _e(value)))
    for when, what in t.events[-_EVENTS_SHOWN:]:
        clock = time.strftime("%H:%M:%S", time.localtime(when))
        rows.append((f'<span class="muted">event {clock}</span>', _e(what)))
    subtitle = f"{_e(t.kernel_id)} · {_e(_where(t))} · {_state(t.state)}"
    return _box("KernelTelemetry", subtitle, _table((), rows, left=2))


# ---------------------------------------------------------------- messages
def _short_value(value: Any) -> str:
    text = " ".join(repr(value).split())  # one line (numpy wraps long arrays)
    if len(text) > _VALUE_LIMIT:
        text = text[: _VALUE_LIMIT - 1] + "…"
    return text


def message_html(msg: Any) -> str:
    """The message's type, short ids and priority, then its fields in a small table."""
    rows = [
        (f"<code>{_e(f.name)}</code>", f"<code>{_e(_short_value(getattr(msg, f.name)))}</code>")
        for f in dataclasses.fields(msg)
        if f.name not in ("message_id", "priority", "correlation_id")
    ]
    parts = [f"id <code>{_e(short_id(msg.message_id))}</code>"]
    if msg.correlation_id is not None:
        parts.append(f"reply to <code>{_e(short_id(msg.correlation_id))}</code>")
    parts.append(f"priority {_e(msg.priority)}")
    body = _table(("field", "value"), rows, left=2) if rows else ""
    return _box(type(msg).__name__, " · ".join(parts), body)
