"""Controls: pick a kernel, change its lifecycle, and send it a message from a form."""

from __future__ import annotations

import asyncio
import html
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from pydotcompute import RingKernelRuntime, RuntimeSnapshot

from ._bridge import LoopBridge
from ._errors import DashboardError
from ._form import FormField, build_message, form_fields

__all__ = ["SEND_TIMEOUT", "VERBS", "Controls"]

VERBS = ("activate", "deactivate", "terminate", "relaunch")
SEND_TIMEOUT = 5.0  # seconds a send from the form waits for room in a full inbox

# The states in which each verb is allowed (docs/articles/concepts/lifecycle.md); a button is
# disabled otherwise. Clicking anyway still goes to the runtime, whose error is shown.
_ALLOWED = {
    "activate": frozenset({"LAUNCHED", "DEACTIVATED"}),
    "deactivate": frozenset({"ACTIVE"}),
    "terminate": frozenset({"LAUNCHED", "ACTIVE", "DEACTIVATED", "FAILED"}),
    "relaunch": frozenset({"LAUNCHED", "ACTIVE", "DEACTIVATED", "FAILED"}),
}
_ACCEPTING = frozenset({"LAUNCHED", "ACTIVE", "DEACTIVATED"})
_STYLES = {"activate": "success", "deactivate": "warning", "terminate": "danger", "relaunch": ""}
_ICONS = {"activate": "play", "deactivate": "pause", "terminate": "stop", "relaunch": "refresh"}


def describe(result: Any) -> str:
    """A short text for what a verb returned."""
    if result is None:
        return "done"
    if result is True:
        return "queued"
    if result is False:
        return "dropped (the inbox is full and its policy is drop_newest)"
    return repr(result)


def error_html(what: str, exc: BaseException) -> str:
    """An error as the status line shows it: what failed, the exception and its cause."""
    text = f"{what} failed: {type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None:
        text += f"\n  caused by {type(cause).__name__}: {cause}"
    return f'<div class="pdc-err">✗ {html.escape(text)}</div>'


