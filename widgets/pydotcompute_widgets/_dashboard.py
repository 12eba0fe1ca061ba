"""``Dashboard``: the live view of a runtime's ring kernels, with controls, as one ipywidget."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import math
import weakref
from typing import Any

import ipywidgets

from pydotcompute import RingKernelRuntime, RuntimeSnapshot

from ._bokeh import bokeh_widget, load_bokehjs
from ._controls import Controls
from ._device import DevicePanel
from ._errors import DashboardError
from ._plots import KernelPlots
from ._table import KernelTable

__all__ = ["MIN_INTERVAL", "Dashboard"]

log = logging.getLogger("pydotcompute.widgets")

MIN_INTERVAL = 0.1  # seconds: at most 10 updates a second, whatever asks for one


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _loop_of(runtime: RingKernelRuntime) -> asyncio.AbstractEventLoop:
    loop = runtime.loop or _running_loop()
    if loop is None:
        raise DashboardError(
            "this RingKernelRuntime has no event loop yet and none is running here; open "
            "the dashboard in a notebook (or async code) after 'async with RingKernelRuntime()'"
            " or a first launch()"
        )
    if loop.is_closed():
        raise DashboardError(
            "the event loop of this RingKernelRuntime is closed; create a new runtime"
        )
    return loop


class Dashboard(ipywidgets.VBox):  # type: ignore[misc]
    """A live dashboard of every ring kernel of a runtime, with controls (an ipywidget).

    Shows a table (where each kernel runs, its state, queue depths, processed count,
    messages/s, latency p50/p99, drops, errors with the last one, restarts), Bokeh plots of
    throughput and queue depths over time, the accelerator's telemetry, and controls to
    activate, deactivate, terminate and relaunch a kernel or send it a message built from
    its input type. New kernels appear as they are launched; terminated ones keep their
    final row.

    One asyncio task on the runtime's loop refreshes it every ``interval`` seconds, sending
    the browser only what changed. The task holds the dashboard weakly and stops when the
    dashboard is closed or the runtime shuts down (after showing the final states).

    Parameters
    ----------
    runtime:
        The runtime to show. Its event loop (or the one running here) runs the updates.
    interval:
        Seconds between updates; at least 0.1 (10 updates a second).
    history:
        How many points each plot keeps (older ones roll over).

    Raises
    ------
    DashboardError
        ``interval`` or ``history`` is out of range, or the runtime has no usable loop.

    Examples
    --------
    In a notebook cell, after launching kernels::

        from pydotcompute_widgets import Dashboard
        Dashboard(runtime)
    """

    def __init__(
        self,
        runtime: RingKernelRuntime,
        interval: float = 0.5,
        *,
        history: int = 600,
        **kwargs: Any,
    ) -> None:
        if not isinstance(runtime, RingKernelRuntime):
            raise DashboardError(
                f"Dashboard shows a RingKernelRuntime, got {type(runtime).__name__}; pass "
                "the runtime your kernels were launched in"
            )
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or interval < MIN_INTERVAL
        ):
            raise DashboardError(
                f"interval={interval!r} must be a number of seconds >= {MIN_INTERVAL} (the "
                "dashboard updates at most 10 times a second); pass e.g. interval=0.5"
            )
        if isinstance(history, bool) or not isinstance(history, int) or history < 2:
            raise DashboardError(f"history={history!r} must be an int >= 2 (points kept per plot)")
        loop = _loop_of(runtime)
        self._runtime = runtime
        self._loop = loop
        self._interval = float(interval)
        self._closed = False
        self._stopped: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._poke: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.table = KernelTable()
        self.plots = KernelPlots(history, self._interval)
        self.device = DevicePanel(history, self._interval)
        self.controls = Controls(runtime, loop)
        self.controls.set_after_action(self._refresh_soon)
        self.title = ipywidgets.HTML()
        self.plot_widget = bokeh_widget(self.plots.root)
        self._lower = ipywidgets.HBox([self.device.root, self.controls.root])
        super().__init__([self.title, self.table.root, self.plot_widget, self._lower], **kwargs)
        self.add_class("pdc-dashboard")
        load_bokehjs()
        if _running_loop() is loop:
            self._start()
        else:
            self.controls.bridge.call("start the dashboard", self._start)

    # ---------------------------------------------------------------- properties
    @property
    def runtime(self) -> RingKernelRuntime:
        """The runtime shown."""
        return self._runtime

    @property
    def interval(self) -> float:
        """Seconds between updates."""
        return self._interval

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def running(self) -> bool:
        """Whether the update task is running."""
        return self._task is not None and not self._task.done()

    # ---------------------------------------------------------------- updates (on the loop)
    def _start(self) -> None:
        if self._closed:
            return
        self._poke = asyncio.Event()
        if not self._tick():
            return
        self._task = self._loop.create_task(
            _run_updates(weakref.ref(self), self._interval, self._poke),
            name="pydotcompute dashboard",
        )

    def update(self, snapshot: RuntimeSnapshot | None = None) -> bool:
        """Show ``snapshot`` (by default a fresh ``runtime.snapshot()``) now.

        Call it on the runtime's event loop. Returns whether anything shown changed.
        """
        if snapshot is None:
            snapshot = self._runtime.snapshot()
        changed = self.table.update(snapshot) > 0
        structure = self.plots.structure
        changed = self.plots.update(snapshot) or changed
        if self.plots.structure != structure:
            self.plot_widget.resync()  # new lines: views made before them miss nothing
        changed = self.device.update(snapshot) or changed
        self.controls.update(snapshot)
        self._show_title(snapshot)
        return changed

    def _tick(self) -> bool:
        """One update from the task; False when the task must stop."""
        final = self._runtime.closed
        try:
            self.update()
        except Exception as exc:
            self.error = exc
            log.error("dashboard update failed; updates stopped", exc_info=exc)
            self.controls.show_error("dashboard update (updates stopped)", exc)
            self._stop("an update failed")
            return False
        if final:
            self._stop("the runtime was shut down")
            return False
        return True

    def _stop(self, why: str) -> None:
        self._stopped = why
        self.title.value = self._title_html(len(self.table.rows), why)

    def _refresh_soon(self) -> None:
        """Ask the task for an update now (still at most 10 a second)."""
        if self._poke is not None and not self._closed:
            self._poke.set()

    def _show_title(self, snapshot: RuntimeSnapshot) -> None:
        value = self._title_html(len(snapshot.kernels), self._stopped)
        if self.title.value != value:
            self.title.value = value

    def _title_html(self, kernels: int, stopped: str | None) -> str:
        every = (
            f"updates every {self._interval:g} s"
            if stopped is None
            else f"updates stopped: {html.escape(stopped)}"
        )
        plural = "" if kernels == 1 else "s"
        return (
            f'<div class="pdc-title">PyDotCompute ring kernels '
            f'<span class="pdc-muted">· {kernels} kernel{plural} · {every}</span></div>'
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Being displayed: the new view's plots start from the document as it is now.
        self.plot_widget.resync()
        self.device.resync()
        return super()._repr_mimebundle_(**kwargs)

    # ---------------------------------------------------------------- closing
    def close(self) -> None:
        """Stop the updates and close every widget of the dashboard (any thread)."""
        self._closed = True
        task = self.__dict__.get("_task")
        if task is not None and not task.done() and not self._loop.is_closed():
            if _running_loop() is self._loop:
                task.cancel()
            else:
                self._loop.call_soon_threadsafe(task.cancel)
        # getattr: close() also runs from __del__ after an __init__ that raised half-way.
        for name in ("table", "device", "controls", "title", "plot_widget", "_lower"):
            part = self.__dict__.get(name)
            if part is not None:
                part.close()
        super().close()


async def _run_updates(ref: weakref.ref[Dashboard], interval: float, poke: asyncio.Event) -> None:
    """The update task: holds the dashboard only weakly, between updates."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        # The interval elapsing without a poke is the normal case.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await poke.wait()
        poke.clear()
        gap = MIN_INTERVAL - (loop.time() - last)
        if gap > 0:
            await asyncio.sleep(gap)  # a poke right after an update waits its turn
        dashboard = ref()
        if dashboard is None or dashboard.closed:
            return
        last = loop.time()
        if not dashboard._tick():
            return
        del dashboard
