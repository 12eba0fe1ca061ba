"""The kernel table: one row per kernel, each row re-sent only when what it shows changed.

The "→ next" column names the kernels a kernel's output is linked to (``runtime.link``), and
"dead letters" counts the messages meant for it that could not be delivered.

Each row has a button that opens the kernel's event log (launch, activation, failures with
their message, restarts, relaunches: the ``events`` of its telemetry) under the row.
"""

from __future__ import annotations

import html
import time
from typing import Any

from pydotcompute import KernelTelemetry, RuntimeSnapshot

__all__ = ["COLUMNS", "KernelTable", "events_html", "row_cells", "row_html"]

#: (css key, header) of each column, in display order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "kernel"),
    ("where", "runs on"),
    ("state", "state"),
    ("inbox", "inbox"),
    ("outbox", "outbox"),
    ("processed", "processed"),
    ("rate", "msg/s"),
    ("p50", "p50 µs"),
    ("p99", "p99 µs"),
    ("dropped", "dropped"),
    ("dead", "dead letters"),
    ("next", "→ next"),
    ("errors", "errors"),
    ("restarts", "restarts"),
    ("last_error", "last error"),
)

STATE_COLOURS = {
    "CREATED": "#6b7280",
    "LAUNCHED": "#2563eb",
    "ACTIVE": "#16a34a",
    "DEACTIVATED": "#d97706",
    "TERMINATING": "#ea580c",
    "TERMINATED": "#6b7280",
    "FAILED": "#dc2626",
}

_GRID = "8.5em 6.5em 7.5em 5em 5em 6em 5em 4.5em 4.5em 5em 5.5em 7em 4em 4.5em minmax(10em, 1fr)"
_NUMERIC = {
    "inbox", "outbox", "processed", "rate", "p50", "p99", "dropped", "dead", "errors", "restarts"
}  # fmt: skip
_ERROR_SHOWN = 60  # characters of the last error in the cell; the full text is its tooltip

#: The dashboard's style sheet, shipped inside the table header (an HTML widget), scoped to
#: the dashboard's root class so it cannot restyle the rest of the notebook.
STYLE = f"""<style>
.pdc-dashboard {{ font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; }}
.pdc-dashboard .pdc-row {{ display: grid; grid-template-columns: {_GRID}; column-gap: 0.5em;
  padding: 2px 6px; border-bottom: 1px solid var(--jp-border-color2, #e5e7eb);
  line-height: 1.6; white-space: nowrap; }}
.pdc-dashboard .pdc-head {{ font-weight: 600; border-bottom: 2px solid
  var(--jp-border-color1, #9ca3af); }}
.pdc-dashboard .pdc-num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.pdc-dashboard .pdc-c-id {{ font-weight: 600; overflow: hidden; text-overflow: ellipsis; }}
.pdc-dashboard .pdc-c-next {{ overflow: hidden; text-overflow: ellipsis; }}
.pdc-dashboard .pdc-c-last_error {{ overflow: hidden; text-overflow: ellipsis;
  color: #b91c1c; }}
.pdc-dashboard .pdc-badge {{ color: white; border-radius: 3px; padding: 0 6px;
  font-size: 11px; font-weight: 600; }}
.pdc-dashboard .pdc-title {{ font-size: 14px; font-weight: 600; }}
.pdc-dashboard .pdc-muted {{ color: var(--jp-ui-font-color2, #6b7280); }}
.pdc-dashboard .pdc-ok {{ color: #15803d; }}
.pdc-dashboard .pdc-err {{ color: #b91c1c; white-space: pre-wrap; }}
.pdc-dashboard table.pdc-device td {{ padding: 0 8px 0 0; }}
.pdc-dashboard .pdc-events {{ margin: 0 0 4px 3.2em; max-height: 14em; overflow-y: auto;
  border-left: 3px solid var(--jp-border-color1, #9ca3af); padding-left: 6px; }}
.pdc-dashboard .pdc-events td {{ padding: 0 10px 0 0; vertical-align: top; }}
.pdc-dashboard .pdc-events .pdc-failed {{ color: #b91c1c; }}
.pdc-dashboard .pdc-log-toggle {{ width: 2.6em; min-width: 2.6em; height: 1.9em;
  padding: 0; margin: 0 0.6em 0 0; }}
.pdc-dashboard .pdc-log-spacer {{ width: 3.2em; min-width: 3.2em; }}
.pdc-dashboard .pdc-line {{ align-items: center; }}
</style>"""