class Controls:
    """Component: kernel picker, lifecycle buttons, send form and a status line.

    Widget callbacks only hand work to the runtime's loop (through :class:`LoopBridge`);
    the outcome of every action, success or error, is shown in ``status``.
    """

    def __init__(self, runtime: RingKernelRuntime, loop: asyncio.AbstractEventLoop) -> None:
        import ipywidgets as w

        self._w = w
        self.runtime = runtime
        self.bridge = LoopBridge(loop, self.show_error)
        self.last_error: BaseException | None = None
        self.after_action: Callable[[], Any] | None = None  # set weakly by the dashboard
        self.states: dict[str, str] = {}
        self.picker = w.Dropdown(description="kernel", options=())
        self.buttons = {
            verb: w.Button(
                description=verb, button_style=_STYLES[verb], icon=_ICONS[verb],
                tooltip=f"{verb} the selected kernel", layout=w.Layout(width="8.5em"),
            )
            for verb in VERBS
        }  # fmt: skip
        self.form_title = w.HTML()
        self.form = w.VBox()
        self.inputs: dict[str, Any] = {}
        self.send_button = w.Button(description="send", icon="paper-plane", disabled=True)
        self.status = w.HTML()
        self._fields: list[FormField] | None = None
        self._form_key: tuple[str | None, object] = ("", None)
        self._syncing = False
        self._closed = False
        self.picker.observe(self._on_pick, names="value")
        for verb, button in self.buttons.items():
            button.on_click(partial(self._on_verb_click, verb))
        self.send_button.on_click(self._on_send_click)
        self.root = w.VBox(
            [
                w.HTML('<div class="pdc-title">Controls</div>'),
                self.picker,
                w.HBox(list(self.buttons.values())),
                self.form_title,
                self.form,
                self.send_button,
                self.status,
            ],
            layout=w.Layout(min_width="420px"),
        )
        self.root.add_class("pdc-controls")

    # ------------------------------------------------------------ widget callbacks (any thread)
    def _on_pick(self, change: dict[str, Any]) -> None:
        if not self._syncing and not self._closed:
            self.bridge.call("select", self._refresh)

    def _on_verb_click(self, verb: str, _button: Any) -> None:
        if self._closed:
            return
        self.bridge.call(verb, self.run_verb, verb, self.picker.value)

    def _on_send_click(self, _button: Any) -> None:
        if self._closed:
            return
        texts = {name: widget.value for name, widget in self.inputs.items()}
        self.bridge.call("send", self.send, self.picker.value, texts)

    # ------------------------------------------------------------ actions (on the loop)
    def run_verb(self, verb: str, kernel_id: str | None) -> None:
        """Start ``runtime.<verb>(kernel_id)``; its outcome goes to the status line."""
        if kernel_id is None:
            raise DashboardError(f"no kernel is selected; pick one before {verb}")
        coro = getattr(self.runtime, verb)(kernel_id)
        self._busy(f"{verb} {kernel_id!r} …")
        what = f"{verb} {kernel_id!r}"
        self.bridge.spawn(what, coro, partial(self._succeeded, what))

    def send(self, kernel_id: str | None, texts: dict[str, str]) -> None:
        """Build a message from the form's texts and send it to ``kernel_id``."""
        if kernel_id is None:
            raise DashboardError("no kernel is selected; pick one before sending")
        message_type = self.runtime.options(kernel_id).input_type
        msg = build_message(message_type, texts)
        what = f"send {type(msg).__name__} to {kernel_id!r}"
        coro = self.runtime.send(kernel_id, msg, timeout=SEND_TIMEOUT)
        self.bridge.spawn(what, coro, partial(self._succeeded, what))

    def _succeeded(self, what: str, result: Any) -> None:
        self.status.value = f'<div class="pdc-ok">✓ {html.escape(what)}: {describe(result)}</div>'
        self._after()

    def _busy(self, text: str) -> None:
        self.status.value = f'<div class="pdc-muted">{html.escape(text)}</div>'

    def show_error(self, what: str, exc: BaseException) -> None:
        """Show a failure in the status line (and keep it in ``last_error``)."""
        self.last_error = exc
        self.status.value = error_html(what, exc)
        self._after()

    def _after(self) -> None:
        callback = self.after_action
        if callback is not None:
            callback()

    # ------------------------------------------------------------ showing the runtime
    def update(self, snapshot: RuntimeSnapshot) -> None:
        """Follow the snapshot: kernel list, enabled buttons, the form of the selection."""
        self.states = {kid: t.state for kid, t in snapshot.kernels.items()}
        ids = tuple(self.states)
        if ids != tuple(self.picker.options):
            current = self.picker.value
            self._syncing = True
            try:
                self.picker.options = ids
                self.picker.value = current if current in ids else (ids[0] if ids else None)
            finally:
                self._syncing = False
        self._refresh()

    def _refresh(self) -> None:
        kid = self.picker.value
        state = self.states.get(kid) if kid is not None else None
        for verb, button in self.buttons.items():
            disabled = state not in _ALLOWED[verb]
            if button.disabled != disabled:
                button.disabled = disabled
        known = kid is not None and kid in self.runtime.kernels
        message_type = self.runtime.options(kid).input_type if known else None
        if (kid, message_type) != self._form_key:
            self._form_key = (kid, message_type)
            self._build_form(kid, message_type)
        send_disabled = self._fields is None or state not in _ACCEPTING
        if self.send_button.disabled != send_disabled:
            self.send_button.disabled = send_disabled

    def _build_form(self, kid: str | None, message_type: type | None) -> None:
        w = self._w
        for widget in self.inputs.values():
            widget.close()
        self.inputs = {}
        self._fields = None
        if kid is None:
            self.form_title.value = '<div class="pdc-muted">no kernel to send to</div>'
            self.form.children = ()
            return
        name = "any object" if message_type is None else message_type.__name__
        try:
            self._fields = form_fields(message_type)
        except DashboardError as exc:
            self.form_title.value = f'<div class="pdc-muted">{html.escape(str(exc))}</div>'
            self.form.children = ()
            return
        self.form_title.value = f"<div>send to <b>{html.escape(kid)}</b>: {html.escape(name)}</div>"
        for f in self._fields:
            self.inputs[f.name] = w.Text(
                value=f.default,
                description=f.name,
                placeholder=f.type_name + (" (required)" if f.required else ""),
                tooltip=f.type_name,
                style={"description_width": "7em"},
                # "auto" fills the column with the margin inside it ("100%" overflows by it)
                layout=w.Layout(width="auto"),
            )
        self.form.children = tuple(self.inputs.values())

    def set_after_action(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` after every action, holding its object weakly."""
        ref = weakref.WeakMethod(callback)

        def call() -> None:
            method = ref()
            if method is not None:
                method()

        self.after_action = call

    def close(self) -> None:
        """Close the controls' widgets; later clicks do nothing."""
        self._closed = True
        for widget in (*self.inputs.values(), self.picker, *self.buttons.values(),
                       self.form_title, self.form, self.send_button, self.status,
                       *self.root.children, self.root):  # fmt: skip
            widget.close()