def _count(n: int) -> str:
    return f"{n:,}"


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def _us(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def row_cells(t: KernelTelemetry) -> tuple[str, ...]:
    """The text of each column for one kernel (what the row shows, before HTML)."""
    return (
        t.kernel_id,
        t.backend if t.backend == t.device else f"{t.backend} · {t.device}",
        t.state,
        f"{t.inbox_depth:,}/{t.inbox_capacity:,}",
        f"{t.outbox_depth:,}/{t.outbox_capacity:,}",
        _count(t.processed),
        _rate(t.throughput),
        _us(t.latency_p50_us),
        _us(t.latency_p99_us),
        _count(t.dropped),
        _count(t.dead_letters),
        ", ".join(t.outputs_to),
        _count(t.errors),
        _count(t.restarts),
        t.last_error or "",
    )


def _cell(key: str, text: str) -> str:
    classes = f"pdc-c-{key}" + (" pdc-num" if key in _NUMERIC else "")
    body = html.escape(text)
    if key == "state":
        colour = STATE_COLOURS.get(text, "#6b7280")
        body = f'<span class="pdc-badge" style="background:{colour}">{body}</span>'
    elif key == "last_error" and len(text) > _ERROR_SHOWN:
        body = html.escape(text[: _ERROR_SHOWN - 1] + "…")
    titled = ("id", "next", "last_error")
    title = f' title="{html.escape(text, quote=True)}"' if key in titled else ""
    return f'<div class="{classes}"{title}>{body}</div>'


def row_html(cells: tuple[str, ...]) -> str:
    """One table row as HTML (a CSS grid line aligned with the header)."""
    kid = html.escape(cells[0], quote=True)
    inner = "".join(_cell(key, text) for (key, _), text in zip(COLUMNS, cells))
    return f'<div class="pdc-row" data-kernel="{kid}" data-state="{cells[2]}">{inner}</div>'


def _clock(timestamp: float) -> str:
    local = time.localtime(timestamp)
    return time.strftime("%H:%M:%S", local) + f".{int(timestamp * 1000) % 1000:03d}"


def events_html(kernel_id: str, events: tuple[tuple[float, str], ...]) -> str:
    """A kernel's event log (oldest first) as an HTML table."""
    kid = html.escape(kernel_id, quote=True)
    if not events:
        return f'<div class="pdc-events pdc-muted" data-kernel="{kid}">no events yet</div>'
    rows = "".join(
        f'<tr class="{"pdc-failed" if what.startswith("failed") else ""}">'
        f'<td class="pdc-muted">{_clock(t)}</td><td>{html.escape(what)}</td></tr>'
        for t, what in events
    )
    return (
        f'<div class="pdc-events" data-kernel="{kid}"><b>events of {html.escape(kernel_id)}'
        f"</b> ({len(events)}, oldest first)<table>{rows}</table></div>"
    )


def header_html() -> str:
    """The header row, carrying the dashboard's style sheet."""
    inner = "".join(
        f'<div class="pdc-c-{key}{" pdc-num" if key in _NUMERIC else ""}">{title}</div>'
        for key, title in COLUMNS
    )
    return f'{STYLE}<div class="pdc-row pdc-head">{inner}</div>'


class KernelTable:
    """Component: the kernel table (``root`` is a ``VBox`` of a header and one line per kernel).

    A kernel's line is its row (``rows[kid]``, an HTML widget), the button that opens its
    event log (``toggles[kid]``) and the log itself (``logs[kid]``, hidden until opened).
    Rows are never removed: a terminated kernel keeps its final row. ``update`` touches only
    the rows and logs whose text changed, so an idle runtime costs no messages to the browser.
    """

    def __init__(self) -> None:
        import ipywidgets as w

        self._w = w
        self.header = w.HTML(header_html())
        spacer = w.HTML()
        spacer.add_class("pdc-log-spacer")
        self._head = w.HBox([spacer, self.header])
        self.rows: dict[str, Any] = {}
        self.toggles: dict[str, Any] = {}
        self.logs: dict[str, Any] = {}
        self.lines: dict[str, Any] = {}
        self.shown: dict[str, tuple[str, ...]] = {}
        self.events: dict[str, tuple[tuple[float, str], ...]] = {}
        self.root = w.VBox([self._head], layout=w.Layout(overflow="auto"))
        self.root.add_class("pdc-table")

    def _add(self, kid: str, cells: tuple[str, ...]) -> None:
        w = self._w
        row = w.HTML(row_html(cells))
        toggle = w.ToggleButton(value=False, icon="list", tooltip=f"event log of {kid}")
        toggle.add_class("pdc-log-toggle")
        log = w.HTML(events_html(kid, ()), layout=w.Layout(display="none"))

        def show(change: dict[str, Any]) -> None:
            log.layout.display = "" if change["new"] else "none"

        toggle.observe(show, names="value")
        line = w.HBox([toggle, row])
        line.add_class("pdc-line")
        self.rows[kid], self.toggles[kid], self.logs[kid] = row, toggle, log
        self.events[kid] = ()
        self.lines[kid] = w.VBox([line, log])

    def update(self, snapshot: RuntimeSnapshot) -> int:
        """Show ``snapshot``; return how many rows and logs changed (new rows included)."""
        changed = 0
        added = False
        for kid, t in snapshot.kernels.items():
            cells = row_cells(t)
            if self.shown.get(kid) != cells:
                self.shown[kid] = cells
                changed += 1
                row = self.rows.get(kid)
                if row is None:
                    self._add(kid, cells)
                    added = True
                else:
                    row.value = row_html(cells)
            if self.events[kid] != t.events:
                self.events[kid] = t.events
                self.logs[kid].value = events_html(kid, t.events)
                changed += kid in self.shown and self.shown[kid] == cells
        if added:
            self.root.children = (self._head, *self.lines.values())
        return changed

    def open_log(self, kernel_id: str, is_open: bool = True) -> None:
        """Open (or close) a kernel's event log, as its button does."""
        self.toggles[kernel_id].value = is_open

    def close(self) -> None:
        """Close the table's widgets."""
        for kid, line in self.lines.items():
            for widget in (self.rows[kid], self.toggles[kid], self.logs[kid],
                           *line.children[0].children, line.children[0], line):  # fmt: skip
                widget.close()
        for widget in (*self._head.children, self._head, self.root):
            widget.close()
